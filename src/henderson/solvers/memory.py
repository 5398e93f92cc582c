"""Memory check before the dense MME: fail early, with the size, instead of swapping.

The dense solver (:class:`~henderson.solvers.dense.DenseMME`) holds T'T of the equations
left after eliminating the largest iid term as an m × m array, and each evaluation
factors a copy and may form its inverse (traces for the score): about 3·m² doubles, plus
the q₀ × m block of the eliminated term and a factored K's q × r columns. When that
exceeds the memory available, the fit would swap for hours or be killed; instead it is
an error that says how much it needs and which solver fits.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import ModelError

#: the dense solver may use at most this fraction of the available memory
FRACTION = 0.8


def available_bytes() -> int | None:
    """Memory available to this process now (Linux ``MemAvailable``), None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def dense_mme_bytes(spec) -> int:
    """Bytes the dense MME needs for ``spec`` (estimate, see the module docstring)."""
    iid = [t.q for t in spec.terms if t.kind == "iid"]
    q0 = max(iid) if iid else 0
    m = sum(t.q for t in spec.terms) - q0 + spec.p
    extra = sum(t.q * t.q for t in spec.terms if t.kind == "factor")  # F (q × r ≤ q)
    return int(8 * (3 * m * m + q0 * m + extra))


def check_dense_memory(spec, available: int | None = None) -> None:
    """ModelError if the dense MME would not fit in memory.

    Parameters
    ----------
    spec : ModelSpec
    available : int, optional
        Bytes available (default: read from the system).
    """
    need = dense_mme_bytes(spec)
    have = available_bytes() if available is None else available
    if have is None or need <= FRACTION * have:
        return
    sparse_ok = not any(t.kind == "factor" for t in spec.terms)
    hint = ("use solver='sparse' (sparse MME: its memory is bounded by the Cholesky factor)"
            if sparse_ok else
            "a dense covariance K this large needs a sparse K⁻¹ (cov_inverse=, e.g. a pedigree A⁻¹) "
            "for solver='sparse', or one kernel for the spectral solver")
    raise ModelError(
        f"the dense mixed model equations need about {need / 2**30:.1f} GiB "
        f"({int(np.sqrt(need / 24)):,} equations held densely) but {have / 2**30:.1f} GiB "
        f"is available: {hint}")

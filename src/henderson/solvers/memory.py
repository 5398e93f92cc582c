"""Memory check before a dense step: fail early, say how much, suggest the iterative solver.

A dense MME or a spectral decomposition that does not fit in memory would otherwise
end in an out-of-memory kill (no message) or swap for hours. The estimates are upper
bounds of the working arrays of :mod:`henderson.solvers.dense` (the cross-products R,
their copy into C and its Cholesky factor or inverse: 3 m² doubles for the m equations
left after the largest iid term is eliminated, plus that term's q₀ × m cross block;
T dense when a dense K is refitted) and of
:mod:`henderson.solvers.spectral` (K, its reduction and the eigenvectors: 3 N²
doubles for N = max(records, levels)).
"""

from __future__ import annotations

from .._memory import available_bytes
from ..errors import ModelError
from ..spec.levels import Factored, Identity

#: the share of the available memory a dense step may plan to use
FRACTION = 0.8


class InsufficientMemoryError(ModelError, MemoryError):
    """A dense step would need more memory than is available; the message says how much."""


def dense_bytes(spec, kind: str) -> int:
    """Upper bound of the bytes the dense (``kind="dense"``) or spectral step needs."""
    if kind == "spectral":
        N = max(spec.n, spec.terms[0].q)
        return 3 * 8 * N * N
    sizes = [t.q for t in spec.terms]
    iid = [t.q for t in spec.terms if isinstance(t.covariance, Identity)]
    q0 = max(iid) if iid else 0
    m = sum(sizes) - q0 + spec.p
    need = 8 * (3 * m * m + q0 * m)
    if any(isinstance(t.covariance, Factored) for t in spec.terms):
        need += 8 * spec.n * (sum(sizes) + spec.p)  # T = [ZF X] held dense
    return need


def _gib(b: float) -> str:
    return f"{b / 2**30:.1f} GiB"


def check_memory(spec, kind: str, available: int | None = None) -> None:
    """:class:`InsufficientMemoryError` when the dense step would not fit in memory."""
    need = dense_bytes(spec, kind)
    have = available_bytes() if available is None else available
    if need <= FRACTION * have:
        return
    what = "the spectral decomposition (one dense kernel)" if kind == "spectral" else "the dense mixed model equations"
    sparse_ok = kind == "dense" and not any(isinstance(t.covariance, Factored) for t in spec.terms)
    hint = (
        "use solver='sparse' (its memory is bounded by the sparse Cholesky factor), or "
        if sparse_ok
        else "give a sparse K⁻¹ (cov_inverse=, e.g. a pedigree A⁻¹) for solver='sparse', or "
    )
    raise InsufficientMemoryError(
        f"{what} need about {_gib(need)} of memory, but {_gib(have)} is available: {hint}"
        "the iterative solver: fit(..., solver='pcg', sigma2=[...]) solves the MME without "
        "forming them (docs/scaling.md)."
    )


def dense_mme_bytes(spec) -> int:
    """Bytes the dense MME needs for ``spec`` (see :func:`dense_bytes`)."""
    return dense_bytes(spec, "dense")


def check_dense_memory(spec, available: int | None = None) -> None:
    """:func:`check_memory` for the dense MME; ``available`` bytes default to the system's."""
    check_memory(spec, "dense", available)

"""The inverse of a symmetric positive definite matrix from its Cholesky factor.

Shared by the dense C-form (C⁻¹ = (LL')⁻¹, :mod:`henderson.solvers.general`) and the
V-form (V⁻¹, :mod:`henderson.solvers.general_vform`). Two LAPACK routes, both 2n³/3 flops:

- ``"dpotri"``: dtrtri (L⁻¹) then dlauum (L⁻ᵀL⁻¹), in place;
- ``"dsyrk"``: dtrtri, then L⁻ᵀL⁻¹ by the level-3 BLAS dsyrk (one more n × n array).

Which is faster depends on the BLAS, its threads and the load. The V-form first took
dsyrk above 2,000 rows (benchmarks/results/general_vform.md: OpenBLAS's two-thread
dlauum measured 13.6 s against 7.8 s at n = 4,810 under load 6–8, then 4.65 s against
4.23 s on a quieter machine). benchmarks/results/cform_inverse.md, both routes on the
same matrix in one quiet run under the benchmark lock, has dpotri at 0.18× (m = 2,000)
and 0.53× (m = 5,000) the time of dtrtri + dsyrk (an earlier run: 0.64× and 0.54×), and
dpotri holds one n × n array fewer; so dpotri at every size.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lapack

from ..errors import NotPositiveDefiniteError
from ..linalg import dense_safe

_BLOCK = 512


def mirror_lower(A: np.ndarray) -> None:
    """Copy the strict lower triangle of square A onto its upper triangle, by blocks."""
    n = A.shape[0]
    for i0 in range(0, n, _BLOCK):
        i1 = min(i0 + _BLOCK, n)
        A[i0:i1, i1:] = A[i1:, i0:i1].T
        blk = A[i0:i1, i0:i1]
        iu = np.triu_indices(i1 - i0, 1)  # within the diagonal block only (≤ 512²/2 pairs)
        blk[iu] = blk.T[iu]


def default_route(n: int) -> str:
    """The route :func:`inverse_from_cholesky` takes for order n when none is given:
    dpotri at every n (module notes; the argument is kept for a size rule)."""
    return "dpotri"


def inverse_from_cholesky(L: np.ndarray, how: str | None = None, *, what: str = "the matrix") -> np.ndarray:
    """A⁻¹ = L⁻ᵀL⁻¹ from A = LL' (lower; the upper triangle of L is ignored, L left intact).

    Parameters
    ----------
    L : array, shape (n, n)
        Lower Cholesky factor.
    how : {"dpotri", "dsyrk"} or None
        The LAPACK route (module notes); None takes :func:`default_route`.
    what : str
        Names the matrix in the error raised when it cannot be inverted.

    Returns
    -------
    array, shape (n, n)
        The symmetric inverse, both triangles filled.
    """
    n = L.shape[0]
    if n == 0:
        return np.zeros((0, 0))
    if how is None:
        how = default_route(n)
    if how == "dpotri":
        inv, info = dense_safe.potri(L)  # one dpotri up to 12k (OpenBLAS dsyrk crash above)
    elif how == "dsyrk":
        Li, info = lapack.dtrtri(np.asfortranarray(np.tril(L)), lower=1, overwrite_c=1)
        if info == 0:
            inv = dense_safe.syrk_lower(Li, trans=True)
            del Li
    else:
        raise ValueError(f"how must be 'dpotri' or 'dsyrk', not {how!r}")
    if info != 0:
        raise NotPositiveDefiniteError(f"{what} could not be inverted")
    mirror_lower(inv)
    return inv

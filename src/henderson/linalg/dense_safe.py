"""Dense Cholesky, symmetric rank-k update and Cholesky inverse that avoid an OpenBLAS crash.

OpenBLAS's threaded ``dsyrk`` (SkylakeX kernels; 0.3.30 in scipy's wheel, 0.3.31 in
numpy's, and still 0.3.34, the newest ``scipy-openblas32``) writes past its packing
buffer for large orders: with 2 threads ``dsyrk`` of n = 16,000 rows and k ≥ 384 columns
segfaults (both ``trans``), so does ``dsyr2k`` at k = 384, and ``dpotrf`` /
``np.linalg.cholesky`` of order ≥ 16,000, which call it (benchmarks/results/
segv_potrf.md). One thread, or ``OPENBLAS_CORETYPE=Haswell``, is unaffected.

The routines here take the one LAPACK/BLAS call up to ``SAFE_ORDER`` (tested clean at
14,000) and above it split the work so that no symmetric BLAS call sees more than
``BLOCK`` rows: a blocked dpotrf (:func:`henderson.linalg._numeric.potrf_blocked`), a
syrk formed ``BLOCK`` rows at a time (dsyrk on the diagonal blocks, dgemm below), and
the inverse from the factor as L⁻ᵀL⁻¹ (dtrtri, not implicated, then that syrk, using
the triangle of L⁻¹). Only float64 is guarded: ``ssyrk`` ran clean at n = 24,000,
k = 1,024. ``eigh`` is not: dsytrd's dsyr2k has k = 32, clean at n = 16,000.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import blas, lapack

#: orders up to this take the single LAPACK/BLAS call (dpotrf 14,000 and dsyrk 14,000 × 384
#: ran clean with 2 threads; 16,000 crashed)
SAFE_ORDER = 12_000
#: rows of the symmetric blocks above SAFE_ORDER (dsyrk 8,192 × 4,096 ran clean)
BLOCK = 4096


def potrf(a: np.ndarray, overwrite: bool = False, clean: bool = False) -> tuple[np.ndarray, int]:
    """Lower Cholesky factor, as ``scipy.linalg.lapack.dpotrf(a, lower=1, clean=clean)``.

    Parameters
    ----------
    a : array, shape (n, n)
        Symmetric; only the lower triangle is read.
    overwrite : bool
        Factor in ``a``'s memory when it is Fortran-ordered float64 (as ``overwrite_a``).
    clean : bool
        Zero the strict upper triangle (else it is ``a``'s, untouched).

    Returns
    -------
    c : array, shape (n, n)
        L in the lower triangle.
    info : int
        LAPACK info: 0, or the 1-based column whose pivot is not positive.
    """
    n = a.shape[0]
    if n <= SAFE_ORDER:
        c, info = lapack.dpotrf(a, lower=1, clean=int(clean), overwrite_a=int(overwrite))
        return c, int(info)
    from . import _numeric  # numba kernels: loaded only when a large matrix needs them

    x = a if (overwrite and a.dtype == np.float64 and a.flags.f_contiguous) else np.array(a, np.float64, order="F")
    flat = x.ravel(order="F")  # a view: x is Fortran-contiguous
    info = _numeric.potrf_blocked(flat, 0, n, n, BLOCK)
    if clean:
        _zero_upper(x)
    return x, int(info)


def cholesky_lower(a: np.ndarray, overwrite: bool = False) -> np.ndarray:
    """Lower Cholesky factor with zeros above, as ``scipy.linalg.cholesky(a, lower=True)``.

    Raises
    ------
    numpy.linalg.LinAlgError
        When ``a`` is not positive definite (as scipy's).
    """
    c, info = potrf(a, overwrite=overwrite, clean=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"{info}-th leading minor of the array is not positive definite")
    return c


def _zero_upper(x: np.ndarray) -> None:
    """Zero the strict upper triangle in place, a block of columns at a time (no n² index arrays)."""
    n = x.shape[0]
    for j0 in range(0, n, BLOCK):
        j1 = min(n, j0 + BLOCK)
        x[j0:j1, j0:j1] = np.tril(x[j0:j1, j0:j1])
        x[j0:j1, j1:] = 0.0


def syrk_lower(
    a: np.ndarray,
    *,
    trans: bool = False,
    alpha: float = 1.0,
    beta: float = 0.0,
    c: np.ndarray | None = None,
    upper_triangular: bool = False,
) -> np.ndarray:
    """Lower triangle of alpha·op(A)op(A)' + beta·C, as ``scipy.linalg.blas.dsyrk(lower=1)``.

    Parameters
    ----------
    a : array
        op(A) = A (n × k) when ``trans`` is False, else A' (A is k × n).
    trans, alpha, beta : as dsyrk's.
    c : array, shape (n, n), optional
        Updated in place when Fortran-ordered float64 (else a copy is returned); its
        strict upper triangle is not touched. None: a new zero array.
    upper_triangular : bool
        op(A) is upper triangular, its zeros stored (with A = L lower and ``trans``, the
        result is L'L): above ``SAFE_ORDER`` the blocks known to be zero are skipped, a
        third of the flops.

    Returns
    -------
    array, shape (n, n)
        C (``c`` itself when updated in place).
    """
    b = a.T if trans else a  # op(A), n × k
    n, k = b.shape
    if n <= SAFE_ORDER:
        if c is None:
            return blas.dsyrk(alpha, a, trans=int(trans), lower=1)
        out = blas.dsyrk(alpha, a, beta=beta, c=c, trans=int(trans), lower=1, overwrite_c=1)
        if out is not c and c.flags.writeable and c.dtype == np.float64:
            c[...] = out
            return c
        return out
    if c is None:
        c, beta = np.zeros((n, n), order="F"), 0.0
    elif not (c.flags.f_contiguous and c.dtype == np.float64):
        c = np.array(c, np.float64, order="F")
    nb = BLOCK
    for a0 in range(0, n, nb):
        a1 = min(n, a0 + nb)
        k0 = a0 if upper_triangular else 0  # rows a0.. of op(A) are zero left of column a0
        p = b[a0:a1, k0:]
        blk = np.array(c[a0:a1, a0:a1], order="F")
        c[a0:a1, a0:a1] = blas.dsyrk(alpha, p, beta=beta, c=blk, lower=1, overwrite_c=1)
        for b0 in range(a1, n, nb):
            b1 = min(n, b0 + nb)
            k1 = b0 if upper_triangular else 0
            prod = b[b0:b1, k1:] @ b[a0:a1, k1:].T
            if beta == 0.0:  # C may hold garbage (dsyrk does not read C when beta = 0)
                c[b0:b1, a0:a1] = alpha * prod if alpha != 1.0 else prod
            else:
                c[b0:b1, a0:a1] *= beta
                c[b0:b1, a0:a1] += alpha * prod if alpha != 1.0 else prod
    return c


def potri(c: np.ndarray, overwrite: bool = False) -> tuple[np.ndarray, int]:
    """(LL')⁻¹ from the lower factor L, as ``scipy.linalg.lapack.dpotri(c, lower=1)``.

    Parameters
    ----------
    c : array, shape (n, n)
        L in the lower triangle (the upper is ignored).
    overwrite : bool
        Below ``SAFE_ORDER``, as dpotri's ``overwrite_c``; above it the factor's memory
        holds L⁻¹ and the inverse is a new array.

    Returns
    -------
    inv : array, shape (n, n)
        The inverse in the lower triangle (the upper is not meaningful).
    info : int
        LAPACK info (0, or > 0 when L has a zero diagonal entry).
    """
    n = c.shape[0]
    if n <= SAFE_ORDER:
        inv, info = lapack.dpotri(c, lower=1, overwrite_c=int(overwrite))
        return inv, int(info)
    li, info = lapack.dtrtri(c, lower=1, overwrite_c=int(overwrite))
    if info != 0:
        return li, int(info)
    _zero_upper(li)  # it holds the input's upper triangle
    return syrk_lower(li, trans=True, upper_triangular=True), 0

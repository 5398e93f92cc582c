"""BLAS/LAPACK from numba kernels, through scipy's Cython-exported Fortran symbols.

numba cannot call ``scipy.linalg`` inside a jitted function, but it can call an
external symbol. ``scipy.linalg.cython_blas`` / ``cython_lapack`` export the Fortran
routines scipy itself links (OpenBLAS in the wheels), so the supernodal kernels use
the same BLAS as numpy, with no compiler at install time. Every argument is passed by
pointer (Fortran convention); matrices are column-major with an explicit leading
dimension, so a block is addressed as ``buf[offset:]`` with ``ld`` = its row count.
"""

from __future__ import annotations

import llvmlite.binding as llvm
import numba as nb
import numpy as np
from numba import types
from numba.extending import get_cython_function_address


def _fn(module: str, name: str, nargs: int):
    # Registered as a named symbol (not a ctypes pointer) so that the kernels calling
    # it can be cached on disk: the cached code refers to the name, which is bound to
    # this process's address at import.
    symbol = f"henderson_{name}"
    llvm.add_symbol(symbol, get_cython_function_address(f"scipy.linalg.cython_{module}", name))
    return types.ExternalFunction(symbol, types.void(*([types.voidptr] * nargs)))


_dpotrf = _fn("lapack", "dpotrf", 5)
_dpotri = _fn("lapack", "dpotri", 5)
_dtrsm = _fn("blas", "dtrsm", 11)
_dsyrk = _fn("blas", "dsyrk", 10)
_dgemm = _fn("blas", "dgemm", 13)
_dormtr = _fn("lapack", "dormtr", 13)


@nb.njit(cache=True)
def _c(ch):
    return np.array([ord(ch)], np.uint8)


@nb.njit(cache=True)
def _i(v):
    return np.array([v], np.int32)


@nb.njit(cache=True)
def _d(v):
    return np.array([v], np.float64)


@nb.njit(cache=True)
def potrf_lower(a, off, n, lda):
    """Cholesky of the n × n block at a[off:] (lower, in place); LAPACK info (0 = ok)."""
    info = np.zeros(1, np.int32)
    _dpotrf(_c("L").ctypes, _i(n).ctypes, a[off:].ctypes, _i(lda).ctypes, info.ctypes)
    return info[0]


@nb.njit(cache=True)
def potri_lower(a, off, n, lda):
    """Inverse of LL' from the lower Cholesky factor at a[off:] (lower triangle, in place)."""
    info = np.zeros(1, np.int32)
    _dpotri(_c("L").ctypes, _i(n).ctypes, a[off:].ctypes, _i(lda).ctypes, info.ctypes)
    return info[0]


@nb.njit(cache=True)
def trsm(side, trans, m, n, a, aoff, lda, b, boff, ldb):
    """B := B·op(A)⁻¹ (side 'R') or op(A)⁻¹·B (side 'L'), A lower triangular, non-unit."""
    _dtrsm(
        _c(side).ctypes,
        _c("L").ctypes,
        _c(trans).ctypes,
        _c("N").ctypes,
        _i(m).ctypes,
        _i(n).ctypes,
        _d(1.0).ctypes,
        a[aoff:].ctypes,
        _i(lda).ctypes,
        b[boff:].ctypes,
        _i(ldb).ctypes,
    )


@nb.njit(cache=True)
def syrk_lower(n, k, alpha, a, aoff, lda, beta, c, ldc):
    """C := alpha·AA' + beta·C (lower triangle), A n × k."""
    _dsyrk(
        _c("L").ctypes,
        _c("N").ctypes,
        _i(n).ctypes,
        _i(k).ctypes,
        _d(alpha).ctypes,
        a[aoff:].ctypes,
        _i(lda).ctypes,
        _d(beta).ctypes,
        c.ctypes,
        _i(ldc).ctypes,
    )


@nb.njit(cache=True)
def gemm_tn(m, n, k, alpha, a, lda, b, ldb, beta, c, coff, ldc):
    """C := alpha·A'B + beta·C, A k × m, B k × n."""
    _dgemm(
        _c("T").ctypes,
        _c("N").ctypes,
        _i(m).ctypes,
        _i(n).ctypes,
        _i(k).ctypes,
        _d(alpha).ctypes,
        a.ctypes,
        _i(lda).ctypes,
        b.ctypes,
        _i(ldb).ctypes,
        _d(beta).ctypes,
        c[coff:].ctypes,
        _i(ldc).ctypes,
    )


@nb.njit(cache=True)
def ormtr_lower(side, trans, a, tau, c):
    """C := op(Q)·C (side 'L') or C·op(Q) (side 'R'), Q from ``dsytrd(lower=1)``; LAPACK info.

    a : (n, n) Fortran-ordered, the reduced matrix holding the reflectors below the
    subdiagonal; tau : (n − 1,); c : (m, k) Fortran-ordered, overwritten. ``trans``
    'N' applies Q, 'T' applies Q'. Blocked (dlarfb, BLAS 3): O(n²k) for C of k columns.
    """
    m, k = c.shape
    n = a.shape[0]
    lda = max(n, 1)
    ldc = max(m, 1)
    info = np.zeros(1, np.int32)
    # workspace query, then the call
    q = np.zeros(1, np.float64)
    _dormtr(
        _c(side).ctypes,
        _c("L").ctypes,
        _c(trans).ctypes,
        _i(m).ctypes,
        _i(k).ctypes,
        a.ctypes,
        _i(lda).ctypes,
        tau.ctypes,
        c.ctypes,
        _i(ldc).ctypes,
        q.ctypes,
        _i(-1).ctypes,
        info.ctypes,
    )
    lwork = max(int(q[0]), 1)
    work = np.empty(lwork, np.float64)
    _dormtr(
        _c(side).ctypes,
        _c("L").ctypes,
        _c(trans).ctypes,
        _i(m).ctypes,
        _i(k).ctypes,
        a.ctypes,
        _i(lda).ctypes,
        tau.ctypes,
        c.ctypes,
        _i(ldc).ctypes,
        work.ctypes,
        _i(lwork).ctypes,
        info.ctypes,
    )
    return info[0]


@nb.njit(cache=True)
def gemm(transa, transb, m, n, k, alpha, a, aoff, lda, b, boff, ldb, beta, c, coff, ldc):
    """C := alpha·op(A)·op(B) + beta·C, op(A) m × k, op(B) k × n; blocks at offsets."""
    _dgemm(
        _c(transa).ctypes,
        _c(transb).ctypes,
        _i(m).ctypes,
        _i(n).ctypes,
        _i(k).ctypes,
        _d(alpha).ctypes,
        a[aoff:].ctypes,
        _i(lda).ctypes,
        b[boff:].ctypes,
        _i(ldb).ctypes,
        _d(beta).ctypes,
        c[coff:].ctypes,
        _i(ldc).ctypes,
    )

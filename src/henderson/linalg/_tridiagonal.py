"""Numba kernels for the spectral (tridiagonal) solver.

LAPACK's ``dsytrd`` reduces a symmetric K to T = Q'KQ with Q a product of n − 1
Householder reflectors stored below the first subdiagonal. scipy exposes ``dsytrd``
but not ``dormtr`` (which applies Q), so the reflectors are applied here: O(n²k) for
k vectors, negligible next to the O(n³) reduction.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _reflect(c, tau, B, i):
    # H(i)B = B − τ v (v'B), v = [0…0, 1, c[i+2:, i]]; loops ordered for a
    # column-major c and row-major B (k small).
    n, k = B.shape
    t = tau[i]
    if t == 0.0:
        return
    s = B[i + 1, :].copy()
    for r in range(i + 2, n):
        cr = c[r, i]
        for j in range(k):
            s[j] += cr * B[r, j]
    for j in range(k):
        s[j] *= t
        B[i + 1, j] -= s[j]
    for r in range(i + 2, n):
        cr = c[r, i]
        for j in range(k):
            B[r, j] -= s[j] * cr


@numba.njit(cache=True)
def apply_qt(c, tau, B):
    """B ← Q'B for Q from ``dsytrd(lower=1)``: Q' = H(n−1)···H(1), H(i) = I − τᵢvᵢvᵢ'.

    c : (n, n) the reduced matrix (reflector vᵢ = [0…0, 1, c[i+2:, i]]), Fortran
    order for speed; tau : (n−1,); B : (n, k) C order, overwritten and returned.
    """
    n = B.shape[0]
    for i in range(n - 1):
        _reflect(c, tau, B, i)
    return B


@numba.njit(cache=True)
def apply_q(c, tau, B):
    """B ← QB = H(1)···H(n−1)B (the inverse rotation of :func:`apply_qt`)."""
    n = B.shape[0]
    for i in range(n - 2, -1, -1):
        _reflect(c, tau, B, i)
    return B


@numba.njit(cache=True)
def tridiag_ldl_solve(diag, off, B):
    """Solve M X = B for SPD tridiagonal M (diagonal ``diag``, off-diagonal ``off``).

    Returns (X, logdet M). LDL' without pivoting is stable for SPD tridiagonals:
    Dᵢ = mᵢ − eᵢ₋₁²/Dᵢ₋₁, lᵢ = eᵢ₋₁/Dᵢ₋₁. A non-positive pivot returns logdet = NaN.
    """
    n, k = B.shape
    D = np.empty(n)
    L = np.zeros(n)
    D[0] = diag[0]
    logdet = 0.0
    if D[0] <= 0.0:
        return B, np.nan
    logdet += np.log(D[0])
    for i in range(1, n):
        L[i] = off[i - 1] / D[i - 1]
        D[i] = diag[i] - L[i] * off[i - 1]
        if D[i] <= 0.0:
            return B, np.nan
        logdet += np.log(D[i])
    X = B.copy()
    for j in range(k):
        for i in range(1, n):
            X[i, j] -= L[i] * X[i - 1, j]
        for i in range(n):
            X[i, j] /= D[i]
        for i in range(n - 2, -1, -1):
            X[i, j] -= L[i + 1] * X[i + 1, j]
    return X, logdet


@numba.njit(cache=True)
def tridiag_matvec(diag, off, B):
    """T B for tridiagonal T."""
    n, k = B.shape
    out = np.empty_like(B)
    for j in range(k):
        for i in range(n):
            s = diag[i] * B[i, j]
            if i > 0:
                s += off[i - 1] * B[i - 1, j]
            if i < n - 1:
                s += off[i] * B[i + 1, j]
            out[i, j] = s
    return out

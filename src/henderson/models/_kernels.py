"""Numba kernels over int8 genotype codes for the genetic models (no float copy of X)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def crossprod_int8(d, a, missing):
    """X'a over called genotypes: (Σᵢ xᵢⱼaᵢ, Σᵢ aᵢ) per SNP j, skipping ``missing``.

    d : (n, p) int8 codes; a : (n,) float64. Returns (xa float64[p], sa float64[p]).
    With W = X − 2p and missing calls centred to 0, W'a = xa − 2p·sa: one pass over
    the int8 matrix, row by row (C order), instead of an n × p float64 copy.
    """
    n, p = d.shape
    xa = np.zeros(p)
    sa = np.zeros(p)
    for i in range(n):
        ai = a[i]
        for j in range(p):
            v = d[i, j]
            if v != missing:
                xa[j] += v * ai
                sa[j] += ai
    return xa, sa


@numba.njit(cache=True)
def crossprod_int8_t(dt, a, missing):
    """As :func:`crossprod_int8` for the transposed codes dt (p, n): Fortran-ordered X."""
    p, n = dt.shape
    xa = np.zeros(p)
    sa = np.zeros(p)
    for j in range(p):
        s1 = 0.0
        s2 = 0.0
        for i in range(n):
            v = dt[j, i]
            if v != missing:
                s1 += v * a[i]
                s2 += a[i]
        xa[j] = s1
        sa[j] = s2
    return xa, sa

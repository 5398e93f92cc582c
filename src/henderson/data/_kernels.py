"""Numba kernels over int8 genotype codes (one pass, no float copies of the matrix)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def column_sums_int8(d, missing):
    """Per-SNP sum of counts and number of calls, skipping the ``missing`` code.

    d : (n, p) int8. Returns (total float64[p], called int64[p]).
    """
    n, p = d.shape
    total = np.zeros(p)
    called = np.zeros(p, dtype=np.int64)
    for i in range(n):
        for j in range(p):
            v = d[i, j]
            if v != missing:
                total[j] += v
                called[j] += 1
    return total, called


@numba.njit(cache=True)
def add_row_dots_int8(d, c, out):
    """out[i] += Σⱼ d[i, j]·c[j] in float64 for int8 d (n, b), c (b,): X·c without casting X."""
    n, b = d.shape
    for i in range(n):
        s = 0.0
        for j in range(b):
            s += d[i, j] * c[j]
        out[i] += s

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
def fill_table_block(d, c0, cols, table, extra, out, diag):
    """Fill a float64 block from int8 codes through a per-SNP lookup table.

    ``out[i, k] = table[k, x]`` for the code ``x = d[i, cols[k]]`` (0, 1 or 2) and 0
    for a missing call (any code outside 0..2), so centring, scaling and dominance
    coding are one pass with no temporary; ``diag[i] += Σ_k extra[k, x]`` when
    ``extra`` has rows (GCTA's diagonal correction), skipping missing calls.

    d : (n, p) int8; cols : (b,) int64 column offsets from ``c0``, or empty for the
    contiguous columns ``c0 .. c0 + b - 1``; table, extra : (b, 3) float64;
    out : (n, b) float64, C-contiguous; diag : (n,) float64.
    Returns the number of missing calls in the block.
    """
    n = d.shape[0]
    b = out.shape[1]
    use_extra = extra.shape[0] > 0
    gather = cols.shape[0] > 0
    n_missing = 0
    for i in range(n):
        acc = 0.0
        for k in range(b):
            j = c0 + cols[k] if gather else c0 + k
            x = d[i, j]
            if x < 0 or x > 2:
                out[i, k] = 0.0
                n_missing += 1
            else:
                out[i, k] = table[k, x]
                if use_extra:
                    acc += extra[k, x]
        diag[i] += acc
    return n_missing


@numba.njit(cache=True)
def fill_float_block(d, c0, cols, centre, scale, freq, yang, out, diag):
    """Fill a float64 block ``(x - centre) * scale`` from float dosages; NaN -> 0.

    With ``yang``, ``diag[i] += Σ_k (x² - (1 + 2p)x + 2p²)/(2pq) - w²`` over called
    SNPs (Yang et al. 2010's diagonal minus the plain one). Same layout as
    :func:`fill_table_block`; returns the number of missing calls.
    """
    n = d.shape[0]
    b = out.shape[1]
    gather = cols.shape[0] > 0
    n_missing = 0
    for i in range(n):
        acc = 0.0
        for k in range(b):
            j = c0 + cols[k] if gather else c0 + k
            x = d[i, j]
            if x != x:
                out[i, k] = 0.0
                n_missing += 1
            else:
                w = (x - centre[k]) * scale[k]
                out[i, k] = w
                if yang:
                    p = freq[k]
                    acc += (x * x - (1.0 + 2.0 * p) * x + 2.0 * p * p) / (2.0 * p * (1.0 - p)) - w * w
        diag[i] += acc
    return n_missing


@numba.njit(cache=True)
def fill_codes_f32(d, c0, cols, c, out, s):
    """Raw int8 codes into a float32 block and ``s += X c`` (float64), if nothing is missing.

    Returns 0 when the block is complete; 1 as soon as a missing call is met, leaving
    ``out`` partly filled and ``s`` unchanged (the caller takes the float64 path).
    """
    n = d.shape[0]
    b = out.shape[1]
    gather = cols.shape[0] > 0
    t = np.zeros(n)
    for i in range(n):
        acc = 0.0
        for k in range(b):
            j = c0 + cols[k] if gather else c0 + k
            x = d[i, j]
            if x < 0 or x > 2:
                return 1
            out[i, k] = x
            acc += x * c[k]
        t[i] = acc
    for i in range(n):
        s[i] += t[i]
    return 0


@numba.njit(cache=True)
def mirror_lower(a, tile=64):
    """Copy the strict lower triangle of the square ``a`` onto the upper one, in place.

    Tiled so that both the read and the write side stay in cache; no temporary.
    """
    n = a.shape[0]
    for jb in range(0, n, tile):
        for ib in range(jb, n, tile):
            for j in range(jb, min(jb + tile, n)):
                for i in range(max(ib, j + 1), min(ib + tile, n)):
                    a[j, i] = a[i, j]

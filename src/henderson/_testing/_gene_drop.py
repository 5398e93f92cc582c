"""Numba kernel of the gene-dropping simulator (parents before offspring, by code)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def gene_drop(sire, dam, freq, seed):
    """Haplotypes (n, p, 2) int8: founders from ``freq``, others one allele of each parent."""
    np.random.seed(seed)
    n = sire.shape[0]
    p = freq.shape[0]
    hap = np.empty((n, p, 2), np.int8)
    for i in range(n):
        for side in range(2):
            par = sire[i] if side == 0 else dam[i]
            for j in range(p):
                if par >= 0:
                    hap[i, j, side] = hap[par, j, 1 if np.random.random() < 0.5 else 0]
                else:
                    hap[i, j, side] = 1 if np.random.random() < freq[j] else 0
    return hap

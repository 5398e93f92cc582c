"""Which SNPs can inform a SNP-BLUP fold, and the genomic-variance scale.

A SNP with no call in the training set has no training frequency p_T (NaN), and one
that is monomorphic among the training calls has an all-zero column in the centred
training matrix W_T. Either way it cannot contribute: its column adds nothing to
W_T W_T' nor to 2Σp q, and β̂_j = σ²_β W_T[:, j]'Py = 0. Left in, a no-call SNP
turns every validation prediction into NaN through W_F = X_F − 2·NaN; so each fold
fits on the informative SNPs only and reports how many it left out.
"""

from __future__ import annotations

import numpy as np

from ..data.genotypes import Genotypes


def informative_snps(geno: Genotypes) -> np.ndarray:
    """Boolean (p,): the SNP has at least two different called values in ``geno``."""
    lo = np.full(geno.p, np.inf)
    hi = np.full(geno.p, -np.inf)
    if geno.n == 0:
        return lo < hi
    # missing calls get a value above (for the min) or below (for the max) every
    # code, so an all-missing column ends with lo > hi
    big, small = (127, -128) if geno.is_integer else (np.inf, -np.inf)
    for cols in geno.block_slices():  # blocks: no full-size copy of the matrix
        d = geno.dosages[:, cols]
        miss = geno.missing_mask(cols)
        lo[cols] = np.where(miss, big, d).min(axis=0)
        hi[cols] = np.where(miss, small, d).max(axis=0)
    return lo < hi


def n_uninformative_leave_one_out(dos: np.ndarray) -> np.ndarray:
    """For each row i of ``dos`` (n × p, no missing calls): how many SNPs are constant
    over the other n − 1 rows, shape (n,).

    A SNP constant over all rows counts for every i; one that is not becomes constant
    without i exactly when i is the only row at its minimum and every other row is at
    the maximum (or the reverse). O(np) time, O(p) extra memory.
    """
    n = dos.shape[0]
    two_lo = np.partition(dos, 1, axis=0)[:2]  # smallest and second smallest
    two_hi = -np.partition(-dos, 1, axis=0)[:2]  # largest and second largest
    const_all = int(np.count_nonzero(two_lo[0] == two_hi[0]))
    varies = two_lo[0] < two_hi[0]
    lone_lo = varies & (two_lo[1] == two_hi[0])  # one row at the min, the rest at the max
    lone_hi = varies & (two_hi[1] == two_lo[0])
    out = np.full(n, const_all, dtype=np.int64)
    out += np.bincount(np.argmin(dos, axis=0)[lone_lo], minlength=n)
    out += np.bincount(np.argmax(dos, axis=0)[lone_hi], minlength=n)
    return out


def two_sum_pq(geno: Genotypes) -> float:
    """2Σp_j(1 − p_j) over the SNPs with calls (p from all individuals of ``geno``).

    The scale of σ²_g = 2Σpq·σ²_β that cross-validation reports at held variances, in
    the fast and the brute-force path alike (VanRaden 2008).
    """
    p = geno.allele_freq
    return float(2.0 * np.nansum(p * (1.0 - p)))

"""Kernels for mixed-model association: G of the analysed individuals, and LOCO.

G = WW'/c, c = 2Σpq (VanRaden 2008 method 1), is built by
:func:`~henderson.genomic_relationship` (blocked exact SYRK). GEMMA's centred kinship
(``-gk 1``) is WW'/m: the same matrix times c/m, which only rescales σ²_g, so the test
statistics are identical. Leaving chromosome k out (LOCO, Yang et al. 2014, Nat.
Genet. 46:100; GCTA's ``--mlma-loco``) uses

    G₋ₖ = (WW' − W_kW_k')/(c − c_k),

with W_kW_k' built from chromosome k's SNPs only: one extra pass over the genotypes
in all, never a kernel per chromosome held at once.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import DataWarning
from ..relationships.genomic import genomic_relationship


def crossproduct(
    source, snp_idx: np.ndarray, ids, freq: np.ndarray, chunk_bytes: float = 256e6
) -> tuple[np.ndarray, float]:
    """(WW' over SNPs ``snp_idx`` for individuals ``ids``, c = 2Σpq of those SNPs).

    In-memory genotypes are used as they are; a PLINK fileset is read in chunks of
    about ``chunk_bytes`` of int8 calls, so memory stays at the n × n result plus one
    chunk whatever the number of SNPs.
    """
    ids = np.asarray(ids, dtype=object)
    snp_idx = np.asarray(snp_idx, dtype=np.int64)
    f = np.nan_to_num(freq, nan=0.0)  # SNPs without calls are skipped by genomic_relationship
    if source.geno is not None:
        geno = source.geno
        if len(snp_idx) != geno.p:
            geno = geno.subset(snps=geno.snp_ids[snp_idx])
        if len(ids) != geno.n or not np.array_equal(ids, geno.ids):
            geno = geno.subset(ids=ids)
        return _unscaled(geno, f[snp_idx])
    step = max(1, int(chunk_bytes // max(1, len(source.ids))))
    K, c = None, 0.0
    for s0 in range(0, len(snp_idx), step):
        part = snp_idx[s0 : s0 + step]
        Kp, cp = _unscaled(source.genotypes_of(part).subset(ids=ids), f[part])
        K = Kp if K is None else K.__iadd__(Kp)
        c += cp
    if K is None:  # no SNPs: an empty sum
        K = np.zeros((len(ids), len(ids)))
    return K, c


def _unscaled(geno, f) -> tuple[np.ndarray, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # no-call SNPs are reported by the caller
        G = genomic_relationship(geno, method="vanraden1", allele_freq=f)
    c = float(G.info["scale"])
    return np.multiply(G.matrix, c), c

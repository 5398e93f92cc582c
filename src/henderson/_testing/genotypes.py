"""Seeded, vectorised simulator of SNP genotypes for tests and benchmarks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.genotypes import MISSING, Genotypes
from ..errors import DataError

_ALLELES = np.array(["A", "C", "G", "T"], dtype=object)


def simulate_genotypes(
    n: int,
    p: int,
    seed: int = 0,
    maf_range: tuple[float, float] = (0.05, 0.5),
    missing_rate: float = 0.0,
    structure: int | None = None,
    fst: float = 0.1,
    n_chrom: int = 10,
    block_size: int = 4096,
) -> Genotypes:
    """Simulate ``n`` individuals at ``p`` unlinked SNPs in Hardy-Weinberg proportions.

    Parameters
    ----------
    n, p : int
        Individuals (ids ``ind1``..) and SNPs (ids ``snp1``.., on ``n_chrom``
        chromosomes, positions 1000, 2000, ...).
    seed : int
        Seed of ``numpy.random.default_rng``; same seed, same genotypes.
    maf_range : (low, high)
        Minor allele frequencies are uniform on this range; the counted allele is the
        minor or the major one at random.
    missing_rate : float
        Each call is independently set missing (:data:`MISSING`) with this probability.
    structure : int, optional
        Number of subpopulations (individuals assigned round-robin); their allele
        frequencies are drawn from the Balding-Nichols model with ``fst``.
    block_size : int
        SNPs simulated at a time (bounds the float32 scratch memory).

    Returns
    -------
    Genotypes with int8 dosages; ``info["true_freq"]`` holds the simulating
    frequencies of the counted allele (shape (p,), or (k, p) with ``structure``).

    Notes
    -----
    A genotype is the sum of two Bernoulli(p) draws, computed as two float32 uniform
    comparisons per cell, so 5,000 x 50,000 takes a few seconds.
    """
    lo, hi = maf_range
    if not 0.0 <= lo <= hi <= 0.5:
        raise DataError(f"maf_range must satisfy 0 <= low <= high <= 0.5, got {maf_range}")
    rng = np.random.default_rng(seed)
    maf = rng.uniform(lo, hi, size=p)
    flip = rng.random(p) < 0.5
    freq = np.where(flip, 1.0 - maf, maf)
    if structure:
        a = freq * (1.0 - fst) / fst
        b = (1.0 - freq) * (1.0 - fst) / fst
        pop_freq = rng.beta(a, b, size=(structure, p))
        pop = np.arange(n) % structure
    else:
        pop_freq = freq[None, :]
        pop = np.zeros(n, dtype=np.int64)
    d = np.empty((n, p), dtype=np.int8)
    for s in range(0, p, block_size):
        e = min(s + block_size, p)
        f = pop_freq[pop, s:e].astype(np.float32)  # (n, b) per-individual frequency
        g = (rng.random((n, e - s), dtype=np.float32) < f).astype(np.int8)
        g += rng.random((n, e - s), dtype=np.float32) < f
        if missing_rate > 0:
            g[rng.random((n, e - s), dtype=np.float32) < missing_rate] = MISSING
        d[:, s:e] = g
    pair = rng.permuted(np.tile(np.arange(4), (p, 1)), axis=1)[:, :2]
    per_chrom = -(-p // n_chrom)
    snps = pd.DataFrame(
        {
            "snp": [f"snp{i + 1}" for i in range(p)],
            "chrom": (np.arange(p) // per_chrom + 1).astype(str),
            "pos": (np.arange(p) % per_chrom + 1) * 1000,
            "allele1": _ALLELES[pair[:, 0]],
            "allele2": _ALLELES[pair[:, 1]],
        }
    )
    ids = [f"ind{j + 1}" for j in range(n)]
    info = {"source": "simulate_genotypes", "seed": seed, "true_freq": pop_freq if structure else freq}
    return Genotypes(np.asarray(ids, dtype=object), snps, d, info)


def simulate_genotypes_on_pedigree(
    frame: pd.DataFrame, ids, p: int, seed: int = 0, maf_range: tuple[float, float] = (0.05, 0.5)
) -> Genotypes:
    """Genotypes that follow a pedigree: gene dropping at ``p`` unlinked SNPs.

    Founders (and unknown parents) draw alleles from base-population frequencies
    (uniform minor allele frequency on ``maf_range``); every other animal gets one of
    its sire's two alleles and one of its dam's, each with probability 1/2. So G
    reflects the pedigree relationships plus Mendelian sampling, as real data do.

    Parameters
    ----------
    frame : DataFrame with ``id, sire, dam``
    ids : array of str, shape (k,) — the animals to return (the genotyped ones)
    p : int
    seed : int

    Returns
    -------
    Genotypes, k individuals (in the order of ``ids``) × p SNPs, int8 counts;
    ``info["true_freq"]`` the base frequencies.

    Notes
    -----
    Memory is 2 n p bytes for the n animals of the pedigree (haplotypes of all), so
    keep n p to a few hundred million.
    """
    from ..io.pedigree import read_pedigree
    from ._gene_drop import gene_drop

    ped = read_pedigree(frame[["id", "sire", "dam"]])
    rng = np.random.default_rng(seed)
    lo, hi = maf_range
    maf = rng.uniform(lo, hi, size=p)
    freq = np.where(rng.random(p) < 0.5, 1.0 - maf, maf)
    hap = gene_drop(ped.sire, ped.dam, freq, int(rng.integers(2**31 - 1)))
    codes = ped.codes_of(ids)
    d = (hap[codes, :, 0] + hap[codes, :, 1]).astype(np.int8)
    base = simulate_genotypes(1, p, seed=seed)  # SNP table (ids, map, alleles) only
    return Genotypes(
        np.asarray([str(i) for i in ids], dtype=object),
        base.snps,
        d,
        {"source": "simulate_genotypes_on_pedigree", "seed": seed, "true_freq": freq},
    )

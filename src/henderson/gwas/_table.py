"""The tidy result table, SNP checks (monomorphic, map) and genomic control."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import DataError, DataWarning, format_ids

COLUMNS = ["snp", "chrom", "pos", "allele1", "allele2", "freq", "effect", "se", "z", "p", "tested"]


def empty_table(snps: pd.DataFrame, freq: np.ndarray) -> pd.DataFrame:
    """One row per SNP with the map and frequency; statistics NaN until filled."""
    t = snps[["snp", "chrom", "pos", "allele1", "allele2"]].reset_index(drop=True).copy()
    t["freq"] = freq
    for c in ("effect", "se", "z", "p"):
        t[c] = np.nan
    t["tested"] = False
    return t


def untestable(freq: np.ndarray, snp_ids: np.ndarray, where: str) -> tuple[np.ndarray, list[str]]:
    """SNPs without calls or monomorphic among ``where``: reported in a warning, not tested."""
    with np.errstate(invalid="ignore"):
        mono = ~np.isfinite(freq) | (freq <= 0.0) | (freq >= 1.0)
    notes = []
    if mono.any():
        msg = (
            f"{int(mono.sum())} of {len(freq)} SNP(s) are monomorphic or without calls among "
            f"{where}: reported with tested=False, not tested: " + format_ids(snp_ids[mono])
        )
        warnings.warn(msg, DataWarning, stacklevel=3)
        notes.append(msg)
    return ~mono, notes


def require_map(snps: pd.DataFrame, why: str) -> None:
    """Windows and LOCO need a chromosome and position for every SNP."""
    chrom = snps["chrom"].astype(str).str.strip()
    unmapped = chrom.isin(["0", "", "nan", "NA", "None"]) | (snps["pos"].to_numpy() <= 0)
    if unmapped.all():
        raise DataError(
            f"{why} needs a SNP map (chromosome and position), and no SNP has one "
            "(chrom 0 / pos 0): read genotypes with a map (PLINK .bim, VCF) or give "
            "Genotypes a 'chrom' and 'pos' column"
        )
    if unmapped.any():
        raise DataError(
            f"{why} needs a chromosome and position for every SNP; "
            f"{int(unmapped.sum())} SNP(s) have none (chrom 0 or pos 0): "
            + format_ids(snps["snp"].to_numpy()[unmapped.to_numpy()])
            + "; remove them (Genotypes.subset) or add them to the map"
        )


def genomic_control(p) -> float:
    """λ_GC = median(χ²₁ of the p-values)/median(χ²₁) (Devlin & Roeder 1999), over finite p."""
    p = np.asarray(p, dtype=float)
    p = p[np.isfinite(p)]
    if p.size == 0:
        return float("nan")
    return float(np.median(stats.chi2.isf(p, 1)) / stats.chi2.ppf(0.5, 1))

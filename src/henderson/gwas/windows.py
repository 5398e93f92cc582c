"""Share of genetic variance explained by windows of adjacent SNPs.

For a window w of SNPs, its genetic values are a_w = W_w β̂_w (n,), and (Wang et al.
2012, Genet. Res. 94:73; BLUPF90's postGSf90 ``windows_variance``)

    % of genetic variance(w) = 100 · Var(a_w) / Var(ĝ),   ĝ = Wβ̂,

with Var the sample variance over the genotyped individuals. The shares need not sum
to 100 (windows covary through linkage disequilibrium). Windows are consecutive,
non-overlapping runs of ``size`` SNPs along each chromosome (sorted by position), or
bins of ``size`` base pairs starting at position 1. a_w for many windows at once is a
cumulative sum over the SNP columns of W·diag(β̂), differenced at the window ends,
over chunks of whole windows: no loop over SNPs.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..errors import DataError
from ._source import GenotypeSource
from ._table import require_map

_UNITS = {"": 1, "bp": 1, "kb": 1_000, "mb": 1_000_000}


def parse_window(size) -> tuple[str, int]:
    """``50`` or ``"50snps"`` → ("snps", 50); ``"1Mb"``, ``"500kb"``, ``"20000bp"`` → ("bp", n)."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        if size < 1:
            raise DataError(f"window must be at least 1 SNP, not {size}")
        return "snps", int(size)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(snps?|bp|kb|mb)?\s*", str(size), flags=re.I)
    if not m:
        raise DataError(
            f"window {size!r} is not a number of SNPs (50, '50snps') or of base pairs ('1Mb', '500kb', '20000bp')"
        )
    value, unit = float(m.group(1)), (m.group(2) or "snps").lower()
    if unit.startswith("snp"):
        if value != int(value) or value < 1:
            raise DataError(f"window {size!r}: a number of SNPs must be a whole number >= 1")
        return "snps", int(value)
    bp = int(round(value * _UNITS[unit]))
    if bp < 1:
        raise DataError(f"window {size!r} is shorter than 1 bp")
    return "bp", bp


def window_table(snps: pd.DataFrame, size) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Windows (chrom, start, end, n_snps), the SNP order (by chrom, pos) and each ordered SNP's window."""
    require_map(snps, "windows")
    kind, k = parse_window(size)
    chrom = snps["chrom"].astype(str).to_numpy()
    pos = snps["pos"].to_numpy(dtype=np.int64)
    ck = pd.Index(pd.unique(chrom))  # chromosomes in file order
    order = np.lexsort((pos, ck.get_indexer(chrom)))
    c_o, p_o = chrom[order], pos[order]
    rank = np.arange(len(order)) - np.searchsorted(ck.get_indexer(c_o), ck.get_indexer(c_o), side="left")
    key = rank // k if kind == "snps" else (p_o - 1) // k
    frame = pd.DataFrame({"chrom": c_o, "key": key, "pos": p_o})
    codes = frame.groupby(["chrom", "key"], sort=False).ngroup().to_numpy()
    g = frame.groupby(codes)
    wins = pd.DataFrame({"chrom": g["chrom"].first(), "n_snps": g.size()})
    if kind == "snps":
        wins["start"], wins["end"] = g["pos"].min(), g["pos"].max()
    else:
        kk = g["key"].first()
        wins["start"], wins["end"] = kk * k + 1, (kk + 1) * k
    wins = wins[["chrom", "start", "end", "n_snps"]].reset_index(drop=True)
    return wins, order, codes


def _window_values(src: GenotypeSource, freq, idx, beta, cut) -> tuple[np.ndarray, np.ndarray]:
    """Genetic values W β of each individual: per window of a chunk (windows end at the
    chunk's columns ``cut``), and of the whole chunk. ``idx``: the chunk's SNPs in ``src``."""
    srt = np.argsort(idx)
    W = np.empty((len(src.ids), len(idx)))
    for sub, Wb in src.centred_blocks(None, freq, idx[srt]):
        k = np.searchsorted(idx[srt], sub)
        W[:, srt[k]] = Wb
    A = np.cumsum(W * beta, axis=1)
    a = np.diff(np.concatenate([np.zeros((A.shape[0], 1)), A[:, cut]], axis=1), axis=1)
    return a, A[:, -1]


def _window_variances(src: GenotypeSource, freq, idx, beta, ends, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Var(W_w β_w) of each window (SNPs ``idx`` in window order, window w ending at
    ``ends[w]``) and the total genetic values W β, by chunks of whole windows of about
    ``step`` SNPs (a window longer than that is one chunk)."""
    var = np.empty(len(ends))
    g_total = np.zeros(len(src.ids))
    w0 = 0
    while w0 < len(ends):
        w1 = min(len(ends), int(np.searchsorted(ends, ends[w0] + step, side="right")))
        w1 = max(w1, w0 + 1)
        s0 = 0 if w0 == 0 else ends[w0 - 1] + 1
        s1 = ends[w1 - 1] + 1
        a, g_chunk = _window_values(src, freq, idx[s0:s1], beta[s0:s1], ends[w0:w1] - s0)
        var[w0:w1] = a.var(axis=0, ddof=1)
        g_total += g_chunk
        w0 = w1
    return var, g_total


def variance_windows(effects: pd.DataFrame, genotypes, size, *, block_size: int | None = None) -> pd.DataFrame:
    """Percentage of genetic variance explained by windows of back-solved SNP effects.

    Parameters
    ----------
    effects : DataFrame with ``snp``, ``effect`` and ``freq`` (back-solved BLUP effects:
        :func:`henderson.association` with ``method="backsolve"``, or an estimator's
        ``snp_effects_``)
    genotypes : Genotypes or PLINK path holding those SNPs (matched by id) with a map
    size : int or str
        Window length: SNPs (``50``, ``"50snps"``) or base pairs (``"1Mb"``, ``"250kb"``).

    Returns
    -------
    DataFrame: ``chrom, start, end, n_snps, pct_var, top_snp`` (the SNP of largest
    |effect| in the window), windows in chromosome and position order.
    """
    src = genotypes if isinstance(genotypes, GenotypeSource) else GenotypeSource(genotypes, block_size)
    eff = effects.set_index(effects["snp"].astype(str))
    snp_ids = src.snps["snp"].astype(str).to_numpy()
    missing = ~pd.Index(snp_ids).isin(eff.index)
    if missing.all():
        raise DataError("none of the genotypes' SNPs has an effect in the table: match SNP ids")
    snps = src.snps[~missing].reset_index(drop=True)
    pos_in_src = np.flatnonzero(~missing)
    wins, order, codes = window_table(snps, size)
    beta = np.nan_to_num(eff.loc[snps["snp"].astype(str), "effect"].to_numpy(dtype=float))
    freq = eff.loc[snps["snp"].astype(str), "freq"].to_numpy(dtype=float)
    freq_src = np.zeros(src.p)
    freq_src[pos_in_src] = np.nan_to_num(freq)
    beta_o = beta[order]
    ends = np.flatnonzero(np.r_[codes[1:] != codes[:-1], True])  # last ordered SNP of each window
    var, g_total = _window_variances(src, freq_src, pos_in_src[order], beta_o, ends, block_size or 1024)
    total = g_total.var(ddof=1)
    if not total > 0:
        raise DataError("the back-solved effects give no genetic variance (all zero?)")
    wins["pct_var"] = 100.0 * var / total
    top = pd.DataFrame({"w": codes, "abs": np.abs(beta_o), "snp": snps["snp"].to_numpy()[order]})
    wins["top_snp"] = top.loc[top.groupby("w")["abs"].idxmax(), "snp"].to_numpy()
    return wins

"""Association figures: Manhattan, QQ with λ_GC, windows of genetic variance (PNG bytes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..report.plots import BLUE, GREY, ORANGE, PALETTE, _style, plt, to_png
from ._table import genomic_control


def _chrom_key(c: str):
    return (0, int(c), "") if c.isdigit() else (1, 0, c)


def genome_axis(chrom, pos) -> tuple[np.ndarray, list, list]:
    """Cumulative x for (chrom, pos) in chromosome order, and tick positions and labels."""
    chrom = np.asarray(chrom).astype(str)
    pos = np.asarray(pos, dtype=float)
    x = np.zeros(len(chrom))
    offset, ticks, labels = 0.0, [], []
    order = sorted(set(chrom), key=_chrom_key)
    spans = [np.ptp(pos[chrom == c]) for c in order]
    gap = max(1.0, 0.015 * float(np.sum(spans)))
    for c, span in zip(order, spans):
        on = chrom == c
        x[on] = offset + pos[on] - pos[on].min()
        ticks.append(offset + span / 2)
        labels.append(c)
        offset += span + gap
    return x, ticks, labels


def manhattan(table: pd.DataFrame, title: str, alpha: float = 0.05) -> bytes:
    """−log10 p by chromosome and position; the Bonferroni line at α/(SNPs tested)."""
    t = table[np.isfinite(table["p"].to_numpy(dtype=float))]
    y = -np.log10(np.clip(t["p"].to_numpy(dtype=float), 1e-300, None))
    fig, ax = plt.subplots(figsize=(10.5, 3.4))
    chrom = t["chrom"].astype(str).to_numpy()
    unmapped = set(chrom) <= {"0", "", "nan"}
    if unmapped:
        ax.scatter(np.arange(1, len(t) + 1), y, s=7, color=BLUE, linewidths=0)
        ax.set_xlabel("SNP (file order; no chromosome/position map)")
    else:
        x, ticks, labels = genome_axis(chrom, t["pos"].to_numpy())
        order = sorted(set(chrom), key=_chrom_key)
        colour = np.array([PALETTE[order.index(c) % 2] for c in chrom])
        ax.scatter(x, y, s=7, c=colour, linewidths=0)
        ax.set_xticks(ticks, labels, fontsize=7)
        ax.set_xlabel("chromosome")
    if len(t):
        line = -np.log10(alpha / len(t))
        ax.axhline(line, color=ORANGE, linestyle="--", linewidth=1)
        ax.text(ax.get_xlim()[1], line, f" Bonferroni {alpha:g}", color=ORANGE, fontsize=7, va="bottom", ha="right")
    ax.set_ylabel("−log10 p")
    ax.set_title(title, fontsize=10)
    _style(ax)
    return to_png(fig)


def qq(p, title: str) -> bytes:
    """Observed against expected −log10 p under the null, with λ_GC and a 95 % band."""
    p = np.sort(np.asarray(p, dtype=float)[np.isfinite(p)])
    m = len(p)
    fig, ax = plt.subplots(figsize=(4.4, 4.2))
    if m:
        k = np.arange(1, m + 1)
        expected = -np.log10(k / (m + 1))
        lo = -np.log10(stats.beta.ppf(0.975, k, m - k + 1))
        hi = -np.log10(stats.beta.ppf(0.025, k, m - k + 1))
        ax.fill_between(expected, lo, hi, color="#e2e8f0", linewidth=0, label="95 % under the null")
        ax.scatter(expected, -np.log10(np.clip(p, 1e-300, None)), s=7, color=BLUE, linewidths=0)
        top = float(expected.max())
        ax.plot([0, top], [0, top], color=GREY, linewidth=1)
        ax.text(
            0.04, 0.93, f"λ_GC = {genomic_control(p):.3f}\n{m:,} tests", transform=ax.transAxes, fontsize=9, va="top"
        )
    ax.set_xlabel("expected −log10 p")
    ax.set_ylabel("observed −log10 p")
    ax.set_title(title, fontsize=10)
    _style(ax)
    return to_png(fig)


def windows_plot(windows: pd.DataFrame, title: str) -> bytes:
    """% of genetic variance per window along the genome (one bar per window)."""
    mid = (windows["start"].to_numpy(dtype=float) + windows["end"].to_numpy(dtype=float)) / 2
    x, ticks, labels = genome_axis(windows["chrom"].to_numpy(), mid)
    chrom = windows["chrom"].astype(str).to_numpy()
    order = sorted(set(chrom), key=_chrom_key)
    colour = [PALETTE[order.index(c) % 2] for c in chrom]
    fig, ax = plt.subplots(figsize=(10.5, 3.0))
    width = max(1.0, float(np.median(windows["end"] - windows["start"] + 1)))
    ax.bar(x, windows["pct_var"].to_numpy(dtype=float), width=width, color=colour, linewidth=0)
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.set_xlabel("chromosome")
    ax.set_ylabel("% of genetic variance")
    ax.set_title(title, fontsize=10)
    _style(ax)
    return to_png(fig)

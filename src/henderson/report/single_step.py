"""Report sections of a single-step GBLUP: G against A22, genotyped counts, EBV vs GEBV."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import plots
from .html import Report

#: off-diagonal pairs drawn in the G vs A22 scatter (a random sample beyond this)
MAX_PAIRS = 20000


def g_vs_a22(G: np.ndarray, Gstar: np.ndarray, A22: np.ndarray, seed: int = 0) -> bytes:
    """Two panels: diagonal and (sampled) off-diagonal of G and of G* against A22."""
    import matplotlib.pyplot as plt

    k = G.shape[0]
    iu = np.triu_indices(k, 1)
    sel = np.arange(len(iu[0]))
    if len(sel) > MAX_PAIRS:
        sel = np.random.default_rng(seed).choice(len(sel), MAX_PAIRS, replace=False)
    r, c = iu[0][sel], iu[1][sel]
    fig, axes = plt.subplots(1, 2, figsize=(9.2, 4.2))
    for ax, (a, g, gs, title) in zip(
        axes,
        [
            (np.diag(A22), np.diag(G), np.diag(Gstar), "diagonal"),
            (A22[r, c], G[r, c], Gstar[r, c], f"off-diagonal ({len(r):,} pairs)"),
        ],
    ):
        ax.scatter(a, g, s=7, color=plots.GREY, alpha=0.5, linewidths=0, label="G (raw)")
        ax.scatter(a, gs, s=7, color=plots.BLUE, alpha=0.6, linewidths=0, label="G* (blended, tuned)")
        lo, hi = float(min(a.min(), g.min(), gs.min())), float(max(a.max(), g.max(), gs.max()))
        ax.plot([lo, hi], [lo, hi], color=plots.ORANGE, linewidth=1, linestyle="--")
        ax.set_xlabel("A22 (pedigree)")
        ax.set_ylabel("genomic")
        ax.set_title(title, fontsize=10)
        plots._style(ax)
    axes[0].legend(fontsize=8, frameon=False)
    return plots.to_png(fig)


def add_single_step(report: Report, est, ebv_ped: pd.DataFrame | None, G=None, A22=None) -> None:
    """Genotyped counts, G vs A22 with the tuning, EBV vs GEBV, reliability gains.

    ``ebv_ped``: pedigree BLUP at the same variances (columns ``gebv``, ``reliability``),
    or None. ``G``/``A22``: dense raw G and A22 in the genotyped ids' order, or None.
    """
    info = est.Hinv_.info
    t = est.gebv_
    geno = t["genotyped"]
    rec = t["n_records"] > 0
    report.section("Genotyped animals")
    report.kv(
        {
            "animals in the pedigree": f"{len(t):,}",
            "with records": f"{int(rec.sum()):,}",
            "genotyped": f"{int(geno.sum()):,}",
            "genotyped with records": f"{int((geno & rec).sum()):,}",
            "genotyped without records (predicted from relatives and genotypes)": f"{int((geno & ~rec).sum()):,}",
            "genotyped ids added to the pedigree as founders": f"{info.get('n_added_founders', 0):,}",
        }
    )
    _tuning_section(report, info, G, A22)
    if ebv_ped is not None:
        _pedigree_comparison(report, t, ebv_ped.reindex(t.index))  # added founders (not in the pedigree file): NaN


def _tuning_section(report: Report, info: dict, G, A22) -> None:
    """Section "G against A22 and the tuning applied": means, the H⁻¹ settings, the scatter plots."""
    st = info.get("settings", {})
    report.section("G against A22 and the tuning applied")
    rows = []
    for name, key in (("G (VanRaden)", "G"), ("G* used in H", "G_star"), ("A22 (pedigree)", "A22")):
        if key in info.get("G_stats", {}):
            rows.append({"matrix": name, **info["G_stats"][key]})
    if rows:
        report.table(pd.DataFrame(rows), caption="Mean diagonal and off-diagonal", index=False)
    report.text(
        f"G* = a + b (alpha G + beta A22) with alpha = {st.get('alpha')}, beta = {st.get('beta')}, "
        f"tuning = {st.get('tuning')!r} (a = {info.get('tuning_a', 0):.4g}, "
        f"b = {info.get('tuning_b', 1):.4g}); H⁻¹ = A⁻¹ + [[0,0],[0, tau G*⁻¹ − omega A22⁻¹]] with "
        f"tau = {st.get('tau')}, omega = {st.get('omega')} (BLUPF90 preGSf90 defaults: 0.95, 0.05, "
        "tunedG 2, 1, 1).",
        cls="note",
    )
    if G is not None and A22 is not None and "G_star" in info:
        report.image(
            g_vs_a22(G, info["G_star"], A22),
            caption="Genomic against pedigree relationships of the genotyped animals, before (grey) "
            "and after (blue) blending and tuning",
            alt="Scatter plots of G and G* against A22, diagonal and off-diagonal",
        )


def _pedigree_comparison(report: Report, t: pd.DataFrame, ebv_ped: pd.DataFrame) -> None:
    """Section "Pedigree EBV against single-step GEBV": scatter, reliability gains and their table."""
    geno = t["genotyped"]
    rec = t["n_records"] > 0
    report.section("Pedigree EBV against single-step GEBV (genotyped animals)")
    ids = t.index[geno]
    x, y = ebv_ped.loc[ids, "gebv"].to_numpy(), t.loc[ids, "gebv"].to_numpy()
    r_ped, r_ss = ebv_ped.loc[ids, "reliability"].to_numpy(), t.loc[ids, "reliability"].to_numpy()
    report.start_grid()
    ok = np.isfinite(x)
    x, y, r_ped, r_ss = x[ok], y[ok], r_ped[ok], r_ss[ok]
    report.image(
        plots.scatter_agreement(x, y, "pedigree BLUP EBV", "ssGBLUP GEBV", f"{len(ids):,} genotyped animals"),
        caption="Same variance components in both models",
        alt="Scatter of EBV against GEBV",
    )
    if np.isfinite(r_ped).any() and np.isfinite(r_ss).any():
        report.image(
            plots.histogram(
                r_ss - r_ped, "Reliability gain from genotypes", "GEBV − EBV reliability", color=plots.ORANGE
            ),
            caption="Gain in reliability of the genotyped animals",
            alt="Histogram of reliability gains",
        )
    report.end_grid()
    gains = []
    for label, mask in (
        ("genotyped with records", geno & rec),
        ("genotyped without records", geno & ~rec),
        ("not genotyped", ~geno),
    ):
        i = t.index[mask]
        if len(i):
            gains.append(
                {
                    "animals": label,
                    "n": len(i),
                    "mean reliability, pedigree BLUP": _nanmean(ebv_ped.loc[i, "reliability"]),
                    "mean reliability, ssGBLUP": _nanmean(t.loc[i, "reliability"]),
                    "correlation EBV, GEBV": _corr(ebv_ped.loc[i, "gebv"], t.loc[i, "gebv"]),
                }
            )
    report.table(pd.DataFrame(gains), caption="Reliability gains (NaN where not computed)", index=False)


def _nanmean(a) -> float:
    """Mean of the finite values; NaN (no warning) when there are none (e.g. reliabilities
    not computed: a PCG fit with a lazy H⁻¹)."""
    a = np.asarray(a, float)
    ok = np.isfinite(a)
    return float(a[ok].mean()) if ok.any() else float("nan")


def _corr(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])

"""Report figures (matplotlib, Agg backend), each returned as PNG bytes."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

BLUE = "#2b6cb0"
ORANGE = "#dd6b20"
GREY = "#718096"
PALETTE = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795"]


def _style(ax):
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(axis="y", color="#e2e8f0", linewidth=0.8)
    ax.set_axisbelow(True)


def _bins(v, n: int) -> int:
    """``n`` bins, or one when the values are (numerically) constant."""
    v = np.asarray(v, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0 or np.ptp(v) <= 1e-9 * max(1.0, float(np.abs(v).max())):
        return 1
    return n


def to_png(fig, dpi: int = 110) -> bytes:
    """Render a figure to PNG bytes and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def histogram(values, title: str, xlabel: str, bins: int = 30, color: str = BLUE) -> bytes:
    """Histogram with a dashed line at the mean; at most ``bins`` bins, fewer for small
    samples (Rice's rule, 2·n^(1/3): 41 values get 7 bins, not 30 spikes)."""
    v = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce").dropna(), dtype=float)
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    rice = int(np.ceil(2 * len(v) ** (1 / 3))) if len(v) else 1
    nb = min(bins, max(5, rice), max(1, len(np.unique(v))))
    ax.hist(v, bins=_bins(v, nb), color=color, edgecolor="white", linewidth=0.5)
    if len(v):
        mean = float(v.mean())
        mean = 0.0 if abs(mean) < 1e-9 * max(1.0, float(np.abs(v).max())) else mean
        ax.axvline(mean, color="#1a202c", linestyle="--", linewidth=1, label=f"mean {mean:.3g}")
        ax.legend(frameon=False, fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    _style(ax)
    return to_png(fig)


def level_counts(counts: pd.Series, factor: str) -> bytes:
    """Records per level of a factor: bars for few levels, a histogram of counts for many."""
    counts = counts.sort_values(ascending=False)
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    if len(counts) <= 30:
        ax.bar([str(i) for i in counts.index], counts.to_numpy(), color=BLUE)
        ax.set_xlabel(factor)
        ax.set_ylabel("records")
        ax.tick_params(axis="x", labelrotation=60 if len(counts) > 8 else 0, labelsize=7)
        ax.set_title(f"Records per level of {factor}", fontsize=10)
    else:
        c = counts.to_numpy()
        bins = np.arange(c.min() - 0.5, c.max() + 1.5) if c.max() - c.min() <= 40 else _bins(c, 30)
        ax.hist(c, bins=bins, color=BLUE, edgecolor="white")  # type: ignore[arg-type]  # an array of edges is valid
        ax.set_xlabel(f"records per level of {factor}")
        ax.set_ylabel("levels")
        ax.set_title(f"{len(counts)} levels of {factor}: records per level", fontsize=10)
    _style(ax)
    return to_png(fig)


def manhattan(snp_effects: pd.DataFrame, title: str = "SNP effects") -> bytes:
    """|effect| by chromosome and position; without a map, SNPs by their index."""
    t = snp_effects.reset_index(drop=True)
    chrom = t["chrom"].astype(str).to_numpy() if "chrom" in t else np.full(len(t), "0")
    pos = pd.to_numeric(t["pos"], errors="coerce").fillna(0).to_numpy(float) if "pos" in t else np.zeros(len(t))
    y = np.abs(t["effect"].to_numpy(dtype=float))
    fig, ax = plt.subplots(figsize=(10.5, 3.2))
    unmapped = (len(set(chrom)) == 1 and chrom[0] in ("0", "", "nan")) or np.all(pos == pos[0])
    if unmapped:
        ax.scatter(np.arange(1, len(t) + 1), y, s=6, color=BLUE, linewidths=0)
        ax.set_xlabel("SNP (file order; no chromosome/position map)")
    else:

        def key(c):
            return (0, int(c)) if c.isdigit() else (1, c)

        order = sorted(set(chrom), key=key)
        x = np.zeros(len(t))
        offset, ticks = 0.0, []
        span = max(1.0, float(np.nanmax(pos) - np.nanmin(pos)) * 0.02)
        for i, c in enumerate(order):
            m = chrom == c
            p = pos[m]
            x[m] = offset + (p - p.min())
            ax.scatter(x[m], y[m], s=6, color=PALETTE[i % 2], linewidths=0)
            ticks.append((offset + (p.max() - p.min()) / 2, c))
            offset += (p.max() - p.min()) + span
        ax.set_xticks([tk for tk, _ in ticks], [c for _, c in ticks], fontsize=7)
        ax.set_xlabel("chromosome")
    ax.set_ylabel("|SNP effect|")
    ax.set_title(title, fontsize=10)
    _style(ax)
    return to_png(fig)


def g_distribution(G: np.ndarray, title: str = "Genomic relationships") -> bytes:
    """Histograms of the diagonal and of the off-diagonal of G."""
    G = np.asarray(G, dtype=float)
    n = G.shape[0]
    diag = np.diag(G)
    off = G[np.triu_indices(n, 1)]
    if off.size > 400_000:  # a random sample keeps the figure fast for large n
        off = np.random.default_rng(0).choice(off, 400_000, replace=False)
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.5), layout="constrained")
    axes[0].hist(diag, bins=_bins(diag, 40), color=BLUE, edgecolor="white", linewidth=0.4)
    axes[0].set_title(f"Diagonal (mean {diag.mean():.3f}, sd {diag.std():.3f})", fontsize=10)
    axes[0].set_xlabel("G[i,i]")
    axes[1].hist(off, bins=_bins(off, 60), color=ORANGE, edgecolor="white", linewidth=0.4)
    axes[1].set_title(f"Off-diagonal (mean {off.mean():.3f}, sd {off.std():.3f})", fontsize=10)
    axes[1].set_xlabel("G[i,j], i < j")
    for ax in axes:
        ax.set_ylabel("count")
        _style(ax)
    fig.suptitle(title, fontsize=11)
    return to_png(fig)


def scatter_agreement(x, y, xlabel: str, ylabel: str, title: str) -> bytes:
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.scatter(x, y, s=9, color=BLUE, alpha=0.7, linewidths=0)
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    ax.plot([lo, hi], [lo, hi], color=GREY, linewidth=1, linestyle="--")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    _style(ax)
    return to_png(fig)


def fixed_part(pred: pd.DataFrame) -> np.ndarray | None:
    """Xβ̂ of each validation record (predicted phenotype − predicted BV), or None."""
    if "predicted_phenotype" not in pred:
        return None
    return pred["predicted_phenotype"].to_numpy(float) - pred["predicted_bv"].to_numpy(float)


def has_fixed_effects(pred: pd.DataFrame) -> bool:
    """True when Xβ̂ varies within a fold: fixed effects beyond the intercept.

    With an intercept only, Xβ̂ is the fold's training mean, constant within the fold.
    """
    xb = fixed_part(pred)
    if xb is None:
        return False
    keys = [c for c in ("model", "repeat", "fold") if c in pred]
    spread = (
        pd.Series(xb, index=pred.index)
        .groupby([pred[k] for k in keys] if keys else np.zeros(len(pred)))
        .agg(lambda v: np.nanmax(v) - np.nanmin(v) if np.isfinite(v).any() else 0.0)
    )
    scale = max(1.0, float(np.nanmax(np.abs(xb)))) if np.isfinite(xb).any() else 1.0
    return bool((spread > 1e-9 * scale).any())


def observed_vs_predicted(pred: pd.DataFrame, title: str = "Cross-validation") -> bytes:
    """Observed phenotype against predicted breeding value, one panel per model.

    ``pred`` has ``observed``, ``predicted_bv`` and optionally ``model``, ``repeat``
    (only the first repeat is drawn) and ``predicted_phenotype``. With fixed effects
    beyond the intercept (:func:`has_fixed_effects`) the y axis is the phenotype
    corrected for them, observed − Xβ̂ with Xβ̂ = predicted phenotype − predicted BV
    from the fold's training fit: a location or herd effect would otherwise spread the
    points along y and hide how well the breeding values are predicted.
    """
    pred = pred.copy()
    corrected = has_fixed_effects(pred)
    if corrected:
        pred["observed"] = pred["observed"].to_numpy(float) - fixed_part(pred)
    if "model" not in pred:
        pred["model"] = ""
    if "repeat" in pred:
        pred = pred[pred["repeat"] == pred["repeat"].min()]
    models = list(dict.fromkeys(pred["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(3.7 * len(models) + 0.6, 3.6), squeeze=False)
    for i, (ax, m) in enumerate(zip(axes[0], models)):
        d = pred[pred["model"] == m]
        x, y = d["predicted_bv"].to_numpy(float), d["observed"].to_numpy(float)
        ok = np.isfinite(x) & np.isfinite(y)
        # constant predictions (h² estimated at 0) or a constant trait: r and the line are undefined
        spread = ok.sum() > 2 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0
        r = np.corrcoef(x[ok], y[ok])[0, 1] if spread else np.nan
        ax.scatter(x[ok], y[ok], s=8, alpha=0.6, color=PALETTE[i % len(PALETTE)], linewidths=0)
        if spread:
            b1, b0 = np.polyfit(x[ok], y[ok], 1)
            xs = np.linspace(x[ok].min(), x[ok].max(), 2)
            ax.plot(xs, b0 + b1 * xs, color="#1a202c", linewidth=1)
        rname = "pooled r(y − Xβ̂, BV)" if corrected else "pooled r"
        ax.set_title(f"{m}  {rname} = {r:.3f}" if m else f"{rname} = {r:.3f}", fontsize=10)
        ax.set_xlabel("predicted breeding value")
        if i == 0:
            ax.set_ylabel("phenotype − Xβ̂ (fixed effects)" if corrected else "observed phenotype")
        _style(ax)
    fig.suptitle(title, fontsize=11)
    return to_png(fig)


def ability_bars(table: pd.DataFrame, title: str = "Predictive ability") -> bytes:
    """Bars of mean predictive ability per model with ± sd over folds/repeats.

    ``table`` indexed by model with ``mean`` and ``sd``.
    """
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    names = [str(i) for i in table.index]
    ax.bar(
        names,
        table["mean"].to_numpy(float),
        yerr=table["sd"].to_numpy(float),
        capsize=4,
        color=[PALETTE[i % len(PALETTE)] for i in range(len(names))],
    )
    for i, v in enumerate(table["mean"].to_numpy(float)):
        ax.text(i, v / 2, f"{v:.3f}", ha="center", va="center", color="white", fontsize=9, fontweight="bold")
    ax.set_ylabel("cor(observed, predicted)")
    ax.set_title(title, fontsize=10)
    _style(ax)
    return to_png(fig)


def correlation_heatmap(R: pd.DataFrame, title: str) -> bytes:
    """Heat map of a correlation matrix (−1 blue … +1 orange), values printed in the cells."""
    S = R.shape[0]
    size = min(1.6 + 0.45 * S, 8.0)
    fig, ax = plt.subplots(figsize=(size + 0.8, size))
    im = ax.imshow(R.to_numpy(dtype=float), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(S), [str(c) for c in R.columns], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(S), [str(c) for c in R.index], fontsize=8)
    if S <= 15:
        for i in range(S):
            for j in range(S):
                ax.text(j, i, f"{R.iat[i, j]:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title, fontsize=10)
    return to_png(fig)

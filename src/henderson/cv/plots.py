"""Cross-validation plots (matplotlib, Agg backend, PNG files).

- :func:`plot_observed_vs_predicted`: observed phenotype against the out-of-fold
  predicted phenotype, coloured by fold, with the 1:1 line and the fitted regression
  (its slope is the dispersion metric).
- :func:`plot_predictive_ability`: predictive ability of several models side by side,
  e.g. GBLUP vs SNP-BLUP vs pedigree BLUP: across repeats (one point per repeat, its
  mean over folds; the default with repeated CV), per fold, or pooled per repeat.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..errors import DataError  # noqa: E402


def plot_observed_vs_predicted(result, path=None, repeat: int = 0, title: str | None = None):
    """Scatter of observed vs predicted phenotypes of one repeat, coloured by fold.

    Parameters
    ----------
    result : CVResult
    path : str or Path, optional
        Write a PNG there (150 dpi).
    repeat : int
    title : str, optional

    Returns
    -------
    matplotlib Figure
    """
    p = result.predictions[result.predictions["repeat"] == repeat]
    fig, ax = plt.subplots(figsize=(7.2, 5))
    folds = list(dict.fromkeys(p["fold"]))
    cmap = plt.get_cmap("tab10" if len(folds) <= 10 else "viridis")
    for j, f in enumerate(folds):
        q = p[p["fold"] == f]
        ax.scatter(
            q["predicted_phenotype"],
            q["observed"],
            s=12,
            alpha=0.75,
            color=cmap(j % 10 if len(folds) <= 10 else j / max(1, len(folds) - 1)),
            label=str(f) if len(folds) <= 12 else None,
        )
    x, yv = p["predicted_phenotype"].to_numpy(float), p["observed"].to_numpy(float)
    ok = ~np.isnan(x)
    lo, hi = np.nanmin(np.r_[x, yv]), np.nanmax(np.r_[x, yv])
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--", label="1:1")
    if ok.sum() > 2:
        b, a = np.polyfit(x[ok], yv[ok], 1)
        xs = np.linspace(np.nanmin(x), np.nanmax(x), 2)
        r = np.corrcoef(x[ok], yv[ok])[0, 1]
        ax.plot(xs, a + b * xs, color="black", lw=1.5, label=f"fit: slope {b:.2f}; r(y, ŷ) {r:.2f} pooled")
    ax.set_xlabel("predicted phenotype (out of fold)")
    ax.set_ylabel("observed phenotype")
    s = result.settings
    ax.set_title(title or f"{s.get('model')} — {s.get('scheme')}, repeat {repeat}")
    # outside the axes: inside, it hid the points of the top-left corner
    ax.legend(title="fold", fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig


_BY = {
    "fold": ("{m} per fold", "each point one fold{reps}; ◆ mean"),
    "repeat": (
        "{m}, mean over the folds of a repeat",
        "across repeats: each point one repeat's mean over its folds; ◆ mean of the repeats",
    ),
    "pooled": (
        "{m} pooled over the folds of a repeat",
        "each point one repeat, all its out-of-fold predictions together; ◆ mean",
    ),
}


def _values(res, metric: str, by: str) -> np.ndarray:
    if by == "fold":
        return res.fold_metrics[metric].to_numpy(float)
    if by == "repeat":
        return res.summary_by_repeat[metric].to_numpy(float)
    return res.pooled_metrics[metric].to_numpy(float)


def plot_predictive_ability(
    results: dict, path=None, metric: str = "r", title: str | None = None, by: str = "auto", ax=None
):
    """Predictive ability (or another metric) of several models side by side.

    Parameters
    ----------
    results : dict name → CVResult
    path : str or Path, optional
    metric : str
        A column of ``fold_metrics`` (default predictive ability ``r``).
    by : {"auto", "repeat", "fold", "pooled"}
        One point per repeat (its mean over folds: ``summary_by_repeat``), per fold
        (all folds of all repeats), or per repeat pooled over its folds
        (``pooled_metrics``; leave-one-out has no per-fold r). ``"auto"``: ``"repeat"``
        when any result has more than one repeat, ``"pooled"`` when a result's
        headline is pooled (tiny folds), else ``"fold"``.
    ax : matplotlib Axes, optional
        Draw there (e.g. one panel of a larger figure) instead of a new figure.

    Returns
    -------
    matplotlib Figure
    """
    names = list(results)
    if by == "auto":
        if any(results[n].summary_by_repeat.shape[0] > 1 for n in names):
            by = "repeat"
        elif any(str(results[n].settings.get("headline", "")).startswith("pooled") for n in names):
            by = "pooled"
        else:
            by = "fold"
    if by not in _BY:
        raise DataError(f"by must be 'auto', 'repeat', 'fold' or 'pooled', not {by!r}")
    vals = [_values(results[n], metric, by) for n in names]
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(names), 4.5))
    else:
        fig = ax.figure
    ax.boxplot([v[~np.isnan(v)] for v in vals], showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), names)
    rng = np.random.default_rng(0)
    for j, v in enumerate(vals, start=1):
        ax.scatter(j + rng.uniform(-0.12, 0.12, len(v)), v, s=14, alpha=0.7, zorder=3)
        ax.scatter([j], [np.nanmean(v)], marker="D", color="black", s=28, zorder=4)
    label = {"r": "predictive ability r(y, ĝ)"}.get(metric, metric)
    ylab, what = _BY[by]
    n_rep = max(results[n].summary_by_repeat.shape[0] for n in names)
    ax.set_ylabel(ylab.format(m=label))
    ax.set_title(
        title or f"{label}: {what.format(reps=f' of {n_rep} repeats' if n_rep > 1 else '')}", fontsize=9, wrap=True
    )
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig

"""Metrics of genomic prediction: per fold, pooled per repeat, and their summary.

For observed phenotypes y and out-of-fold predictions of one fold:

- ``r`` predictive ability, Pearson r(y, ĝ) with ĝ the predicted breeding values;
- ``accuracy`` r / √h², h² of the fit that produced the predictions (Legarra et al.
  2008 Genetics 180:611; Daetwyler et al. 2008 PLoS One 3:e3395);
- ``slope`` and ``intercept`` of the regression y = a + b ŷ + e on the predicted
  phenotypes ŷ = Xb̂ + ĝ (b = 1 no over/under-dispersion, a = 0 no bias; within a
  fold of an intercept-only model b is also the slope on ĝ);
- ``mse`` mean (y − ŷ)²;
- ``spearman`` rank correlation of y and ĝ;
- ``top_overlap`` share of the top k% by ĝ that is also in the top k% by y
  (k = ``top`` fraction of the fold, ⌈top·n⌉ individuals; larger is better).

Tiny folds: with n < 3 a correlation or a regression line is not informative (two
points always give r = ±1 and fit any line), so r, accuracy, slope, intercept and
Spearman are NaN; top_overlap is NaN when top·n < 1 (not even one individual would be
selected). These folds still count in the **pooled** metrics
(:func:`pooled_metrics`): the same statistics over all out-of-fold predictions of a
repeat, the only meaningful summary of leave-one-out. They keep the per-fold
definitions (r, Spearman and top-k on ĝ; slope, intercept and MSE on ŷ). Pooling ĝ
across folds is sound for GBLUP and pedigree BLUP, whose breeding values share one
centring (G or A) in every fold, and not for a per-fold quantity such as the fold's
intercept estimate b̂₀(−F), which is why r is not taken on ŷ: in leave-one-out
b̂₀(−i) moves against y_i and would bias r(y, ŷ) down (wheat env1: 0.5238 against
r(y, ĝ) = 0.5261). SNP-BLUP's ĝ carries the per-fold allele-coding constant
2(p_a − p_T)'β̂ (Strandén & Christensen 2011), so its pooled r can differ from GBLUP's
in the last digits while its per-fold metrics are identical.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from ..errors import DataError

METRICS = ("r", "accuracy", "slope", "intercept", "mse", "spearman", "top_overlap", "n")

#: fewest points for a correlation or a regression slope (n = 2 gives r = ±1 always)
MIN_N_CORRELATION = 3
#: per-fold correlations from fewer validated individuals than this (median fold size)
#: are too noisy to average (SE of r ≈ (1 − r²)/√(n − 1) ≥ 0.25 at r = 0.5, n < 10): the
#: pooled metrics are then the headline (leave-one-out has n = 1 per fold)
TINY_FOLD = 10


def check_top(top) -> float:
    """``top`` as a float in (0, 1], else :class:`DataError`."""
    if isinstance(top, bool) or not isinstance(top, numbers.Real) or not 0 < float(top) <= 1:
        raise DataError(f"top must be the selected fraction, 0 < top <= 1 (0.10 = the best 10 %), got {top!r}")
    return float(top)


def _pearson(a, b) -> float:
    a, b = a - a.mean(), b - b.mean()
    d = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / d) if d > 0 else np.nan


#: predictions whose spread is below this share of the phenotypes' SD (or of their own
#: mean) are constant: what is left is rounding of a constant (ĝ = 0 when h² = 0)
CONSTANT_SHARE = 1e-9


def is_constant(pred, obs) -> bool:
    """True when the predictions ``pred`` do not vary beyond rounding (see CONSTANT_SHARE)."""
    pred, obs = np.asarray(pred, float), np.asarray(obs, float)
    if pred.size < 2:
        return True
    scale = max(float(np.std(obs)) if obs.size else 0.0, float(np.abs(pred).max()), np.finfo(float).tiny)
    return float(np.ptp(pred)) <= CONSTANT_SHARE * scale


def top_overlap(y, g, top: float = 0.10) -> float:
    """Share of the k = ⌈top·n⌉ best by ``g`` that are also among the k best by ``y``.

    NaN when top·n < 1. ``top`` must satisfy 0 < top ≤ 1 (:class:`DataError`).
    """
    top = check_top(top)
    y, g = np.asarray(y, float), np.asarray(g, float)
    # 1e-9 absorbs rounding in top*n (0.07 * 100 = 7.000000000000001 must give k = 7)
    kf = top * len(y)
    if kf < 1 - 1e-9:
        return np.nan
    k = int(np.ceil(kf - 1e-9))
    best_y = np.argsort(-y, kind="stable")[:k]
    best_g = np.argsort(-g, kind="stable")[:k]
    return float(np.intersect1d(best_y, best_g).size / k)


def fold_metrics(y, bv, yhat, h2: float = np.nan, top: float = 0.10) -> dict:
    """All metrics of one fold (see the module docstring).

    Parameters
    ----------
    y, bv, yhat : array (n,)
        Observed phenotypes, predicted breeding values, predicted phenotypes. NaN
        entries are left out of the metrics that use them: a predicted phenotype is
        NaN for a record in a fixed-effect level unseen in training (e.g. the
        held-out environment), which still has a breeding value, so r, Spearman and
        top-k use the records with ĝ and slope, intercept and MSE those with ŷ.
    h2 : float
        Heritability of the fit (for ``accuracy``).
    top : float, 0 < top ≤ 1
        Selected fraction for ``top_overlap``.

    Returns
    -------
    dict of the metrics and ``n``, the validated records with a predicted ĝ.
    """
    y, bv, yhat = (np.asarray(a, dtype=float) for a in (y, bv, yhat))
    g_ok = ~(np.isnan(y) | np.isnan(bv))
    p_ok = ~(np.isnan(y) | np.isnan(yhat))
    yg, g = y[g_ok], bv[g_ok]
    yp, ph = y[p_ok], yhat[p_ok]
    # a constant prediction (h² estimated at 0: ĝ = 0, ŷ = b̂₀ up to rounding) has no
    # correlation or slope: undefined (NaN), not a rounding-noise r or a slope of 1e14
    g_var = len(yg) >= MIN_N_CORRELATION and not is_constant(g, yg)
    p_var = len(yp) >= MIN_N_CORRELATION and not is_constant(ph, yp)
    r = _pearson(yg, g) if g_var else np.nan
    if p_var:
        pc = ph - ph.mean()
        slope = float(pc @ (yp - yp.mean()) / (pc @ pc))
        intercept = float(yp.mean() - slope * ph.mean())
    else:
        slope = intercept = np.nan
    return {
        "r": r,
        "accuracy": r / np.sqrt(h2) if h2 and h2 > 0 else np.nan,
        "slope": slope,
        "intercept": intercept,
        "mse": float(np.mean((yp - ph) ** 2)) if len(yp) else np.nan,
        "spearman": _pearson(rankdata(yg), rankdata(g)) if g_var else np.nan,
        "top_overlap": top_overlap(yg, g, top) if g_var or len(yg) < MIN_N_CORRELATION else np.nan,
        "n": int(len(yg)),
    }


def pooled_metrics(predictions: pd.DataFrame, fold_table: pd.DataFrame, top: float = 0.10) -> pd.DataFrame:
    """Metrics over all out-of-fold predictions of each repeat (see the module docstring).

    Parameters
    ----------
    predictions : DataFrame with ``repeat, observed, predicted_bv, predicted_phenotype``
    fold_table : DataFrame with ``repeat, h2`` (accuracy uses the mean h² of the
        repeat's folds)
    top : float

    Returns
    -------
    DataFrame indexed by repeat: the columns of :data:`METRICS` and ``n_folds``
    (NaN predictions are handled as in :func:`fold_metrics`).
    """
    rows = {}
    h2 = fold_table.groupby("repeat")["h2"].mean()
    nf = fold_table.groupby("repeat").size()
    for rep, p in predictions.groupby("repeat", sort=True):  # a few repeats
        yo, g, yh = (p[c].to_numpy(float) for c in ("observed", "predicted_bv", "predicted_phenotype"))
        rows[rep] = {**fold_metrics(yo, g, yh, float(h2.get(rep, np.nan)), top), "n_folds": int(nf.get(rep, 0))}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "repeat"
    return out


def summarise(fold_table: pd.DataFrame, pooled: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, by_repeat).

    ``summary``: per metric, ``mean``, ``sd`` and ``n_folds`` (folds where the metric is
    defined) over all folds of all repeats; ``sd_over_repeats`` of the per-repeat fold
    means; ``pooled`` (mean over repeats of :func:`pooled_metrics`) and
    ``pooled_sd_over_repeats``; ``headline``: ``pooled`` when the median fold has fewer
    than :data:`TINY_FOLD` validated individuals (leave-one-out, tiny groups), else
    ``mean``. ``by_repeat``: fold means per repeat.
    """
    cols = [c for c in METRICS if c in fold_table.columns and c != "n"]
    by_rep = fold_table.groupby("repeat")[cols].mean()
    summ = pd.DataFrame(
        {
            "mean": fold_table[cols].mean(),
            "sd": fold_table[cols].std(ddof=1),
            "n_folds": fold_table[cols].notna().sum(),
            "sd_over_repeats": by_rep.std(ddof=1) if len(by_rep) > 1 else np.nan,
        }
    )
    if pooled is not None:
        summ["pooled"] = pooled[cols].mean()
        summ["pooled_sd_over_repeats"] = pooled[cols].std(ddof=1) if len(pooled) > 1 else np.nan
        summ["headline"] = summ["pooled"] if headline_basis(fold_table) == "pooled" else summ["mean"]
    summ.index.name = "metric"
    return summ, by_rep


def headline_basis(fold_table: pd.DataFrame) -> str:
    """``"pooled"`` for tiny folds (median validated n < :data:`TINY_FOLD`), else ``"mean"``."""
    n = fold_table["n"] if "n" in fold_table else fold_table["n_test"]
    return "pooled" if float(np.median(n)) < TINY_FOLD else "mean"

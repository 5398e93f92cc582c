"""Metrics of genomic prediction, per fold.

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
  (k = ``top`` fraction, at least one individual; larger is better).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

METRICS = ("r", "accuracy", "slope", "intercept", "mse", "spearman", "top_overlap", "n")


def _pearson(a, b) -> float:
    a, b = a - a.mean(), b - b.mean()
    d = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / d) if d > 0 else np.nan


def top_overlap(y, g, top: float = 0.10) -> float:
    """Share of the ⌈top·n⌉ best by ``g`` that are also among the ⌈top·n⌉ best by ``y``."""
    y, g = np.asarray(y, float), np.asarray(g, float)
    k = max(1, int(np.ceil(top * len(y))))
    best_y = np.argsort(-y, kind="stable")[:k]
    best_g = np.argsort(-g, kind="stable")[:k]
    return float(np.intersect1d(best_y, best_g).size / k)


def fold_metrics(y, bv, yhat, h2: float = np.nan, top: float = 0.10) -> dict:
    """All metrics of one fold (see the module docstring).

    Parameters
    ----------
    y, bv, yhat : array (n,)
        Observed phenotypes, predicted breeding values, predicted phenotypes.
    h2 : float
        Heritability of the fit (for ``accuracy``).
    top : float
        Selected fraction for ``top_overlap``.
    """
    y, bv, yhat = (np.asarray(a, dtype=float) for a in (y, bv, yhat))
    n = len(y)
    r = _pearson(y, bv) if n > 1 else np.nan
    if n > 1 and np.var(yhat) > 0:
        yc = yhat - yhat.mean()
        slope = float(yc @ (y - y.mean()) / (yc @ yc))
        intercept = float(y.mean() - slope * yhat.mean())
    else:
        slope = intercept = np.nan
    return {
        "r": r,
        "accuracy": r / np.sqrt(h2) if h2 and h2 > 0 else np.nan,
        "slope": slope,
        "intercept": intercept,
        "mse": float(np.mean((y - yhat) ** 2)),
        "spearman": _pearson(rankdata(y), rankdata(bv)) if n > 1 else np.nan,
        "top_overlap": top_overlap(y, bv, top),
        "n": n,
    }


def summarise(fold_table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, by_repeat).

    ``summary``: per metric, mean, SD and count over all folds of all repeats, and the
    mean and SD over repeats of the per-repeat fold means. ``by_repeat``: fold means per
    repeat.
    """
    cols = [c for c in METRICS if c in fold_table.columns and c != "n"]
    by_rep = fold_table.groupby("repeat")[cols].mean()
    summ = pd.DataFrame({
        "mean": fold_table[cols].mean(),
        "sd": fold_table[cols].std(ddof=1),
        "n_folds": fold_table[cols].notna().sum(),
        "sd_over_repeats": by_rep.std(ddof=1) if len(by_rep) > 1 else np.nan,
    })
    summ.index.name = "metric"
    return summ, by_rep

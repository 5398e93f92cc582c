"""Metrics: tiny folds are NaN (not 1.0), pooled metrics per repeat by hand, ``top``
validated, leave-one-out's headline is pooled (audit of issue 5, items 1 and 3)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import henderson as h
from henderson._testing.genotypes import simulate_genotypes
from henderson.cv import cross_validate, fold_metrics, top_overlap
from henderson.data.genotypes import Genotypes
from henderson.datasets import load_wheat
from henderson.errors import DataError


def _top_by_hand(y, g, top):
    k = int(round(top * len(y)))  # the tests pick n with top*n an integer
    return len(set(np.argsort(-y)[:k]) & set(np.argsort(-g)[:k])) / k


def _check_pooled(res, top):
    """Every pooled metric of every repeat against numpy / scipy on the predictions."""
    assert list(res.pooled_metrics.index) == sorted(res.predictions["repeat"].unique())
    for rep, p in res.predictions.groupby("repeat"):
        y, g, yh = (p[c].to_numpy() for c in ("observed", "predicted_bv", "predicted_phenotype"))
        row = res.pooled_metrics.loc[rep]
        h2 = res.fold_metrics.loc[res.fold_metrics["repeat"] == rep, "h2"].mean()
        lr = stats.linregress(yh, y)
        want = {
            "r": stats.pearsonr(y, g)[0],
            "slope": lr.slope,
            "intercept": lr.intercept,
            "mse": np.mean((y - yh) ** 2),
            "spearman": stats.spearmanr(y, g)[0],
            "accuracy": stats.pearsonr(y, g)[0] / np.sqrt(h2),
            "n": len(y),
        }
        for k, v in want.items():  # 1e-10: the same sums in another order
            assert row[k] == pytest.approx(v, abs=1e-10), k
        k = int(np.ceil(top * len(y) - 1e-9))
        assert row["top_overlap"] == pytest.approx(
            len(set(np.argsort(-y)[:k]) & set(np.argsort(-g)[:k])) / k, abs=1e-12
        )


def test_tiny_folds_give_nan_not_one():
    one = fold_metrics([1.0], [0.3], [0.5], h2=0.3)
    two = fold_metrics([1.0, 2.0], [0.3, 0.1], [0.5, 0.6], h2=0.3)
    for m in (one, two):
        for k in ("r", "accuracy", "slope", "intercept", "spearman", "top_overlap"):
            assert np.isnan(m[k]), k
    assert one["mse"] == pytest.approx(0.25) and two["mse"] == pytest.approx((0.25 + 1.96) / 2)
    three = fold_metrics([1.0, 2.0, 4.0], [0.3, 0.1, 0.5], [0.5, 0.6, 0.9], h2=0.3, top=1 / 3)
    assert three["r"] == pytest.approx(np.corrcoef([1, 2, 4], [0.3, 0.1, 0.5])[0, 1])
    assert three["top_overlap"] == 1.0  # top*n = 1: the single best agrees (k = 1)
    # top*n < 1: nobody is selected, so no overlap (it used to be 1.0 for everyone)
    assert np.isnan(top_overlap(np.arange(9.0), -np.arange(9.0), 0.10))
    assert top_overlap(np.arange(10.0), -np.arange(10.0), 0.10) == 0.0


def test_top_validated_and_k_not_inflated_by_rounding():
    for bad in (2.0, 0, 0.0, -0.1, 1.0001, True, "0.1", None):
        with pytest.raises(DataError, match="0 < top <= 1"):
            top_overlap(np.arange(10.0), np.arange(10.0), bad)
    assert top_overlap(np.arange(10.0), np.arange(10.0), 1.0) == 1.0
    # 0.07 * 100 = 7.000000000000001 in floating point: k must be 7, not 8
    y = np.arange(100.0)
    g = y.copy()
    g[92] = -1.0  # the 8th best by y is last by g; the top 7 agree
    assert top_overlap(y, g, 0.07) == 1.0
    # and k = 8 at top = 0.08: the top 8 by y (92..99) vs by g (93..99 and 91)
    assert top_overlap(y, g, 0.08) == 7 / 8


def test_cross_validate_rejects_bad_top_before_fitting(monkeypatch):
    geno = simulate_genotypes(20, 30, seed=1)
    y = pd.Series(np.arange(20.0), index=geno.ids)

    def no_fit(*args, **kwargs):
        raise AssertionError("a model was fitted before top was checked")

    monkeypatch.setattr(h.GBLUP, "fit", no_fit)
    for bad in (0, 2.0):
        with pytest.raises(DataError, match="top"):
            cross_validate(h.GBLUP(), geno, y, cv=2, top=bad)


@pytest.fixture(scope="module")
def wheat_loo():
    w = load_wheat()
    geno = Genotypes.from_frame(2 * w.markers.astype(int))
    return cross_validate(h.GBLUP(), geno, w.phenotypes["env1"], cv="loo", refit_variances=False)


def test_leave_one_out_headline_is_pooled(wheat_loo):
    res = wheat_loo
    fm, s = res.fold_metrics, res.summary
    assert len(fm) == 599 and res.settings["path"] == "fast"
    for k in ("r", "slope", "spearman", "top_overlap"):
        assert fm[k].isna().all() and s.loc[k, "n_folds"] == 0, k
    p = res.predictions
    # the audit's hand computation on wheat env1: pooled r(y, ĝ) = 0.5261
    r = np.corrcoef(p["observed"], p["predicted_bv"])[0, 1]
    assert r == pytest.approx(0.5261, abs=5e-5)
    assert s.loc["r", "pooled"] == pytest.approx(r, abs=1e-12)
    assert s.loc["r", "headline"] == s.loc["r", "pooled"] and "pooled" in res.settings["headline"]
    assert s.loc["mse", "headline"] == pytest.approx(np.mean((p["observed"] - p["predicted_phenotype"]) ** 2))
    _check_pooled(res, 0.10)
    assert "headline" in repr(res) and "pooled" in repr(res)


def test_pooled_metrics_per_repeat_by_hand():
    geno = simulate_genotypes(90, 250, seed=4)
    rng = np.random.default_rng(2)
    y = pd.Series(rng.normal(size=90) + 0.3 * (geno.dosages[:, :20] @ rng.normal(size=20)), index=geno.ids, name="y")
    res = cross_validate(h.GBLUP(sigma2=(0.6, 1.0)), geno, y, cv=6, repeats=2, seed=3, top=0.2)
    assert list(res.pooled_metrics.index) == [0, 1] and (res.pooled_metrics["n_folds"] == 6).all()
    _check_pooled(res, 0.2)
    # folds of 15 are not tiny: the headline stays the mean over folds
    assert res.settings["headline"] == "mean over folds"
    assert res.summary.loc["r", "headline"] == res.summary.loc["r", "mean"]
    assert res.summary.loc["r", "pooled"] == pytest.approx(res.pooled_metrics["r"].mean(), abs=1e-14)
    assert res.summary.loc["r", "pooled_sd_over_repeats"] == pytest.approx(res.pooled_metrics["r"].std(), abs=1e-14)

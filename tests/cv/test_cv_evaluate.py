"""cross_validate end to end: wheat with the given folds, pedigree BLUP, leakage note,
reproducibility (seed, n_jobs), metrics by hand, plots."""

import matplotlib
import numpy as np
import pandas as pd
import pytest

import henderson as h
from henderson._testing.genotypes import simulate_genotypes
from henderson._testing.pedigree import simulate_pedigree
from henderson.cv import cross_validate, fold_metrics, top_overlap
from henderson.cv.plots import plot_observed_vs_predicted, plot_predictive_ability
from henderson.data.genotypes import Genotypes
from henderson.datasets import load_wheat
from henderson.errors import AlignmentError, ModelError


@pytest.fixture(scope="module")
def wheat():
    w = load_wheat()
    return w, Genotypes.from_frame(2 * w.markers.astype(int)), w.phenotypes["env1"]


@pytest.fixture(scope="module")
def sim():
    geno = simulate_genotypes(100, 300, seed=2)
    rng = np.random.default_rng(0)
    from henderson.models.snpblup import centred_markers

    W, _ = centred_markers(geno)
    y = pd.Series(W @ rng.normal(0, 0.12, geno.p) + rng.normal(0, 1, geno.n), index=geno.ids, name="y")
    return geno, y


def test_wheat_given_folds_gblup_refit(wheat):
    w, geno, y = wheat
    res = cross_validate(h.GBLUP(), geno, y, cv=w.folds)
    fm = res.fold_metrics
    assert list(fm["fold"]) == [str(i) for i in range(1, 11)]
    assert fm["n_test"].sum() == 599 and (fm["n_train"] + fm["n_test"] == 599).all()
    assert fm["sigma2_g"].nunique() == 10  # REML in every fold
    assert res.leakage_note is None and res.settings["path"] == "refit"
    p = res.predictions
    assert sorted(p["id"]) == sorted(y.index) and set(p.columns) == {
        "id",
        "repeat",
        "fold",
        "observed",
        "predicted_bv",
        "predicted_phenotype",
    }
    # folds follow the given Series by id
    assert (p.set_index("id")["fold"].astype(int) == w.folds.loc[p["id"]].to_numpy()).all()
    # wheat env1 GBLUP predictive ability is about 0.5 (Crossa et al. 2010 report 0.5-0.6)
    assert 0.4 < res.summary.loc["r", "mean"] < 0.6
    assert res.summary.loc["r", "n_folds"] == 10
    # held variances: the loud note, one σ², and all folds in one factorisation
    fast = cross_validate(h.GBLUP(), geno, y, cv=w.folds, refit_variances=False)
    assert "LEAKAGE" in fast.leakage_note and "LEAKAGE" in repr(fast)
    assert fast.fold_metrics["sigma2_g"].nunique() == 1 and fast.settings["path"] == "fast"
    assert fast.settings["full_data_variances"]["id"] == pytest.approx(0.3014828, rel=1e-5)
    np.testing.assert_allclose(fast.summary.loc["r", "mean"], res.summary.loc["r", "mean"], atol=0.01)


def test_metrics_by_hand():
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    g = 0.5 * y + np.array([0.3, -0.2, 0.1, 0.0, -0.1, 0.2, -0.3, 0.1, 0.0, 0.2])
    m = fold_metrics(y, g, g + 1.0, h2=0.25)
    assert m["r"] == pytest.approx(np.corrcoef(y, g)[0, 1])
    assert m["accuracy"] == pytest.approx(m["r"] / 0.5)
    b, a = np.polyfit(g + 1.0, y, 1)
    assert m["slope"] == pytest.approx(b) and m["intercept"] == pytest.approx(a)
    assert m["mse"] == pytest.approx(np.mean((y - g - 1.0) ** 2))
    from scipy.stats import spearmanr

    assert m["spearman"] == pytest.approx(spearmanr(y, g).statistic, abs=1e-12)  # ties averaged
    assert m["spearman"] < 1.0
    assert top_overlap(y, g, 0.2) == 1.0
    assert top_overlap(y, -y, 0.3) == 0.0
    assert top_overlap(np.arange(20.0), np.r_[np.arange(18.0), -1, -2], 0.10) == 0.0


def test_reproducible_and_parallel(sim):
    geno, y = sim
    kw = dict(cv=4, repeats=2, seed=5)
    a = cross_validate(h.GBLUP(), geno, y, **kw)
    b = cross_validate(h.GBLUP(), geno, y, **kw)
    pd.testing.assert_frame_equal(a.predictions, b.predictions)  # identical numbers
    pd.testing.assert_frame_equal(a.fold_metrics, b.fold_metrics)
    c = cross_validate(h.GBLUP(), geno, y, n_jobs=2, **kw)
    assert c.settings["n_jobs"] == 2 and c.settings["blas_threads_per_job"] >= 1
    assert (a.predictions[["id", "repeat", "fold"]] == c.predictions[["id", "repeat", "fold"]]).all().all()
    np.testing.assert_allclose(a.predictions["predicted_bv"], c.predictions["predicted_bv"], atol=1e-8)
    d = cross_validate(h.GBLUP(), geno, y, cv=4, repeats=2, seed=6)
    assert not a.predictions["id"].equals(d.predictions["id"])  # another seed, other folds
    assert list(a.summary_by_repeat.index) == [0, 1]
    assert a.settings["versions"]["numpy"] == np.__version__ and a.settings["seed"] == 5


def test_snpblup_trains_on_training_genotypes_only(sim):
    geno, y = sim
    res = cross_validate(h.SNPBLUP(), geno, y, cv=3, seed=1)
    assert res.settings["path"] == "refit" and len(res.predictions) == 100
    # refitting per fold: SNP-BLUP REML equals GBLUP REML (REML depends on K'VK only,
    # invariant to centring), so fold predictions agree to the optimiser's tolerance
    g = cross_validate(h.GBLUP(), geno, y, cv=3, seed=1)
    np.testing.assert_allclose(res.predictions["predicted_phenotype"], g.predictions["predicted_phenotype"], atol=1e-4)


def test_pedigree_blup():
    ped = simulate_pedigree(300, 3, seed=1)
    rng = np.random.default_rng(3)
    ids = ped["id"].astype(str).to_numpy()
    y = pd.Series(rng.normal(size=len(ids)), index=ids, name="w")
    y.iloc[:60] = np.nan  # founders without records stay in the pedigree
    s2 = (0.4, 0.6)
    res = cross_validate(h.PedigreeBLUP(sigma2=s2), ped, y, cv=3)
    assert res.settings["path"] == "fixed" and len(res.predictions) == 240
    # brute check of one fold
    s = res.predictions[res.predictions["fold"] == "1"]
    ym = y.copy()
    ym[s["id"]] = np.nan
    m = h.PedigreeBLUP(sigma2=s2).fit(ped, ym)
    np.testing.assert_allclose(s["predicted_bv"], m.gebv_.loc[s["id"], "gebv"], atol=1e-10)
    np.testing.assert_allclose(
        s["predicted_phenotype"] - s["predicted_bv"], m.fixed_effects_["estimate"].iloc[0], atol=1e-10
    )


def test_bad_inputs(sim):
    geno, y = sim
    with pytest.raises(ModelError, match="supports GBLUP"):
        cross_validate(object(), geno, y)
    yy = pd.concat([y, pd.Series([1.0], index=["stranger"])])
    with pytest.raises(AlignmentError, match="stranger"):
        cross_validate(h.GBLUP(sigma2=(1, 1)), geno, yy)
    with pytest.raises(ModelError, match="fast=True"):
        cross_validate(h.GBLUP(), geno, y, fast=True)  # REML per fold: no fast path


def test_plots(sim, tmp_path):
    geno, y = sim
    a = cross_validate(h.GBLUP(sigma2=(0.5, 1.0)), geno, y, cv=5)
    b = cross_validate(h.SNPBLUP(sigma2=(0.5 / 100, 1.0)), geno, y, cv=5)
    f1 = plot_observed_vs_predicted(a, tmp_path / "obs.png")
    f2 = plot_predictive_ability({"GBLUP": a, "SNP-BLUP": b}, tmp_path / "r.png")
    assert matplotlib.get_backend().lower() == "agg"
    assert (tmp_path / "obs.png").stat().st_size > 10_000 and (tmp_path / "r.png").stat().st_size > 5_000
    assert len(f1.axes[0].collections) == 5  # one colour per fold
    import matplotlib.pyplot as plt

    plt.close(f1), plt.close(f2)


def test_formula_model_equals_gblup_and_takes_extra_terms(sim):
    from henderson.cv import FormulaModel
    from henderson.relationships.genomic import genomic_relationship

    geno, y = sim
    G = genomic_relationship(geno)
    a = cross_validate(h.GBLUP(sigma2=(0.5, 1.0)), G, y, cv=3, fast=False)
    b = cross_validate(FormulaModel("y ~ 1 + (1|id)", cov={"id": G}, sigma2=(0.5, 1.0)), None, y, cv=3)
    np.testing.assert_allclose(a.predictions["predicted_bv"], b.predictions["predicted_bv"], atol=1e-8)
    np.testing.assert_allclose(a.predictions["predicted_phenotype"], b.predictions["predicted_phenotype"], atol=1e-8)
    # an extra random family effect: predicted phenotype = b̂0 + û_family + ĝ
    fam = pd.DataFrame({"family": np.arange(100) // 10, "x": np.linspace(-1, 1, 100)}, index=geno.ids)
    m = FormulaModel("y ~ x + (1|family) + (1|id)", cov={"id": G}, sigma2=(0.2, 0.5, 1.0))
    c = cross_validate(m, fam, y, cv=3)
    p = c.predictions[c.predictions["fold"] == "2"]
    ym = y.copy()
    ym[p["id"]] = np.nan
    f = FormulaModel("y ~ x + (1|family) + (1|id)", cov={"id": G}, sigma2=(0.2, 0.5, 1.0)).fit(fam, ym)
    b0, b1 = f.fixed_effects_["estimate"]
    uf = f.result_.blups["family"]["blup"].reindex(fam.loc[p["id"], "family"].astype(str)).to_numpy()
    want = b0 + b1 * fam.loc[p["id"], "x"].to_numpy() + uf + f.gebv_.loc[p["id"], "gebv"].to_numpy()
    np.testing.assert_allclose(p["predicted_phenotype"], want, atol=1e-10)
    assert np.abs(uf).max() > 1e-3


def test_forward_in_time_masks_younger_generations(sim):
    from henderson.cv import ForwardInTime

    geno, y = sim
    gen = pd.Series(np.repeat([1, 2, 3, 4], 25), index=geno.ids)
    data = pd.DataFrame({"gen": gen})
    res = cross_validate(h.GBLUP(sigma2=(0.5, 1.0)), geno, y, cv=ForwardInTime("gen", steps=2), data=data)
    assert res.settings["path"] == "fixed"  # folds do not train on all others: no fast path
    p3 = res.predictions[res.predictions["fold"] == "3"]
    assert set(gen[p3["id"]]) == {3} and (res.fold_metrics["n_train"] == [50, 75]).all()
    ym = y.where(gen < 3)  # generation 4 must not help predict generation 3
    m = h.GBLUP(sigma2=(0.5, 1.0)).fit(geno, ym)
    np.testing.assert_allclose(p3["predicted_bv"], m.predict(p3["id"]).to_numpy(), atol=1e-10)


def test_predictive_ability_across_repeats(sim, tmp_path):
    import matplotlib.pyplot as plt

    from henderson.errors import DataError

    geno, y = sim
    a = cross_validate(h.GBLUP(sigma2=(0.5, 1.0)), geno, y, cv=4, repeats=3, seed=1)
    b = cross_validate(h.SNPBLUP(sigma2=(0.5 / 100, 1.0)), geno, y, cv=4, repeats=3, seed=1)
    fig = plot_predictive_ability({"GBLUP": a, "SNP-BLUP": b}, tmp_path / "rep.png")  # auto: by repeat
    ax = fig.axes[0]
    assert "mean over the folds of a repeat" in ax.get_ylabel() and "across repeats" in ax.get_title()
    pts = [c.get_offsets()[:, 1] for c in ax.collections]  # per model: the points, then its mean
    for res, got in zip((a, b), pts[0::2]):
        want = [res.fold_metrics.loc[res.fold_metrics["repeat"] == r, "r"].mean() for r in range(3)]
        np.testing.assert_allclose(got, want, atol=1e-12)  # one point per repeat, its fold mean
    plt.close(fig)
    fig = plot_predictive_ability({"GBLUP": a}, by="fold")
    assert len(fig.axes[0].collections[0].get_offsets()) == 12 and "per fold" in fig.axes[0].get_ylabel()
    plt.close(fig)
    fig = plot_predictive_ability({"GBLUP": a}, by="pooled")
    np.testing.assert_allclose(fig.axes[0].collections[0].get_offsets()[:, 1], a.pooled_metrics["r"])
    plt.close(fig)
    with pytest.raises(DataError, match="by must be"):
        plot_predictive_ability({"GBLUP": a}, by="folds")


def test_text_phenotypes_are_an_error_not_silently_unvalidated():
    # a value that is not a number must not quietly become "not phenotyped" in CV
    wheat = h.datasets.load_wheat()
    y = wheat.phenotypes["env1"].astype(object)
    y.iloc[3] = "n/a?"
    with pytest.raises(h.DataError, match=r"not numeric.*n/a\?"):
        h.cross_validate(h.GBLUP(sigma2=(0.3, 0.54)), wheat.A, y, cv=wheat.folds)

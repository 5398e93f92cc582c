"""SNP-BLUP folds: SNPs without training calls (or monomorphic in training) are left
out and counted, never NaN; at held variances the fast and the brute-force path report
the same σ²_g, h² and metrics (audit of issue 5, items 2 and 7)."""

import numpy as np
import pandas as pd
import pytest

import henderson as h
from henderson._testing.genotypes import simulate_genotypes
from henderson.cv import cross_validate
from henderson.cv._snps import informative_snps, n_uninformative_leave_one_out
from henderson.data.genotypes import Genotypes


@pytest.fixture(scope="module")
def holes():
    """60 lines x 200 SNPs; SNP 0 is called only in fold-1 lines (the audit's repro)."""
    geno = simulate_genotypes(60, 200, seed=2)
    D = pd.DataFrame(geno.dosages.astype(float), index=geno.ids, columns=geno.snp_ids)
    folds = pd.Series(np.arange(60) % 3 + 1, index=geno.ids)
    D.iloc[(folds != 1).to_numpy(), 0] = np.nan
    y = pd.Series(np.random.default_rng(0).normal(size=60), index=geno.ids, name="y")
    return Genotypes.from_frame(D), D, y, folds


def _n_useless(D, ids):
    """SNPs with at most one distinct called value among ``ids`` (pandas, by hand)."""
    return int((D.loc[ids].nunique(dropna=True) <= 1).sum())


@pytest.mark.filterwarnings("ignore::henderson.errors.BoundaryWarning")  # REML folds of pure noise
def test_snp_without_training_calls_is_dropped_and_counted(holes):
    geno, D, y, folds = holes
    s2 = (0.005, 1.0)
    res = cross_validate(h.SNPBLUP(sigma2=s2), geno, y, cv=folds)
    assert res.settings["path"] == "fixed"  # missing calls: one fit per fold
    p = res.predictions
    assert p["predicted_phenotype"].notna().all() and p["predicted_bv"].notna().all()
    fm = res.fold_metrics.set_index("fold")
    for f in ("1", "2", "3"):
        train = folds.index[folds.astype(str) != f]
        assert fm.loc[f, "n_snps_dropped"] == _n_useless(D, train), f
    assert fm.loc["1", "n_snps_dropped"] >= 1 and res.settings["notes"]
    # fold 1 equals a SNP-BLUP fitted by hand on the training lines without the useless SNPs
    train = folds.index[folds != 1]
    test = folds.index[folds == 1]
    keep = D.columns[(D.loc[train].nunique() > 1).to_numpy()]
    m = h.SNPBLUP(sigma2=s2).fit(Genotypes.from_frame(D.loc[train, keep]), y.loc[train])
    want = m.predict(Genotypes.from_frame(D.loc[test, keep]))
    got = p[p["fold"] == "1"].set_index("id")["predicted_bv"]
    np.testing.assert_allclose(got.loc[want.index], want, atol=1e-10)  # same model, same numbers
    # REML in every fold: no NaN either
    refit = cross_validate(h.SNPBLUP(), geno, y, cv=folds)
    assert refit.predictions["predicted_bv"].notna().all()
    assert (refit.fold_metrics["n_snps_dropped"] == res.fold_metrics["n_snps_dropped"]).all()


def test_informative_snp_helpers_by_hand():
    D = pd.DataFrame([[0, 1, 2, np.nan, 1.5], [0, 1, 1, np.nan, 1.5], [0, 1, 2, np.nan, 0.5]])
    assert informative_snps(Genotypes.from_frame(D.iloc[:, :4])).tolist() == [False, False, True, False]
    assert informative_snps(Genotypes.from_frame(D)).tolist() == [False, False, True, False, True]  # float
    rng = np.random.default_rng(1)
    d = rng.choice([0.0, 1.0, 2.0], size=(7, 40), p=[0.8, 0.15, 0.05])
    want = [int((np.ptp(np.delete(d, i, 0), axis=0) == 0).sum()) for i in range(7)]
    assert n_uninformative_leave_one_out(d).tolist() == want
    assert max(want) > min(want)  # some SNP becomes constant only without one row


@pytest.fixture(scope="module")
def sim():
    geno = simulate_genotypes(70, 300, seed=9, maf_range=(0.01, 0.5))  # rare SNPs: monomorphic in some folds
    rng = np.random.default_rng(3)
    y = pd.Series(rng.normal(size=70) + 0.2 * (geno.dosages[:, :30] @ rng.normal(size=30)), index=geno.ids, name="y")
    y.iloc[:5] = np.nan  # genotyped, not phenotyped: in the full-data frequencies p_a
    return geno, y


@pytest.mark.parametrize("held", ["user", "full-data"])
def test_fast_and_brute_snpblup_report_the_same_fold_metrics(sim, held):
    geno, y = sim
    p_a = geno.allele_freq  # all 70 genotyped lines
    c_a = 2 * np.sum(p_a * (1 - p_a))
    if held == "user":
        est, kw = h.SNPBLUP(sigma2=(0.4 / c_a, 1.0)), {}
    else:
        est, kw = h.SNPBLUP(), {"refit_variances": False}
    a = cross_validate(est, geno, y, cv=7, seed=2, fast=True, **kw)
    b = cross_validate(est, geno, y, cv=7, seed=2, fast=False, **kw)
    assert a.settings["path"] == "fast" and b.settings["path"] == "fixed"
    fa, fb = a.fold_metrics.drop(columns="method"), b.fold_metrics.drop(columns="method")
    assert fb["n_snps_dropped"].max() > 0  # the count is exercised, and equal in both paths
    pd.testing.assert_frame_equal(fa, fb, check_exact=False, atol=1e-8, rtol=0)
    # one convention: σ²_g = 2Σp_a q_a σ²_β with p_a of all genotyped lines, the same in every fold
    s_b = a.settings["full_data_variances"]["id"] if held == "full-data" else 0.4 / c_a
    np.testing.assert_allclose(fa["sigma2_g"], c_a * s_b, rtol=1e-12)
    np.testing.assert_allclose(fa["h2"], c_a * s_b / (c_a * s_b + fa["sigma2_e"]), rtol=1e-12)


def test_leave_one_out_dropped_snps_fast_equals_brute(sim):
    geno, y = sim
    ids = y.dropna().index[:25]
    g, yy = geno.subset(ids=ids), y.loc[ids]
    est = h.SNPBLUP(sigma2=(0.002, 1.0))
    a = cross_validate(est, g, yy, cv="loo", fast=True)
    b = cross_validate(est, g, yy, cv="loo", fast=False)
    assert b.fold_metrics["n_snps_dropped"].nunique() > 1  # differs between left-out lines
    assert (a.fold_metrics["n_snps_dropped"] == b.fold_metrics["n_snps_dropped"]).all()
    np.testing.assert_allclose(a.predictions["predicted_bv"], b.predictions["predicted_bv"], atol=1e-8)

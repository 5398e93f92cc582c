"""Fast fixed-variance CV (one factorisation) against brute-force refits, to 1e-8.

Brute force: GBLUP fitted at the same fixed (σ²_g, σ²_e) with the fold's phenotypes
masked (NaN), fixed effects re-estimated on the training part; predicted phenotype
X_F b̂_T + ĝ_F.
"""

import numpy as np
import pandas as pd
import pytest

import henderson as h
from henderson._testing.genotypes import simulate_genotypes
from henderson.cv import FixedVarianceCV, cross_validate
from henderson.cv._fastpath import record_design
from henderson.errors import DataError
from henderson.relationships.genomic import genomic_relationship

S2 = (0.6, 1.1)


@pytest.fixture(scope="module")
def sim():
    geno = simulate_genotypes(130, 400, seed=3)
    G = genomic_relationship(geno)
    rng = np.random.default_rng(1)
    ids = geno.ids
    g = np.linalg.cholesky(G.dense() + 1e-6 * np.eye(len(ids))) @ rng.standard_normal(len(ids))
    data = pd.DataFrame(
        {"x": rng.normal(size=len(ids)), "env": rng.choice(["a", "b", "c"], len(ids))}, index=pd.Index(ids, name="id")
    )
    y = pd.Series(1.0 + 0.5 * data["x"].to_numpy() + g + rng.normal(0, 1, len(ids)), index=ids, name="yield")
    y.iloc[:10] = np.nan  # genotyped, not phenotyped: stay in G, never validated
    return geno, G, y, data


def brute(G, y, test, fixed=None, data=None):
    ym = y.copy()
    ym[test] = np.nan
    m = h.GBLUP(sigma2=S2, fixed=fixed, pev=False).fit(G, ym, data=data)
    b = m.fixed_effects_["estimate"]
    Xf = np.ones((len(test), 1)) if fixed is None else None
    if fixed is not None:
        Xf = np.column_stack(
            [np.ones(len(test)), data.loc[test, "x"]]
            + [(data.loc[test, "env"] == lv).to_numpy(float) for lv in ("b", "c")]
        )
    bv = m.gebv_.loc[test, "gebv"].to_numpy()
    return Xf @ b.to_numpy() + bv, bv, m


@pytest.mark.parametrize("fixed", [None, "x + env"])
def test_fold_identities_equal_brute_force(sim, fixed):
    geno, G, y, data = sim
    yv, X, rec, names = record_design(h.GBLUP(fixed=fixed), G.ids, y, data)[:4]
    if fixed:
        assert names == ["(Intercept)", "x", "env[T.b]", "env[T.c]"]
    pos = G.index_of(rec)
    st = FixedVarianceCV.build(yv, X, G.dense()[np.ix_(pos, pos)], *S2)
    rng = np.random.default_rng(0)
    lab = rng.permutation(np.arange(len(rec)) % 4)
    for f in range(4):
        t = np.flatnonzero(lab == f)
        yhat, bv, u = st.fold(t)
        yb, bvb, m = brute(G, y, rec[t], fixed, data)
        np.testing.assert_allclose(bv, bvb, atol=1e-8)
        np.testing.assert_allclose(yhat, yb, atol=1e-8)
        # u = P_(T) y_T: GBLUP's α/σ²_g on the training records, zero on the fold
        alpha = m.dual_coef_.loc[rec].to_numpy() / S2[0]
        np.testing.assert_allclose(u, alpha, atol=1e-10)
        assert np.all(u[t] == 0)
    assert np.abs(bv).max() > 0.05  # not a vacuous comparison


def test_leave_one_out_vectorised_equals_folds_and_brute(sim):
    geno, G, y, data = sim
    yv, X, rec, _ = record_design(h.GBLUP(), G.ids, y, None)[:4]
    pos = G.index_of(rec)
    st = FixedVarianceCV.build(yv, X, G.dense()[np.ix_(pos, pos)], *S2)
    yhat, bv = st.leave_one_out()
    for j in (0, 7, 55, len(rec) - 1):
        a, b, _ = st.fold(np.array([j]))
        np.testing.assert_allclose([a[0], b[0]], [yhat[j], bv[j]], atol=1e-10)
        yb, bvb, _ = brute(G, y, rec[j : j + 1])
        np.testing.assert_allclose([yhat[j], bv[j]], [yb[0], bvb[0]], atol=1e-8)
    U = st.loo_u()
    np.testing.assert_allclose(U[:, 3], st.fold(np.array([3]))[2], atol=1e-12)


@pytest.mark.parametrize("model", ["gblup", "snpblup"])
@pytest.mark.parametrize("cv", [5, "loo"])
def test_cross_validate_fast_equals_brute(sim, model, cv):
    geno, G, y, data = sim
    c = 2 * np.sum(geno.allele_freq * (1 - geno.allele_freq))
    est = h.GBLUP(sigma2=S2) if model == "gblup" else h.SNPBLUP(sigma2=(S2[0] / c, S2[1]))
    if cv == "loo":  # brute LOO is n fits: keep it to a small subset
        y = y.loc[geno.ids[:50]]
        geno = geno.subset(ids=geno.ids[:50])
    a = cross_validate(est, geno, y, cv=cv, fast=True)
    b = cross_validate(est, geno, y, cv=cv, fast=False)
    assert a.settings["path"] == "fast" and b.settings["path"] == "fixed"
    pa, pb = a.predictions, b.predictions
    assert (pa["id"].to_numpy() == pb["id"].to_numpy()).all()
    np.testing.assert_allclose(pa["predicted_phenotype"], pb["predicted_phenotype"], atol=1e-8)
    np.testing.assert_allclose(pa["predicted_bv"], pb["predicted_bv"], atol=1e-8)
    assert a.leakage_note is None  # the user gave the variances


def test_fast_path_with_fixed_effects_through_cross_validate(sim):
    geno, G, y, data = sim
    est = h.GBLUP(sigma2=S2, fixed="x + env")
    a = cross_validate(est, G, y, cv=4, data=data, fast=True)
    b = cross_validate(est, G, y, cv=4, data=data, fast=False)
    np.testing.assert_allclose(a.predictions["predicted_phenotype"], b.predictions["predicted_phenotype"], atol=1e-8)
    np.testing.assert_allclose(a.fold_metrics["mse"], b.fold_metrics["mse"], atol=1e-8)


def test_fold_holding_a_whole_fixed_level_is_named(sim):
    geno, G, y, data = sim
    d = data.copy()
    d["env"] = np.where(np.arange(len(d)) < 40, "rare", "common")
    folds = pd.Series(np.where(np.arange(len(d)) < 40, 1, 2), index=d.index)
    with pytest.raises(DataError, match="fold '1'"):
        cross_validate(h.GBLUP(sigma2=S2, fixed="env"), G, y, cv=folds, data=d, fast=True)


def test_leave_one_out_record_alone_in_its_level_is_named(sim):
    geno, G, y, data = sim
    d = data.copy()
    d["env"] = "common"
    d.loc[y.dropna().index[0], "env"] = "lonely"
    with pytest.raises(DataError, match=str(y.dropna().index[0])):
        cross_validate(h.GBLUP(sigma2=S2, fixed="env"), G, y, cv="loo", data=d, fast=True)

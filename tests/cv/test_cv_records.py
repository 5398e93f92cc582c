"""Repeated records per id: leave-environment-out on wheat env1 + env2 stacked (train
on one environment's records, predict the other's; lines are shared), against
brute-force fits on the training environment alone (audit of issue 5, item 8)."""

import numpy as np
import pandas as pd
import pytest

import henderson as h
from henderson._testing.pedigree import simulate_pedigree
from henderson.cv import FormulaModel, cross_validate, make_splits, resolve_scheme
from henderson.data.genotypes import Genotypes
from henderson.datasets import load_wheat
from henderson.errors import DataError
from henderson.relationships.genomic import genomic_relationship


@pytest.fixture(scope="module")
def wheat():
    w = load_wheat()
    geno = Genotypes.from_frame(2 * w.markers.astype(int))
    ph = w.phenotypes[["env1", "env2"]]
    # records interleaved by line (line a env1, line a env2, line b env1, ...): the
    # training records are not a contiguous block, so masking must be by record
    long = ph.stack().sort_index(level=0, kind="stable")
    y = pd.Series(long.to_numpy(), index=long.index.get_level_values(0).astype(str), name="y")
    env = pd.Series(long.index.get_level_values(1).to_numpy(), index=y.index)
    return w, geno, genomic_relationship(geno), y, env


def _fold(res, f):
    p = res.predictions[res.predictions["fold"] == f]
    return p.set_index("id")


def test_splits_by_record(wheat):
    w, geno, G, y, env = wheat
    s = make_splits(resolve_scheme("logo", groups=env), y)
    assert [x.fold for x in s] == ["env1", "env2"]
    for x in s:
        assert len(x.test_pos) == 599 and (env.iloc[x.test_pos] == x.fold).all()
        assert set(x.test) == set(x.train)  # the same lines on both sides, other records
        assert not set(x.test_pos) & set(x.train_pos)


def test_leave_environment_out_gblup_refit_equals_fit_on_the_other_environment(wheat):
    w, geno, G, y, env = wheat
    res = cross_validate(h.GBLUP(), G, y, cv="logo", groups=env)
    assert res.settings["path"] == "refit" and res.settings["records_by_id"]
    assert len(res.predictions) == 1198 and (res.fold_metrics["n_test"] == 599).all()
    for held, train in (("env2", "env1"), ("env1", "env2")):
        m = h.GBLUP(pev=False).fit(G, w.phenotypes[train])  # brute force: the other environment only
        p = _fold(res, held)
        # REML on the same 599 records in another order: the optimum agrees to the
        # optimiser's tolerance (variances ~1e-6 relative), so 1e-5 on the predictions
        np.testing.assert_allclose(p["predicted_bv"], m.gebv_.loc[p.index, "gebv"], atol=1e-5)
        np.testing.assert_allclose(
            p["predicted_phenotype"] - p["predicted_bv"], m.fixed_effects_["estimate"].iloc[0], atol=1e-5
        )
        np.testing.assert_allclose(p["observed"], w.phenotypes.loc[p.index, held])
        r = res.fold_metrics.set_index("fold").loc[held, "r"]
        assert r == pytest.approx(np.corrcoef(p["observed"], p["predicted_bv"])[0, 1], abs=1e-12)
        # and against the brute-force fit's own predictions: GEBVs of sd ~0.1 agree to 1e-5,
        # which moves a correlation by ~1e-4 at most
        brute = np.corrcoef(w.phenotypes.loc[p.index, held], m.gebv_.loc[p.index, "gebv"])[0, 1]
        assert r == pytest.approx(brute, abs=1e-4)
        assert res.fold_metrics.set_index("fold").loc[held, "sigma2_g"] == pytest.approx(
            m.variance_components_.loc["id", "variance"], rel=1e-4
        )
    # env1 and env2 are phenotypically uncorrelated on wheat (r = -0.02), and so is the
    # prediction of one from the other (about -0.08 both ways): a genotype x environment
    # interaction that leave-environment-out is meant to reveal
    assert (res.fold_metrics["r"].abs() < 0.15).all()


def test_leave_environment_out_held_variances_fast_equals_brute(wheat):
    w, geno, G, y, env = wheat
    a = cross_validate(h.GBLUP(), G, y, cv="logo", groups=env, refit_variances=False)
    b = cross_validate(h.GBLUP(), G, y, cv="logo", groups=env, refit_variances=False, fast=False)
    assert a.settings["path"] == "fast" and b.settings["path"] == "fixed"
    s2 = tuple(a.settings["full_data_variances"].values())  # REML on all 1,198 records:
    full = h.GBLUP(pev=False).fit(G, y).variance_components_["variance"]  # the same fit, here
    np.testing.assert_allclose(s2, full.to_numpy(), rtol=1e-10)
    for col in ("predicted_bv", "predicted_phenotype"):
        np.testing.assert_allclose(a.predictions[col], b.predictions[col], atol=1e-8)
    m = h.GBLUP(sigma2=s2, pev=False).fit(G, w.phenotypes["env1"])
    p = _fold(a, "env2")
    np.testing.assert_allclose(p["predicted_bv"], m.gebv_.loc[p.index, "gebv"], atol=1e-8)
    # SNP-BLUP at the same variances: same predicted phenotypes (Strandén & Christensen)
    c = 2 * np.sum(geno.allele_freq * (1 - geno.allele_freq))
    sb = cross_validate(h.SNPBLUP(sigma2=(s2[0] / c, s2[1])), geno, y, cv="logo", groups=env)
    sf = cross_validate(h.SNPBLUP(sigma2=(s2[0] / c, s2[1])), geno, y, cv="logo", groups=env, fast=False)
    assert sb.settings["path"] == "fast"
    np.testing.assert_allclose(sb.predictions["predicted_phenotype"], a.predictions["predicted_phenotype"], atol=1e-8)
    np.testing.assert_allclose(sf.predictions["predicted_bv"], sb.predictions["predicted_bv"], atol=1e-8)
    assert (sb.predictions["record"] == a.predictions["record"]).all()


def test_fixed_environment_effect_unseen_level(wheat):
    w, geno, G, y, env = wheat
    data = pd.DataFrame({"env": env.to_numpy()}, index=y.index)  # one row per record
    res = cross_validate(h.GBLUP(sigma2=(0.3, 0.6), fixed="env"), G, y, cv="logo", groups="env", data=data)
    assert res.settings["path"] == "fixed"  # the fold holds a whole level: no exact fast path
    p = _fold(res, "env2")
    assert p["predicted_phenotype"].isna().all()  # the env2 mean is not estimable from env1
    m = h.GBLUP(sigma2=(0.3, 0.6), pev=False).fit(G, w.phenotypes["env1"])
    np.testing.assert_allclose(p["predicted_bv"], m.gebv_.loc[p.index, "gebv"], atol=1e-8)
    fm = res.fold_metrics.set_index("fold")
    assert fm.loc["env2", "r"] == pytest.approx(np.corrcoef(p["observed"], p["predicted_bv"])[0, 1])
    assert np.isnan(fm.loc["env2", "mse"]) and fm.loc["env2", "n"] == 599


def test_pedigree_blup_repeated_records():
    ped = simulate_pedigree(120, 3, seed=4)
    ids = ped["id"].astype(str).to_numpy()[40:]
    rng = np.random.default_rng(1)
    y = pd.Series(rng.normal(size=2 * len(ids)), index=np.r_[ids, ids], name="w")
    site = pd.Series(np.repeat(["s1", "s2"], len(ids)), index=y.index)
    res = cross_validate(h.PedigreeBLUP(sigma2=(0.5, 1.0)), ped, y, cv="logo", groups=site)
    m = h.PedigreeBLUP(sigma2=(0.5, 1.0)).fit(ped, y.iloc[len(ids) :])  # site s2 only
    p = _fold(res, "s1")
    np.testing.assert_allclose(p["predicted_bv"], m.gebv_.loc[p.index, "gebv"], atol=1e-10)


def test_repeated_records_need_a_grouped_scheme(wheat):
    w, geno, G, y, env = wheat
    for cv in (5, "loo"):
        with pytest.raises(DataError, match="repeated records.*logo"):
            cross_validate(h.GBLUP(sigma2=(0.3, 0.6)), G, y, cv=cv)
    with pytest.raises(DataError, match="one entry per record"):
        cross_validate(h.GBLUP(sigma2=(0.3, 0.6)), G, y, cv="logo", groups=env.iloc[::-1])
    with pytest.raises(DataError, match="one phenotype per id"):
        cross_validate(FormulaModel("y ~ 1 + (1|id)", cov={"id": G}), None, y, cv="logo", groups=env)
    # leave whole lines out: groups = the id of each record
    lines = pd.Series(y.index.to_numpy(), index=y.index).map(lambda i: int(i) % 3)
    s = make_splits(resolve_scheme("logo", groups=lines), y)
    assert all(not set(x.test) & set(x.train) for x in s)

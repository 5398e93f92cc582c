"""Genetic evaluation models against rrBLUP / sommer / Mrode, and GBLUP ≡ SNP-BLUP.

Tolerances: variance components 1e-5 relative of the tightly converged REML optimum
in the reference file (rrBLUP's own search stops at ~1e-4 on λ); GEBVs 1e-6 against
sommer's tightly converged fit; at identical variance components our BLUPs must
equal rrBLUP's to 1e-9 (pure linear algebra); equivalences 1e-8.
"""

import numpy as np
import pandas as pd
import pytest
from conftest import load_ref, mrode_example_3_1
from sklearn.base import clone

import henderson as h
from henderson.data.genotypes import Genotypes
from henderson.datasets import load_wheat
from henderson.models import fit_gblup, fit_pblup, fit_snpblup, snp_effects_from_gebv
from henderson.relationships.genomic import genomic_relationship

RR = load_ref("wheat_rrblup.json")
SOMMER = load_ref("wheat_sommer.json")


@pytest.fixture(scope="module")
def wheat():
    w = load_wheat()
    geno = Genotypes.from_frame(2 * w.markers.astype(int))  # allele counts 0/2 (M = 2X - 1, shifted)
    return w, geno, w.phenotypes["env1"]


@pytest.fixture(scope="module")
def G(wheat):
    return genomic_relationship(wheat[1], method="vanraden1")


@pytest.fixture(scope="module")
def gblup(wheat, G):
    return fit_gblup(wheat[2], G)


def test_gblup_reproduces_rrblup_optimum(gblup):
    ex = RR["exact_reml_optimum"]["gblup"]
    assert gblup.solver == "spectral"
    assert gblup.sigma2["id"] == pytest.approx(0.3014828, rel=1e-5)
    assert gblup.sigma2["Residual"] == pytest.approx(0.5409987, rel=1e-5)
    assert gblup.sigma2["id"] == pytest.approx(ex["Vu"], rel=1e-6)
    assert gblup.loglik == pytest.approx(ex["loglik_full"], abs=1e-6)


def test_gblup_gebvs_match_sommer_tight(gblup):
    ref = SOMMER["gblup_tight"]
    got = gblup.blups["id"].loc[ref["gebv"]["names"]]
    np.testing.assert_allclose(got["blup"], ref["gebv"]["values"], atol=1e-6)
    np.testing.assert_allclose(got["pev"], ref["pev"], atol=1e-6)


def test_gblup_at_rrblup_variances_equals_rrblup(wheat, G):
    ref = RR["gblup"]
    res = fit_gblup(wheat[2], G, sigma2=[ref["Vu"], ref["Ve"]])
    got = res.blups["id"].loc[ref["u"]["names"]]
    np.testing.assert_allclose(got["blup"], ref["u"]["values"], atol=1e-9)
    np.testing.assert_allclose(np.sqrt(got["pev"]), ref["u_se"], atol=1e-9)
    assert res.fixed_effects["se"].iloc[0] == pytest.approx(ref["beta_se"], rel=1e-8)


def test_spectral_equals_dense_mme(wheat, G):
    # a factor and a covariate besides the intercept: the spectral solver's exact
    # handling of X (REML on the rotated X, b̂ by GLS) against the dense MME (this
    # replaces an intercept-only version of the same comparison)
    w, _, y = wheat
    data = pd.DataFrame(
        {
            "grp": np.where(np.arange(599) % 3 == 0, "a", np.where(np.arange(599) % 3 == 1, "b", "c")),
            "cov": w.phenotypes["env2"].to_numpy(),
        },
        index=y.index,
    )
    from henderson.models._align import records_frame

    frame, formula, *_ = records_frame(y, G.ids, fixed="grp + cov", data=data)
    a = h.fit(formula, frame, cov={"id": G}, solver="spectral")
    b = h.fit(formula, frame, cov={"id": G}, solver="dense")
    assert a.solver == "spectral" and b.solver == "dense-mme" and len(a.fixed_effects) == 4
    # both converge to the REML optimum within their tolerances (1e-7 relative on σ²)
    np.testing.assert_allclose(a.sigma2, b.sigma2, rtol=1e-7)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-8)
    # at identical σ² the two are the same linear algebra: 1e-9
    c = h.fit(formula, frame, cov={"id": G}, solver="dense", sigma2=a.sigma2.to_numpy())
    np.testing.assert_allclose(a.fixed_effects["estimate"], c.fixed_effects["estimate"], atol=1e-9)
    np.testing.assert_allclose(a.fixed_effects["se"], c.fixed_effects["se"], atol=1e-9)
    np.testing.assert_allclose(a.blups["id"]["blup"], c.blups["id"]["blup"], atol=1e-9)
    np.testing.assert_allclose(a.blups["id"]["pev"], c.blups["id"]["pev"], atol=1e-9)


@pytest.mark.parametrize("space", ["marker", "individual"])
def test_snpblup_reproduces_rrblup(wheat, space):
    ex = RR["exact_reml_optimum"]["snpblup"]
    f = fit_snpblup(wheat[2], wheat[1], space=space)
    assert f.space == space
    assert f.result.sigma2["id"] == pytest.approx(0.000707257, rel=1e-5)
    assert f.result.sigma2["id"] == pytest.approx(ex["Vu"], rel=1e-6)
    assert f.result.sigma2["Residual"] == pytest.approx(ex["Ve"], rel=1e-6)
    # 2Σpq straight from the marker table (complete calls, 0/1 → counts 0/2, so p = mean)
    p = wheat[0].markers.to_numpy(dtype=float).mean(axis=0)
    assert f.two_sum_pq == pytest.approx(2.0 * float(np.sum(p * (1.0 - p))), rel=1e-12)
    assert f.sigma2_g == pytest.approx(RR["exact_reml_optimum"]["gblup"]["Vu"], rel=1e-6)
    # the effects themselves, against rrBLUP's u (centred markers). rrBLUP's Vu is
    # 5e-8 relative from the tight optimum our REML reaches, which moves effects of
    # ~0.03 by ~1e-9: 1e-8 absolute (observed 1.3e-9); their SEs likewise
    ref = RR["snpblup_centred"]
    got = f.snp_effects.set_index("snp").loc[ref["u"]["names"]]
    np.testing.assert_allclose(got["effect"], ref["u"]["values"], atol=1e-8)
    np.testing.assert_allclose(got["se"], ref["u_se"], atol=1e-8)


def test_snp_effects_at_rrblup_variances(wheat):
    ref = RR["snpblup_centred"]
    f = fit_snpblup(wheat[2], wheat[1], sigma2=[ref["Vu"], ref["Ve"]])
    got = f.snp_effects.set_index("snp").loc[ref["u"]["names"], "effect"]
    np.testing.assert_allclose(got, ref["u"]["values"], atol=1e-10)
    np.testing.assert_allclose(f.gebv.loc[RR["gblup"]["u"]["names"]], ref["gebv_random_part"], atol=1e-9)


def test_gblup_equals_snpblup_at_equal_variances(wheat, G, gblup):
    geno, y = wheat[1], wheat[2]
    c = 2 * np.sum(geno.allele_freq * (1 - geno.allele_freq))
    s_b, s_e = gblup.sigma2["id"] / c, gblup.sigma2["Residual"]
    for space in ("marker", "individual"):
        f = fit_snpblup(y, geno, sigma2=[s_b, s_e], space=space, snp_se=False)
        np.testing.assert_allclose(f.gebv.loc[gblup.blups["id"].index], gblup.blups["id"]["blup"], atol=1e-8)
        np.testing.assert_allclose(f.result.fixed_effects["estimate"], gblup.fixed_effects["estimate"], atol=1e-10)
    # back-solving both ways, no inverse of the singular G (rank 598 of 599)
    beta = snp_effects_from_gebv(gblup.blups["id"]["blup"], geno)
    np.testing.assert_allclose(beta, f.snp_effects["effect"], atol=1e-10)
    from henderson.models.snpblup import centred_markers

    W, _ = centred_markers(geno)
    np.testing.assert_allclose(W @ f.snp_effects["effect"].to_numpy(), gblup.blups["id"]["blup"], atol=1e-10)


def test_new_individuals_predicted_identically(wheat):
    geno, y = wheat[1], wheat[2]
    train, new = geno.ids[:500], geno.ids[500:]
    gb = h.GBLUP().fit(geno.subset(ids=train), y.loc[train])
    c = 2 * np.sum(gb.allele_freq_ * (1 - gb.allele_freq_))
    sb = h.SNPBLUP(
        sigma2=[gb.variance_components_.loc["id", "variance"] / c, gb.variance_components_.loc["Residual", "variance"]]
    ).fit(geno.subset(ids=train), y.loc[train])
    new_geno = geno.subset(ids=new)
    np.testing.assert_allclose(gb.predict(new_geno), sb.predict(new_geno), atol=1e-8)
    assert gb.predict(new_geno).abs().max() > 0.05


def test_unphenotyped_genotyped_individuals_get_gebvs(wheat, G):
    y = wheat[2].copy()
    y.iloc[:100] = np.nan
    res = fit_gblup(y, G)
    bv = res.blups["id"]
    assert len(bv) == 599 and (bv["n_records"] == 0).sum() == 100
    assert bv.loc[bv["n_records"] == 0, "blup"].abs().min() > 0
    assert any("100 of 599 phenotypes missing" in n for n in res.notes)
    # independent formula, written out densely: ĝ = σ²_g G_{·,p} P y_p with
    # V = σ²_g G_pp + σ²_e I and P = V⁻¹ − V⁻¹1(1'V⁻¹1)⁻¹1'V⁻¹ (Henderson 1975);
    # unphenotyped lines get ĝ_u = G_up G_pp⁻¹ ĝ_p. Plain inverses of 499 × 499
    # matrices (cond ~1e3): 1e-10 on GEBVs of ~0.5 (observed ~1e-15)
    s_g, s_e = res.sigma2["id"], res.sigma2["Residual"]
    Gd = G.to_frame()
    ph = y.dropna().index
    Gpp = Gd.loc[ph, ph].to_numpy()
    Vi = np.linalg.inv(s_g * Gpp + s_e * np.eye(len(ph)))
    one = np.ones(len(ph))
    P = Vi - np.outer(Vi @ one, one @ Vi) / (one @ Vi @ one)
    want = s_g * Gd.loc[:, ph].to_numpy() @ (P @ y.loc[ph].to_numpy())
    np.testing.assert_allclose(bv.loc[Gd.index, "blup"], want, atol=1e-10)
    unph = y.index[y.isna()]
    g_u = Gd.loc[unph, ph].to_numpy() @ np.linalg.solve(Gpp, bv.loc[ph, "blup"].to_numpy())
    np.testing.assert_allclose(bv.loc[unph, "blup"], g_u, atol=1e-8)


def test_phenotypes_aligned_by_id_not_position(wheat, G):
    y = wheat[2]
    shuffled = y.sample(frac=1.0, random_state=1)
    a, b = fit_gblup(y, G), fit_gblup(shuffled, G)
    np.testing.assert_allclose(a.sigma2, b.sigma2, rtol=1e-9)
    np.testing.assert_allclose(a.blups["id"]["blup"], b.blups["id"].loc[a.blups["id"].index, "blup"], atol=1e-9)


def test_unknown_ids_listed_or_dropped(wheat, G):
    y = wheat[2].copy()
    y.loc["not-a-line"] = 1.0
    with pytest.raises(h.AlignmentError, match="not-a-line"):
        fit_gblup(y, G)
    with pytest.warns(h.errors.DataWarning, match="1 record"):
        res = fit_gblup(y, G, missing="drop")
    assert res.n_obs == 599


def test_bad_phenotypes(wheat, G):
    y = wheat[2]
    with pytest.raises(h.DataError, match="constant"):
        fit_gblup(pd.Series(1.0, index=y.index, name="env1"), G)
    with pytest.raises(h.DataError, match="no non-missing"):
        fit_gblup(pd.Series(np.nan, index=y.index, name="env1"), G)
    with pytest.raises(h.DataError, match="Series indexed by id"):
        fit_gblup(y.to_numpy(), G)


def test_text_and_non_finite_phenotypes_named(wheat, G):
    # regression: text used to be coerced to NaN silently ("has no non-missing value"),
    # inf reached scipy as a bare ValueError
    y = wheat[2]
    ids = list(y.index[:3])
    with pytest.raises(h.DataError, match=rf"not numeric: 599 of 599 .*id '{ids[0]}': 'a'"):
        fit_gblup(pd.Series("a", index=y.index, name="env1"), G)
    mixed = y.astype(object).copy()
    mixed.iloc[1] = "."
    with pytest.raises(h.DataError, match=rf"not numeric: 1 of 599 .*id '{ids[1]}': '\.'"):
        fit_gblup(mixed, G)
    bad = y.copy()
    bad.iloc[[0, 2]] = [np.inf, -np.inf]
    with pytest.raises(h.DataError, match=rf"2 non-finite .*'{ids[0]}', '{ids[2]}'"):
        fit_gblup(bad, G)
    with pytest.raises(h.DataError, match="non-finite"):
        h.SNPBLUP().fit(wheat[1], bad)


def test_indefinite_G_explained(wheat, G):
    M = G.dense().copy()
    M[0, 1] = M[1, 0] = 5.0
    bad = h.Relationship(G.ids, M, kind="G")
    with pytest.raises(h.errors.NotPositiveDefiniteError, match="[Bb]lend"):
        fit_gblup(wheat[2], bad)


def test_estimators_sklearn_conventions(wheat, G):
    geno, y = wheat[1], wheat[2]
    m = h.GBLUP(pev=False)
    assert m.get_params()["pev"] is False
    m.set_params(method="ml")
    m.fit(G, y)
    # rrBLUP's ML search stops at ~1e-4 absolute on λ = Ve/Vu ≈ 1.78, i.e. ~1e-5
    # relative on Vu and Ve (observed 4e-7 and 1e-7)
    vc = m.variance_components_["variance"]
    assert vc["id"] == pytest.approx(RR["gblup_ml"]["Vu"], rel=1e-5)
    assert vc["Residual"] == pytest.approx(RR["gblup_ml"]["Ve"], rel=1e-5)
    c = clone(m)
    assert not hasattr(c, "result_") and c.get_params() == m.get_params()
    import copy

    assert copy.deepcopy(G) is G and copy.deepcopy(geno) is geno
    s = h.SNPBLUP().fit(geno, y)
    assert {"snp", "chrom", "pos", "effect"} <= set(s.snp_effects_.columns)
    # REML h² (the ML fit above has a different h²): both parametrisations reach the
    # tight REML optimum of the reference to their 1e-6 convergence on σ² (observed
    # 1e-8 for SNP-BLUP; 2e-15 between the two, which share the spectral solver here)
    ex = RR["exact_reml_optimum"]["gblup"]
    h2_exact = ex["Vu"] / (ex["Vu"] + ex["Ve"])
    g = h.GBLUP(pev=False).fit(G, y)
    assert s.h2_ == pytest.approx(h2_exact, rel=1e-6)
    assert g.h2_ == pytest.approx(h2_exact, rel=1e-6)
    assert s.h2_ == pytest.approx(g.h2_, rel=1e-6)
    with pytest.raises(h.ModelError, match="not fitted"):
        h.GBLUP().predict()


def test_wheat_pedigree_blup_reproduces_rrblup_and_sommer(wheat):
    # K = wheat.A (the BGLR pedigree relationship of the lines) through the same
    # GBLUP machinery; references: rrBLUP mixed.solve(y, K = wheat_A) and sommer
    # mmer(..., Gu = wheat_A) tightly converged (tests/data/refs)
    w, _, y = wheat
    A = h.Relationship(list(w.A.index), w.A.to_numpy(), kind="A")
    res = fit_gblup(y, A)
    ex = RR["exact_reml_optimum"]["pblup"]
    # tight REML optimum: variance components 1e-6 (observed 6e-8), log-likelihood 1e-6
    assert res.sigma2["id"] == pytest.approx(ex["Vu"], rel=1e-6)
    assert res.sigma2["Residual"] == pytest.approx(ex["Ve"], rel=1e-6)
    assert res.loglik == pytest.approx(ex["loglik_full"], abs=1e-6)
    # sommer's tight fit is converged to ~1e-7 relative on σ² (its Vu is 5e-9 from
    # the exact optimum): EBVs and PEVs to 1e-6 (observed 7e-9 and 7e-10)
    so = SOMMER["pblup_tight"]
    got = res.blups["id"].loc[so["gebv"]["names"]]
    np.testing.assert_allclose(got["blup"], so["gebv"]["values"], atol=1e-6)
    np.testing.assert_allclose(got["pev"], so["pev"], atol=1e-6)
    assert res.fixed_effects.loc["(Intercept)", "estimate"] == pytest.approx(so["beta"], abs=1e-6)
    # at rrBLUP's own (less converged) Vu, Ve: pure linear algebra, 1e-9
    rr = RR["pblup"]
    at = fit_gblup(y, A, sigma2=[rr["Vu"], rr["Ve"]])
    got = at.blups["id"].loc[rr["u"]["names"]]
    np.testing.assert_allclose(got["blup"], rr["u"]["values"], atol=1e-9)
    np.testing.assert_allclose(np.sqrt(got["pev"]), rr["u_se"], atol=1e-9)
    assert at.fixed_effects.loc["(Intercept)", "estimate"] == pytest.approx(rr["beta"], abs=1e-9)
    assert at.fixed_effects.loc["(Intercept)", "se"] == pytest.approx(rr["beta_se"], rel=1e-8)


# ---- pedigree BLUP --------------------------------------------------------------------


def test_mrode_example_3_1():
    ped, data, y = mrode_example_3_1()
    res = fit_pblup(y, ped, fixed="0 + sex", data=data, sigma2=[20.0, 40.0])
    fe = res.fixed_effects["estimate"]
    # Mrode (2014) Example 3.1. The book prints 3 decimals and truncates rather than
    # rounds in places (exact 4.35850 is printed 4.358, -0.24946 as -0.249), so the
    # tolerance is one unit of the third decimal.
    assert fe["sex[M]"] == pytest.approx(4.358, abs=1e-3)
    assert fe["sex[F]"] == pytest.approx(3.404, abs=1e-3)
    ebv = res.blups["id"].loc[[str(i) for i in range(1, 9)], "blup"]
    np.testing.assert_allclose(ebv, [0.098, -0.019, -0.041, -0.009, -0.186, 0.177, -0.249, 0.183], atol=1e-3)
    assert (res.blups["id"]["n_records"].loc[["1", "2", "3"]] == 0).all()


def test_pedigree_blup_predict_unknown_ids_named():
    ped, data, y = mrode_example_3_1()
    est = h.PedigreeBLUP(fixed="0 + sex", sigma2=[20.0, 40.0]).fit(ped, y, data=data)
    np.testing.assert_array_equal(est.predict(["8", 1]).to_numpy(), est.ebv_.loc[["8", "1"], "gebv"])
    with pytest.raises(h.DataError, match=r"2 id\(s\) not in the pedigree: '99', 'x'"):
        est.predict(["99", "1", "x"])


def test_pedigree_blup_estimator_and_inverse_equals_dense_A():
    ped, data, y = mrode_example_3_1()
    est = h.PedigreeBLUP(fixed="0 + sex", sigma2=[20.0, 40.0]).fit(ped, y, data=data)
    from henderson.relationships.pedigree import pedigree_relationship

    A = pedigree_relationship(ped)
    frame = data.assign(wwg=y, id=data.index)
    dense = h.fit("wwg ~ 0 + sex + (1|id)", frame, cov={"id": A}, sigma2=[20.0, 40.0], solver="dense")
    np.testing.assert_allclose(est.ebv_.loc[dense.blups["id"].index, "gebv"], dense.blups["id"]["blup"], atol=1e-10)


# gryphon animal models against ASReml: tests/models/test_models_gryphon.py


def test_repeated_records_with_row_covariates(wheat, G):
    # two records per line: env1 and env2 as repeated measures with an 'env' effect
    w = wheat[0]
    y = pd.concat([w.phenotypes["env1"], w.phenotypes["env2"]]).rename("yield_")
    data = pd.DataFrame({"env": ["e1"] * 599 + ["e2"] * 599}, index=y.index)
    res = fit_gblup(y, G, fixed="env", data=data)
    assert res.n_obs == 1198 and "env[T.e2]" in res.fixed_effects.index
    assert (res.blups["id"]["n_records"] == 2).all()
    with pytest.raises(h.DataError, match="one row per record"):
        fit_gblup(y, G, fixed="env", data=data.iloc[::-1])

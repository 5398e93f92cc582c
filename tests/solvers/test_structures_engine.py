"""The general engine on the models the existing solvers fit, and its bad-input errors.

Scalar models (one component, Σ = [[σ²]]) are a special case of Σ ⊗ K: the general
dense engine must give the existing dense solver's numbers — −2 log L, β, û, score and
AI — on potato, Penicillin and the gryphon animal model with K = A dense (a sparse
K⁻¹ is checked against the brute force in test_structures_bruteforce.py). Both are exact dense computations: agreement to 1e-9 relative (rounding of
two different factorisation orders).
"""

import numpy as np
import pandas as pd
import pytest

import henderson as h
from henderson.datasets import load_gryphon, load_lme4, load_potato
from henderson.solvers.dense import DenseMME
from henderson.solvers.general import GeneralMME
from henderson.spec.levels import SparseInverse
from henderson.spec.model import build_spec
from henderson.spec.terms import build_general_spec


@pytest.fixture(scope="module")
def gryphon():
    g = load_gryphon()
    from henderson.relationships.pedigree import pedigree_relationship

    return g.records, pedigree_relationship(g.pedigree), h.pedigree_inverse(g.pedigree)


def _problems(gryphon):
    rec, A, Ainv = gryphon
    return {
        "potato": ("Yield ~ Env + (1|Name)", load_potato(), {}, [[4.0, 5.0], [0.5, 8.0]]),
        "Penicillin": (
            "diameter ~ 1 + (1|plate) + (1|sample)",
            load_lme4("Penicillin"),
            {},
            [[0.7, 3.7, 0.3], [2.0, 1.0, 0.5]],
        ),
        "gryphon_A": ("BWT ~ 1 + SEX + (1|ANIMAL) + (1|BYEAR)", rec, {"cov": {"ANIMAL": A}}, [[3.4, 1.6, 3.8]]),
        "gryphon_Ainv": (
            "BWT ~ 1 + SEX + (1|ANIMAL) + (1|MOTHER)",
            rec,
            {"cov_inverse": {"ANIMAL": Ainv}},
            [[3.4, 1.1, 3.8]],
        ),
    }


@pytest.mark.parametrize(
    "name, method", [(n, m) for n in ["potato", "Penicillin"] for m in ["reml", "ml"]] + [("gryphon_A", "reml")]
)
def test_scalar_models_equal_existing_dense_solver(gryphon, name, method):
    f, data, kw, sigmas = _problems(gryphon)[name]
    old = DenseMME(build_spec(f, data, **kw))
    gspec = build_general_spec(f, data, **kw)
    new = GeneralMME(gspec)
    K = len(gspec.terms)
    for s in sigmas:
        a = old.evaluate(np.array(s), derivatives=True, method=method)
        b = new.evaluate(np.array(s), derivatives=True, method=method)
        assert b.m2ll == pytest.approx(a.m2ll, rel=1e-9)
        np.testing.assert_allclose(b.solution[new.mz :], a.solution[-gspec.p :], rtol=1e-9, atol=1e-9)
        for k, _t in enumerate(gspec.terms):
            ua = a.solution[slice(*a.spans[k])]
            ub = b.solution[new.offsets[k] : new.offsets[k + 1]]
            np.testing.assert_allclose(ub, ua, rtol=1e-8, atol=1e-9 * np.abs(ua).max())
        np.testing.assert_allclose(b.score, a.score, rtol=1e-7, atol=1e-9 * np.abs(a.score).max())
        if method == "reml":  # the ML AI uses V⁻¹ here, P in the existing solver
            np.testing.assert_allclose(b.ai, a.ai, rtol=1e-8, atol=1e-12 * np.abs(a.ai).max())
        assert K + 1 == len(b.score)


def test_fit_routes_structured_models_and_keeps_scalar_ones():
    d = load_lme4("sleepstudy")
    assert h.fit("Reaction ~ Days + (1|Subject)", d).solver == "dense-mme"
    assert h.fit("Reaction ~ Days + (Days|Subject)", d).solver == "dense-general"
    # a scalar model with weights needs the general engine; weights 1 change nothing
    a = h.fit("Reaction ~ Days + (1|Subject)", d)
    b = h.fit("Reaction ~ Days + (1|Subject)", d.assign(w=1.0), weights="w")
    assert b.solver == "dense-general"
    np.testing.assert_allclose(b.variance_components["estimate"].to_numpy(), a.sigma2.to_numpy(), rtol=1e-7)
    assert b.loglik == pytest.approx(a.loglik, abs=1e-8)


def test_weights_scale_residual_variance():
    """Weights w = 2 everywhere halve every residual variance: σ²_e doubles, the other
    parameters and the likelihood (the same V) are unchanged."""
    d = load_lme4("sleepstudy")
    a = h.fit("Reaction ~ Days + (Days|Subject)", d)
    b = h.fit("Reaction ~ Days + (Days|Subject)", d.assign(w=2.0), weights="w")
    ea, eb = a.variance_components["estimate"], b.variance_components["estimate"]
    assert eb["Residual"] == pytest.approx(2 * ea["Residual"], rel=1e-7)
    np.testing.assert_allclose(eb.iloc[:3], ea.iloc[:3], rtol=1e-7)
    assert b.loglik == pytest.approx(a.loglik, abs=1e-8)


def test_correlated_terms_load_each_component_on_its_own_column(gryphon):
    """Direct and maternal effects (Mrode ch. 8): one term, two components sharing the
    levels of A; a record loads on its animal (direct) and its mother (maternal)."""
    rec, A, Ainv = gryphon
    spec = build_general_spec(
        "BWT ~ 1 + SEX + (1|ANIMAL) + (1|MOTHER)", rec, cov_inverse={"ANIMAL": Ainv}, correlated=[("ANIMAL", "MOTHER")]
    )
    (t,) = spec.terms
    assert t.name == "ANIMAL+MOTHER" and t.components == ("ANIMAL", "MOTHER")
    assert t.structure.kind == "us" and isinstance(t.level.covariance, SparseInverse)
    kept = rec.loc[spec.record_index]
    np.testing.assert_array_equal(t.levels[t.codes[:, 0]], kept["ANIMAL"].astype(str))
    np.testing.assert_array_equal(t.levels[t.codes[:, 1]], kept["MOTHER"].astype(str))
    assert spec.theta_names[:3] == [
        "ANIMAL+MOTHER:ANIMAL:ANIMAL",
        "ANIMAL+MOTHER:MOTHER:ANIMAL",
        "ANIMAL+MOTHER:MOTHER:MOTHER",
    ]


# -- bad input ------------------------------------------------------------------------
def test_fa_with_too_many_factors_names_the_term():
    with pytest.raises(h.ModelError, match=r"fa\(\.\.\., 2\) in term 'Name'.*at most 1"):
        h.fit("Yield ~ Env + fa(0 + Env|Name, 2)", load_potato())


def test_slope_on_text_column_is_an_error():
    d = load_lme4("sleepstudy").assign(day_txt=lambda x: "d" + x["Days"].astype(str))
    with pytest.raises(h.ModelError, match=r"'day_txt' is a text.*Subject"):
        h.fit("Reaction ~ Days + (day_txt|Subject)", d)


def test_correlated_terms_must_share_levels(gryphon):
    rec, A, Ainv = gryphon
    bad = rec.assign(MOTHER="x" + rec["MOTHER"].astype(str))
    with pytest.raises(h.ModelError, match="must share levels"):
        h.fit("BWT ~ 1 + (1|ANIMAL) + (1|MOTHER)", bad, cov_inverse={"ANIMAL": Ainv}, correlated=[("ANIMAL", "MOTHER")])
    with pytest.raises(h.ModelError, match="share no level"):
        h.fit("BWT ~ 1 + (1|ANIMAL) + (1|MOTHER)", bad, correlated=[("ANIMAL", "MOTHER")])
    with pytest.raises(h.ModelError, match="not a random term"):
        h.fit("BWT ~ 1 + (1|ANIMAL)", rec, correlated=[("ANIMAL", "MOTHER")])


@pytest.mark.parametrize(
    "value, what", [(-1.0, "zero or negative"), (0.0, "zero or negative"), (np.nan, "missing"), (np.inf, "infinite")]
)
def test_bad_weights_name_the_rows(value, what):
    d = load_lme4("sleepstudy").assign(w=1.0)
    d.loc[[5, 17], "w"] = value
    with pytest.raises(h.DataError, match=rf"2 {what} value\(s\), at data index '5', '17'"):
        h.fit("Reaction ~ Days + (Days|Subject)", d, weights="w")


def test_non_convergence_warns_with_the_log():
    with pytest.warns(h.ConvergenceWarning) as rec:
        res = h.fit("Yield ~ Env + us(0 + Env|Name)", load_potato(), max_iter=2)
    log = rec[0].message.log
    assert not res.converged and len(log) == 3 and "Name:CA.2012:CA.2011" in log.columns
    assert "did not converge" in str(rec[0].message)


def test_rank_deficient_sigma_is_a_warning_and_psd():
    """Slopes simulated with correlation exactly 1: the estimate is on the boundary,
    reported with a BoundaryWarning and NaN SEs, and Σ stays PSD."""
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(15), 8)
    x = np.tile(np.arange(8.0), 15)
    a = rng.normal(size=15)
    y = 10 + 0.5 * x + 2 * a[g] + 0.4 * a[g] * x + rng.normal(size=len(g))
    d = pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})
    with pytest.warns(h.BoundaryWarning, match="boundary"):
        res = h.fit("y ~ x + (x|g)", d)
    S = res.covariances["g"].to_numpy()
    assert np.linalg.eigvalsh(S).min() >= -1e-12 * S.max()
    assert abs(res.correlations["g"].iloc[1, 0]) > 0.999
    assert res.variance_components.loc[res.variance_components["term"] == "g", "se"].isna().all()


# -- command line ---------------------------------------------------------------------
def test_cli_fit_takes_structured_formulas(tmp_path, capsys):
    """The CLI fits the same formulas as henderson.fit, with the same numbers."""
    from conftest import run_cli

    d = load_potato()
    d.to_csv(tmp_path / "potato.csv", index=False)
    f = "Yield ~ Env + us(0 + Env|Name)"
    code, out, err = run_cli(
        ["fit", "--data", tmp_path / "potato.csv", "--formula", f, "--residual", "Env", "--out", tmp_path / "o"], capsys
    )
    assert code == 0, err
    vc = pd.read_csv(tmp_path / "o" / "variance_components.csv").set_index("parameter")
    res = h.fit(f, d, residual="Env")
    np.testing.assert_allclose(vc["estimate"].to_numpy(), res.variance_components["estimate"].to_numpy(), rtol=1e-9)
    bv = pd.read_csv(tmp_path / "o" / "breeding_values.csv")
    assert list(bv.columns[:3]) == ["term", "id", "component"] and len(bv) == 41 * 3
    html = (tmp_path / "o" / "report.html").read_text()
    assert "Covariance matrix of Name" in html and "Heat map of the correlations of Name" in html
    assert "CA.2013" in out and "Corr" in out


def test_factor_analytic_result_tables():
    """fa(0 + Env|Name, 1): Σ = ΛΛ' + diag(ψ), loadings/specific variances/% variance
    reported, and a likelihood between DIAG's and US's (nested: DIAG ⊂ FA1 ⊂ US for 3
    environments)."""
    d = load_potato()
    fa = h.fit("Yield ~ Env + fa(0 + Env|Name, 1)", d)
    us = h.fit("Yield ~ Env + us(0 + Env|Name)", d)
    dg = h.fit("Yield ~ Env + diag(0 + Env|Name)", d)
    assert dg.loglik - 1e-6 <= fa.loglik <= us.loglik + 1e-6
    tabs = fa.factor_analytic["Name"]
    L, psi = tabs["loadings"].to_numpy(), tabs["specific"].to_numpy()
    assert L.shape == (3, 1) and (psi >= 0).all()
    np.testing.assert_allclose(fa.covariances["Name"].to_numpy(), L @ L.T + np.diag(psi), rtol=1e-12)
    share = (L**2).sum() / np.trace(fa.covariances["Name"].to_numpy()) * 100
    assert tabs["variance_explained"].iloc[0] == pytest.approx(share)
    assert "Factor-analytic Name" in fa.summary()


def test_summary_shows_sigma_as_lme4():
    res = h.fit("Reaction ~ Days + (Days|Subject)", load_lme4("sleepstudy"))
    text = res.summary()
    # lme4: Subject (Intercept) 612.10 24.741; Days 35.07 5.922 0.07; Residual 654.94 25.592
    assert "Std.Dev." in text and "Corr" in text
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("Days") and "5.92" in ln)
    assert "0.066" in line
    assert "24.74" in text and "25.592" in text


def test_correlated_term_with_unknown_dams_keeps_the_records(gryphon):
    """A record whose mother is unknown has no maternal effect (z = 0): kept and counted,
    and equal to the V written out by hand (the direct effect alone for that record)."""
    rec, A, Ainv = gryphon
    d = rec.dropna(subset=["BWT"]).head(120).copy()
    d["MOTHER"] = d["MOTHER"].astype(object)
    d.loc[d.index[:7], "MOTHER"] = np.nan
    spec = build_general_spec(
        "BWT ~ 1 + (1|ANIMAL) + (1|MOTHER)", d, cov={"ANIMAL": A}, correlated=[("ANIMAL", "MOTHER")]
    )
    assert spec.n == 120 and any("7 record(s) without 'MOTHER'" in n for n in spec.notes)
    (t,) = spec.terms
    assert (t.z[:7, 1] == 0).all() and (t.z[7:, 1] == 1).all()
    Kd = pd.DataFrame(np.asarray(A.matrix), index=A.ids, columns=A.ids)
    ia = Kd.index.get_indexer(d["ANIMAL"].astype(str))
    im = Kd.index.get_indexer(d["MOTHER"].astype(str).where(d["MOTHER"].notna(), d["ANIMAL"].astype(str)))
    K = Kd.to_numpy()
    zm = d["MOTHER"].notna().to_numpy().astype(float)
    S = np.array([[2.0, -0.5], [-0.5, 1.0]])
    V = (
        S[0, 0] * K[np.ix_(ia, ia)]
        + S[0, 1] * (K[np.ix_(ia, im)] * zm[None, :] + K[np.ix_(im, ia)] * zm[:, None])
        + S[1, 1] * K[np.ix_(im, im)] * np.outer(zm, zm)
        + 3.0 * np.eye(120)
    )
    y, X = d["BWT"].to_numpy(), np.ones((120, 1))
    Vi = np.linalg.inv(V)
    r = y - X @ np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ y)
    want = 119 * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + np.log(X.T @ Vi @ X)[0, 0] + r @ Vi @ r
    got = GeneralMME(spec).evaluate(np.array([2.0, -0.5, 1.0, 3.0])).m2ll
    assert got == pytest.approx(want, rel=1e-10)


def test_lme4_spellings_of_slopes():
    """(Days|Subject) = (1 + Days|Subject); (0 + Days|Subject) is a slope alone; the
    parser reads the structure names and the factor-analytic order."""
    from henderson.spec.formula import parse_formula

    d = load_lme4("sleepstudy")
    a = h.fit("Reaction ~ Days + (Days|Subject)", d)
    b = h.fit("Reaction ~ Days + (1 + Days|Subject)", d)
    assert b.loglik == pytest.approx(a.loglik, abs=1e-10)
    s = h.fit("Reaction ~ Days + (0 + Days|Subject)", d)
    assert list(s.variance_components.index) == ["Subject:Days:Days", "Residual"]
    assert s.loglik < a.loglik
    p = parse_formula("y ~ x + fa(0 + Env|Name, 2) + diag(0 + Env|Site) + cs(0 + Env|Block) + (x||g)")
    assert [(t.name, t.structure, t.d, t.lhs, t.intercept) for t in p.random] == [
        ("Name", "fa", 2, ("Env",), False),
        ("Site", "diag", None, ("Env",), False),
        ("Block", "cs", None, ("Env",), False),
        ("g", "diag", None, ("x",), True),
    ]
    assert p.random[0].structured and not parse_formula("y ~ (1|g)").random[0].structured
    (t,) = parse_formula("y ~ us(leg(dim, 2)|animal)").random
    assert t.lhs == ("leg(dim, 2)",) and not t.intercept

"""Formula parsing and bad input: every problem gets a clear message or a counted note."""

import warnings

import numpy as np
import pandas as pd
import pytest

import henderson as h
from henderson.datasets import load_lme4, load_potato
from henderson.spec.formula import parse_formula


def test_parse_nested_and_crossed():
    p = parse_formula("y ~ x + z + (1|a/b) + (1|c)")
    assert p.response == "y" and p.fixed == "x + z"
    assert [t.name for t in p.random] == ["a", "a:b", "c"]
    assert p.random[1].columns == ("a", "b")
    assert parse_formula("y ~ (1|g)").fixed == "1"
    assert parse_formula("y ~ 0 + x + (1|g)").fixed == "0 + x"


@pytest.mark.parametrize(
    "bad, msg",
    [
        ("y x", "'~'"),
        ("log(y) ~ x", "single column"),
        ("y ~ x + (log(x)|g)", "cannot read"),  # (x|g) itself is a random slope since issue 9
        ("y ~ (1|g) + (1|g)", "given twice"),
        ("y ~ x + (1|g", "unbalanced"),
    ],
)
def test_bad_formulas(bad, msg):
    with pytest.raises(h.ModelError, match=msg):
        parse_formula(bad)


def test_nested_equals_explicit_interaction():
    d = load_lme4("Pastes")
    a = h.fit("strength ~ 1 + (1|batch/cask)", d)
    b = h.fit("strength ~ 1 + (1|batch) + (1|batch:cask)", d)
    np.testing.assert_allclose(a.sigma2, b.sigma2, rtol=1e-10)


def test_no_intercept_formula():
    res = h.fit("Yield ~ 0 + Env + (1|Name)", load_potato())
    assert list(res.fixed_effects.index) == ["Env[CA.2011]", "Env[CA.2012]", "Env[CA.2013]"]
    assert res.sigma2["Name"] == pytest.approx(4.85594439, rel=1e-5)


def test_unknown_column_is_named_with_columns_present():
    with pytest.raises(h.DataError, match=r"'Yeild'.*columns present: Name, Env"):
        h.fit("Yeild ~ Env + (1|Name)", load_potato())
    with pytest.raises(h.DataError, match="'Clone'"):
        h.fit("Yield ~ Env + (1|Clone)", load_potato())


def test_missing_values_dropped_and_counted():
    d = load_potato()
    d.loc[[0, 5, 9], "Yield"] = np.nan
    d.loc[[12], "Env"] = None
    with pytest.warns(h.errors.DataWarning, match="4 of 185 records dropped"):
        res = h.fit("Yield ~ Env + (1|Name)", d)
    assert res.n_obs == 181 and res.n_dropped == 4
    assert "4 dropped" in res.summary()
    assert any("Yield: 3" in n and "Env: 1" in n for n in res.notes)


def test_aliased_fixed_effect_dropped_with_note():
    d = load_potato()
    d["double_weight"] = 2 * d["Weight"]  # a column aliased with Weight
    with pytest.warns(h.errors.DataWarning, match="aliased"):
        res = h.fit("Yield ~ Env + Weight + double_weight + (1|Name)", d)
    assert "double_weight" not in res.fixed_effects.index
    assert any("double_weight" in n for n in res.notes)


def _K(ids, seed=0):
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(len(ids), len(ids) + 3))
    return pd.DataFrame(B @ B.T / len(ids), index=ids, columns=ids)


def test_covariance_missing_levels_are_named():
    d = load_potato()
    ids = sorted(d["Name"].unique())
    K = _K(ids[:-2])
    with pytest.raises(h.DataError, match=r"2 level\(s\) of 'Name'.*W8867-5"):
        h.fit("Yield ~ Env + (1|Name)", d, cov={"Name": K})


def test_covariance_not_symmetric_names_ids():
    d = load_potato()
    ids = sorted(d["Name"].unique())
    K = _K(ids)
    K.iloc[0, 3] += 0.5
    with pytest.raises(h.errors.NotPositiveDefiniteError, match="not symmetric.*A01143-3C"):
        h.fit("Yield ~ Env + (1|Name)", d, cov={"Name": K})


def test_bare_array_covariance_refused():
    d = load_potato()
    with pytest.raises(h.DataError, match="without ids"):
        h.fit("Yield ~ Env + (1|Name)", d, cov={"Name": np.eye(41)})


def test_covariance_for_unknown_term():
    d = load_potato()
    with pytest.raises(h.ModelError, match="not a random term"):
        h.fit("Yield ~ Env + (1|Name)", d, cov={"Clone": _K(["a"])})


def test_identity_covariance_equals_iid():
    d = load_potato()
    ids = sorted(d["Name"].unique())
    I = pd.DataFrame(np.eye(len(ids)), index=ids, columns=ids)
    a = h.fit("Yield ~ Env + (1|Name)", d)
    b = h.fit("Yield ~ Env + (1|Name)", d, cov={"Name": I})
    np.testing.assert_allclose(a.sigma2, b.sigma2, rtol=1e-9)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-9)


def test_non_convergence_warns_with_log():
    with pytest.warns(h.ConvergenceWarning) as rec:
        res = h.fit("Yield ~ Env + (1|Name)", load_potato(), max_iter=1)
    assert not res.converged
    assert rec[0].message.log is not None and len(rec[0].message.log) >= 2


def test_constant_response():
    d = load_potato()
    d["Yield"] = 3.0
    with pytest.raises(h.DataError, match="constant"):
        h.fit("Yield ~ Env + (1|Name)", d)


def test_bad_method():
    with pytest.raises(h.ModelError, match="method"):
        h.fit("Yield ~ Env + (1|Name)", load_potato(), method="bayes")


def test_boundary_reported_never_negative():
    with pytest.warns(h.BoundaryWarning):
        res = h.fit("Yield ~ 1 + (1|Batch)", load_lme4("Dyestuff2"))
    vc = res.variance_components
    assert vc.loc["Batch", "variance"] == 0.0 and vc.loc["Batch", "boundary"]
    assert (vc["variance"] >= 0).all()
    assert "boundary" in res.summary()


def test_spectral_solver_boundary_like_lme4():
    # Dyestuff2 with an explicit identity K goes through the spectral solver and
    # must find lme4's boundary optimum (batch variance 0), with a warning.
    d = load_lme4("Dyestuff2")
    ids = sorted(d["Batch"].astype(str).unique())
    I = pd.DataFrame(np.eye(len(ids)), index=ids, columns=ids)
    with pytest.warns(h.BoundaryWarning):
        res = h.fit("Yield ~ 1 + (1|Batch)", d, cov={"Batch": I})
    assert res.solver == "spectral"
    assert res.sigma2["Batch"] == 0.0 and res.variance_components.loc["Batch", "boundary"]
    # at σ²_Batch = 0 the model is y ~ N(1μ, σ²I): REML gives σ² = s² (ddof 1) and
    # −2ℓ_R = log n + (n − 1)(1 + log 2πσ²) (lme4's criterion, log|X'X| = log n)
    y = d["Yield"].to_numpy(dtype=float)
    n, s2 = len(y), float(np.var(y, ddof=1))
    assert res.sigma2["Residual"] == pytest.approx(s2, rel=1e-8)
    assert res.loglik == pytest.approx(-0.5 * (np.log(n) + (n - 1) * (1 + np.log(2 * np.pi * s2))), abs=1e-8)
    assert np.isnan(res.variance_components.loc["Batch", "se"])


def test_residual_variance_at_zero_is_a_boundary_estimate():
    # Mrode's 5 calves with 8 animals in A: REML drives the residual variance to 0.
    # Issue 10: reported as a boundary estimate with one BoundaryWarning (it used to be
    # a ModelError). Reference: with σ²ₑ = 0, V = σ²_a A₅ (A of the 5 calves, by the
    # tabular method below) and REML gives σ²_a = y'Py / (n − p) in closed form.
    from conftest import mrode_example_3_1

    from henderson.errors import HendersonWarning
    from henderson.models import fit_pblup

    ped, data, y = mrode_example_3_1()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fit_pblup(y, ped, fixed="0 + sex", data=data)
    kinds = [w.category for w in caught if issubclass(w.category, HendersonWarning)]
    assert kinds == [h.BoundaryWarning]
    vc = res.variance_components
    assert res.converged is False and bool(vc.loc["Residual", "boundary"]) and np.isnan(vc.loc["Residual", "se"])
    pos = {k: i for i, k in enumerate(ped["id"])}
    A = np.zeros((8, 8))
    for i, (s_, d_) in enumerate(zip(ped["sire"], ped["dam"])):
        s_, d_ = pos.get(s_), pos.get(d_)
        for j in range(i):
            A[i, j] = A[j, i] = 0.5 * ((A[j, s_] if s_ is not None else 0) + (A[j, d_] if d_ is not None else 0))
        A[i, i] = 1 + (0.5 * A[s_, d_] if s_ is not None and d_ is not None else 0)
    Ar = A[3:, 3:]  # calves 4..8, in the order of y
    X = np.array([[1.0, 0.0] if s == "M" else [0.0, 1.0] for s in data["sex"]])
    Vi = np.linalg.inv(Ar)
    P = Vi - Vi @ X @ np.linalg.solve(X.T @ Vi @ X, X.T @ Vi)
    ref = float(y.to_numpy() @ P @ y.to_numpy()) / (5 - 2)
    # rtol 1e-4: σ²ₑ is held at ~1e-6 of the total, not at exactly 0
    assert vc.loc["id", "variance"] == pytest.approx(ref, rel=1e-4)

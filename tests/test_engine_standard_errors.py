"""Standard errors of variance components and shares, PEV and reliability, against
brute-force dense algebra written here (no henderson code), and ML against lme4.

henderson's variance-component SEs are √diag(AI⁻¹), AI the average-information
matrix AIᵢⱼ = ½ y'PVᵢPVⱼPy (Gilmour, Thompson & Cullis 1995), evaluated at the
estimate. The brute force below builds V, P and AI from the design matrices directly.
It is itself checked by computing the *expected* information ½tr(PVᵢPVⱼ) with the
same P, whose inverse gives sommer's SEs (sommer's NR uses the expected information).
"""

import numpy as np
import pandas as pd
import pytest
from conftest import dummies, load_ref

import henderson as h
from henderson.datasets import load_lme4, load_potato

POTATO = load_ref("dt_example.json")
LME4 = load_ref("lme4_datasets.json")


def projection(X, Vs, s):
    """P = V⁻¹ − V⁻¹X(X'V⁻¹X)⁻¹X'V⁻¹ for V = Σ sᵢVᵢ."""
    V = sum(si * Vi for si, Vi in zip(s, Vs))
    Vi = np.linalg.inv(V)
    ViX = Vi @ X
    return Vi - ViX @ np.linalg.solve(X.T @ ViX, ViX.T)


def average_information(y, X, Vs, s):
    P = projection(X, Vs, s)
    Py = P @ y
    W = np.column_stack([Vk @ Py for Vk in Vs])
    return 0.5 * W.T @ P @ W


def expected_information(X, Vs, s):
    P = projection(X, Vs, s)
    PV = [P @ Vk for Vk in Vs]
    return 0.5 * np.array([[np.sum(A * B.T) for B in PV] for A in PV])


def potato_design():
    d = load_potato()
    y = d["Yield"].to_numpy(float)
    X = np.column_stack([np.ones(len(y)), dummies(d["Env"])[:, 1:]])
    Z = dummies(d["Name"])
    return y, X, [Z @ Z.T, np.eye(len(y))]


def lme4_potato_sigma2():
    vc = POTATO["lme4"]["varcomp"]
    return np.array([vc["Name"], vc["Residual"]])


def test_brute_force_information_reproduces_sommer_se():
    # validates the brute-force code: expected information at sommer's tight estimate
    # gives sommer's SEs (its NR steps use that matrix); 1e-6 relative covers the
    # 1e-8 relative difference between the estimates
    y, X, Vs = potato_design()
    tight = POTATO["sommer"]["tight"]
    s = np.array([tight["varcomp"]["Name"], tight["varcomp"]["Residual"]])
    se = np.sqrt(np.diag(np.linalg.inv(expected_information(X, Vs, s))))
    np.testing.assert_allclose(se, [tight["varcomp_se"]["Name"], tight["varcomp_se"]["Residual"]], rtol=1e-6)


@pytest.mark.parametrize("solver, cov", [("dense", False), ("sparse", False), ("spectral", True)])
def test_potato_variance_se_is_inverse_average_information(solver, cov):
    y, X, Vs = potato_design()
    d = load_potato()
    kw = {}
    if cov:
        ids = sorted(d["Name"].unique())
        kw["cov"] = {"Name": pd.DataFrame(np.eye(len(ids)), index=ids, columns=ids)}
    res = h.fit("Yield ~ Env + (1|Name)", d, solver=solver, **kw)
    assert res.solver.startswith(solver)
    # brute force at lme4's estimate (independent of our optimiser): the estimates
    # agree to ~1e-7 relative, and the SEs are smooth in σ², so 1e-5 relative; the
    # sparse solver's AI is exact but its optimum is converged to 1e-6 only: 1e-4
    ai = average_information(y, X, Vs, lme4_potato_sigma2())
    cov_bf = np.linalg.inv(ai)
    rtol = 1e-4 if solver == "sparse" else 1e-5
    np.testing.assert_allclose(res.variance_components["se"], np.sqrt(np.diag(cov_bf)), rtol=rtol)
    # the auditor's independent brute-force inverse AI (8 significant digits)
    np.testing.assert_allclose(res.variance_components["se"], [1.49898725, 0.95769521], rtol=max(rtol, 1e-7))
    # share of the total and its delta-method SE, with a numerical gradient here
    s = lme4_potato_sigma2()
    share = lambda v: v[0] / v.sum()  # noqa: E731
    eps = 1e-6 * s
    grad = np.array(
        [(share(s + np.eye(2)[i] * eps[i]) - share(s - np.eye(2)[i] * eps[i])) / (2 * eps[i]) for i in range(2)]
    )
    ratio_se = float(np.sqrt(grad @ cov_bf @ grad))
    vc = res.variance_components
    assert vc.loc["Name", "ratio"] == pytest.approx(share(s), rel=1e-6)
    assert vc.loc["Name", "ratio_se"] == pytest.approx(ratio_se, rel=rtol)
    assert vc.loc["Residual", "ratio_se"] == pytest.approx(ratio_se, rel=rtol)  # shares sum to 1
    assert ratio_se == pytest.approx(0.080764, abs=5e-7)  # the auditor's value


def test_crossed_variance_se_brute_force():
    # three components (Penicillin): the AI of the dense MME against V-based AI at
    # our own estimate (the AI formula is what is tested here, not the optimum): 1e-8
    d = load_lme4("Penicillin")
    res = h.fit("diameter ~ 1 + (1|plate) + (1|sample)", d)
    y = d["diameter"].to_numpy(float)
    X = np.ones((len(y), 1))
    Zp, Zs = dummies(d["plate"]), dummies(d["sample"])
    Vs = [Zp @ Zp.T, Zs @ Zs.T, np.eye(len(y))]
    s = res.sigma2.to_numpy()
    se = np.sqrt(np.diag(np.linalg.inv(average_information(y, X, Vs, s))))
    np.testing.assert_allclose(res.variance_components["se"], se, rtol=1e-8)


def test_potato_ml_matches_lme4():
    ref = POTATO["lme4"]["ml"]
    res = h.fit("Yield ~ Env + (1|Name)", load_potato(), method="ml")
    # tolerances of the issue: variances 1e-5 relative, log-likelihood 1e-6 absolute
    assert res.sigma2["Name"] == pytest.approx(ref["varcomp"]["Name"], rel=1e-5)
    assert res.sigma2["Residual"] == pytest.approx(ref["varcomp"]["Residual"], rel=1e-5)
    assert res.loglik == pytest.approx(ref["logLik_ML"], abs=1e-6)
    assert -2 * res.loglik == pytest.approx(ref["deviance"], abs=2e-6)
    np.testing.assert_allclose(res.fixed_effects["estimate"], ref["fixef"]["values"], atol=1e-6)


def _kinship_case(seed=7, q=25, n=70):
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(q, q + 4))
    K = B @ B.T / (q + 4) + np.diag(rng.uniform(0.1, 1.5, size=q))  # Kᵢᵢ from ~0.5 to ~3
    ids = [f"L{i:02d}" for i in range(q)]
    g = rng.choice(ids[:18], size=n)  # 7 levels without records
    data = pd.DataFrame({"g": g, "x": rng.normal(size=n), "y": rng.normal(size=n)})
    return data, pd.DataFrame(K, index=ids, columns=ids)


@pytest.mark.parametrize("solver", ["dense", "spectral"])
def test_reliability_with_unequal_diagonal(solver):
    data, K = _kinship_case()
    assert np.ptp(np.diag(K.to_numpy())) > 1.0  # Kᵢᵢ really differ
    sg, se = 0.8, 1.2
    res = h.fit("y ~ x + (1|g)", data, cov={"g": K}, sigma2=[sg, se], solver=solver, pev=True)
    ids = K.index.to_numpy()
    Kd = K.to_numpy()
    Z = (data["g"].to_numpy()[:, None] == ids[None, :]).astype(float)
    X = np.column_stack([np.ones(len(data)), data["x"].to_numpy()])
    P = projection(X, [Z @ Kd @ Z.T, np.eye(len(data))], [sg, se])
    # PEV = var(u − û) = σ²K − σ⁴KZ'PZK (Henderson 1975; includes the uncertainty of b̂)
    pev = sg * np.diag(Kd) - sg**2 * np.einsum("ij,ji->i", Kd @ Z.T @ P, Z @ Kd)
    rel = 1 - pev / (sg * np.diag(Kd))
    got = res.blups["g"].loc[ids]
    # both routes are exact dense algebra on 70 records: 1e-9
    np.testing.assert_allclose(got["pev"], pev, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got["reliability"], rel, rtol=1e-9, atol=1e-12)
    assert not np.allclose(rel, 1 - pev / sg)  # dividing by Kᵢᵢ matters here

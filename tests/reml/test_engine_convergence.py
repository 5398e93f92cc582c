"""Convergence reporting, identifiability and the boundary, the same in every solver.

The spectral solver (one dense K: a 1-D search over σ²_g/σ²_e) used to report
``converged=True`` and an empty log whatever happened, ignore ``max_iter`` and
``start``, crash with a raw LinAlgError on unidentifiable data, and give NaN
reliabilities on the boundary.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import identity_frame

import henderson as h
from henderson.datasets import load_lme4

FORMULA = "Yield ~ Env + (1|Name)"


@pytest.fixture(scope="module")
def eye_k(potato):
    return identity_frame(sorted(potato["Name"].unique()))


def test_spectral_log_records_the_search(potato, eye_k):
    res = h.fit(FORMULA, potato, cov={"Name": eye_k})
    assert res.solver == "spectral" and res.converged
    log = res.log
    assert list(log.columns) == ["iteration", "step", "m2ll", "sigma2_Name", "sigma2_Residual"]
    assert {"grid", "brent", "boundary"} <= set(log["step"])
    assert log["iteration"].tolist() == list(range(len(log)))
    # every logged row is a real evaluation: −2logL at its σ² from the dense MME
    state = h.prepare(FORMULA, potato)
    for _, row in log.sample(5, random_state=0).iterrows():
        s = [row["sigma2_Name"], row["sigma2_Residual"]]
        assert state.evaluate(s).m2ll == pytest.approx(row["m2ll"], rel=1e-9)
    # the best logged value is the optimum reported
    assert log["m2ll"].min() == pytest.approx(-2 * res.loglik, abs=1e-8)
    n_brent = int((log["step"] == "brent").sum())
    assert 0 < res.iterations <= n_brent + int((log["step"] == "newton").sum())


def test_spectral_max_iter_warns_with_log(potato, eye_k):
    with pytest.warns(h.ConvergenceWarning, match="max_iter=2") as rec:
        res = h.fit(FORMULA, potato, cov={"Name": eye_k}, max_iter=2)
    assert not res.converged
    assert "converged: NO" in res.summary()
    log = rec[0].message.log
    assert log is not None and (log["step"] == "brent").sum() <= 3


def test_spectral_start_centres_the_search(potato, eye_k):
    res = h.fit(FORMULA, potato, cov={"Name": eye_k}, start=[0.01, 10.0])
    grid = res.log[res.log["step"] == "grid"]
    ratio = grid["sigma2_Name"] / grid["sigma2_Residual"]
    # 25 points, ±12 around log(0.001) (those inside the ±25 bounds)
    assert np.log(ratio.iloc[12]) == pytest.approx(np.log(0.001), abs=1e-9)
    assert res.sigma2["Name"] == pytest.approx(4.85594439, rel=1e-6)
    with pytest.raises(h.ModelError, match="start needs"):
        h.fit(FORMULA, potato, cov={"Name": eye_k}, start=[1.0, 0.0])


def _one_record_per_level(n=60, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"i{k:03d}" for k in range(n)]
    return pd.DataFrame({"g": ids, "y": rng.normal(size=n)}), identity_frame(ids)


@pytest.mark.parametrize("solver", ["spectral", "dense", "sparse"])
def test_unidentifiable_components_same_error_in_every_solver(solver):
    d, K = _one_record_per_level()
    kw = {"cov": {"g": K}} if solver == "spectral" else {}
    with pytest.raises(h.ModelError, match=r"'g' and the residual are not identifiable.*sigma2="):
        h.fit("y ~ 1 + (1|g)", d, solver=solver, **kw)
    # with known variances it is ordinary BLUP: û = σ²_g/(σ²_g + σ²_e)·(y − ȳ) here
    res = h.fit("y ~ 1 + (1|g)", d, solver=solver, sigma2=[1.0, 3.0], **kw)
    y = d["y"].to_numpy()
    np.testing.assert_allclose(res.blups["g"].loc[d["g"], "blup"], 0.25 * (y - y.mean()), atol=1e-10)


def test_unidentifiable_when_fixed_effects_absorb_the_difference():
    # K = I + J with an intercept: J is absorbed by the intercept, so over the records
    # (after removing the fixed effects) ZKZ' is still ∝ I
    d, K = _one_record_per_level(40, seed=2)
    K = K + 1.0
    with pytest.raises(h.ModelError, match="not identifiable"):
        h.fit("y ~ 1 + (1|g)", d, cov={"g": K})
    with pytest.raises(h.ModelError, match="not identifiable"):
        h.fit("y ~ 1 + (1|g)", d, cov={"g": K}, solver="dense")


def test_random_factor_that_is_also_fixed_is_refused(potato):
    with pytest.raises(h.ModelError, match="confounded with the fixed effects"):
        h.fit("Yield ~ Env + (1|Env)", potato)


@pytest.mark.parametrize("solver", ["spectral", "dense", "sparse"])
def test_boundary_reliability_zero_and_se_not_available(solver):
    # Dyestuff2: batch variance 0 (lme4). Reliability 0 (not 0/0), PEV 0, no SE for
    # the boundary variance nor for any share, in every solver; residual SE
    # √(2σ⁴/(n − p)) = the inverse AI of σ²_e alone
    d = load_lme4("Dyestuff2")
    kw = {}
    if solver == "spectral":
        kw["cov"] = {"Batch": identity_frame(sorted(d["Batch"].astype(str).unique()))}
    with pytest.warns(h.BoundaryWarning, match="not available"):
        res = h.fit("Yield ~ 1 + (1|Batch)", d, solver=solver, **kw)
    b = res.blups["Batch"]
    assert (b["blup"] == 0).all() and (b["pev"] == 0).all() and (b["reliability"] == 0).all()
    vc = res.variance_components
    assert np.isnan(vc.loc["Batch", "se"]) and vc["ratio_se"].isna().all()
    s2e = vc.loc["Residual", "variance"]
    assert vc.loc["Residual", "se"] == pytest.approx(np.sqrt(2 * s2e**2 / (len(d) - 1)), rel=1e-6)
    assert any("reliability 0" in n for n in res.notes)


def test_gblup_boundary_reliability_not_nan():
    # a trait with no genetic signal: σ²_g = 0 through the spectral solver with a real
    # kinship and unrecorded individuals — reliabilities 0, never NaN
    rng = np.random.default_rng(5)
    W = rng.normal(size=(50, 200))
    W -= W.mean(axis=0)
    ids = [f"a{k}" for k in range(50)]
    K = pd.DataFrame(W @ W.T / 200, index=ids, columns=ids)
    d = pd.DataFrame({"g": ids[:40] * 2, "y": rng.normal(size=80)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", h.BoundaryWarning)
        res = h.fit("y ~ 1 + (1|g)", d, cov={"g": K}, sigma2=[0.0, 1.0])
    rel = res.blups["g"]["reliability"]
    assert not rel.isna().any() and (rel == 0).all()


def test_line_search_does_not_swallow_real_errors(potato, monkeypatch):
    # the AI line search halves a step only for "left the feasible region" errors;
    # anything else (a bug) must surface, not be halved away into a fallback
    from henderson.reml.optimize import optimise
    from henderson.solvers.dense import DenseMME

    state = DenseMME(h.prepare(FORMULA, potato).spec)
    calls = {"n": 0}
    real = state.evaluate

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # the first trial step
            raise KeyError("a bug")
        return real(*a, **k)

    monkeypatch.setattr(state, "evaluate", flaky)
    with pytest.raises(KeyError, match="a bug"):
        optimise(state)
    # a non-positive-definite trial is absorbed: the step is halved and REML converges
    calls["n"] = 0

    def not_pd_once(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise h.errors.NotPositiveDefiniteError("trial left the region")
        return real(*a, **k)

    monkeypatch.setattr(state, "evaluate", not_pd_once)
    opt = optimise(state)
    assert opt.converged and opt.evaluation.sigma2[0] == pytest.approx(4.85594439, rel=1e-6)

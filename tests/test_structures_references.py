"""Structured covariances against the shared references (tests/data/refs/structures).

Reference: block ``own`` of each file, a dense REML written in R and maximised to a
scaled score ≤ 6e-11; lme4 (tight) agrees with it to ≤ 3e-6 scaled. Tolerances from the
references' README: (co)variances 1e-6 scaled by √(ΣᵢᵢΣⱼⱼ), log-likelihood 1e-6
absolute, fixed effects and BLUPs 1e-6 × sd(y). AI standard errors: the reference
computes the same average information at its optimum, so they agree to 1e-5 relative
(the optimum itself differs by ~1e-9).
"""

import numpy as np
import pandas as pd
import pytest
from conftest import load_ref

import henderson as h
from henderson.datasets import load_lme4, load_potato

SLEEP = load_ref("structures/sleepstudy.json")
POTATO = load_ref("structures/dt_example.json")["own"]


def _named(block) -> pd.Series:
    return pd.Series(block["values"], index=block["names"], dtype=float)


def _matrix(block) -> pd.DataFrame:
    return pd.DataFrame(block["values"], index=block["rownames"], columns=block["colnames"])


def _scaled_diff(res, own_theta: pd.Series, sigma: dict) -> float:
    """max |θ − own| / √(ΣᵢᵢΣⱼⱼ) over the reference's θ names (README convention)."""
    est = res.variance_components["estimate"]
    out = 0.0
    for name, v in own_theta.items():
        parts = name.split(":")
        if len(parts) == 3:
            S = _matrix(sigma[parts[0]])
            scale = np.sqrt(S.loc[parts[1], parts[1]] * S.loc[parts[2], parts[2]])
        else:
            scale = abs(v)
        out = max(out, abs(est[name] - v) / scale)
    return out


SLEEP_MODELS = {
    "a_correlated": "Reaction ~ Days + (Days|Subject)",
    "b_uncorrelated": "Reaction ~ Days + (Days||Subject)",
}


@pytest.fixture(scope="module")
def sleep_fits():
    d = load_lme4("sleepstudy")
    return d, {m: h.fit(f, d) for m, f in SLEEP_MODELS.items()}


@pytest.mark.parametrize("model", list(SLEEP_MODELS))
def test_sleepstudy_against_own_reml(sleep_fits, model):
    d, fits = sleep_fits
    res, own = fits[model], SLEEP[model]["own"]
    sd_y = d["Reaction"].std()
    theta = _named(own["theta"])
    assert list(res.variance_components.index) == list(theta.index)
    assert _scaled_diff(res, theta, own["Sigma"]) < 1e-6
    assert res.loglik == pytest.approx(own["loglik_reml_full"], abs=1e-6)
    fx = _named(own["fixed"])
    np.testing.assert_allclose(res.fixed_effects["estimate"].to_numpy(), fx.to_numpy(), rtol=0, atol=1e-6 * sd_y)
    np.testing.assert_allclose(res.fixed_effects["se"].to_numpy(), _named(own["fixed_se"]).to_numpy(), rtol=1e-5)
    np.testing.assert_allclose(
        res.variance_components["se"].to_numpy(), _named(own["theta_se_avg_information"]).to_numpy(), rtol=1e-5
    )
    S = _matrix(own["Sigma"]["Subject"])
    pd.testing.assert_frame_equal(res.covariances["Subject"], S, rtol=1e-6, check_names=False)
    b = _matrix(own["blups"]["Subject"])
    got = res.blups["Subject"]["blup"].unstack("component").loc[b.index, b.columns]
    np.testing.assert_allclose(got.to_numpy(), b.to_numpy(), rtol=0, atol=1e-6 * sd_y)


def test_sleepstudy_against_lme4_tight(sleep_fits):
    """lme4 (bobyqa, rhoend 1e-12) stops within ~3e-7 (scaled) of the optimum."""
    _, fits = sleep_fits
    lm = SLEEP["a_correlated"]["lme4_tight"]
    vc = _named(lm["varcomp"])
    S = fits["a_correlated"].covariances["Subject"]
    got = [S.iloc[0, 0], S.iloc[1, 0], S.iloc[1, 1], fits["a_correlated"].covariances["Residual"].iloc[0, 0]]
    np.testing.assert_allclose(got, vc.to_numpy(), rtol=1e-6)
    assert fits["a_correlated"].loglik == pytest.approx(float(lm["logLik"]), abs=1e-6)
    assert fits["a_correlated"].correlations["Subject"].iloc[1, 0] == pytest.approx(float(lm["correlation"]), abs=1e-6)


POTATO_MODELS = {
    "a_CS": ("Yield ~ Env + cs(0 + Env|Name)", {}),
    "b_DIAG": ("Yield ~ Env + diag(0 + Env|Name)", {}),
    "c_US": ("Yield ~ Env + us(0 + Env|Name)", {}),
    "d_DIAG_hetres": ("Yield ~ Env + diag(0 + Env|Name)", {"residual": "Env"}),
    "e_US_hetres": ("Yield ~ Env + (0 + Env|Name)", {"residual": "Env"}),
}


@pytest.fixture(scope="module")
def potato_fits():
    d = load_potato()
    return d, {m: h.fit(f, d, **kw) for m, (f, kw) in POTATO_MODELS.items()}


@pytest.mark.parametrize("model", list(POTATO_MODELS))
def test_potato_met_against_own_reml(potato_fits, model):
    d, fits = potato_fits
    res, own = fits[model], POTATO[model]
    sd_y = d["Yield"].std()
    theta = _named(own["theta"])
    if model == "a_CS":
        # own fits (1|Name) + (1|Env:Name): Σ has c = σ²_Name off and v = σ²_Name + σ²_Env:Name on
        # the diagonal; compare Σ itself, scaled by its variance
        S = res.covariances["Name"].to_numpy()
        v, c = theta["Name"] + theta["Env:Name"], theta["Name"]
        assert np.max(np.abs(S - (np.full((3, 3), c) + np.eye(3) * (v - c)))) / v < 1e-6
        assert res.covariances["Residual"].iloc[0, 0] == pytest.approx(theta["Residual"], rel=1e-6)
    else:
        assert list(res.variance_components.index) == list(theta.index)
        assert _scaled_diff(res, theta, own["Sigma"]) < 1e-6
        np.testing.assert_allclose(
            res.variance_components["se"].to_numpy(), _named(own["theta_se_avg_information"]).to_numpy(), rtol=1e-5
        )
        pd.testing.assert_frame_equal(
            res.covariances["Name"], _matrix(own["Sigma"]["Name"]), rtol=1e-6, atol=1e-6, check_names=False
        )
        if "Residual" in own["Sigma"] and len(own["Sigma"]["Residual"]["rownames"]) > 1:
            pd.testing.assert_frame_equal(
                res.covariances["Residual"], _matrix(own["Sigma"]["Residual"]), rtol=1e-6, check_names=False
            )
    assert res.loglik == pytest.approx(own["loglik_reml_full"], abs=1e-6)
    np.testing.assert_allclose(
        res.fixed_effects["estimate"].to_numpy(), _named(own["fixed"]).to_numpy(), rtol=0, atol=1e-6 * sd_y
    )
    # genetic value of each clone in each environment (41 x 3)
    gv = _matrix(own["genetic_value_by_env"])
    got = res.blups["Name"]["blup"].unstack("component").loc[gv.index, gv.columns]
    np.testing.assert_allclose(got.to_numpy(), gv.to_numpy(), rtol=0, atol=1e-6 * sd_y)


def test_potato_blup_table_shape(potato_fits):
    _, fits = potato_fits
    b = fits["c_US"].blups["Name"]
    assert b.index.names == ["Name", "component"] and len(b) == 41 * 3
    assert list(b.columns[:3]) == ["blup", "pev", "reliability"]
    assert ((b["reliability"] > 0) & (b["reliability"] < 1)).all()
    # a clone without plots in an environment is predicted through the genetic covariance
    assert fits["c_US"].covariances["Residual"].shape == (1, 1)
    assert fits["e_US_hetres"].covariances["Residual"].shape == (3, 3)


def test_sleepstudy_ml_against_lme4():
    """ML (REML = FALSE) against lme4 1.1-31 with bobyqa rhoend 1e-12
    (refs/structures/sleepstudy_ml_lme4.json, made by make_sleepstudy_ml.R): lme4 stops
    within ~2e-7 (scaled) of the optimum, so 1e-5 scaled; logLik 1e-8."""
    ref = load_ref("structures/sleepstudy_ml_lme4.json")
    res = h.fit("Reaction ~ Days + (Days|Subject)", load_lme4("sleepstudy"), method="ml")
    S = res.covariances["Subject"].to_numpy()
    want = np.array([[ref["var_Intercept"], ref["cov"]], [ref["cov"], ref["var_Days"]]])
    d = np.sqrt(np.diag(want))
    assert np.max(np.abs(S - want) / np.outer(d, d)) < 1e-5
    assert res.covariances["Residual"].iloc[0, 0] == pytest.approx(ref["var_Residual"], rel=1e-5)
    assert res.loglik == pytest.approx(ref["logLik"], abs=1e-8)
    np.testing.assert_allclose(res.fixed_effects["estimate"], ref["fixed"], rtol=1e-9)

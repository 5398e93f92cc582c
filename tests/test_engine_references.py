"""The mixed-model engine against lme4 / sommer reference fits on real data.

Tolerances: variance components 1e-5 relative and log-likelihoods 1e-6 absolute,
as the issue asks, except where the reference optimiser itself stopped short of the
optimum (noted per case: we then check that our log-likelihood is at least as high
and that our objective at the reference's estimate reproduces its log-likelihood).
"""

import numpy as np
import pytest
from conftest import load_ref

import henderson as h
from henderson.datasets import load_lme4, load_potato

POTATO = load_ref("dt_example.json")
LME4 = load_ref("lme4_datasets.json")


@pytest.fixture(scope="module")
def potato_fit():
    return h.fit("Yield ~ Env + (1|Name)", load_potato())


def test_potato_variance_components(potato_fit):
    vc = potato_fit.sigma2
    assert vc["Name"] == pytest.approx(4.85594439, rel=1e-5)
    assert vc["Residual"] == pytest.approx(8.10863269, rel=1e-5)
    ref = POTATO["lme4"]["varcomp"]
    assert vc["Name"] == pytest.approx(ref["Name"], rel=1e-6)
    assert vc["Residual"] == pytest.approx(ref["Residual"], rel=1e-6)


def test_potato_loglik_lme4_convention(potato_fit):
    assert potato_fit.loglik == pytest.approx(-480.547328, abs=1e-6)
    assert potato_fit.loglik == pytest.approx(POTATO["lme4"]["logLik_REML"], abs=1e-6)


def test_potato_fixed_effects(potato_fit):
    fe = potato_fit.fixed_effects
    ref = POTATO["lme4"]
    assert list(fe.index) == ["(Intercept)", "Env[T.CA.2012]", "Env[T.CA.2013]"]
    np.testing.assert_allclose(fe["estimate"], ref["fixef"]["values"], atol=1e-6)
    np.testing.assert_allclose(fe["se"], ref["fixef_se"]["values"], rtol=1e-6)
    np.testing.assert_allclose(fe["estimate"], [16.384993, -5.687979, -6.218314], atol=5e-7)


def test_potato_blups_match_lme4_by_id(potato_fit):
    ref = POTATO["lme4"]["ranef_Name"]
    ours = potato_fit.blups["Name"]
    assert len(ours) == 41
    got = ours.loc[ref["names"], "blup"].to_numpy()
    np.testing.assert_allclose(got, ref["values"], atol=1e-6)


def test_potato_pev_matches_sommer(potato_fit):
    # sommer's PEV includes the uncertainty of the fixed effects (C⁻¹ of the full
    # MME), as ours does; lme4's condsd does not, so compare with sommer (tight fit).
    ref = POTATO["sommer"]["tight"]
    got = potato_fit.blups["Name"].loc[ref["U_Name"]["names"], "pev"].to_numpy()
    np.testing.assert_allclose(got, ref["PEV_Name_diag"], rtol=1e-6)
    rel = potato_fit.blups["Name"]["reliability"]
    np.testing.assert_allclose(rel, 1 - potato_fit.blups["Name"]["pev"] / potato_fit.sigma2["Name"])


def test_potato_aic_bic_lme4_df(potato_fit):
    # lme4: df = 3 fixed + 2 variances
    assert potato_fit.aic == pytest.approx(-2 * potato_fit.loglik + 2 * 5)
    assert potato_fit.bic == pytest.approx(-2 * potato_fit.loglik + 5 * np.log(185))


def test_potato_summary_text(potato_fit):
    text = potato_fit.summary()
    assert "4.85594" in text and "8.10863" in text and "-480.547328" in text
    assert potato_fit.converged and potato_fit.iterations < 20


def _vc(ref_fit):
    return {v["grp"]: v["vcov"] for v in ref_fit["varcomp"]}


CASES = {
    "Dyestuff": "Yield ~ 1 + (1|Batch)",
    "Dyestuff2": "Yield ~ 1 + (1|Batch)",
    "Penicillin": "diameter ~ 1 + (1|plate) + (1|sample)",
    "Pastes": "strength ~ 1 + (1|batch/cask)",
    "cake": "angle ~ recipe + temp + (1|recipe:replicate)",
}
# lme4 names the nested term cask:batch; ours keeps the formula's order batch:cask
RENAME = {"cask:batch": "batch:cask"}


@pytest.mark.parametrize("method", ["reml", "ml"])
@pytest.mark.parametrize("name", list(CASES))
def test_lme4_datasets(name, method):
    ref = LME4[name][method]
    with pytest.warns(h.BoundaryWarning) if name == "Dyestuff2" else _nullcontext():
        res = h.fit(CASES[name], load_lme4(name), method=method)
    assert res.converged
    # our optimum is at least as good as lme4's (bobyqa stops a little early)
    assert res.loglik >= ref["logLik"] - 1e-6
    assert res.loglik == pytest.approx(ref["logLik"], abs=1e-6)
    ref_vc = {RENAME.get(k, k): v for k, v in _vc(ref).items()}
    # Penicillin and Pastes-ML: lme4's estimates are flat-direction inexact (its
    # logLik is 4e-9 below ours); 1e-4 relative is what its optimiser reaches there.
    rel = 1e-4 if (name == "Penicillin" or (name == "Pastes" and method == "ml")) else 1e-5
    for term, v in ref_vc.items():
        if v == 0:
            assert res.sigma2[term] == 0.0
            assert bool(res.variance_components.loc[term, "boundary"])
        else:
            assert res.sigma2[term] == pytest.approx(v, rel=rel), term
    np.testing.assert_allclose(
        res.fixed_effects["estimate"], np.atleast_1d(ref["fixef"]["values"]), rtol=1e-6, atol=1e-6
    )


def test_dyestuff_reml_criterion():
    res = h.fit(CASES["Dyestuff"], load_lme4("Dyestuff"))
    assert -2 * res.loglik == pytest.approx(319.654276842, abs=1e-6)


def test_objective_at_reference_estimate_reproduces_lme4_loglik():
    # independent of any optimiser: our −2logL at lme4's own estimates
    for name in ["Penicillin", "Pastes", "Dyestuff"]:
        ref = LME4[name]["reml"]
        vc = {RENAME.get(k, k): v for k, v in _vc(ref).items()}
        state = h.prepare(CASES[name], load_lme4(name))
        s = [vc[t.name] for t in state.spec.terms] + [vc["Residual"]]
        assert -0.5 * state.evaluate(s).m2ll == pytest.approx(ref["logLik"], abs=1e-7)


@pytest.mark.parametrize(
    "name, keys",
    [
        ("Penicillin", [("plate.(Intercept)", "plate"), ("sample.(Intercept)", "sample")]),
        ("Pastes", [("batch.(Intercept)", "batch"), ("cask:batch.(Intercept)", "batch:cask")]),
        ("Dyestuff", [("Batch.(Intercept)", "Batch")]),
    ],
)
def test_lme4_blups_by_id(name, keys):
    # lme4 (bobyqa) stops with variance components up to ~1e-5 relative from the
    # optimum in these flat directions (see test_lme4_datasets); BLUPs move by about
    # |û| times that: measured max differences 6e-7 (Penicillin), 1.4e-6 (Pastes).
    # 5e-6 absolute is a few times that (|û| ≤ 4.6 here), and 1000 times tighter than
    # a BLUP computed at the wrong variances would be.
    ref = LME4[name]["reml"]["ranef"]
    res = h.fit(CASES[name], load_lme4(name))
    for key, term in keys:
        levels = ref[key]["levels"]
        if term == "batch:cask":  # lme4 labels cask:batch levels "a:A"; ours are "A:a"
            levels = [":".join(lv.split(":")[::-1]) for lv in levels]
        got = res.blups[term].loc[levels, "blup"].to_numpy()
        assert len(got) == len(res.blups[term])
        np.testing.assert_allclose(got, ref[key]["values"], atol=5e-6)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False

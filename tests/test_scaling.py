"""Issue 10, item 6: y is centred and scaled before REML and the results mapped back.

Equivariance is the reference: for y' = c·y + a (a on the intercept), REML must return
σ²' = c²σ², β'(intercept) = c·β + a, other β' = c·β, BLUPs c·û, PEV c²·PEV, shares and
reliabilities unchanged, and log L' = log L − (n − p) log c. The fit of the unscaled
data is the reference; the scaled fits are compared with it at rtol 1e-7 (the
optimiser stops at relative changes of 1e-8; both fits see the same standardised y
up to rounding, so in practice they agree far more closely).
"""

from __future__ import annotations

import numpy as np
import pytest

import henderson as hd
from henderson.datasets import load_potato, load_wheat
from henderson.errors import ModelError

CASES = [(1.0, 1e5), (1e150, 0.0), (1e-150, 0.0), (3.7, -12.0)]


def _check(ref, res, c, a, n, p, intercept="(Intercept)"):
    np.testing.assert_allclose(res.sigma2.to_numpy(), c**2 * ref.sigma2.to_numpy(), rtol=1e-7)
    np.testing.assert_allclose(
        res.variance_components["ratio"], ref.variance_components["ratio"], rtol=1e-7, atol=1e-12
    )
    b_ref = ref.fixed_effects["estimate"].copy() * c
    b_ref[intercept] += a
    np.testing.assert_allclose(res.fixed_effects["estimate"], b_ref, rtol=1e-7, atol=1e-9 * abs(c))
    np.testing.assert_allclose(res.fixed_effects["se"], c * ref.fixed_effects["se"], rtol=1e-6)
    for k, t in ref.blups.items():
        np.testing.assert_allclose(res.blups[k]["blup"], c * t["blup"], rtol=1e-6, atol=1e-9 * abs(c))
        np.testing.assert_allclose(res.blups[k]["pev"], c**2 * t["pev"], rtol=1e-6)
        np.testing.assert_allclose(res.blups[k]["reliability"], t["reliability"], rtol=1e-6, atol=1e-9)
    assert res.loglik == pytest.approx(ref.loglik - (n - p) * np.log(c), rel=1e-10, abs=1e-6)
    assert res.converged


@pytest.mark.parametrize("c, a", CASES)
@pytest.mark.parametrize("solver", ["dense", "sparse"])
def test_potato_equivariance(c, a, solver):
    d = load_potato()
    ref = hd.fit("Yield ~ Env + (1|Name)", d, solver=solver)
    d2 = d.assign(Yield=d["Yield"] * c + a)
    res = hd.fit("Yield ~ Env + (1|Name)", d2, solver=solver)
    _check(ref, res, c, a, ref.n_obs, len(ref.fixed_effects))


@pytest.fixture(scope="module")
def wheat_G():
    w = load_wheat()
    return w, hd.genomic_relationship(2 * w.markers)


@pytest.mark.parametrize("c, a", CASES)
def test_wheat_gblup_equivariance(wheat_G, c, a):
    w, G = wheat_G
    y = w.phenotypes["env1"]
    y = (y - y.mean()) / y.std()  # SD 1: with a = 1e5, "mean 1e5 and SD 1"
    ref = hd.GBLUP().fit(G, y).result_
    res = hd.GBLUP().fit(G, y * c + a).result_
    assert res.solver == "spectral"
    _check(ref, res, c, a, ref.n_obs, 1)


def test_trait_beyond_float_range_is_a_clear_error():
    d = load_potato()
    with pytest.raises(ModelError, match="exceed the largest floating-point number"):
        hd.fit("Yield ~ Env + (1|Name)", d.assign(Yield=d["Yield"] * 1e160))


def test_known_variances_are_on_the_users_scale():
    d = load_potato()
    ref = hd.fit("Yield ~ Env + (1|Name)", d, sigma2=[4.0, 8.0])
    res = hd.fit("Yield ~ Env + (1|Name)", d.assign(Yield=d["Yield"] * 1e3 + 7), sigma2=[4e6, 8e6])
    np.testing.assert_allclose(res.blups["Name"]["blup"], 1e3 * ref.blups["Name"]["blup"], rtol=1e-9)
    np.testing.assert_allclose(res.sigma2, [4e6, 8e6], rtol=1e-14)

"""The MME objective at fixed variance components against brute-force dense algebra.

−2 log L_REML = (n − p) log 2π + log|V| + log|X'V⁻¹X| + y'Py computed directly from
V = Σₖ σ²ₖ ZₖKₖZₖ' + σ²ₑI must equal the MME route to 1e-10 (relative): the two
share no code beyond numpy's determinant.
"""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import brute_force_m2ll

import henderson as h
from henderson.datasets import load_lme4, load_potato
from henderson.relationships import Relationship


def _zkz(state):
    out = []
    for t in state.spec.terms:
        Z = np.zeros((state.n, t.q))
        Z[np.arange(state.n), t.codes] = 1.0
        if t.factor is not None:
            K = t.factor @ t.factor.T
        elif t.penalty is not None:
            P = t.penalty.toarray() if sp.issparse(t.penalty) else t.penalty
            K = np.linalg.inv(P)
        else:
            K = np.eye(t.q)
        out.append(Z @ K @ Z.T)
    return out


@pytest.mark.parametrize("method", ["reml", "ml"])
@pytest.mark.parametrize("sigma2", [[4.0, 8.0], [0.5, 12.0], [30.0, 1.0]])
def test_potato_objective_vs_brute_force(sigma2, method):
    state = h.prepare("Yield ~ Env + (1|Name)", load_potato())
    got = state.evaluate(sigma2, method=method).m2ll
    want = brute_force_m2ll(state.spec.y, state.spec.X, _zkz(state), np.array(sigma2), method)
    assert got == pytest.approx(want, rel=1e-10)


def test_potato_reference_decomposition():
    # the reference file gives log|V|, log|X'V⁻¹X| and y'Py at lme4's estimate
    from conftest import load_ref

    ref = load_ref("dt_example.json")
    d = ref["direct_reml_at_lme4_estimate"]
    vc = ref["lme4"]["varcomp"]
    state = h.prepare("Yield ~ Env + (1|Name)", load_potato())
    ev = state.evaluate([vc["Name"], vc["Residual"]])
    assert -0.5 * ev.m2ll == pytest.approx(d["loglik"], abs=1e-9)
    assert ev.ell2 / vc["Residual"] == pytest.approx(d["yPy"], rel=1e-9)


@pytest.mark.parametrize("sigma2", [[0.7, 3.7, 0.3], [0.0, 2.0, 0.5], [1.0, 0.0, 1.0]])
def test_crossed_objective_vs_brute_force(sigma2):
    state = h.prepare("diameter ~ 1 + (1|plate) + (1|sample)", load_lme4("Penicillin"))
    got = state.evaluate(sigma2).m2ll
    want = brute_force_m2ll(state.spec.y, state.spec.X, _zkz(state), np.array(sigma2))
    assert got == pytest.approx(want, rel=1e-10)


def _kinship_case(seed=1, q=30, n=80):
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(q, q + 5))
    K = B @ B.T / (q + 5) + 0.1 * np.eye(q)
    ids = [f"L{i:02d}" for i in range(q)]
    # only 20 of the 30 levels have records: the rest are predicted through K
    g = rng.choice(ids[:20], size=n)
    data = pd.DataFrame({"g": g, "x": rng.normal(size=n), "y": rng.normal(size=n) + 0.3})
    return data, pd.DataFrame(K, index=ids, columns=ids)


@pytest.mark.parametrize("sigma2", [[0.8, 1.1], [2.0, 0.3]])
def test_known_covariance_objective_vs_brute_force(sigma2):
    data, K = _kinship_case()
    for kwargs in (
        {"cov": {"g": K}},
        {"cov_inverse": {"g": Relationship(K.index, sp.csr_matrix(np.linalg.inv(K.values)), inverse=True)}},
    ):
        state = h.prepare("y ~ x + (1|g)", data, **kwargs)
        got = state.evaluate(sigma2).m2ll
        want = brute_force_m2ll(state.spec.y, state.spec.X, _zkz(state), np.array(sigma2))
        assert got == pytest.approx(want, rel=1e-10)


def test_factor_and_inverse_give_the_same_fit():
    data, K = _kinship_case(seed=3)
    a = h.fit("y ~ x + (1|g)", data, cov={"g": K})
    Kinv = Relationship(K.index, sp.csr_matrix(np.linalg.inv(K.values)), inverse=True)
    b = h.fit("y ~ x + (1|g)", data, cov_inverse={"g": Kinv})
    np.testing.assert_allclose(a.sigma2, b.sigma2, rtol=1e-7)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-8)
    ua, ub = a.blups["g"], b.blups["g"].loc[a.blups["g"].index]
    np.testing.assert_allclose(ua["blup"], ub["blup"], atol=1e-7)
    np.testing.assert_allclose(ua["pev"], ub["pev"], atol=1e-7)
    # levels without records are predicted through K
    assert (ua["n_records"] == 0).sum() == 10
    assert (ua.loc[ua["n_records"] == 0, "blup"].abs() > 0).all()


def test_blup_at_known_variances_equals_brute_force_blup():
    data, K = _kinship_case(seed=5)
    res = h.fit("y ~ x + (1|g)", data, cov={"g": K}, sigma2=[0.9, 1.3])
    state = h.prepare("y ~ x + (1|g)", data, cov={"g": K})
    t = state.spec.terms[0]
    Z = np.zeros((state.n, t.q))
    Z[np.arange(state.n), t.codes] = 1
    Kd = K.loc[t.levels, t.levels].to_numpy()
    V = 0.9 * Z @ Kd @ Z.T + 1.3 * np.eye(state.n)
    X, y = state.spec.X, state.spec.y
    Vi = np.linalg.inv(V)
    b = np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ y)
    u = 0.9 * Kd @ Z.T @ Vi @ (y - X @ b)
    np.testing.assert_allclose(res.fixed_effects["estimate"], b, atol=1e-10)
    np.testing.assert_allclose(res.blups["g"].loc[t.levels, "blup"], u, atol=1e-10)

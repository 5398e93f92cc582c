"""The spectral solver through the one solver protocol (solvers/protocol.py), as ``fit`` drives it.

1. On a small GBLUP (y ~ 1 + x + (1|g), dense K over 40 lines, 120 records), the spectral
   Evaluation at θ equals the dense MME's — two solvers that share no evaluation code (the
   tridiagonal form of ZKZ' against the block-factored MME): −2 log L to 1e-10 relative,
   score and AI to 1e-10 relative to their largest entry, REML and ML, at and off σ²_g = 0
   (there the dense MME drop the term, and its ``boundary_score`` gives σ²_g's score
   and AI entry, REML and ML; the cross AI entry is not formed).
2. What the spectral fit's result builder (``assemble.fit_result``) reads from the
   Evaluation — ê, SE(b̂)², BLUPs and PEV exactly 0 at σ²_g = 0 — against brute-force V
   algebra (ê = σ²ₑPy, diag((X'V⁻¹X)⁻¹)) to 1e-9 relative; ``solutions=False`` (the search's
   Newton steps) gives the same −2 log L, score and AI bit for bit and no solutions.
3. The one-dimensional search in ``reml/`` runs on the Prepared: its profiled objective
   at h equals ``evaluate`` at (h σ̂²ₑ, σ̂²ₑ) (1e-10), and σ̂²ₑ = y'P₁y/(n − p) minimises
   −2 log L along σ²ₑ (a check by perturbation); ``fit`` and ``search`` on ``prepare(spec,
   "spectral")`` give the same σ² (the same code path: 0 difference).
"""

import numpy as np
import pandas as pd
import pytest

import henderson as h
from henderson.reml.spectral_search import search
from henderson.solvers.protocol import prepare
from henderson.spec.model import build_spec

FORMULA = "y ~ 1 + x + (1|g)"


@pytest.fixture(scope="module")
def gblup():
    rng = np.random.default_rng(7)
    q, n = 40, 120
    B = rng.normal(size=(q, q // 2))
    ids = [f"L{i:02d}" for i in range(q)]
    K = pd.DataFrame(B @ B.T / (q // 2) + 0.1 * np.eye(q), index=ids, columns=ids)
    d = pd.DataFrame({"g": rng.choice(ids[:35], n), "x": rng.normal(size=n)})  # 5 lines without records
    u = np.linalg.cholesky(K.to_numpy()) @ rng.normal(size=q)
    d["y"] = 1.0 + 0.5 * d["x"] + u[pd.Index(ids).get_indexer(d["g"])] + rng.normal(size=n)
    return build_spec(FORMULA, d, cov={"g": K}), K


@pytest.mark.parametrize("method", ["reml", "ml"])
@pytest.mark.parametrize("theta", [[0.8, 1.1], [2.5, 0.3], [0.0, 1.4]])
def test_spectral_evaluation_equals_dense(gblup, method, theta):
    spec, _ = gblup
    spectral, dense = prepare(spec, "spectral"), prepare(spec, "dense")
    assert spectral.names == dense.names == ["sigma2_g", "sigma2_Residual"]
    a = spectral.evaluate(theta, method=method, derivatives=True)
    b = dense.evaluate(theta, method=method, derivatives=True)
    assert a.m2ll == pytest.approx(b.m2ll, rel=1e-10)
    score, ai = b.score.copy(), b.ai.copy()
    if theta[0] == 0.0:
        # the dense MME drop a term at 0 (its entries NaN); its boundary score is the
        # method's score there (V⁻¹ in the trace under ML) and its AI entry
        score[0], ai[0, 0] = dense.boundary_score(b, 0)
        ai[0, 1] = ai[1, 0] = np.nan  # the cross term is not formed
    ok = ~np.isnan(score)
    np.testing.assert_allclose(a.score[ok], score[ok], rtol=0, atol=1e-10 * np.abs(score[ok]).max())
    ok = ~np.isnan(ai)
    np.testing.assert_allclose(a.ai[ok], ai[ok], rtol=0, atol=1e-10 * np.abs(ai[ok]).max())


def _brute(spec, K, s):
    t = spec.terms[0]
    n = spec.n
    Z = np.zeros((n, t.q))
    Z[np.arange(n), t.codes] = 1.0
    Kl = K.loc[t.levels, t.levels].to_numpy()
    V = s[0] * Z @ Kl @ Z.T + s[1] * np.eye(n)
    Vi = np.linalg.inv(V)
    X, y = spec.X, spec.y
    cov_b = np.linalg.inv(X.T @ Vi @ X)
    P = Vi - Vi @ X @ cov_b @ X.T @ Vi
    return s[1] * P @ y, np.diag(cov_b)


def test_spectral_evaluation_carries_what_the_result_builder_reads(gblup):
    spec, K = gblup
    prepared = prepare(spec, "spectral")
    s = np.array([0.8, 1.1])
    ev = prepared.evaluate(s, derivatives=True, pev=True)
    resid, var_b = _brute(spec, K, s)
    np.testing.assert_allclose(ev.residuals, resid, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ev.fixed_var, var_b, rtol=1e-9)
    # the optimiser's evaluation: same numbers, bit for bit, and no solutions
    lean = prepared.evaluate(s, derivatives=True, solutions=False)
    assert lean.m2ll == ev.m2ll
    np.testing.assert_array_equal(lean.score, ev.score)
    np.testing.assert_array_equal(lean.ai, ev.ai)
    assert lean.fixed is None and lean.residuals is None and lean.blups == {}
    # σ²_g = 0: BLUPs and PEV exactly 0 (u = û = 0), not rounding noise
    zero = prepared.evaluate([0.0, 1.1], pev=True)
    assert not np.any(zero.blups["g"]) and not np.any(zero.pev["g"])
    assert not np.signbit(zero.blups["g"]).any()


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_search_profile_is_the_protocol_objective(gblup, method):
    spec, _ = gblup
    prepared = prepare(spec, "spectral")
    dof = spec.n - spec.p if method == "reml" else spec.n
    for log_h in (-2.0, 0.3, 1.5):
        val, se = prepared.profiled(log_h, method)
        theta = np.array([np.exp(log_h) * se, se])
        assert val == pytest.approx(prepared.evaluate(theta, method=method).m2ll, rel=1e-10)
        for f in (0.99, 1.01):  # σ̂²ₑ minimises −2 log L along σ²ₑ at fixed h
            assert prepared.evaluate(theta * f, method=method).m2ll > val
        assert se * dof > 0
    val0, se0 = prepared.profiled_at_zero(method)
    assert val0 == pytest.approx(prepared.evaluate([0.0, se0], method=method).m2ll, rel=1e-10)


def test_fit_runs_the_search_on_the_prepared_engine(gblup):
    spec, K = gblup
    sg, se, info = search(prepare(spec, "spectral"), "reml")
    assert info["converged"]
    d = pd.DataFrame({"g": spec.terms[0].levels[spec.terms[0].codes], "x": spec.X[:, 1], "y": spec.y})
    res = h.fit(FORMULA, d, cov={"g": K})
    assert res.solver == "spectral"
    # fit standardises y (henderson._scaling) and maps back: equal to rounding, not bit for bit
    np.testing.assert_allclose(res.sigma2.to_numpy(), [sg, se], rtol=1e-7)

"""A REML optimum with a singular residual Σ_e and a centred G (rank n − 1).

G's null vector 1 lies in the span of the intercepts, so at a singular Σ_e the stacked V is
singular while the REML likelihood (that of the error contrasts) is finite: written as
log|V| + log|X'V⁻¹X| + y'Py it cancels catastrophically. The spectral (tridiagonal) and
V-form engines must evaluate it exactly and the fit must converge there.

Reference: the REML likelihood of the error contrasts written out densely, −2 log L =
(N − p) log 2π + log|K'VK| + y'K(K'VK)⁻¹K'y + log|X'X| (K: an orthonormal basis of X's
orthogonal complement; the last term gives lme4's constant, Harville 1974), which needs
no V⁻¹, and its optimum by BFGS then Nelder–Mead over the Cholesky factors of Σ_g and Σ_e.

Tolerances: −2 log L at fixed θ to 1e-10 relative (dense float64 on N = 160); score and AI
to 1e-8 of their largest entry; optimum logL to 1e-6 between engines and the brute force
(BFGS gtol 1e-8 then Nelder–Mead on a likelihood of ~500 stops within ~1e-8).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.optimize as so
from conftest import dense_reml

import henderson as hd
from henderson.errors import BoundaryWarning, ConvergenceWarning
from henderson.multitrait.spectral import MultiTraitTridiagonal, vech_index


def case(seed=22, n=80, m=1500):
    """Two traits, m ≫ n unrelated genotypes (G ≈ I: Σ_g and Σ_e nearly confounded), G
    centred and scaled to mean diagonal 1. Seed 22: the REML optimum has rank(Σ_e) = 1
    (found by a search over seeds 0–39 with this code; the brute force confirms it)."""
    rng = np.random.default_rng(seed)
    W = rng.binomial(2, rng.uniform(0.1, 0.5, m), size=(n, m)).astype(float)
    W -= W.mean(0)
    K = W @ W.T / m
    K /= np.mean(np.diag(K))
    g = W @ rng.normal(size=(m, 2)) / np.sqrt(m)
    Y = 1 + g + 0.8 * rng.normal(size=(n, 2))
    return Y, K


def contrast_m2ll(Y, K, Sg, Se, derivatives=False):
    """−2 log L_REML on the error contrasts (module docstring); with ``derivatives`` also
    the score and AI over θ = (vech Σ_g, vech Σ_e) from P = K(K'VK)⁻¹K'."""
    n, t = Y.shape
    X = np.kron(np.eye(t), np.ones((n, 1)))
    y = Y.T.ravel()
    V = np.kron(Sg, K) + np.kron(Se, np.eye(n))
    Qx = np.linalg.qr(X, mode="complete")[0][:, t:]
    KVK = Qx.T @ V @ Qx
    c = np.linalg.cholesky(KVK)
    z = np.linalg.solve(c, Qx.T @ y)
    m2 = (n * t - t) * np.log(2 * np.pi) + 2 * np.log(np.diag(c)).sum() + z @ z + np.linalg.slogdet(X.T @ X)[1]
    if not derivatives:
        return m2
    P = Qx @ np.linalg.solve(KVK, Qx.T)
    Vs = []
    for B in (K, np.eye(n)):
        for k, l in vech_index(t):
            E = np.zeros((t, t))
            E[k, l] = E[l, k] = 1
            Vs.append(np.kron(E, B))
    Py = P @ y
    score = np.array([-0.5 * (np.trace(P @ Vj) - Py @ Vj @ Py) for Vj in Vs])
    ai = np.array([[0.5 * Py @ Vj @ P @ Vm @ Py for Vm in Vs] for Vj in Vs])
    return m2, score, ai


def brute_force(Y, K):
    """min −2 log L over the Cholesky factors of Σ_g and Σ_e: BFGS, then Nelder–Mead."""

    def unpack(v):
        L1, L2 = np.zeros((2, 2)), np.zeros((2, 2))
        L1[np.tril_indices(2)] = v[:3]
        L2[np.tril_indices(2)] = v[3:]
        return L1 @ L1.T, L2 @ L2.T

    def f(v):
        try:
            return contrast_m2ll(Y, K, *unpack(v))
        except np.linalg.LinAlgError:
            return np.inf

    s = np.sqrt(np.var(Y, axis=0) / 2)
    v0 = np.array([s[0], 0.0, s[1], s[0], 0.0, s[1]])
    best = so.minimize(f, v0, method="BFGS", options={"gtol": 1e-8, "maxiter": 3000})
    best = so.minimize(f, best.x, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxfev": 4000})
    return best.fun, unpack(best.x)


SG = np.array([[0.6, 0.2], [0.2, 0.4]])


def residuals():
    """Σ_e PD, exactly singular (rank 1) and 1e-9 from singular."""
    v = np.array([1.0, -0.7])
    sing = 0.9 * np.outer(v, v)
    return {"PD": np.array([[0.8, 0.1], [0.1, 0.5]]), "singular": sing, "near": sing + 1e-9 * np.eye(2)}


def vform_state(Y, K):
    from henderson.multitrait.general import build_terms, trait_designs_observed
    from henderson.multitrait.vform import MultiTraitVForm

    ids = [f"a{i}" for i in range(len(Y))]
    frame = pd.DataFrame({"id": ids, "y1": Y[:, 0], "y2": Y[:, 1]})
    terms = build_terms(frame, [("id", False)], {"id": pd.DataFrame(K, index=ids, columns=ids)}, {})
    Xs, *_ = trait_designs_observed(frame, ["y1", "y2"], "1")
    return MultiTraitVForm(Y, Xs, terms)


@pytest.mark.parametrize("which", ["PD", "singular", "near"])
def test_fixed_theta_equals_the_contrast_likelihood(which):
    Y, K = case()
    Se = residuals()[which]
    ref, score, ai = contrast_m2ll(Y, K, SG, Se, derivatives=True)
    if which == "PD":  # the reference itself against the textbook form where that is accurate
        assert dense_reml(Y, [np.ones((len(Y), 1))] * 2, K, SG, Se)[0] == pytest.approx(ref, rel=1e-10)
    st = MultiTraitTridiagonal(Y, [np.ones((len(Y), 1))] * 2, K, np.arange(len(Y)))
    assert st._n0 == 1  # G's null vector is deflated
    assert st.m2ll(SG, Se) == pytest.approx(ref, rel=1e-10)
    np.testing.assert_allclose(st.score(SG, Se)[0], score, atol=1e-8 * np.abs(score).max())
    np.testing.assert_allclose(st.average_information(SG, Se), ai, atol=1e-8 * np.abs(ai).max())
    vf = vform_state(Y, K)
    ev = vf.evaluate(vf.pack([SG], Se), derivatives=True)
    assert ev["m2ll"] == pytest.approx(ref, rel=1e-10)
    np.testing.assert_allclose(ev["score"], score, atol=1e-8 * np.abs(score).max())
    np.testing.assert_allclose(ev["ai"], ai, atol=1e-8 * np.abs(ai).max())


def test_textbook_form_is_inaccurate_near_the_singular_residual():
    """Why the engines do not evaluate log|V| + log|X'V⁻¹X| + y'Py as written: 1e-9 from
    the singular Σ_e the dense float64 textbook form is already off by more than 1e-6
    (this test documents the defect the engines avoid; it fails if numpy's dense path
    ever became exact there, which would make the deflation unnecessary, not wrong)."""
    Y, K = case()
    Se = residuals()["near"]
    ref = contrast_m2ll(Y, K, SG, Se)
    assert abs(dense_reml(Y, [np.ones((len(Y), 1))] * 2, K, SG, Se)[0] - ref) > 1e-6


def test_fit_converges_at_the_singular_residual_optimum():
    Y, K = case()
    ids = [f"a{i}" for i in range(len(Y))]
    frame = pd.DataFrame({"id": ids, "y1": Y[:, 0], "y2": Y[:, 1]})
    Kf = pd.DataFrame(K, index=ids, columns=ids)
    ref, (Sg_bf, Se_bf) = brute_force(Y, K)
    w = np.linalg.eigvalsh(Se_bf)
    assert w[0] < 1e-6 * w[1]  # the brute force finds the singular Σ_e too
    fits = {}
    for solver in ("auto", "vform"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            kw = {} if solver == "auto" else {"solver": solver}
            res = hd.fit("cbind(y1, y2) ~ 1 + (1|id)", frame, cov={"id": Kf}, **kw)
        assert not [c for c in caught if issubclass(c.category, ConvergenceWarning)], res.solver
        msgs = [str(c.message) for c in caught if issubclass(c.category, BoundaryWarning)]
        assert len(msgs) == 1 and "Residual covariance Σ is singular" in msgs[0], msgs
        assert res.converged and res.iterations < 60 and "Residual" in res.boundary, (res.solver, res.iterations)
        Se = res.covariances["Residual"].to_numpy()
        e = np.linalg.eigvalsh(Se)
        assert e[0] <= 1e-6 * e[1]  # rank 1 at the optimum
        assert -2 * res.loglik == pytest.approx(ref, abs=1e-6), res.solver
        fits[res.solver] = res
    assert set(fits) == {"multitrait-spectral", "multitrait-vform"}
    a, b = fits["multitrait-spectral"], fits["multitrait-vform"]
    assert a.loglik == pytest.approx(b.loglik, abs=1e-6)
    # the same point (scaled by the variances), and the brute force's
    for name, bf in (("id", Sg_bf), ("Residual", Se_bf)):
        x, z = a.covariances[name].to_numpy(), b.covariances[name].to_numpy()
        scale = np.sqrt(np.outer(np.diag(z), np.diag(z)))
        assert np.max(np.abs(x - z) / scale) < 1e-5
        assert np.max(np.abs(x - bf) / scale) < 1e-3


def test_mme_engine_hands_a_singular_residual_to_the_vform(monkeypatch):
    """The MME engine needs R₀⁻¹: at this optimum (rank-1 Σ_e) its −2 log L is off by ~1e-5
    (below the true optimum) at R₀'s smallest eigenvalue ~1e-8, where it stopped. When
    "auto" chose it (here by making the V-form rule decline, as it does with a K⁻¹ or more
    records than MME equations), the fit is finished by the V-form, with a note; the
    logL then equals the brute-force optimum to 1e-6 (module docstring)."""
    import henderson.multitrait.vform as vf

    monkeypatch.setattr(vf, "prefer_vform", lambda *a, **k: False)
    Y, K = case()
    ids = [f"a{i}" for i in range(len(Y))]
    frame = pd.DataFrame({"id": ids, "y1": Y[:, 0], "y2": Y[:, 1]})
    Kf = pd.DataFrame(K, index=ids, columns=ids)
    ref, _ = brute_force(Y, K)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = hd.fit("cbind(y1, y2) ~ 1 + (1|id)", frame, cov={"id": Kf}, solver="mme")
    assert not [c for c in caught if issubclass(c.category, ConvergenceWarning)]
    assert res.solver == "multitrait-vform" and res.converged
    assert any("MME engine" in n and "V-form" in n and "Residual" in n for n in res.notes), res.notes
    assert -2 * res.loglik == pytest.approx(ref, abs=1e-6)
    # forced onto the MME: a BoundaryWarning naming Residual and the engine, not silence
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = hd.fit("cbind(y1, y2) ~ 1 + (1|id)", frame, cov={"id": Kf}, solver="dense")
    assert res.solver == "multitrait-mme-dense"
    assert not [c for c in caught if issubclass(c.category, ConvergenceWarning)]
    msgs = [str(c.message) for c in caught if issubclass(c.category, BoundaryWarning)]
    assert any("Residual" in m and "MME engine" in m and "inaccurate" in m for m in msgs), msgs

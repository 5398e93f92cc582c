"""Multi-trait REML on the boundary and with a residual covariance that is not in the likelihood.

Every engine (spectral, V-form, dense MME) runs on the shared structured-model optimiser
(reml/general.py through multitrait/protocol.py). References: the REML likelihood of the
stacked observed values written out densely (V = Σ_g ⊗ K on the observed pairs + R₀ within
records) and maximised by scipy's BFGS over the Cholesky factors of Σ_g and Σ_e, an
independent optimiser on an independent likelihood.

Tolerances: logL to 1e-6 between engines and against BFGS (BFGS with gtol 1e-7 on a
likelihood of ~10³ stops within ~1e-9; the dense MME is evaluated at Σ + 1e-10·diag(s²),
which moves −2 log L by ~N·1e-10 ≈ 1e-8 at most); far fewer than 500 iterations (< 60).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.optimize as so

import henderson as hd
from henderson.errors import BoundaryWarning, FixedParameterWarning, ModelError
from henderson.multitrait.protocol import FixedZeroUnstructured


def stacked_m2ll(Y, K, codes, Sg, Se):
    """−2 log L_REML of the observed values (trait-major), an intercept per trait."""
    M = ~np.isnan(Y)
    t = Y.shape[1]
    rows = [np.flatnonzero(M[:, k]) for k in range(t)]
    y = np.concatenate([Y[r, k] for k, r in enumerate(rows)])
    N = len(y)
    V = np.zeros((N, N))
    X = np.zeros((N, t))
    o = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    for k in range(t):
        X[o[k] : o[k + 1], k] = 1.0
        for l in range(t):
            rk, rl = rows[k], rows[l]
            B = Sg[k, l] * K[np.ix_(codes[rk], codes[rl])] + Se[k, l] * (rk[:, None] == rl[None, :])
            V[o[k] : o[k + 1], o[l] : o[l + 1]] = B
    c = np.linalg.cholesky(V)
    Vi_X = np.linalg.solve(V, X)
    Vi_y = np.linalg.solve(V, y)
    XVX = X.T @ Vi_X
    b = np.linalg.solve(XVX, X.T @ Vi_y)
    ypy = y @ Vi_y - y @ Vi_X @ b
    return (N - t) * np.log(2 * np.pi) + 2 * np.log(np.diag(c)).sum() + np.linalg.slogdet(XVX)[1] + ypy


def _chol(v, t):
    L = np.zeros((t, t))
    L[np.tril_indices(t)] = v
    return L @ L.T


def brute_force(Y, K, codes, residual_diag=False):
    """min −2 log L by BFGS over the Cholesky factor of Σ_g and that of Σ_e (or log σ²ₑ per
    trait with ``residual_diag``: traits never recorded together)."""
    t = Y.shape[1]
    m = t * (t + 1) // 2
    var = np.nanvar(Y, axis=0)

    def unpack(v):
        Sg = _chol(v[:m], t)
        Se = np.diag(np.exp(v[m:])) if residual_diag else _chol(v[m:], t)
        return Sg, Se

    def f(v):
        try:
            return stacked_m2ll(Y, K, codes, *unpack(v))
        except np.linalg.LinAlgError:
            return np.inf

    L0 = np.sqrt(var / 2)
    g0 = np.diag(L0)[np.tril_indices(t)]
    v0 = np.concatenate([g0, np.log(var / 2) if residual_diag else g0])
    best = so.minimize(f, v0, method="BFGS", options={"gtol": 1e-7, "maxiter": 2000})
    best = so.minimize(f, best.x, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxfev": 4000})
    return best.fun, unpack(best.x)


def rg_one_case(n=100, seed=3):
    """Two traits with a true genetic correlation of 1 (g and 0.7 g): Σ_g estimated rank-deficient."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(n, 400))
    K = W @ W.T / 400
    g = np.linalg.cholesky(K + 1e-9 * np.eye(n)) @ rng.normal(size=n)
    Y = np.column_stack([g + rng.normal(size=n), 0.7 * g + 1.3 * rng.normal(size=n)])
    ids = [f"a{i}" for i in range(n)]
    frame = pd.DataFrame({"id": ids, "y1": Y[:, 0], "y2": Y[:, 1]})
    return frame, pd.DataFrame(K, index=ids, columns=ids), Y, K


def test_boundary_rg_one_every_engine_reaches_the_brute_force_optimum():
    frame, Kf, Y, K = rg_one_case()
    fits = {}
    for solver in ("auto", "vform", "dense"):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            kw = {} if solver == "auto" else {"solver": solver}
            res = hd.fit("cbind(y1, y2) ~ 1 + (1|id)", frame, cov={"id": Kf}, **kw)
        fits[res.solver] = res
        assert res.converged and res.iterations < 60, (res.solver, res.iterations)
        # reported as a rank-deficient genetic Σ, with the term and the pair at r = ±1
        assert "genetic" in res.boundary
        msgs = [str(x.message) for x in w if issubclass(x.category, BoundaryWarning)]
        assert len(msgs) == 1 and "term 'id'" in msgs[0] and "correlation ±1: y2/y1 r = +1.0" in msgs[0]
        assert any("term 'id'" in note for note in res.notes)
        assert np.isnan(res.correlation_se["id"].loc["y1", "y2"])
    assert set(fits) == {"multitrait-spectral", "multitrait-vform", "multitrait-mme-dense"}
    ref, (Sg, Se) = brute_force(Y, K, np.arange(len(Y)))
    assert np.linalg.eigvalsh(Sg)[0] < 1e-6 * np.trace(Sg)  # the brute force is on the boundary too
    # the MME engine carries Σ_g⁻¹, so it only approaches a rank-deficient Σ_g: it stops
    # (flat on the boundary) within 5e-6 of −2 log L (measured 0.8e-6, and 2.0e-6 since
    # the optimiser's damping keeps the curvature term: the stop depends on the path);
    # the spectral and V-form engines evaluate the singular Σ_g exactly: 1e-6
    for res in fits.values():
        tol = 5e-6 if res.solver == "multitrait-mme-dense" else 1e-6
        assert -2 * res.loglik == pytest.approx(ref, abs=tol), res.solver
        assert -2 * res.loglik <= ref + tol
    lls = [r.loglik for r in fits.values() if r.solver != "multitrait-mme-dense"]
    assert max(lls) - min(lls) < 1e-6
    # spectral and V-form evaluate Σ_g singular exactly: the same point to 1e-6 (scaled)
    a, b = fits["multitrait-spectral"], fits["multitrait-vform"]
    for name in ("id", "Residual"):
        x, z = a.covariances[name].to_numpy(), b.covariances[name].to_numpy()
        assert np.max(np.abs(x - z) / np.sqrt(np.outer(np.diag(z), np.diag(z)))) < 1e-6


def disjoint_case(n=120, seed=7):
    """y1 on the first half of the individuals, y2 on the second: related through G only."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(n, 300))
    K = W @ W.T / 300
    G = np.linalg.cholesky(K + 1e-9 * np.eye(n)) @ rng.normal(size=(n, 2)) @ np.linalg.cholesky([[1, 0.6], [0.6, 1]]).T
    Y = G + rng.normal(size=(n, 2))
    Y[: n // 2, 1] = np.nan
    Y[n // 2 :, 0] = np.nan
    ids = [f"a{i}" for i in range(n)]
    frame = pd.DataFrame({"id": ids, "y1": Y[:, 0], "y2": Y[:, 1]})
    return frame, pd.DataFrame(K, index=ids, columns=ids), Y, K


def test_residual_covariance_of_traits_never_together_is_fixed_at_zero():
    frame, Kf, Y, K = disjoint_case()
    ref, _ = brute_force(Y, K, np.arange(len(Y)), residual_diag=True)
    fits = []
    for solver in ("vform", "dense"):
        with pytest.warns(FixedParameterWarning, match="residual covariance fixed at 0 for traits 'y1' and 'y2'"):
            res = hd.fit("cbind(y1, y2) ~ 1 + (1|id)", frame, cov={"id": Kf}, solver=solver)
        assert res.converged and res.iterations < 60
        assert res.covariances["Residual"].loc["y2", "y1"] == 0.0
        assert any("fixed at 0 for traits 'y1' and 'y2'" in note for note in res.notes)
        vc = res.variance_components
        assert np.isnan(vc.loc["Residual:y2:y1", "se"])
        assert np.isfinite(vc.drop("Residual:y2:y1")["se"]).all()  # the AI of the free parameters is regular
        assert -2 * res.loglik == pytest.approx(ref, abs=1e-6)
        fits.append(res)
    assert fits[0].loglik == pytest.approx(fits[1].loglik, abs=1e-6)


def test_fixed_zero_structure_keeps_its_zeros_and_round_trips():
    # three traits: 0/2 never together (the residual's (2, 0) entry fixed at 0)
    st = FixedZeroUnstructured(["a", "b", "c"], [(2, 0)])
    rng = np.random.default_rng(0)
    for _ in range(20):
        phi = rng.normal(size=st.n_theta)
        theta = st.from_phi(phi)
        S = st.sigma(theta)
        assert S[2, 0] == 0.0 and np.linalg.eigvalsh(S)[0] >= -1e-12
        np.testing.assert_allclose(st.from_phi(st.to_phi(theta)), theta, rtol=1e-10, atol=1e-12)
    # a pattern that needs another trait order: (1, 0) and (2, 1) fixed, 0/2 free
    st = FixedZeroUnstructured(["a", "b", "c"], [(1, 0), (2, 1)])
    theta = st.from_phi(rng.normal(size=st.n_theta))
    S = st.sigma(theta)
    assert S[1, 0] == 0.0 and S[2, 1] == 0.0
    np.testing.assert_allclose(st.from_phi(st.to_phi(theta)), theta, rtol=1e-10, atol=1e-12)


def test_vform_non_psd_kernel_names_the_term():
    frame, Kf, *_ = disjoint_case(n=60)
    bad = Kf - 0.5 * np.eye(len(Kf))  # eigenvalues down to about −0.5 + (1 − √(60/300))²·…: clearly negative
    assert np.linalg.eigvalsh(bad.to_numpy())[0] < -0.1
    with pytest.raises(
        ModelError, match=r"covariance given for 'id' is not positive semi-definite \(smallest eigenvalue -"
    ):
        hd.fit("cbind(y1, y2) ~ 1 + (1|id)", frame, cov={"id": bad}, solver="vform")

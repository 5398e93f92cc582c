"""Six traits: no NaN, and a local REML optimum of a brute-force likelihood (a field
complaint: multi-trait tools return NaN, or hang, beyond three traits).

Simulated GBLUP, 150 individuals with a genomic K, six traits (42 (co)variances), once
complete (the rotated engine, ``multitrait-spectral``) and once with 25 % of the values
missing (the observation-space engine, ``multitrait-vform``). With 150 individuals a
6 × 6 residual covariance usually ends rank-deficient (a BoundaryWarning, allowed here);
the fits must converge without a ConvergenceWarning. The reference is written here with
numpy: V = Σ_g ⊗ K + Σ_e ⊗ I on the observed values (trait-major), one intercept per trait,
−2 log L_REML = (N − p) log 2π + log|V| + log|X'V⁻¹X| + y'Py.

- The fit's log-likelihood equals the brute force at the fitted Σ's to 1e-9 relative
  (the engines agree with brute force to ~1e-12 at fixed θ; 1e-9 leaves room for
  rounding through the result tables);
- the fitted point is a local optimum in the cone: moving the factors L of Σ = LL' along
  20 random directions (which reach every PSD neighbour, also off the boundary) by 1e-3 of
  the scale never lowers the brute-force −2 log L by more than 1e-6 (a first-order miss
  with gradient g would lower it by ~|g|·1e-3);
- nothing is NaN in Σ, the correlations or the BLUPs and PEVs.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import henderson as hd

T = 6
TRAITS = [f"y{k + 1}" for k in range(T)]
LOG2PI = np.log(2 * np.pi)


def _case(missing: float, seed: int = 5):
    rng = np.random.default_rng(seed)
    n, m = 150, 500
    M = rng.binomial(2, rng.uniform(0.1, 0.9, m), size=(n, m)).astype(float)
    W = M - M.mean(0)
    K = W @ W.T / np.sum(M.mean(0) * (1 - M.mean(0) / 2)) + 0.05 * np.eye(n)
    r = 0.3 ** np.abs(np.subtract.outer(np.arange(T), np.arange(T)))  # AR(1)-like correlations
    sd_g, sd_e = rng.uniform(1.4, 2.0, T), rng.uniform(0.7, 1.0, T)  # h² ≈ 0.7–0.9
    Sg, Se = r * np.outer(sd_g, sd_g), (0.5 * r + 0.5 * np.eye(T)) * np.outer(sd_e, sd_e)
    U = np.linalg.cholesky(K) @ rng.normal(size=(n, T)) @ np.linalg.cholesky(Sg).T
    E = rng.normal(size=(n, T)) @ np.linalg.cholesky(Se).T
    Y = 10 + U + E
    Y[rng.random((n, T)) < missing] = np.nan
    ids = [f"i{j:03d}" for j in range(n)]
    frame = pd.DataFrame(Y, columns=TRAITS).assign(id=ids)
    return frame, pd.DataFrame(K, index=ids, columns=ids), Y, K


def _brute_m2ll(Y, K, Sg, Se):
    obs = ~np.isnan(Y.T)  # trait-major
    tr, ind = np.nonzero(obs)
    y = Y.T[obs]
    V = Sg[tr[:, None], tr[None, :]] * K[ind[:, None], ind[None, :]] + Se[tr[:, None], tr[None, :]] * (
        ind[:, None] == ind[None, :]
    )
    X = (tr[:, None] == np.arange(T)[None, :]).astype(float)
    Vi = np.linalg.inv(V)
    XVX = X.T @ Vi @ X
    P = Vi - Vi @ X @ np.linalg.solve(XVX, X.T @ Vi)
    return (len(y) - T) * LOG2PI + np.linalg.slogdet(V)[1] + np.linalg.slogdet(XVX)[1] + y @ P @ y


def _factor(S):
    """A square root L (LL' = S) of a positive semi-definite S, from its eigenpairs."""
    w, v = np.linalg.eigh(S)
    return v * np.sqrt(np.clip(w, 0, None))


@pytest.mark.parametrize(
    "missing, engine, seed",
    # seed 2 with missing values: before the optimiser damped H_φ with its curvature term
    # kept, the V-form stopped "stuck" (ConvergenceWarning) 1.4e-3 of −2 log L short
    [(0.0, "multitrait-spectral", 1), (0.25, "multitrait-vform", 4), (0.25, "multitrait-vform", 2)],
)
def test_six_traits_reach_the_brute_force_optimum_without_nan(missing, engine, seed):
    frame, Kdf, Y, K = _case(missing, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error", hd.ConvergenceWarning)
        warnings.simplefilter("ignore", hd.BoundaryWarning)  # six traits on 150 individuals: often there
        res = hd.fit(f"cbind({', '.join(TRAITS)}) ~ 1 + (1|id)", frame, cov={"id": Kdf})
    assert res.solver == engine and res.converged
    Sg = res.covariances["id"].loc[TRAITS, TRAITS].to_numpy()
    Se = res.covariances["Residual"].loc[TRAITS, TRAITS].to_numpy()
    assert np.linalg.eigvalsh(Sg).min() > -1e-10 and np.linalg.eigvalsh(Se).min() > -1e-10
    m2ll = _brute_m2ll(Y, K, Sg, Se)
    assert -2 * res.loglik == pytest.approx(m2ll, rel=1e-9)

    # a local optimum in the cone: Σ = LL' moved along random directions of L (which reach
    # every PSD neighbour, off the boundary too) never lowers the brute-force −2 log L
    # beyond second-order terms; a first-order miss (gradient g) would lower it by ~|g|δ
    rng = np.random.default_rng(0)
    Lg, Le = _factor(Sg), _factor(Se)
    scale = np.sqrt(np.mean(np.concatenate([np.diag(Sg), np.diag(Se)])))
    for _ in range(10):
        for delta in (1e-3, -1e-3):
            Dg, De = (delta * scale * rng.normal(size=(T, T)) for _ in range(2))
            moved = _brute_m2ll(Y, K, (Lg + Dg) @ (Lg + Dg).T, (Le + De) @ (Le + De).T)
            assert moved > m2ll - 1e-6, moved - m2ll

    for tab in (res.covariances["id"], res.correlations["id"], res.covariances["Residual"], res.blups["id"]):
        assert not tab.select_dtypes("number").isna().to_numpy().any(), tab
    assert len(res.blups["id"]) == 150 * T

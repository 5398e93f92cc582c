"""The structured-model optimiser when the φ-Hessian is indefinite: damping keeps the
curvature of θ(φ).

On a 60-line × 3-environment genomic MET (tests/solvers/test_cform_residual_to_zero.py's
simulator, seed 2) under REML, the Newton matrix in φ, H_φ = J'AIJ − Σⱼ s_θⱼ ∂²θⱼ/∂φ∂φ',
is indefinite at the start. The Levenberg–Marquardt fallback used J'AIJ + μI, which drops
the curvature term: the step of a Cholesky pivot heading for 0 was then ~10⁴ times too
long, every halving failed, and EM crawled for 200 iterations (ConvergenceWarning) at
−2 log L 391.30, 31 units above the optimum, on every engine. Damping H_φ itself
(H_φ + μI) converges in ~11 AI iterations.

Reference: the REML optimum of a brute-force dense likelihood written here (V = Σ ⊗ G on
the observed cells + σ²ₑI; X the Env design), maximised by L-BFGS-B over the Cholesky
factor of Σ and σ²ₑ ≥ 0 from the fit's point and from a default start; the fits' log-
likelihood must equal its optimum to 1e-6 (both sit at σ²ₑ → 0, where −2 log L is flat
to ~1e-7 in σ²ₑ) and the V-form's and dense C-form's must agree to 1e-6.
"""

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

import henderson as h

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "solvers"))
from test_cform_residual_to_zero import _genomic_met  # noqa: E402

FORMULA = "y ~ Env + us(0 + Env|Name)"
ENVS = ["E0", "E1", "E2"]


def _brute_reml_optimum(d, G, start_sigma, start_se):
    y = d["y"].to_numpy()
    n = len(y)
    X = np.c_[np.ones(n), (d["Env"].to_numpy()[:, None] == np.array(ENVS[1:])[None, :]).astype(float)]
    e = pd.Index(ENVS).get_indexer(d["Env"])
    Gl = G.loc[d["Name"], d["Name"]].to_numpy()
    il = np.tril_indices(3)

    def m2ll(x):
        L = np.zeros((3, 3))
        L[il] = x[:6]
        S = L @ L.T
        V = S[e[:, None], e[None, :]] * Gl + x[6] * np.eye(n)
        c = np.linalg.cholesky(V)
        Vi = np.linalg.inv(V)
        XVX = X.T @ Vi @ X
        P = Vi - Vi @ X @ np.linalg.solve(XVX, X.T @ Vi)
        return (n - 3) * np.log(2 * np.pi) + 2 * np.log(np.diag(c)).sum() + np.linalg.slogdet(XVX)[1] + y @ P @ y

    best = np.inf
    for S0, se0 in ((start_sigma, start_se), (np.eye(3), 1.0)):
        w, Q = np.linalg.eigh(S0)
        L0 = np.linalg.cholesky((Q * np.maximum(w, 1e-6)) @ Q.T)
        x0 = np.r_[L0[il], max(se0, 1e-6)]
        bounds = [(None, None)] * 6 + [(0.0, None)]
        r = minimize(m2ll, x0, method="L-BFGS-B", bounds=bounds, options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 5000})
        best = min(best, r.fun)
    return -best / 2


@pytest.mark.parametrize("solver", ["vform", "dense"])
def test_indefinite_newton_matrix_still_converges_to_the_optimum(solver):
    d, G = _genomic_met(2, lines=60, envs=3, snps=300)
    with warnings.catch_warnings():
        warnings.simplefilter("error", h.ConvergenceWarning)
        warnings.simplefilter("ignore", h.BoundaryWarning)
        res = h.fit(FORMULA, d, cov={"Name": G}, method="reml", solver=solver)
    assert res.converged and res.iterations < 40
    S = res.covariances["Name"].loc[ENVS, ENVS].to_numpy()
    se = float(res.covariances["Residual"].to_numpy().max())
    assert res.loglik == pytest.approx(_brute_reml_optimum(d, G, S, se), abs=1e-6)

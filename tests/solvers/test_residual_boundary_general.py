"""Issue 10: a residual variance estimated at ~0 by the dense and sparse solvers
(several random terms) is a boundary estimate with one BoundaryWarning, as in the
spectral solver (reml/residual_boundary.py), not an error.

The data: y drawn from K (a genomic-like kernel, full rank) plus a group effect, with
no residual noise, so REML puts σ²ₑ on its boundary 0. The reference is an independent
brute-force REML with σ²ₑ = 0: −2logL = log|V| + log|X'V⁻¹X| + y'Py over
V = σ²_id K + σ²_grp ZZ', minimised by Nelder-Mead (scipy).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

import henderson
from henderson.errors import BoundaryWarning, ConvergenceWarning


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    n = 120
    ids = [f"i{i}" for i in range(n)]
    M = rng.binomial(2, 0.4, (n, 500)).astype(float)
    M -= M.mean(0)
    K = M @ M.T / M.var(0).sum() + 0.01 * np.eye(n)
    grp = np.repeat(np.arange(12), 10)
    y = np.linalg.cholesky(K) @ rng.normal(size=n) * 1.5 + rng.normal(size=12)[grp]
    frame = pd.DataFrame({"y": y, "id": ids, "grp": [f"g{x}" for x in grp]})
    Z, X = np.eye(12)[grp], np.ones((n, 1))

    def m2ll(logs):
        a, b = np.exp(logs)
        V = a * K + b * Z @ Z.T
        Vi = np.linalg.inv(V)
        XVX = X.T @ Vi @ X
        P = Vi - Vi @ X @ np.linalg.solve(XVX, X.T @ Vi)
        return np.linalg.slogdet(V)[1] + np.linalg.slogdet(XVX)[1] + y @ P @ y

    ref = minimize(m2ll, [0.0, 0.0], method="Nelder-Mead", options=dict(xatol=1e-10, fatol=1e-12, maxiter=5000))
    # the fourth: −2 log L_REML at the optimum with lme4's constant (n − p) log 2π
    return frame, pd.DataFrame(K, index=ids, columns=ids), np.exp(ref.x), ref.fun + (n - 1) * np.log(2 * np.pi)


@pytest.mark.parametrize("solver", ["dense", "sparse"])
def test_residual_at_zero_is_a_boundary_estimate(data, solver):
    frame, K, ref, ref_m2ll = data
    # the sparse solver takes the covariance through its inverse
    kw = (
        {"cov": {"id": K}}
        if solver == "dense"
        else {"cov_inverse": {"id": pd.DataFrame(np.linalg.inv(K.to_numpy()), index=K.index, columns=K.columns)}}
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = henderson.fit("y ~ 1 + (1|id) + (1|grp)", frame, solver=solver, **kw)
    boundary = [w for w in caught if issubclass(w.category, BoundaryWarning)]
    assert len(boundary) == 1 and "residual variance estimated at the boundary" in str(boundary[0].message)
    assert not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    vc = res.variance_components
    assert res.converged is False
    assert bool(vc.loc["Residual", "boundary"]) and np.isnan(vc.loc["Residual", "se"])
    assert vc.loc["Residual", "variance"] < 1e-5 * vc["variance"].sum()
    # the other components are the boundary optimum: brute-force REML at σ²ₑ = 0.
    # rtol 1e-5: Nelder-Mead stops at 1e-10 in log σ²; σ²ₑ is held at ~1e-6 of the total
    np.testing.assert_allclose(vc.loc[["id", "grp"], "variance"], ref, rtol=1e-5)
    assert any("boundary" in n for n in res.notes)


@pytest.mark.parametrize(
    "solver, via, rtol",
    [("vform", "cov", 1e-5), ("dense", "cov", 1e-3), ("sparse", "cov", 1e-4), ("sparse", "cov_inverse", 1e-4)],
)
def test_general_engine_stops_at_a_residual_variance_at_zero(data, solver, via, rtol):
    """The general engine flags a residual variance at 0 as a boundary and stops there: a
    scalar residual was compared only with itself, so the 'flat on the boundary' rule never
    fired and the fit ran to max_iter with a ConvergenceWarning. The V-form is exact at
    σ²ₑ = 0; the C-forms (dense, sparse; K or K⁻¹) refuse points whose σ²ₑ they cannot
    resolve and stop near the smallest they can (σ²ₑ ~ 2.5e-8 of a total ~2.5 here).
    Reference: the same brute-force REML at σ²ₑ = 0: logLik to 1e-6 absolute (the
    likelihood's slope in σ²ₑ times the σ²ₑ a C-form stops at; measured ≤ 1.2e-7), the
    variances to 1e-5 relative for the V-form (measured 1.2e-8), 1e-4 for the sparse
    C-form (with K 3.7e-5 since the optimiser damps its Newton matrix with the curvature
    kept, 1.5e-7 before; with K⁻¹ 9.4e-6) and 1e-3 for the dense C-form (2.3e-4): the
    C-forms stop where the likelihood is flat to ~1e-7 along the id/grp trade-off, so
    where exactly depends on the path."""
    frame, K, ref, ref_m2ll = data
    Ki = pd.DataFrame(np.linalg.inv(K.to_numpy()), index=K.index, columns=K.columns)
    kw = {"cov": {"id": K}} if via == "cov" else {"cov_inverse": {"id": Ki}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # weights (all 1: the same model) send it to the general engine
        res = henderson.fit("y ~ 1 + (1|id) + (1|grp)", frame.assign(w=1.0), weights="w", solver=solver, **kw)
    assert res.solver == f"{solver}-general"
    assert not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    assert any(issubclass(w.category, BoundaryWarning) and "'Residual'" in str(w.message) for w in caught)
    vc = res.variance_components
    assert bool(vc.loc["Residual", "boundary"])
    assert vc.loc["Residual", "estimate"] < 1e-5 * vc["estimate"].sum()
    assert res.iterations < 50
    assert abs(res.loglik + 0.5 * ref_m2ll) < 1e-6
    np.testing.assert_allclose(vc.loc[["id", "grp"], "estimate"], ref, rtol=rtol)

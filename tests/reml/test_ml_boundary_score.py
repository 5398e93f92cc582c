"""ML fits whose optimum has a variance at 0 stop there (the re-entry test uses ML's score).

The optimiser holds a term at σ²ₖ = 0 and brings it back only if the score there is
positive. Under ML that score has V⁻¹ in the trace, not REML's P (solvers/dense.py
``boundary_score``). Before, the dense and sparse MME used REML's score in ML fits: on
this data set (seed 6) REML's score at σ²_g = 0 is positive while ML's is negative, so the
term was released, driven back to 0, released again... — 200 iterations, a
ConvergenceWarning and a log-likelihood 4e-5 below the optimum. Reference: the ML optimum
of the brute-force dense likelihood (n = 60) by L-BFGS-B from three starts, tolerances
1e-15 (its log-likelihood is exact to ~1e-9; the comparison is at 1e-7).
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

import henderson as h
from henderson.errors import ConvergenceWarning


def _data(seed=6, n=60):
    rng = np.random.default_rng(seed)
    d = pd.DataFrame(
        {
            "g": rng.choice([f"G{i}" for i in range(6)], n),  # no variance in truth
            "a": rng.choice([f"A{i}" for i in range(15)], n),
            "x": rng.normal(size=n),
        }
    )
    ua = 0.8 * rng.normal(size=15)
    d["y"] = 1 + 0.3 * d["x"] + ua[d["a"].str[1:].astype(int)] + rng.normal(size=n)
    return d


def _ml_optimum(d):
    y = d["y"].to_numpy()
    n = len(y)
    X = np.c_[np.ones(n), d["x"]]
    Zg, Za = (pd.get_dummies(d[c]).to_numpy(float) for c in ("g", "a"))

    def m2ll(s):
        V = s[0] * Zg @ Zg.T + s[1] * Za @ Za.T + s[2] * np.eye(n)
        Vi = np.linalg.inv(V)
        e = y - X @ np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ y)
        return np.linalg.slogdet(V)[1] + e @ Vi @ e + n * np.log(2 * np.pi)

    opts = {"ftol": 1e-15, "gtol": 1e-10}
    bounds = [(0, None), (0, None), (1e-6, None)]
    runs = [
        minimize(m2ll, x0, method="L-BFGS-B", bounds=bounds, options=opts)
        for x0 in ([0.1, 0.5, 1], [0.5, 0.5, 1], [0.01, 1, 1])
    ]
    best = min(runs, key=lambda r: r.fun)
    return -best.fun / 2, best.x


@pytest.mark.parametrize("solver", ["dense", "sparse"])
def test_ml_fit_stops_at_a_variance_at_zero(solver):
    d = _data()
    loglik, sigma2 = _ml_optimum(d)
    assert sigma2[0] == 0.0  # the reference optimum is on the boundary
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        warnings.simplefilter("ignore", h.BoundaryWarning)
        res = h.fit("y ~ 1 + x + (1|g) + (1|a)", d, method="ml", solver=solver)
    assert res.converged and res.iterations < 30
    assert res.loglik == pytest.approx(loglik, abs=1e-7)
    np.testing.assert_allclose(res.variance_components["variance"].to_numpy(), sigma2, atol=1e-4)
    assert res.variance_components["variance"].iloc[0] == 0.0

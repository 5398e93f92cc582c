"""The score of a variance held at 0 under ML and REML, against brute-force dense V algebra.

The single-trait optimiser (``reml/optimize.py``, ``_release_boundary``) brings a term
held at σ²ₖ = 0 back when ``boundary_score`` is positive. The score there is

    ∂ℓ/∂σ²ₖ = −½[tr(W Vₖ) − y'P Vₖ P y],   Vₖ = ZₖKₖZₖ',   W = P (REML) or V⁻¹ (ML),

(Py = V⁻¹(y − Xb̂) in both; ML does not integrate b out, so its trace has no X-projection).
The dense and sparse MME used to return the REML score under ML (P in the trace): 15 %
off here, and on the data of the last test, where ML's score at 0 is negative and REML's
positive, the optimiser released the term, saw it fall back to 0, and looped until
max_iter (ConvergenceWarning, ``converged=False``).

Reference: V = Σ σ²ₖZₖKₖZₖ' + σ²ₑI formed densely (n ≤ 120), the analytic score above,
and as a check of that formula, a one-sided second-order finite difference
(−3ℓ(0) + 4ℓ(h) − ℓ(2h))/2h of the brute-force log-likelihood, h = 10⁻⁵ (truncation
O(h²) ~ 10⁻⁸ of the score, rounding ~10⁻¹² · |ℓ|/h): formula and difference to 1e-6.
Tolerances against the engines: dense MME and V-form 1e-8 relative (exact formulas,
rounding of n ≤ 120 solves); sparse MME 1e-8 relative (its score at 0 is a Richardson
extrapolation from σ²ₖ = ε, 2ε, 4ε, measured ~1e-9 here); the spectral solver's
score at σ²_g = 0 (its own evaluate) 1e-8. The fit: −2 log L at the optimum against
scipy's L-BFGS-B on the brute-force ML likelihood, 1e-6 relative on the logLik (the
reference optimiser's own tolerance), the boundary term exactly 0.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.optimize as so

import henderson as h
from henderson.errors import ConvergenceWarning
from henderson.solvers.protocol import Prepared

LOG2PI = np.log(2 * np.pi)


def _data(seed, n=90, groups=12, sg=0.4):
    """y ~ x + (1|g) + (1|b): b has a real variance, g little or none."""
    rng = np.random.default_rng(seed)
    d = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "g": rng.choice([f"g{i:02d}" for i in range(groups)], n),
            "b": rng.choice(list("pqrstuvw"), n),
        }
    )
    bi = pd.Index(sorted(d["b"].unique())).get_indexer(d["b"])
    gi = pd.Index(sorted(d["g"].unique())).get_indexer(d["g"])
    d["y"] = 1 + 0.5 * d["x"] + rng.normal(size=8)[bi] + sg * rng.normal(size=groups)[gi] + rng.normal(size=n)
    return d


def _incidence(col):
    lev = sorted(col.unique())
    Z = np.zeros((len(col), len(lev)))
    Z[np.arange(len(col)), pd.Index(lev).get_indexer(col)] = 1.0
    return Z


def _pieces(d, K=None):
    """y, X and the Vₖ (then I) of y ~ x + (1|g) [+ (1|b)] by hand."""
    n = len(d)
    X = np.column_stack([np.ones(n), d["x"].to_numpy()])
    Zg = _incidence(d["g"])
    Vg = Zg @ Zg.T if K is None else Zg @ K @ Zg.T
    Vk = [Vg] + ([_incidence(d["b"]) @ _incidence(d["b"]).T] if "b" in d else []) + [np.eye(n)]
    return d["y"].to_numpy(), X, Vk


def _m2ll(s, y, X, Vk, method):
    """−2 log L (lme4's constants) by dense algebra on V."""
    n, p = X.shape
    V = sum(a * M for a, M in zip(s, Vk))
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    e = y - X @ np.linalg.solve(XtViX, X.T @ Vi @ y)
    if method == "ml":
        return n * LOG2PI + np.linalg.slogdet(V)[1] + e @ Vi @ e
    return (n - p) * LOG2PI + np.linalg.slogdet(V)[1] + np.linalg.slogdet(XtViX)[1] + e @ Vi @ e


def _score(s, y, X, Vk, k, method):
    """−½[tr(WVₖ) − y'PVₖPy], W = P (REML) or V⁻¹ (ML)."""
    V = sum(a * M for a, M in zip(s, Vk))
    Vi = np.linalg.inv(V)
    P = Vi - Vi @ X @ np.linalg.solve(X.T @ Vi @ X, X.T @ Vi)
    Py = P @ y
    W = P if method == "reml" else Vi
    return -0.5 * (np.trace(W @ Vk[k]) - Py @ Vk[k] @ Py)


def _finite_difference(s, y, X, Vk, k, method, h=1e-5):
    def ell(v):
        t = np.array(s, float)
        t[k] = v
        return -0.5 * _m2ll(t, y, X, Vk, method)

    return (-3 * ell(0.0) + 4 * ell(h) - ell(2 * h)) / (2 * h)


@pytest.fixture(scope="module")
def two_terms():
    d = _data(3)
    return d, _pieces(d)


@pytest.mark.parametrize("method", ["reml", "ml"])
@pytest.mark.parametrize("solver", ["dense", "sparse"])
@pytest.mark.parametrize("k", [0, 1])
def test_mme_boundary_score_is_the_methods_score_at_zero(two_terms, solver, method, k):
    # k = 0: g (15 levels) at 0; k = 1: b at 0 with g in the MME, where the dense MME
    # eliminate g's diagonal block first (the C_zz solve through that block)
    d, (y, X, Vk) = two_terms
    s = np.array([0.8, 0.8, 1.1])
    s[k] = 0.0
    ref = _score(s, y, X, Vk, k, method)
    assert ref == pytest.approx(_finite_difference(s, y, X, Vk, k, method), rel=1e-6)
    prepared = Prepared.of(h.prepare("y ~ x + (1|g) + (1|b)", d, solver=solver))
    ev = prepared.evaluate(s, method=method, derivatives=True)
    assert list(prepared.active(ev)) == [k != 0, k != 1]
    score, ai = prepared.boundary_score(ev, k)
    assert score == pytest.approx(ref, rel=1e-8)
    # the two scores differ by ½tr(V⁻¹X(X'V⁻¹X)⁻¹X'V⁻¹Vₖ) > 0 (15 % of the score at k = 0,
    # 0.3 % at k = 1): far beyond the tolerance, a test that can tell them apart
    other = _score(s, y, X, Vk, k, "ml" if method == "reml" else "reml")
    assert abs(other - ref) > 1e-3 * abs(ref)


def test_spectral_and_dense_agree_at_zero_under_ml():
    # one kernel: the spectral solver's own ML score at σ²_g = 0 and the dense MME's
    # boundary score (the term dropped), both against V algebra
    rng = np.random.default_rng(7)
    q, n = 30, 100
    B = rng.normal(size=(q, q // 2))
    ids = [f"L{i:02d}" for i in range(q)]
    K = B @ B.T / (q // 2) + 0.1 * np.eye(q)
    d = pd.DataFrame({"g": rng.choice(ids, n), "x": rng.normal(size=n)})
    d["y"] = 1.0 + 0.5 * d["x"] + rng.normal(size=n)
    Kdf = pd.DataFrame(K, index=ids, columns=ids)
    levels = sorted(d["g"].unique())
    y, X, Vk = _pieces(d, Kdf.loc[levels, levels].to_numpy())
    s = np.array([0.0, 1.3])
    for method in ("reml", "ml"):
        ref = _score(s, y, X, Vk, 0, method)
        assert ref == pytest.approx(_finite_difference(s, y, X, Vk, 0, method), rel=1e-6)
        spectral = Prepared.of(h.prepare("y ~ x + (1|g)", d, cov={"g": Kdf}, solver="spectral"))
        dense = Prepared.of(h.prepare("y ~ x + (1|g)", d, cov={"g": Kdf}, solver="dense"))
        assert spectral.evaluate(s, method=method, derivatives=True).score[0] == pytest.approx(ref, rel=1e-8)
        ev = dense.evaluate(s, method=method, derivatives=True)
        assert dense.boundary_score(ev, 0)[0] == pytest.approx(ref, rel=1e-8)


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_vform_score_with_a_variance_at_zero(method):
    # the structured V-form evaluates at a variance of 0 itself (the C-forms need Σ⁻¹)
    rng = np.random.default_rng(3)
    n = 120
    d = pd.DataFrame({"x": rng.normal(size=n), "g": rng.choice([f"g{i}" for i in range(15)], n)})
    d["e"] = rng.choice(["A", "B"], n)
    d["y"] = 1 + 0.5 * d["x"] + rng.normal(size=n)
    state = h.prepare("y ~ x + e + diag(0 + e|g)", d, solver="vform")
    assert list(state.spec.theta_names) == ["g:A:A", "g:B:B", "Residual"]
    Zg = _incidence(d["g"])
    E = _incidence(d["e"])
    X = np.column_stack([np.ones(n), d["x"], E[:, 1]])
    Vk = [(E[:, [a]] * Zg) @ (E[:, [a]] * Zg).T for a in range(2)] + [np.eye(n)]
    theta = np.array([0.0, 0.7, 1.1])
    y = d["y"].to_numpy()
    ev = state.evaluate(theta, method=method, derivatives=True)
    for k in range(3):
        ref = _score(theta, y, X, Vk, k, method)
        assert ev.score[k] == pytest.approx(ref, rel=1e-8)
    assert _score(theta, y, X, Vk, 0, method) == pytest.approx(_finite_difference(theta, y, X, Vk, 0, method), rel=1e-6)


@pytest.mark.parametrize("solver", ["dense", "sparse"])
def test_ml_fit_stops_at_the_boundary(solver):
    # seed 27: at the ML optimum σ²_g = 0 with ML score −0.36 there, but the REML-P
    # score +0.49: the old boundary score released g, AI drove it back to 0, until max_iter
    d = _data(27)
    y, X, Vk = _pieces(d)
    best = min(
        (
            so.minimize(
                lambda t: _m2ll(t, y, X, Vk, "ml"),
                start,
                bounds=[(0, None), (0, None), (1e-6, None)],
                method="L-BFGS-B",
                options=dict(ftol=1e-15, gtol=1e-12),
            )
            for start in ([0.3, 0.5, 1.0], [1.0, 2.0, 0.5])
        ),
        key=lambda r: r.fun,
    )
    assert best.x[0] == 0.0  # the reference optimum is on the boundary
    assert _score(best.x, y, X, Vk, 0, "ml") < 0 < _score(best.x, y, X, Vk, 0, "reml")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = h.fit("y ~ x + (1|g) + (1|b)", d, method="ml", solver=solver)
    assert res.converged
    vc = res.variance_components
    assert vc.loc["g", "variance"] == 0.0 and vc.loc["g", "boundary"]
    assert res.loglik == pytest.approx(-0.5 * best.fun, rel=1e-6)
    np.testing.assert_allclose(vc.loc[["b", "Residual"], "variance"], best.x[1:], rtol=1e-4)

"""``henderson.prepare`` gives the general engine ``fit`` would choose, and the same −2 log L.

``prepare`` used to return the dense C-form for every structured model while ``fit``
routes by ``_general_state(spec, "auto")`` (V-form when the records are few against the
random equations and a K is dense; sparse C-form for many identity / K⁻¹ equations).
For one model of each kind: the engine class of ``prepare`` is the one ``fit`` reports
(``result.solver`` is the engine's ``name``), and its ``evaluate`` at the fitted θ gives
−2 log L = −2 × ``fit``'s logLik to 1e-8 relative (the same engine at the same θ: the
two numbers differ only by the result builder's round trip, ~1e-13).
"""

import warnings

import numpy as np
import pandas as pd
import pytest

import henderson as h


def _met(lines, envs, observed, reps, seed=5):
    rng = np.random.default_rng(seed)
    M = rng.binomial(2, 0.3, size=(lines, 200)).astype(float)
    W = M - M.mean(0)
    G = W @ W.T / W.shape[1] + 0.05 * np.eye(lines)
    names = [f"L{i:03d}" for i in range(lines)]
    cells = [(n, f"E{e}") for n in names for e in range(envs) if rng.random() < observed for _ in range(reps)]
    d = pd.DataFrame(cells, columns=["Name", "Env"])
    u = np.linalg.cholesky(G) @ rng.normal(size=(lines, envs))
    li = pd.Index(names).get_indexer(d["Name"])
    ei = d["Env"].str[1:].astype(int).to_numpy()
    d["y"] = 10 + ei + u[li, ei] + rng.normal(0, 1.0, len(d))
    return d, pd.DataFrame(G, index=names, columns=names)


def _slopes(groups=1600, per=3, seed=6):
    rng = np.random.default_rng(seed)
    g = np.repeat([f"g{i:04d}" for i in range(groups)], per)
    x = rng.uniform(0, 5, len(g))
    b = rng.normal(size=(groups, 2)) * [1.0, 0.3]
    gi = np.repeat(np.arange(groups), per)
    y = 3 + 0.5 * x + b[gi, 0] + b[gi, 1] * x + rng.normal(0, 0.5, len(g))
    return pd.DataFrame({"g": g, "x": x, "y": y})


def case(kind):
    if kind == "vform":  # ~108 records against 180 random equations, dense G
        d, G = _met(60, 3, 0.6, 1)
        return "y ~ Env + us(0 + Env|Name)", d, {"cov": {"Name": G}}
    if kind == "dense":  # every cell twice: 360 records against 180 equations
        d, G = _met(60, 3, 1.0, 2)
        return "y ~ Env + us(0 + Env|Name)", d, {"cov": {"Name": G}}
    if kind == "sparse":  # 3,200 identity equations (GENERAL_SPARSE_MIN_EQUATIONS[1] = 3,000)
        return "y ~ x + diag(1 + x|g)", _slopes(), {}
    raise KeyError(kind)


ENGINE = {"vform": "vform-general", "dense": "dense-general", "sparse": "sparse-general"}


@pytest.mark.parametrize("kind", ["vform", "dense", "sparse"])
def test_prepare_returns_fits_engine_and_its_likelihood(kind):
    formula, d, kw = case(kind)
    state = h.prepare(formula, d, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", h.BoundaryWarning)
        res = h.fit(formula, d, method="reml", **kw)
    assert res.solver == state.name
    assert state.name == ENGINE[kind]
    theta = res.variance_components["estimate"].to_numpy()
    m2ll = state.evaluate(theta, method="reml").m2ll
    assert m2ll == pytest.approx(-2.0 * res.loglik, rel=1e-8)

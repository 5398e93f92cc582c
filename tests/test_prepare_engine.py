"""``henderson.prepare`` gives the general engine ``fit`` would choose, and the same −2 log L.

``prepare`` used to return the dense C-form for every structured model while ``fit``
routes by ``_general_state(spec, "auto")`` (V-form when the records are few against the
random equations and a K is dense; sparse C-form for many identity / K⁻¹ equations).
For one model of each kind: the engine class of ``prepare`` is the one ``fit`` reports
(``result.solver`` is the engine's ``name``), and its ``evaluate`` at the fitted θ gives
−2 log L = −2 × ``fit``'s logLik to 1e-8 relative (the same engine at the same θ: the
two numbers differ only by the result builder's round trip, ~1e-13).

Below: ``solver=`` is honoured and the chooser is ``fit``'s for one variance per term too
(dense MME, spectral, sparse MME: ``state.name == result.solver``); engines that share no
evaluation code agree at one θ to 1e-10 relative (V-form against C-form on the potato MET
at the shared reference θ of tests/data/refs/structures/dt_example.json and off it; spectral
against dense MME on a small GBLUP); what ``prepare`` cannot give is an error naming ``solver``.
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


# -- solver= honoured, one chooser with fit, for structured and one-variance-per-term models --
#
# The V-form and the C-form share no evaluation code (n × n V against the level-space C), so
# their −2 log L at one θ agreeing to 1e-10 relative checks the V-form engine prepare() hands
# out; likewise the spectral solver (tridiagonal form of ZKZ') against the dense MME.

POTATO_US = "Yield ~ Env + us(0 + Env|Name)"


def _potato_theta(scale=1.0):
    """θ of the potato US model: the own tight REML of tests/data/refs/structures/dt_example.json
    (scale=1), or that point with Σ scaled (away from the optimum)."""
    from conftest import load_ref

    vals = np.array(load_ref("structures/dt_example.json")["own"]["c_US"]["theta"]["values"])
    vals[:-1] *= scale
    return vals


@pytest.mark.parametrize("scale", [1.0, 0.3, 2.5])
@pytest.mark.parametrize("method", ["reml", "ml"])
def test_prepare_vform_equals_cform_on_potato_met(scale, method):
    from henderson.datasets import load_potato
    from henderson.solvers.general import GeneralMME
    from henderson.solvers.general_vform import GeneralVForm

    d = load_potato()
    vform = h.prepare(POTATO_US, d, solver="vform")
    cform = h.prepare(POTATO_US, d, solver="dense")
    assert isinstance(vform, GeneralVForm) and vform.name == "vform-general"
    assert isinstance(cform, GeneralMME) and cform.name == "dense-general"
    theta = _potato_theta(scale)
    got, want = vform.evaluate(theta, method=method).m2ll, cform.evaluate(theta, method=method).m2ll
    assert got == pytest.approx(want, rel=1e-10)


def test_prepare_auto_takes_the_vform_and_matches_the_cform():
    from henderson.solvers.general_vform import GeneralVForm

    formula, d, kw = case("vform")
    auto = h.prepare(formula, d, **kw)
    assert isinstance(auto, GeneralVForm)
    cform = h.prepare(formula, d, solver="dense", **kw)
    S = np.array([[1.0, 0.4, 0.2], [0.4, 1.5, 0.3], [0.2, 0.3, 0.8]])
    theta = np.concatenate([S[np.tril_indices(3)], [1.1]])  # ASReml order: row by row, lower triangle
    assert auto.spec.theta_names == cform.spec.theta_names
    assert auto.evaluate(theta).m2ll == pytest.approx(cform.evaluate(theta).m2ll, rel=1e-10)


def _kernel(q, seed=2):
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(q, q // 2))
    return B @ B.T / (q // 2) + 0.1 * np.eye(q)


def _gblup(q=40, n=120, seed=3):
    rng = np.random.default_rng(seed)
    ids = [f"L{i:02d}" for i in range(q)]
    K = pd.DataFrame(_kernel(q, seed), index=ids, columns=ids)
    d = pd.DataFrame({"g": rng.choice(ids, n), "x": rng.normal(size=n)})
    d["y"] = 2.0 + 0.5 * d["x"] + rng.normal(size=n)
    return d, K


def test_prepare_chooses_the_engine_fit_reports_for_one_variance_per_term():
    from henderson.datasets import load_potato

    d, K = _gblup()
    ped = h.datasets.load_gryphon()
    Ainv = h.pedigree_inverse(ped.pedigree)
    cases = [
        ("Yield ~ Env + (1|Name)", load_potato(), {}, "dense-mme"),
        ("y ~ x + (1|g)", d, {"cov": {"g": K}}, "spectral"),
        ("BWT ~ SEX + (1|ANIMAL)", ped.records, {"cov_inverse": {"ANIMAL": Ainv}}, "sparse-mme"),
    ]
    for formula, data, kw, engine in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", h.DataWarning)  # gryphon: records without BWT
            state = h.prepare(formula, data, **kw)
            res = h.fit(formula, data, **kw)
        assert state.name == res.solver == engine
        # the fitted σ² (user's scale) evaluates to the fit's −2 log L on the prepared engine
        assert state.evaluate(res.sigma2.to_numpy()).m2ll == pytest.approx(-2 * res.loglik, rel=1e-8)


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_prepare_honours_solver_for_one_kernel(method):
    d, K = _gblup()
    spectral = h.prepare("y ~ x + (1|g)", d, cov={"g": K}, solver="spectral")
    dense = h.prepare("y ~ x + (1|g)", d, cov={"g": K}, solver="dense")
    assert (spectral.name, dense.name) == ("spectral", "dense-mme")
    for s in ([0.7, 1.2], [3.0, 0.4], [0.0, 1.0]):
        got, want = spectral.evaluate(s, method=method), dense.evaluate(s, method=method)
        assert got.m2ll == pytest.approx(want.m2ll, rel=1e-10)


def test_prepare_refuses_what_fit_would_refuse_or_cannot_evaluate():
    from henderson.datasets import load_potato

    d = load_potato()
    with pytest.raises(h.ModelError, match="solver='pcg'"):
        h.prepare("Yield ~ Env + (1|Name)", d, solver="pcg")
    with pytest.raises(h.ModelError, match="spectral solver needs exactly one random term"):
        h.prepare("Yield ~ Env + (1|Name)", d, solver="spectral")
    with pytest.raises(h.ModelError, match="solver='vform'"):
        h.prepare("Yield ~ Env + (1|Name)", d, solver="vform")
    with pytest.raises(h.ModelError, match="solver='spectral' is not available"):
        h.prepare(POTATO_US, d, solver="spectral")
    with pytest.raises(h.ModelError, match="solver must be"):
        h.prepare("Yield ~ Env + (1|Name)", d, solver="qr")

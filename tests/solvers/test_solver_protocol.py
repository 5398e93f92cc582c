"""One solver protocol (solvers/protocol.py): every solver, prepared once, evaluates θ to the
same Evaluation, checked against brute-force dense algebra on V = Σₖ σ²ₖZₖKₖZₖ' + σ²ₑI.

Reference (shares no code with the solvers beyond numpy): −2 log L_REML, the exact score
−½[tr(PVₖ) − y'PVₖPy], AI ½ y'PVᵢPVⱼPy, b̂ = (X'V⁻¹X)⁻¹X'V⁻¹y, ûₖ = σ²ₖKₖZₖ'Py and
PEV diag(σ²ₖKₖ − σ⁴ₖKₖZₖ'PZₖKₖ). Tolerance 1e-8 relative (rounding of n = 80 solves).
The optimiser's other protocol methods (``em_step``, ``boundary_score``, ``release`` /
``restore``, ``with_pev``) against the same algebra: the EM-REML update in V form, the
score and AI of a variance held at 0, and SE(b̂)² = diag((X'V⁻¹X)⁻¹).
"""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from henderson.relationships import Relationship
from henderson.solvers.protocol import Evaluation, prepare
from henderson.spec.model import build_spec
from henderson.spec.terms import build_general_spec

FORMULA = "y ~ 1 + x + (1|batch) + (1|animal)"


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    n, q = 80, 25
    B = rng.normal(size=(q, q))
    K = B @ B.T / q + np.eye(q)
    ids = np.array([f"a{i}" for i in range(q)], dtype=object)
    d = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "batch": rng.choice(list("pqrstu"), size=n),
            "animal": rng.choice(ids, size=n),
        }
    )
    d["y"] = 1.0 + 0.5 * d["x"] + rng.normal(size=n) * 2
    return d, K, ids


def _reference(spec, Ks, s):
    """m2ll, score, AI, b, u, pev by dense algebra on V (REML)."""
    y, X = spec.y, spec.X
    n, p = X.shape
    Zs = []
    for t in spec.terms:
        Z = np.zeros((n, t.q))
        codes = t.codes if t.codes.ndim == 1 else t.codes[:, 0]  # general terms: (n, S), here S = 1
        Z[np.arange(n), codes] = 1.0
        Zs.append(Z)
    Vk = [Z @ K @ Z.T for Z, K in zip(Zs, Ks)] + [np.eye(n)]
    V = sum(si * M for si, M in zip(s, Vk))
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    P = Vi - Vi @ X @ np.linalg.solve(XtViX, X.T @ Vi)
    m2ll = (n - p) * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + np.linalg.slogdet(XtViX)[1] + y @ P @ y
    Py = P @ y
    score = np.array([-0.5 * (np.trace(P @ M) - Py @ M @ Py) for M in Vk])
    ai = np.array([[0.5 * Py @ Mi @ P @ Mj @ Py for Mj in Vk] for Mi in Vk])
    b = np.linalg.solve(XtViX, X.T @ Vi @ y)
    u = [si * K @ Z.T @ Py for si, K, Z in zip(s, Ks, Zs)]
    pev = [np.diag(si * K - si**2 * K @ Z.T @ P @ Z @ K) for si, K, Z in zip(s, Ks, Zs)]
    return m2ll, score, ai, b, u, pev


def _check(ev, ref, names):
    m2ll, score, ai, b, u, pev = ref
    assert isinstance(ev, Evaluation)
    assert ev.m2ll == pytest.approx(m2ll, rel=1e-8)
    np.testing.assert_allclose(ev.score, score, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ev.ai, ai, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ev.fixed, b, rtol=1e-8, atol=1e-10)
    for name, uk, pk in zip(names, u, pev):
        np.testing.assert_allclose(ev.blups[name], uk, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(ev.pev[name], pk, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("solver", ["dense", "sparse"])
def test_mme_solvers_evaluate_the_protocol(data, solver):
    d, K, ids = data
    cov = {"animal": Relationship(ids, sp.csr_matrix(np.linalg.inv(K)), inverse=True, kind="Kinv")}
    spec = build_spec(FORMULA, d, cov_inverse=cov)
    prepared = prepare(spec, solver)
    s = np.array([0.7, 1.3, 3.1])
    assert prepared.names == ["sigma2_batch", "sigma2_animal", "sigma2_Residual"]
    ev = prepared.evaluate(s, derivatives=True, pev=True)
    Ks = [np.eye(spec.terms[0].q), K]
    _check(ev, _reference(spec, Ks, s), ["batch", "animal"])


def test_spectral_solver_evaluates_the_protocol(data):
    d, K, ids = data
    spec = build_spec("y ~ 1 + x + (1|animal)", d, cov={"animal": Relationship(ids, K, kind="K")})
    prepared = prepare(spec, "spectral")
    s = np.array([1.3, 3.1])
    ev = prepared.evaluate(s, derivatives=True, pev=True)
    _check(ev, _reference(spec, [K], s), ["animal"])


def test_general_solver_evaluates_the_protocol(data):
    d, K, ids = data
    spec = build_general_spec(FORMULA, d, cov={"animal": Relationship(ids, K, kind="K")})
    prepared = prepare(spec, "general")
    assert len(prepared.names) == 3 and [t.name for t in spec.terms] == ["batch", "animal"]
    s = np.array([0.7, 1.3, 3.1])  # one scalar structure per term: θ are the variances
    ev = prepared.evaluate(s, derivatives=True, pev=True)
    Ks = [np.eye(spec.terms[0].q), K]
    _check(ev, _reference(spec, Ks, s), ["batch", "animal"])


def test_protocol_rejects_a_theta_of_the_wrong_length(data):
    d, K, ids = data
    prepared = prepare(build_spec(FORMULA, d), "dense")
    with pytest.raises(ValueError, match="sigma2_batch, sigma2_animal, sigma2_Residual"):
        prepared.evaluate([1.0, 2.0])


def _p_and_vk(spec, Ks, s):
    """P = V⁻¹ − V⁻¹X(X'V⁻¹X)⁻¹X'V⁻¹ and [Z₁K₁Z₁', …, I] by dense algebra."""
    y, X = spec.y, spec.X
    n = len(y)
    Vk = []
    for t, K in zip(spec.terms, Ks):
        Z = np.zeros((n, t.q))
        Z[np.arange(n), t.codes if t.codes.ndim == 1 else t.codes[:, 0]] = 1.0  # general: (n, 1)
        Vk.append(Z @ K @ Z.T)
    Vk.append(np.eye(n))
    Vi = np.linalg.inv(sum(si * M for si, M in zip(s, Vk)))
    P = Vi - Vi @ X @ np.linalg.solve(X.T @ Vi @ X, X.T @ Vi)
    return P, Vk


@pytest.fixture(scope="module")
def mme_spec(data):
    d, K, ids = data
    cov = {"animal": Relationship(ids, sp.csr_matrix(np.linalg.inv(K)), inverse=True, kind="Kinv")}
    spec = build_spec(FORMULA, d, cov_inverse=cov)
    return spec, [np.eye(spec.terms[0].q), K]


@pytest.mark.parametrize("solver", ["dense", "sparse"])
def test_em_step_equals_the_v_form_em_update(mme_spec, solver):
    # EM-REML in V form (the MME form σ²ₖ ← [û'K⁻¹û + σ²ₑtr(K⁻¹C^{kk})]/qₖ rewritten with
    # û = σ²ₖKZ'Py and σ²ₑC^{kk} = σ²ₖK − σ⁴ₖKZ'PZK): σ²ₖ + σ⁴ₖ(y'PVₖPy − tr(PVₖ))/qₖ;
    # σ²ₑ ← y'ê/(n − p) = σ²ₑ y'Py/(n − p)
    spec, Ks = mme_spec
    s = np.array([0.7, 1.3, 3.1])
    prepared = prepare(spec, solver)
    new = prepared.em_step(prepared.evaluate(s, derivatives=True))
    P, Vk = _p_and_vk(spec, Ks, s)
    Py = P @ spec.y
    ref = [sk + sk**2 * (Py @ M @ Py - np.trace(P @ M)) / t.q for sk, M, t in zip(s, Vk, spec.terms)]
    ref.append(s[-1] * float(spec.y @ Py) / (spec.n - spec.p))
    np.testing.assert_allclose(new, ref, rtol=1e-8)


@pytest.mark.parametrize("solver, ai_rel", [("dense", 1e-8), ("sparse", 1e-4)])
def test_boundary_score_is_the_score_at_zero(mme_spec, solver, ai_rel):
    # a term held at σ²ₖ = 0: score −½[tr(PVₖ) − y'PVₖPy] and AI ½y'PVₖPVₖPy with P at
    # σ²ₖ = 0. The sparse solver extrapolates its score to 0 from σ²ₖ = ε, 2ε, 4ε (1e-8
    # holds) and gives the AI at ε = 1e-5σ²ₑ/(records per level): 1e-4 relative on the AI.
    # ML's score (V⁻¹ in the trace): tests/solvers/test_ml_boundary_score.py
    spec, Ks = mme_spec
    s = np.array([0.0, 1.3, 3.1])
    prepared = prepare(spec, solver)
    ev = prepared.evaluate(s, derivatives=True)
    assert list(prepared.active(ev)) == [False, True]
    score, ai = prepared.boundary_score(ev, 0)
    P, Vk = _p_and_vk(spec, Ks, s)
    Py = P @ spec.y
    assert score == pytest.approx(-0.5 * (np.trace(P @ Vk[0]) - Py @ Vk[0] @ Py), rel=1e-8)
    assert ai == pytest.approx(0.5 * Py @ Vk[0] @ P @ Vk[0] @ Py, rel=ai_rel)


@pytest.mark.parametrize("solver", ["dense", "sparse"])
def test_release_restore_and_pev_from_the_same_factor(mme_spec, solver):
    spec, Ks = mme_spec
    s = np.array([0.7, 1.3, 3.1])
    prepared = prepare(spec, solver)
    ev = prepared.evaluate(s, derivatives=True)
    released = prepared.release(ev)
    if solver == "sparse":  # the sparse evaluation drops its factor and selected inverse
        assert released.detail.factor is None and released.detail.selinv is None
    back = prepared.with_pev(released)  # restores the factor (one evaluation) for the PEV
    full = prepared.evaluate(s, derivatives=True, pev=True)
    assert back.m2ll == full.m2ll
    for name in ("batch", "animal"):
        np.testing.assert_allclose(back.pev[name], full.pev[name], rtol=1e-12)
    # SE(b̂)² = diag((X'V⁻¹X)⁻¹) by dense algebra
    P, Vk = _p_and_vk(spec, Ks, s)
    Vi = np.linalg.inv(sum(si * M for si, M in zip(s, Vk)))
    np.testing.assert_allclose(back.fixed_var, np.diag(np.linalg.inv(spec.X.T @ Vi @ spec.X)), rtol=1e-8)


@pytest.mark.parametrize("solver", ["general", "general_sparse"])
def test_general_engines_em_step_and_complete(data, solver):
    # scalar structures: θ are the variances, so the general EM update of a term is the
    # V-form one above; the residual's is EM too (e missing, Vₑ = I, qₑ = n):
    # σ²ₑ ← (ê'ê + σ²ₑtr(C⁻¹W'W))/n = σ²ₑ + σ⁴ₑ(y'PPy − tr P)/n, not the MME solvers'
    # y'ê/(n − p) (same fixed point). complete() of a point evaluated without derivatives
    # equals evaluate with them.
    d, K, ids = data
    cov = {"animal": Relationship(ids, sp.csr_matrix(np.linalg.inv(K)), inverse=True, kind="Kinv")}
    spec = build_general_spec(FORMULA, d, cov_inverse=cov)
    prepared = prepare(spec, solver)
    s = np.array([0.7, 1.3, 3.1])
    full = prepared.evaluate(s, derivatives=True)
    new = prepared.em_step(full)
    P, Vk = _p_and_vk(spec, [np.eye(spec.terms[0].q), K], s)
    Py = P @ spec.y
    ref = [sk + sk**2 * (Py @ M @ Py - np.trace(P @ M)) / t.q for sk, M, t in zip(s, Vk, spec.terms)]
    ref.append(s[-1] + s[-1] ** 2 * (Py @ Py - np.trace(P)) / spec.n)
    np.testing.assert_allclose(new, ref, rtol=1e-8)
    bare = prepared.evaluate(s)
    assert bare.score is None
    done = prepared.complete(bare)
    np.testing.assert_allclose(done.score, full.score, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(done.ai, full.ai, rtol=1e-10)

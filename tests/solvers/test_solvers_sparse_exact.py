"""The sparse solver's exact REML: objective, score, AI and PEV on the gryphon model.

References, each independent of the code under test:

- objective at fixed σ²: brute-force dense −2 log L from V = Σₖ σ²ₖZₖKₖZₖ' + σ²ₑI
  (``tests/solvers/test_objective.py``'s formula; K = A as the dense inverse of A⁻¹),
  relative 1e-10 — both are exact up to rounding (~1e-13 here);
- score: central finite differences of that exact objective, step 1e-4·σ²ₖ, whose
  truncation error is O(h²·∂³ℓ) ≈ 1e-7 relative here: tolerance 1e-5 relative;
- the dense solver (``DenseMME``: dense Cholesky and dense C⁻¹, no code shared with
  henderson.linalg) at fixed σ² and at the optimum: 1e-8.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import brute_force_m2ll

import henderson as h
from henderson.datasets import load_gryphon
from henderson.solvers.dense import DenseMME
from henderson.solvers.sparse import SparseMME
from henderson.spec.model import build_spec

FORMULA = "BWT ~ 1 + SEX + (1|ANIMAL) + (1|BYEAR) + (1|MOTHER)"
SIGMA2 = [(3.0, 0.9, 1.2, 4.0), (1.0, 0.0, 2.0, 5.0)]  # the second has BYEAR on the boundary


@pytest.fixture(scope="module")
def gryphon():
    g = load_gryphon()
    rec = g.records.dropna(subset=["BWT"])
    Ainv = h.pedigree_inverse(g.pedigree)
    spec = build_spec(FORMULA, rec, cov_inverse={"ANIMAL": Ainv})
    return rec, Ainv, spec


def _zkz(spec):
    out = []
    for t in spec.terms:
        Z = np.zeros((spec.n, t.q))
        Z[np.arange(spec.n), t.codes] = 1.0
        K = np.linalg.inv(t.penalty.toarray()) if t.penalty is not None else np.eye(t.q)
        out.append(Z @ K @ Z.T)
    return out


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_objective_equals_brute_force(gryphon, method):
    _, _, spec = gryphon
    state = SparseMME(spec)
    zkz = _zkz(spec)
    for s in SIGMA2:
        got = state.evaluate(s, method=method).m2ll
        want = brute_force_m2ll(spec.y, spec.X, zkz, np.array(s), method)
        assert got == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_score_is_the_derivative_of_the_objective(gryphon, method):
    _, _, spec = gryphon
    state = SparseMME(spec)
    s = np.array(SIGMA2[0])
    score = state.evaluate(s, derivatives=True, method=method).score
    for k in range(len(s)):
        hk = 1e-4 * s[k]
        up, dn = s.copy(), s.copy()
        up[k] += hk
        dn[k] -= hk
        fd = -0.25 * (state.evaluate(up, method=method).m2ll - state.evaluate(dn, method=method).m2ll) / hk
        assert score[k] == pytest.approx(fd, rel=1e-5, abs=1e-6), k


@pytest.mark.parametrize("method", ["reml", "ml"])
@pytest.mark.parametrize("s", SIGMA2)
def test_sparse_equals_dense_at_fixed_sigma2(gryphon, method, s):
    _, _, spec = gryphon
    a = SparseMME(spec).evaluate(s, derivatives=True, method=method)
    b = DenseMME(spec).evaluate(s, derivatives=True, method=method)
    assert a.m2ll == pytest.approx(b.m2ll, rel=1e-12)
    act = np.concatenate([a.active, [True]])
    np.testing.assert_allclose(a.score[act], b.score[act], rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(a.ai[np.ix_(act, act)], b.ai[np.ix_(act, act)], rtol=1e-8)
    # solutions are in each solver's own row order: compare term by term
    for k in np.flatnonzero(a.active):
        (a0, a1), (b0, b1) = a.spans[k], b.spans[k]
        np.testing.assert_allclose(a.solution[a0:a1], b.solution[b0:b1], rtol=1e-8, atol=1e-10)


def test_sparse_equals_dense_fit_and_pev(gryphon):
    rec, Ainv, _ = gryphon
    a = h.fit(FORMULA, rec, cov_inverse={"ANIMAL": Ainv}, solver="sparse")
    b = h.fit(FORMULA, rec, cov_inverse={"ANIMAL": Ainv}, solver="dense")
    assert a.solver == "sparse-mme" and b.solver == "dense-mme"
    # both converge to |Δσ²|/σ² < 1e-8 from the same start with exact derivatives
    np.testing.assert_allclose(a.sigma2, b.sigma2, rtol=1e-8)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-8)
    np.testing.assert_allclose(a.variance_components["se"], b.variance_components["se"], rtol=1e-7)
    for term in ("ANIMAL", "BYEAR", "MOTHER"):
        ua, ub = a.blups[term], b.blups[term]
        np.testing.assert_allclose(ua["blup"], ub["blup"], rtol=1e-7, atol=1e-8)
        np.testing.assert_allclose(ua["pev"], ub["pev"], rtol=1e-7)
    np.testing.assert_allclose(a.fixed_effects["se"], b.fixed_effects["se"], rtol=1e-7)


def test_pev_is_the_inverse_diagonal(gryphon):
    # PEV = σ²ₑ diag(C⁻¹): the selected inverse's diagonal against a dense inverse of C
    _, _, spec = gryphon
    state = SparseMME(spec)
    ev = state.evaluate(SIGMA2[0], derivatives=True)
    T = state.T[:, ev.index]
    s = SIGMA2[0]
    pen = [
        s[-1] / s[k] * (sp.csc_matrix(t.penalty) if t.penalty is not None else sp.identity(t.q))
        for k, t in enumerate(spec.terms)
    ]
    C = (T.T @ T + sp.block_diag(pen + [sp.csc_matrix((spec.p, spec.p))])).toarray()
    np.testing.assert_allclose(state.inverse_diag(ev), np.diag(np.linalg.inv(C)), rtol=1e-10)

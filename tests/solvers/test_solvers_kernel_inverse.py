"""A dense K whose inverse is sparse (a pedigree A given dense) takes the sparse route.

Reference: the same model with the pedigree A⁻¹ from Henderson's rules
(``cov_inverse``), which shares no code with the inversion of the dense A. The two
models differ only by the rounding of inv(A) (~1e-16 relative, entries below 1e-11 of
the largest dropped), so they agree to the optimiser's convergence (1e-8).
"""

import numpy as np
import pytest

import henderson as h
from henderson.datasets import load_gryphon
from henderson.solvers.kernel_inverse import sparse_inverse

FORMULA = "BWT ~ 1 + SEX + (1|ANIMAL) + (1|BYEAR) + (1|MOTHER)"


@pytest.fixture(scope="module")
def gryphon():
    g = load_gryphon()
    return g.records, g.pedigree


def test_dense_a_equals_sparse_ainv(gryphon):
    rec, ped = gryphon
    A = h.pedigree_relationship(ped)
    a = h.fit(FORMULA, rec, cov={"ANIMAL": A})
    b = h.fit(FORMULA, rec, cov_inverse={"ANIMAL": h.pedigree_inverse(ped)})
    assert a.solver == b.solver == "sparse-mme"
    np.testing.assert_allclose(a.sigma2, b.sigma2, rtol=1e-8)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-8)
    for term in ("ANIMAL", "BYEAR", "MOTHER"):
        np.testing.assert_allclose(a.blups[term]["blup"], b.blups[term]["blup"], rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(a.blups[term]["pev"], b.blups[term]["pev"], rtol=1e-7)
        np.testing.assert_allclose(a.blups[term]["reliability"], b.blups[term]["reliability"], atol=1e-8)
    # explicitly dense: the dense MME, same optimum
    c = h.fit(FORMULA, rec, cov={"ANIMAL": A}, solver="dense")
    assert c.solver == "dense-mme"
    np.testing.assert_allclose(c.sigma2, b.sigma2, rtol=1e-7)


def test_inverse_of_a_pedigree_a_is_its_sparse_inverse(gryphon):
    _, ped = gryphon
    A = np.asarray(h.pedigree_relationship(ped).matrix)
    Ainv = h.pedigree_inverse(ped)
    order = [list(Ainv.ids).index(i) for i in h.pedigree_relationship(ped).ids]
    P, logdet = sparse_inverse(np.linalg.cholesky(A))
    want = Ainv.matrix.toarray()[np.ix_(order, order)]
    assert P.nnz == np.count_nonzero(want)
    np.testing.assert_allclose(P.toarray(), want, atol=1e-10)
    assert logdet == pytest.approx(np.linalg.slogdet(A)[1], abs=1e-9)


def test_dense_inverse_stays_dense():
    # a genomic-like K (Gram matrix of random markers): K⁻¹ is dense, so None
    rng = np.random.default_rng(0)
    W = rng.standard_normal((600, 900))
    K = W @ W.T / 900 + 0.01 * np.eye(600)
    assert sparse_inverse(np.linalg.cholesky(K)) is None

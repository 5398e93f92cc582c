"""Level-covariance classes (spec/levels.py) against numpy on small matrices (tolerance 1e-10)."""

import numpy as np
import pytest
import scipy.sparse as sp

from henderson.spec.levels import DenseKernel, Identity, Markers, SparseInverse


@pytest.fixture
def spd():
    rng = np.random.default_rng(7)
    B = rng.normal(size=(5, 5))
    return B @ B.T + 5 * np.eye(5)


def test_identity():
    c = Identity(list("abc"))
    x = np.arange(3.0)
    assert c.n_levels == 3 and c.logdet_contribution() == 0.0
    np.testing.assert_array_equal(c.as_dense(), np.eye(3))
    np.testing.assert_array_equal(c.apply_inverse(x), x)


def test_dense_kernel_factor_and_inverse(spd):
    c = DenseKernel(spd, list("abcde"), "g")
    x = np.linspace(-1, 1, 5)
    assert c.logdet_contribution() == 0.0  # MME in v, u = Fv
    np.testing.assert_allclose(c.factor @ c.factor.T, spd, atol=1e-10)
    np.testing.assert_allclose(c.apply_inverse(x), np.linalg.solve(spd, x), atol=1e-10)


def test_markers_never_form_k_but_agree_with_it():
    rng = np.random.default_rng(3)
    W = rng.normal(size=(6, 3))
    c = Markers(W, list("abcdef"), scale=2.5)
    K = W @ W.T / 2.5
    np.testing.assert_allclose(c.as_dense(), K, atol=1e-12)
    np.testing.assert_allclose(c.factor @ c.factor.T, K, atol=1e-12)
    x = rng.normal(size=6)
    np.testing.assert_allclose(c.apply_inverse(x), np.linalg.pinv(K) @ x, atol=1e-8)


def test_sparse_inverse(spd):
    Kinv = sp.csr_matrix(np.linalg.inv(spd))
    ld = np.linalg.slogdet(spd)[1]
    c = SparseInverse(Kinv, list("abcde"), ld)
    x = np.arange(5.0)
    assert c.logdet_contribution() == pytest.approx(ld, rel=1e-12)
    np.testing.assert_allclose(c.as_dense(), spd, atol=1e-10)
    np.testing.assert_allclose(c.apply_inverse(x), np.linalg.solve(spd, x), atol=1e-10)
    np.testing.assert_allclose(c.solve(x), spd @ x, atol=1e-10)

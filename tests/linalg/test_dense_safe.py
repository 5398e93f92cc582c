"""Guarded dense kernels (henderson.linalg.dense_safe) against numpy/scipy, small blocks forced."""

import numpy as np
import pytest
import scipy.linalg as sla

from henderson.linalg import dense_safe as D


@pytest.fixture
def forced(monkeypatch):
    """Every call takes the blocked route, blocks of 7 rows (uneven last block)."""
    monkeypatch.setattr(D, "SAFE_ORDER", 0)
    monkeypatch.setattr(D, "BLOCK", 7)


def _spd(n, seed=0):
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, n + 3))
    return x @ x.T / n + 0.5 * np.eye(n)


@pytest.mark.parametrize("guard", [False, True])
def test_potrf_matches_numpy(guard, monkeypatch):
    if guard:
        monkeypatch.setattr(D, "SAFE_ORDER", 0)
        monkeypatch.setattr(D, "BLOCK", 7)
    a = _spd(30)
    up = np.triu(a, 1).copy()
    c, info = D.potrf(a)
    assert info == 0
    np.testing.assert_allclose(np.tril(c), np.linalg.cholesky(a), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.triu(c, 1), up)  # clean=0: upper untouched


def test_potrf_overwrite_and_failure(forced):
    a = np.asfortranarray(_spd(25))
    ref = np.linalg.cholesky(a)
    c, info = D.potrf(a, overwrite=True)
    assert info == 0 and np.shares_memory(c, a)
    np.testing.assert_allclose(np.tril(c), ref, atol=1e-12)
    bad = _spd(25)
    bad[20, 20] = -1.0  # column 21 (1-based) fails, in the third block
    _, info = D.potrf(bad)
    assert info == 21


@pytest.mark.parametrize("trans", [False, True])
@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_syrk_matches_dense_product(forced, trans, beta):
    r = np.random.default_rng(1)
    a = r.standard_normal((17, 23)) if trans else r.standard_normal((23, 17))
    op = a.T if trans else a
    c0 = np.asfortranarray(r.standard_normal((23, 23)))
    up = np.triu(c0, 1).copy()
    ref = 2.0 * op @ op.T + beta * c0  # computed before c0 is overwritten
    c = D.syrk_lower(a, trans=trans, alpha=2.0, beta=beta, c=c0)
    assert c is c0
    np.testing.assert_allclose(np.tril(c), np.tril(ref), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.triu(c, 1), up)


def test_syrk_new_output_matches_blas(forced):
    a = np.random.default_rng(2).standard_normal((40, 9))
    np.testing.assert_allclose(np.tril(D.syrk_lower(a)), np.tril(a @ a.T), atol=1e-12)


@pytest.mark.parametrize("guard", [False, True])
def test_potri_matches_inverse(guard, monkeypatch):
    if guard:
        monkeypatch.setattr(D, "SAFE_ORDER", 0)
        monkeypatch.setattr(D, "BLOCK", 7)
    a = _spd(31, seed=3)
    c, _ = sla.lapack.dpotrf(a, lower=1, clean=0)  # upper keeps a's entries: must be ignored
    inv, info = D.potri(c)
    assert info == 0
    np.testing.assert_allclose(np.tril(inv), np.tril(np.linalg.inv(a)), rtol=0, atol=1e-12)


@pytest.mark.parametrize("guard", [False, True])
def test_cholesky_lower_clean_and_error(guard, monkeypatch):
    if guard:
        monkeypatch.setattr(D, "SAFE_ORDER", 0)
        monkeypatch.setattr(D, "BLOCK", 7)
    a = _spd(20, seed=4)
    np.testing.assert_allclose(D.cholesky_lower(a), sla.cholesky(a, lower=True), rtol=0, atol=1e-12)
    a[15, 15] = -1.0
    with pytest.raises(np.linalg.LinAlgError):
        D.cholesky_lower(a)

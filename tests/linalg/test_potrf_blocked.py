"""Blocked dpotrf of wide supernodes (``_numeric.potrf_blocked``) against numpy.

Why it exists: OpenBLAS's threaded dpotrf/dsyrk (0.3.30, scipy's wheel) segfaults on
symmetric blocks of ≳ 16,000 rows with 2 threads (benchmarks/results/segv_potrf.md), so
supernodes wider than ``POTRF_BLOCK`` are factorised in blocks. The crash itself needs
GBs and is not reproduced here; these tests check that the blocked path, forced at small
sizes by a small block, gives the same factor as an unblocked Cholesky.

Reference: ``numpy.linalg.cholesky``; tolerance 1e-12 relative to max|L|: both are
backward-stable Cholesky factorisations of matrices with condition number ≲ 10, whose
factors agree to ~1e-15; 1e-12 still catches any wrong or missing update.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from henderson.errors import NotPositiveDefiniteError
from henderson.linalg import SymbolicCholesky
from henderson.linalg import _numeric as K


def spd(n, seed):
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((n, n))
    A = (G + G.T) / 2
    return A + np.diag(np.abs(A).sum(axis=1) + 1.0)  # diagonally dominant


@pytest.mark.parametrize("w,nb", [(1, 1), (5, 8), (37, 8), (40, 8), (50, 7), (130, 16), (2100, 300)])
def test_blocked_factor_equals_numpy(w, nb):
    # the w × w block sits at an offset inside a column-major array with leading dimension
    # ld > w (a supernode with rows below its diagonal block): those rows must stay as they were
    ld, o = w + 6, 11
    A = spd(w, w)
    x = np.full(o + ld * w + 3, 7.0)
    blk = x[o : o + ld * w].reshape(w, ld)  # row c of this view = column c of the block
    blk[:, :w] = A.T
    info = K.potrf_blocked(x, o, w, ld, nb)
    assert info == 0
    L = np.tril(x[o : o + ld * w].reshape(w, ld)[:, :w].T)
    ref = np.linalg.cholesky(A)
    np.testing.assert_allclose(L, ref, atol=1e-12 * np.abs(ref).max())
    assert np.all(x[:o] == 7.0) and np.all(x[o + ld * w :] == 7.0)
    assert np.all(x[o : o + ld * w].reshape(w, ld)[:, w:] == 7.0)  # rows below untouched


@pytest.mark.parametrize("bad", [0, 7, 8, 20, 39])
def test_blocked_reports_the_failing_column_as_dpotrf_does(bad):
    w, nb = 40, 8
    A = spd(w, 3)
    A[bad, bad] = -1.0  # the leading (bad + 1) block is indefinite, the leading bad × bad is not
    x = np.asfortranarray(A).ravel(order="F").copy()
    assert K.potrf_blocked(x, 0, w, w, nb) == bad + 1  # LAPACK's 1-based info
    x = np.asfortranarray(A).ravel(order="F").copy()
    assert K.potrf_blocked(x, 0, w, w, w) == bad + 1  # one dpotrf call agrees


def dense_clique_mme(n_clique, n_sparse, seed):
    """A sparse SPD matrix whose last n_clique rows form one dense block (one wide supernode)."""
    rng = np.random.default_rng(seed)
    n = n_clique + n_sparse
    A = sp.random(n, n, density=3.0 / n, random_state=rng, format="lil")
    A[n_sparse:, n_sparse:] = rng.standard_normal((n_clique, n_clique))
    A = sp.csc_matrix(A)
    A = A + A.T
    return (A + sp.diags(abs(A).sum(axis=1).A1 + 1.0)).tocsc()


def test_factor_with_a_supernode_wider_than_the_block_matches_dense():
    A = dense_clique_mme(120, 200, 5)
    D = A.toarray()
    S = SymbolicCholesky(A, ordering="rcm")
    widest = int(np.diff(S.first).max())
    assert widest >= 120
    ref = SymbolicCholesky(A, ordering="rcm").factor_matrix(A)  # one dpotrf per supernode
    S._potrf_block = 16  # force the blocked path on the wide supernode
    F = S.factor_matrix(A)
    assert F.logdet() == pytest.approx(np.linalg.slogdet(D)[1], abs=1e-10 * A.shape[0])
    assert F.logdet() == pytest.approx(ref.logdet(), abs=1e-10 * A.shape[0])
    b = np.random.default_rng(1).standard_normal(A.shape[0])
    np.testing.assert_allclose(F.solve(b), np.linalg.solve(D, b), atol=1e-10 * np.abs(b).max())


def test_blocked_factor_of_an_indefinite_matrix_names_the_row():
    A = dense_clique_mme(60, 50, 9).tolil()
    A[100, 100] = -5.0  # a row of the clique
    A = A.tocsc()
    S = SymbolicCholesky(A, ordering="rcm")
    S._potrf_block = 8
    with pytest.raises(NotPositiveDefiniteError, match="not positive definite"):
        S.factor_matrix(A)

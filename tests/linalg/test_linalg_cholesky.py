"""Sparse supernodal Cholesky, solves and selected inverse against dense numpy.

Reference: ``numpy.linalg`` on the same matrix made dense (slogdet, solve, inv).
Tolerance 1e-10 relative to the scale of the quantity: both sides are backward stable
and the matrices here have condition numbers below 1e4, so their differences are
≲ 1e-13; 1e-10 leaves three orders of magnitude and still catches any wrong entry.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from henderson.errors import NotPositiveDefiniteError
from henderson.linalg import SymbolicCholesky


def random_spd(n, density, seed):
    rng = np.random.default_rng(seed)
    A = sp.random(n, n, density=density, random_state=rng)
    A = A + A.T
    # diagonally dominant, hence positive definite, with condition number ≲ 10
    return (A + sp.diags(abs(A).sum(axis=1).A1 + 1.0)).tocsc()


def check_against_dense(A, last=0, ordering="auto"):
    n = A.shape[0]
    S = SymbolicCholesky(A, last=last, ordering=ordering)
    F = S.factor_matrix(A)
    D = A.toarray()
    Dinv = np.linalg.inv(D)
    assert F.logdet() == pytest.approx(np.linalg.slogdet(D)[1], abs=1e-10 * max(1, n))
    b = np.random.default_rng(0).standard_normal((n, 3))
    np.testing.assert_allclose(F.solve(b), np.linalg.solve(D, b), atol=1e-10 * np.abs(b).max())
    np.testing.assert_allclose(F.solve(b[:, 0]), np.linalg.solve(D, b[:, 0]), atol=1e-10)
    Z = F.selected_inverse()
    scale = np.abs(Dinv).max()
    np.testing.assert_allclose(Z.diag(), np.diag(Dinv), atol=1e-10 * scale)
    # every entry of A's pattern (the entries REML needs) and every entry of L's
    I, J = np.nonzero(D)
    np.testing.assert_allclose(Z.entries(I, J), Dinv[I, J], atol=1e-10 * scale)
    I, J = np.tril_indices(n)
    pos = S.positions(I, J)
    inside = pos >= 0
    # the stored pattern: L's (S.nnz entries) plus the explicit zeros of relaxed supernodes
    assert S.nnz <= inside.sum() <= S.size
    np.testing.assert_allclose(Z.at(pos[inside]), Dinv[I[inside], J[inside]], atol=1e-10 * scale)
    if last:
        h = n - last
        Dh = D[:h, :h]
        assert F.logdet(h) == pytest.approx(np.linalg.slogdet(Dh)[1], abs=1e-10 * n)
        Zh = F.selected_inverse(limit=h)
        I, J = np.nonzero(Dh)
        np.testing.assert_allclose(Zh.entries(I, J), np.linalg.inv(Dh)[I, J], atol=1e-10 * scale)
    return S


@pytest.mark.parametrize(
    "n,density,last",
    [(1, 1.0, 0), (2, 1.0, 1), (7, 0.4, 0), (80, 0.05, 3), (300, 0.01, 0), (300, 0.004, 10), (200, 0.2, 2)],
)
def test_random_spd_matches_dense(n, density, last):
    check_against_dense(random_spd(n, density, seed=n + last), last=last)


@pytest.mark.parametrize("ordering", ["given", "rcm", "metis"])
def test_every_ordering_gives_the_same_numbers(ordering):
    S = check_against_dense(random_spd(150, 0.02, seed=3), last=2, ordering=ordering)
    assert S.ordering == ordering


def test_block_diagonal_and_diagonal_matrices():
    # several components in the elimination forest, and no off-diagonal at all
    A = sp.block_diag([random_spd(30, 0.1, 1), random_spd(1, 1.0, 2), random_spd(40, 0.05, 3)]).tocsc()
    check_against_dense(A, last=1)
    check_against_dense(sp.diags(np.arange(1.0, 21.0)).tocsc())


def test_gryphon_mme_matches_dense():
    # Henderson's C of the gryphon animal model BWT ~ 1 + SEX + (1|ANIMAL) + (1|BYEAR)
    # + (1|MOTHER) with A⁻¹, at σ² = (3, 1, 1.5, 4): a real MME pattern with the fixed
    # effects ordered last (their block is what the ML log-determinant leaves out).
    from henderson.datasets import load_gryphon
    from henderson.relationships.pedigree import pedigree_inverse
    from henderson.spec.model import build_spec

    g = load_gryphon()
    Ainv = pedigree_inverse(g.pedigree)
    rec = g.records.dropna(subset=["BWT", "SEX"])
    spec = build_spec("BWT ~ 1 + SEX + (1|ANIMAL) + (1|BYEAR) + (1|MOTHER)", rec, cov_inverse={"ANIMAL": Ainv})
    T = sp.hstack([sp.csr_matrix(t.design()) for t in spec.terms] + [sp.csr_matrix(spec.X)]).tocsc()
    s2 = [3.0, 1.0, 1.5]
    pen = [
        4.0 / s * (sp.csc_matrix(t.penalty) if t.penalty is not None else sp.identity(t.q))
        for s, t in zip(s2, spec.terms)
    ]
    C = (T.T @ T + sp.block_diag(pen + [sp.csc_matrix((spec.p, spec.p))])).tocsc()
    assert C.shape[0] > 1309
    check_against_dense(C, last=spec.p)


def test_not_positive_definite_is_an_error_naming_the_row():
    A = random_spd(20, 0.1, 5).tolil()
    A[7, 7] = -1.0
    with pytest.raises(NotPositiveDefiniteError, match="not positive definite"):
        SymbolicCholesky(A.tocsc()).factor_matrix(A.tocsc())


def test_update_and_inverse_wider_than_one_panel():
    """Supernodes with more than 2 × PANEL rows below them: the factorisation's update and
    the selected inverse's Z_RR are formed in panels (a remainder panel included); the
    numbers are still the dense ones, in place and out of place."""
    from henderson.linalg._numeric import PANEL

    rng = np.random.default_rng(11)
    n_lead, n_tail = 120, 2 * PANEL + 90
    # each leading column meets ~90 % of a dense trailing block: after elimination the
    # leading supernodes have (almost) the whole tail below them
    B = sp.random(n_tail, n_lead, density=0.9, random_state=rng)
    T = sp.random(n_tail, n_tail, density=0.3, random_state=rng)
    A = sp.bmat([[sp.identity(n_lead), B.T], [B, T + T.T]])
    A = (A + sp.diags(abs(A).sum(axis=1).A1 + 1.0)).tocsc()
    S = check_against_dense(A, last=4, ordering="given")
    m = np.diff(S.rptr) - np.diff(S.first)
    assert m.max() > 2 * PANEL, m.max()  # the case is the one it names
    ref = S.factor_matrix(A).selected_inverse()
    Z = S.factor_matrix(A).selected_inverse(overwrite=True)
    np.testing.assert_allclose(Z.z, ref.z, rtol=0, atol=1e-12 * np.abs(ref.z).max())


def test_a_dense_clique_is_ordered_last_without_metis_and_gives_the_same_numbers():
    # the genotyped block of single-step H⁻¹: 90 rows all linked, in a sparse graph of 600
    from henderson.linalg.ordering import CLIQUE_MIN, candidate_orders

    rng = np.random.default_rng(5)
    n, k = 600, 90
    clique = np.sort(rng.choice(n - 2, size=k, replace=False))  # not among the last 2
    A = random_spd(n, 0.004, seed=7).tolil()
    for i in clique:  # a dense, diagonally dominant block
        A[i, clique] = 0.01
        A[i, i] = A[i, i] + k
    A = A.tocsc()
    assert k >= CLIQUE_MIN
    orders = candidate_orders(A, last=2)
    for name in ("metis", "rcm"):
        assert set(orders[name][-k - 2 : -2]) == set(clique), name
        assert list(orders[name][-2:]) == [n - 2, n - 1]
    S = check_against_dense(A, last=2)
    assert S.ordering in ("metis", "rcm", "given")


def test_a_pedigree_has_no_clique():
    # A⁻¹ of a pedigree with a few sires of many offspring each (hubs, not linked to
    # each other): nothing is taken out of METIS's graph beyond AMD's dense rows
    from henderson._testing.pedigree import simulate_pedigree
    from henderson.linalg.ordering import CLIQUE_MIN, _dense_clique
    from henderson.relationships.pedigree import pedigree_inverse

    # 80 sires per generation of 3,000: h-index 66 ≥ CLIQUE_MIN, so the candidates'
    # linkage is what rules them out
    A = sp.csr_matrix(pedigree_inverse(simulate_pedigree(12000, 4, seed=2, sires_per_generation=80)).matrix, copy=True)
    A.data[:] = 1.0
    A.setdiag(0)
    A.eliminate_zeros()
    degree = np.diff(A.indptr)
    srt = np.sort(degree)[::-1]
    assert np.count_nonzero(srt >= np.arange(1, len(srt) + 1)) >= CLIQUE_MIN
    assert len(_dense_clique(A, degree, np.zeros(A.shape[0], bool))) == 0

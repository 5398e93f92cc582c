"""H⁻¹ of single-step GBLUP against brute-force dense algebra on a small pedigree.

The references are built here from first principles, not by henderson: A by the
tabular method (a Python loop over 20 animals), G = WW'/(2Σpq) from the 0/1/2 counts
with numpy, the blending and tuning by their formulas, and H as Legarra et al. (2009)
/ Aguilar et al. (2010) write it (H = A + [[A₁₂A₂₂⁻¹(G−A₂₂)A₂₂⁻¹A₂₁, A₁₂A₂₂⁻¹(G−A₂₂)],
[(G−A₂₂)A₂₂⁻¹A₂₁, G−A₂₂]]), inverted densely. Tolerance 1e-10: the matrices are of
order 20 with condition numbers below 1e4, so double-precision inverses agree to
~1e-12.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SINGLE_STEP_GENOTYPED as GENOTYPED
from conftest import SINGLE_STEP_PED as PED
from conftest import tabular_A

from henderson.errors import AlignmentError, DataError, DataWarning, NotPositiveDefiniteError
from henderson.io.pedigree import read_pedigree
from henderson.relationships.apy import apy_core_size, apy_inverse
from henderson.relationships.container import Relationship
from henderson.relationships.single_step import a22_inverse_sparse, single_step_inverse


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(12)
    p = rng.uniform(0.1, 0.9, 300)
    X = (rng.random((8, 300)) < p).astype(int) + (rng.random((8, 300)) < p).astype(int)
    frame = pd.DataFrame(X, index=GENOTYPED, columns=[f"s{j}" for j in range(300)])
    ped = read_pedigree(pd.DataFrame(PED, columns=["id", "sire", "dam"]))
    A = tabular_A(PED)[0]
    freq = X.mean(axis=0) / 2
    W = X - 2 * freq
    G = W @ W.T / (2 * np.sum(freq * (1 - freq)))  # VanRaden 1, current frequencies
    return ped, frame, A, G


def brute_H(A, Gstar, gi):
    """Legarra et al. (2009) H, with genotyped animals at positions gi."""
    n = A.shape[0]
    oi = np.setdiff1d(np.arange(n), gi)
    A22 = A[np.ix_(gi, gi)]
    A12 = A[np.ix_(oi, gi)]
    M = A12 @ np.linalg.inv(A22)
    D = Gstar - A22
    H = A.copy()
    H[np.ix_(oi, oi)] += M @ D @ M.T
    H[np.ix_(oi, gi)] += M @ D
    H[np.ix_(gi, oi)] += (M @ D).T
    H[np.ix_(gi, gi)] += D
    return H


def blend_tune(G, A22, alpha, beta, tune):
    Gw = alpha * G + beta * A22
    if not tune:
        return Gw
    k = len(G)
    off = ~np.eye(k, dtype=bool)
    b = (np.diag(A22).mean() - A22[off].mean()) / (np.diag(Gw).mean() - Gw[off].mean())
    a = np.diag(A22).mean() - b * np.diag(Gw).mean()
    return a + b * Gw


def positions(rel, ids):
    return rel.index_of(ids)


def test_defaults_equal_brute_force_H_inverse(data):
    ped, frame, A, G = data
    H_rel = single_step_inverse(ped, frame)  # preGSf90 defaults: 0.95/0.05, tunedG 2
    ids = [r[0] for r in PED]
    pos = positions(H_rel, ids)  # match by id
    gi = np.array([ids.index(g) for g in GENOTYPED])
    A22 = A[np.ix_(gi, gi)]
    Gstar = blend_tune(G, A22, 0.95, 0.05, True)
    H = brute_H(A, Gstar, gi)
    Hinv = H_rel.dense()[np.ix_(pos, pos)]
    np.testing.assert_allclose(Hinv, np.linalg.inv(H), atol=1e-10)
    np.testing.assert_allclose(Hinv @ H, np.eye(20), atol=1e-10)  # H⁻¹·H = I
    # the tuning made the means of G* those of A22
    st = H_rel.info["G_stats"]
    assert st["G_star"]["mean_diag"] == pytest.approx(np.diag(A22).mean(), abs=1e-12)
    assert st["G_star"]["mean_offdiag"] == pytest.approx(st["A22"]["mean_offdiag"], abs=1e-12)
    # log|H| and diag(H) as the REML objective and reliabilities use them
    assert H_rel.info["logdet"] == pytest.approx(np.linalg.slogdet(H)[1], abs=1e-10)
    np.testing.assert_allclose(H_rel.info["diag"][pos], np.diag(H), atol=1e-10)
    assert H_rel.is_sparse and H_rel.inverse


@pytest.mark.parametrize(
    "tau,omega,alpha,beta,tune,method",
    [
        (1.0, 1.0, 1.0, 0.0, True, "sparse"),
        (1.0, 0.7, 0.9, 0.1, False, "dense"),
        (1.3, 0.5, 0.95, 0.05, True, "sparse"),
    ],
)
def test_tau_omega_against_dense_formula(data, tau, omega, alpha, beta, tune, method):
    ped, frame, A, G = data
    ids = [r[0] for r in PED]
    gi = np.array([ids.index(g) for g in GENOTYPED])
    A22 = A[np.ix_(gi, gi)]
    Gstar = blend_tune(G, A22, alpha, beta, tune)
    ref = np.linalg.inv(A)
    ref[np.ix_(gi, gi)] += tau * np.linalg.inv(Gstar) - omega * np.linalg.inv(A22)
    H_rel = single_step_inverse(
        ped, frame, tuning="mean" if tune else None, alpha=alpha, beta=beta, tau=tau, omega=omega, a22_inverse=method
    )
    pos = positions(H_rel, ids)
    np.testing.assert_allclose(H_rel.dense()[np.ix_(pos, pos)], ref, atol=1e-10)
    H = np.linalg.inv(ref)
    assert H_rel.info["logdet"] == pytest.approx(np.linalg.slogdet(H)[1], abs=1e-9)
    np.testing.assert_allclose(H_rel.info["diag"][pos], np.diag(H), atol=1e-9)


def test_a22_inverse_sparse_equals_inverse_of_tabular_A22(data):
    ped, _, A, _ = data
    ids = [r[0] for r in PED]
    gi = np.array([ids.index(g) for g in GENOTYPED])
    inv, logdet = a22_inverse_sparse(ped, GENOTYPED)
    np.testing.assert_allclose(inv, np.linalg.inv(A[np.ix_(gi, gi)]), atol=1e-11)
    assert logdet == pytest.approx(np.linalg.slogdet(A[np.ix_(gi, gi)])[1], abs=1e-11)


def test_given_G_used_as_is_and_rows_in_any_order(data):
    ped, _, A, G = data
    ids = [r[0] for r in PED]
    gi = np.array([ids.index(g) for g in GENOTYPED])
    Gp = G + 0.05 * np.eye(8)  # positive definite: no blending needed
    perm = np.array([3, 0, 7, 1, 6, 2, 5, 4])
    Grel = Relationship(np.array(GENOTYPED)[perm], Gp[np.ix_(perm, perm)], kind="G")
    H_rel = single_step_inverse(ped, Grel, tuning=None, alpha=1.0, beta=0.0)
    pos = positions(H_rel, ids)
    ref = np.linalg.inv(A)
    ref[np.ix_(gi, gi)] += np.linalg.inv(Gp) - np.linalg.inv(A[np.ix_(gi, gi)])
    np.testing.assert_allclose(H_rel.dense()[np.ix_(pos, pos)], ref, atol=1e-10)


def test_apy_all_core_is_the_full_inverse(data):
    _, _, _, G = data
    Gp = G + 0.05 * np.eye(8)
    Grel = Relationship(np.array(GENOTYPED), Gp, kind="G")
    full = apy_inverse(Grel, 8)
    np.testing.assert_allclose(full.dense(), np.linalg.inv(Gp), atol=1e-10)
    assert full.info["logdet"] == pytest.approx(np.linalg.slogdet(Gp)[1], abs=1e-10)


def test_apy_subset_core_against_brute_force_G_apy(data):
    _, _, _, G = data
    Gp = G + 0.05 * np.eye(8)
    Grel = Relationship(np.array(GENOTYPED), Gp, kind="G")
    core = ["9", "3", "18"]
    inv = apy_inverse(Grel, core)
    c = [GENOTYPED.index(i) for i in core]
    nc = [i for i in range(8) if i not in c]
    # G_APY (Misztal 2016): G with G_NN replaced by G_NC G_CC⁻¹ G_CN + diag(m)
    Gcc, Gcn = Gp[np.ix_(c, c)], Gp[np.ix_(c, nc)]
    P = Gcn.T @ np.linalg.inv(Gcc)
    m = np.diag(Gp)[nc] - np.einsum("ij,ji->i", P, Gcn)
    Gapy = Gp.copy()
    Gapy[np.ix_(nc, nc)] = P @ Gcn + np.diag(m)
    np.testing.assert_allclose(inv.dense(), np.linalg.inv(Gapy), atol=1e-10)
    assert inv.info["logdet"] == pytest.approx(np.linalg.slogdet(Gapy)[1], abs=1e-10)
    nn = inv.dense()[np.ix_(nc, nc)]
    assert np.count_nonzero(nn - np.diag(np.diag(nn))) == 0  # the M⁻¹ block is diagonal (sparse)
    assert inv.is_sparse and inv.matrix.nnz == 3 * 3 + 2 * 3 * 5 + 5  # c² + 2c(k − c) + (k − c)


def test_apy_core_size_counts_eigenvalues():
    lam = np.array([5.0, 3.0, 1.0, 0.5, 0.3, 0.2])  # total 10: 98 % needs 9.8 -> 5 values
    Q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(6, 6)))
    G = Relationship([f"a{i}" for i in range(6)], Q @ np.diag(lam) @ Q.T, kind="G")
    assert apy_core_size(G) == 5
    assert apy_core_size(G, 0.9) == 3  # 9.0 reached with 5 + 3 + 1


def test_apy_in_H_with_all_core_equals_full(data):
    ped, frame, _, _ = data
    a = single_step_inverse(ped, frame).dense()
    b = single_step_inverse(ped, frame, apy_core=8).dense()
    np.testing.assert_allclose(a, b, atol=1e-10)


# --- bad input ------------------------------------------------------------------------


def test_genotyped_absent_from_pedigree(data):
    ped, frame, _, _ = data
    f2 = frame.rename(index={"20": "X1", "16": "X2"})
    with pytest.raises(AlignmentError, match=r"2 of 8 genotyped id\(s\) are not in the pedigree.*X2.*X1"):
        single_step_inverse(ped, f2)
    with pytest.warns(DataWarning, match="2 genotyped id"):
        H = single_step_inverse(ped, f2, missing="add")
    assert H.info["n_added_founders"] == 2 and H.n == 22 and {"X1", "X2"} <= set(H.ids)


def test_duplicated_genotyped_ids(data):
    ped, frame, _, _ = data
    f2 = frame.rename(index={"20": "9"})
    with pytest.raises(DataError, match="duplicated.*9"):
        single_step_inverse(ped, f2)


def test_singular_G_without_blending_suggests_blending(data):
    ped, frame, _, _ = data
    with pytest.raises(NotPositiveDefiniteError, match=r"G is singular.*blend G with A22 \(beta > 0"):
        single_step_inverse(ped, frame, tuning=None, alpha=1.0, beta=0.0)


@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"tau": 0.0}, "tau.*must be > 0, got tau=0"),
        ({"omega": 1.5}, r"omega.*\[0, 1\], got omega=1.5"),
        ({"alpha": 1.2}, r"alpha.*\(0, 1\], got alpha=1.2"),
        ({"beta": -0.1}, r"beta.*\[0, 1\], got beta=-0.1"),
        ({"tuning": "max"}, "tuning must be 'mean'"),
        ({"tau": float("nan")}, "tau must be a finite number"),
    ],
)
def test_settings_out_of_range(data, kw, msg):
    ped, frame, _, _ = data
    with pytest.raises(DataError, match=msg):
        single_step_inverse(ped, frame, **kw)


def test_tuning_without_pedigree_information():
    ped = read_pedigree(pd.DataFrame({"id": [f"f{i}" for i in range(5)], "sire": np.nan, "dam": np.nan}))
    rng = np.random.default_rng(3)
    X = rng.integers(0, 3, size=(5, 50))
    frame = pd.DataFrame(X, index=[f"f{i}" for i in range(5)], columns=[f"s{j}" for j in range(50)])
    with pytest.raises(DataError, match=r"tuning='mean'.*A22 of the 5 genotyped animals is the identity.*f0"):
        single_step_inverse(ped, frame)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_pedigrees_against_dense_formula(seed):
    """Simulated pedigrees (inbreeding, unknown parents, rows shuffled) of 200 animals
    with 30 genotyped at random: H⁻¹ equals inv(A) + [[0,0],[0, G*⁻¹ − A22⁻¹]] built
    densely from henderson's tabular A (checked against sommer in
    test_pedigree_relationships) to 1e-9 (order-200 inverses, condition < 1e5)."""
    from henderson._testing.pedigree import simulate_pedigree
    from henderson.relationships.pedigree import pedigree_relationship

    frame = simulate_pedigree(200, 5, seed=seed, shuffle=True)
    ped = read_pedigree(frame)
    rng = np.random.default_rng(seed)
    gids = rng.choice(frame["id"].to_numpy(), 30, replace=False)
    X = rng.integers(0, 3, size=(30, 500))
    geno = pd.DataFrame(X, index=gids, columns=[f"s{j}" for j in range(500)])
    H = single_step_inverse(ped, geno)
    A = pedigree_relationship(ped)
    ids = list(A.ids)
    gi = np.array([ids.index(g) for g in gids])
    Ad = A.dense()
    A22 = Ad[np.ix_(gi, gi)]
    freq = X.mean(0) / 2
    W = X - 2 * freq
    G = W @ W.T / (2 * np.sum(freq * (1 - freq)))
    Gs = blend_tune(G, A22, 0.95, 0.05, True)
    ref = np.linalg.inv(Ad)
    ref[np.ix_(gi, gi)] += np.linalg.inv(Gs) - np.linalg.inv(A22)
    pos = H.index_of(ids)
    np.testing.assert_allclose(H.dense()[np.ix_(pos, pos)], ref, atol=1e-9)
    Hd = np.linalg.inv(ref)
    np.testing.assert_allclose(H.info["diag"][pos], np.diag(Hd), atol=1e-9)
    assert H.info["logdet"] == pytest.approx(np.linalg.slogdet(Hd)[1], abs=1e-8)

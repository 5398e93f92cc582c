"""SparsePlusDenseInverse: H⁻¹ as A⁻¹ plus a dense block, against brute-force dense algebra.

References are built here without henderson: A by the tabular method
(conftest.tabular_A), G = WW'/(2Σpq) with numpy, H⁻¹ = A⁻¹ + [[0,0],[0, τG⁻¹ − ωA₂₂⁻¹]]
by dense inverses, log|H⁻¹| by numpy's slogdet. Tolerance 1e-10 (order-20 matrices with
condition numbers below 1e4).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import SINGLE_STEP_GENOTYPED as GENOTYPED
from conftest import SINGLE_STEP_PED as PED
from conftest import tabular_A

from henderson.errors import DataError
from henderson.io.pedigree import read_pedigree
from henderson.linalg import SymbolicCholesky
from henderson.relationships.h_inverse import SparsePlusDenseInverse
from henderson.relationships.single_step import single_step_inverse
from henderson.spec.levels import SparseInverseWithDenseBlock

IDS = [r[0] for r in PED]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(21)
    p = rng.uniform(0.1, 0.9, 300)
    X = (rng.random((8, 300)) < p).astype(int) + (rng.random((8, 300)) < p).astype(int)
    frame = pd.DataFrame(X, index=GENOTYPED, columns=[f"s{j}" for j in range(300)])
    ped = read_pedigree(pd.DataFrame(PED, columns=["id", "sire", "dam"]))
    A = tabular_A(PED)[0]
    freq = X.mean(axis=0) / 2
    W = X - 2 * freq
    G = W @ W.T / (2 * np.sum(freq * (1 - freq)))
    gi = np.array([IDS.index(g) for g in GENOTYPED])
    return ped, frame, A, G, gi


def reference(A, G, gi, tau, omega):
    """Dense H⁻¹ (no blending/tuning: G + 0.05 I so it is invertible), in IDS order."""
    A22 = A[np.ix_(gi, gi)]
    Gs = G + 0.05 * np.eye(len(gi))
    Hinv = np.linalg.inv(A)
    Hinv[np.ix_(gi, gi)] += tau * np.linalg.inv(Gs) - omega * np.linalg.inv(A22)
    return Hinv, Gs


@pytest.mark.parametrize("tau,omega", [(1.0, 1.0), (1.4, 0.6)])
def test_blocks_equal_dense_H_inverse(data, tau, omega):
    ped, frame, A, G, gi = data
    Href, Gs = reference(A, G, gi, tau, omega)
    Grel = pd.DataFrame(Gs, index=GENOTYPED, columns=GENOTYPED)
    H = single_step_inverse(ped, Grel, tuning=None, alpha=1.0, beta=0.0, tau=tau, omega=omega, as_blocks=True)
    assert isinstance(H, SparsePlusDenseInverse)
    assert H.n_levels == 20 and H.block.shape == (8, 8)
    pos = np.array([list(H.ids).index(i) for i in IDS])
    np.testing.assert_allclose(H.as_dense_inverse()[np.ix_(pos, pos)], Href, atol=1e-10)
    # H⁻¹x for a vector and a matrix of right-hand sides
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, 3))
    xin = np.empty_like(x)
    xin[pos] = x
    np.testing.assert_allclose(H.apply_inverse(xin)[pos], Href @ x, atol=1e-10)
    np.testing.assert_allclose(H.apply_inverse(xin[:, 0])[pos], Href @ x[:, 0], atol=1e-10)
    # the level-covariance protocol: K itself and log|K|
    assert isinstance(H, SparseInverseWithDenseBlock)
    np.testing.assert_allclose(H.as_dense()[np.ix_(pos, pos)], np.linalg.inv(Href), atol=1e-10)
    assert H.logdet_contribution() == pytest.approx(-np.linalg.slogdet(Href)[1], abs=1e-10)
    # log|H⁻¹|: the builder's value and the determinant lemma, both against slogdet
    ref_ld = np.linalg.slogdet(Href)[1]
    assert H.logdet_inverse() == pytest.approx(ref_ld, abs=1e-10)
    lemma = SparsePlusDenseInverse(H.ids, H.sparse, H.block, H.index)
    assert lemma.logdet_inverse() == pytest.approx(ref_ld, abs=1e-10)
    # the one-CSR form equals the filled-in CSR of the default builder
    Hcsr = single_step_inverse(ped, Grel, tuning=None, alpha=1.0, beta=0.0, tau=tau, omega=omega)
    np.testing.assert_allclose(H.to_sparse().toarray(), Hcsr.matrix.toarray(), atol=1e-12)


def test_add_to_mme_and_dense_supernode(data):
    """C + λH⁻¹ at an offset equals the dense sum; on a larger pedigree the block's rows
    are eliminated together in the trailing supernode(s)."""
    ped, frame, A, G, gi = data
    Href, Gs = reference(A, G, gi, 1.0, 1.0)
    Grel = pd.DataFrame(Gs, index=GENOTYPED, columns=GENOTYPED)
    H = single_step_inverse(ped, Grel, tuning=None, alpha=1.0, beta=0.0, as_blocks=True)
    rng = np.random.default_rng(5)
    N = 23
    Z = sp.random(N, N, density=0.1, random_state=7)
    C = (Z @ Z.T + sp.eye(N)).tocsr()
    lam = 2.5
    out = H.add_to(C, 2, lam)
    ref = C.toarray()
    ref[2:22, 2:22] += lam * H.as_dense_inverse()
    np.testing.assert_allclose(out.toarray(), ref, atol=1e-12)
    with pytest.raises(DataError, match="do not fit"):
        H.add_to(C, 5, lam)
    # a dense block of 60 rows on a sparse 2,000-level pattern: those rows form the last supernode
    n, k = 2000, 60
    S = sp.diags([np.full(n, 4.0), np.full(n - 1, -1.0), np.full(n - 1, -1.0)], [0, -1, 1], format="csr")
    idx = np.sort(rng.choice(n, k, replace=False))
    M = rng.normal(size=(k, k))
    big = SparsePlusDenseInverse(np.arange(n), S, M @ M.T / k + np.eye(k), idx)
    C2 = big.add_to(sp.eye(n, format="csr"), 0, 1.0)
    sym = SymbolicCholesky(C2)
    last = sym.snode[sym.iperm[idx]]
    # a clique is eliminated together: its rows end in the trailing supernode(s) (one
    # here but for the relaxed amalgamation's boundary), never spread through the factor
    assert last.max() == sym.n_supernodes - 1 and len(np.unique(last)) <= 2
    f = sym.factor_matrix(C2)
    np.testing.assert_allclose(f.logdet(), np.linalg.slogdet(C2.toarray())[1], atol=1e-8)


def test_bad_blocks():
    S = sp.eye(4, format="csr")
    with pytest.raises(DataError, match="expected \\(2, 2\\)"):
        SparsePlusDenseInverse(list("abcd"), S, np.eye(3), [0, 1])
    with pytest.raises(DataError, match="out of range"):
        SparsePlusDenseInverse(list("abcd"), S, np.eye(2), [0, 4])
    with pytest.raises(DataError, match="repeated"):
        SparsePlusDenseInverse(list("abcd"), S, np.eye(2), [1, 1])


def test_fit_takes_the_blocks(data):
    """fit(cov_inverse={"id": blocks}) equals the fit with the filled-in CSR H⁻¹ (REML)."""
    from henderson.api import fit

    ped, frame, A, G, gi = data
    Grel = pd.DataFrame(G + 0.05 * np.eye(8), index=GENOTYPED, columns=GENOTYPED)
    kw = dict(tuning=None, alpha=1.0, beta=0.0, tau=1.2, omega=0.8)
    Hb = single_step_inverse(ped, Grel, as_blocks=True, **kw)
    Hc = single_step_inverse(ped, Grel, **kw)
    rng = np.random.default_rng(8)
    d = pd.DataFrame({"id": IDS[3:], "y": rng.normal(size=17) + 3.0})
    r1 = fit("y ~ 1 + (1|id)", d, cov_inverse={"id": Hb})
    r2 = fit("y ~ 1 + (1|id)", d, cov_inverse={"id": Hc})
    assert r1.loglik == pytest.approx(r2.loglik, abs=1e-8)
    np.testing.assert_allclose(r1.sigma2.to_numpy(), r2.sigma2.to_numpy(), atol=1e-8)

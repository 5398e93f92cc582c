"""The tridiagonal multi-trait evaluation (no eigenvectors during REML) against references.

- −2 log L, score and AI at fixed θ against a dense REML on the stacked data
  (V = Σ_g ⊗ K_r + Σ_e ⊗ I, nt × nt, numpy inverses) to 1e-10 relative.
- Against the dense-eigenvector rotation (``MultiTraitSpectral(vectors="full")``, LAPACK
  dsyevr) to 1e-10 on K with exactly tied eigenvalues, near-ties (gaps 1e-12), a singular
  G (rank < n) and records on a subset of the levels (repeated levels, levels without
  records): −2 log L, score, AI, EM step, b̂, GEBVs, Py and PEV.
- The eigenvectors formed for PEV (MRRR + dormtr): U'U = I and UDU' = K_r to 1e-10.
- ``ormtr_lower`` against Q built densely from the dsytrd reflectors, H(i) = I − τᵢvᵢvᵢ'.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import dense_reml
from scipy.linalg import lapack

from henderson.errors import NotPositiveDefiniteError
from henderson.linalg._lapack import ormtr_lower
from henderson.multitrait.spectral import MultiTraitSpectral, MultiTraitTridiagonal, vech_index

SG = np.array([[1.2, 0.3, -0.1], [0.3, 0.9, 0.2], [-0.1, 0.2, 0.5]])
SE = np.array([[0.8, 0.1, 0.05], [0.1, 1.1, -0.2], [0.05, -0.2, 0.7]])


def kernel(kind, N, rng):
    """K (N × N) of a given spectrum: random orthogonal vectors, chosen eigenvalues."""
    if kind == "singular":  # centred genotypes with fewer SNPs than individuals: rank < N
        M = rng.binomial(2, 0.3, size=(N, N // 2)).astype(float)
        M -= M.mean(0)
        return M @ M.T / M.shape[1]
    Qm, _ = np.linalg.qr(rng.normal(size=(N, N)))
    if kind == "ties":  # four distinct values, each repeated
        ev = np.repeat([0.5, 1.0, 2.0, 3.5], N // 4 + 1)[:N]
    else:  # near-ties: clusters of eigenvalues 1e-12 apart
        ev = np.repeat([0.4, 1.1, 2.5], N // 3 + 1)[:N] + 1e-12 * np.arange(N)
    return (Qm * ev) @ Qm.T


def data(n, rng):
    Y = rng.normal(size=(n, 3)) + np.array([1.0, -2.0, 0.5])
    x = rng.normal(size=n)
    return Y, [np.ones((n, 1)), np.column_stack([np.ones(n), x]), np.ones((n, 1))]


def test_objective_score_ai_match_dense_reml():
    rng = np.random.default_rng(11)
    n = 36
    K = kernel("singular", n, rng)
    Y, Xs = data(n, rng)
    st = MultiTraitTridiagonal(Y, Xs, K, np.arange(n))
    m2, P, y, _ = dense_reml(Y, Xs, K, SG, SE)
    assert st.m2ll(SG, SE) == pytest.approx(m2, rel=1e-10)
    Vs = []
    for B in (K, np.eye(n)):
        for k, l in vech_index(3):
            E = np.zeros((3, 3))
            E[k, l] = E[l, k] = 1
            Vs.append(np.kron(E, B))
    score = np.array([-0.5 * (np.trace(P @ Vj) - y @ P @ Vj @ P @ y) for Vj in Vs])
    ai = np.array([[0.5 * y @ P @ Vj @ P @ Vm @ P @ y for Vm in Vs] for Vj in Vs])
    np.testing.assert_allclose(st.score(SG, SE)[0], score, atol=1e-10 * np.abs(score).max())
    np.testing.assert_allclose(st.average_information(SG, SE), ai, atol=1e-10 * np.abs(ai).max())
    # Py and BLUPs: P y from the dense P, û = (Σ_g ⊗ K) P y
    sol = st.solve(SG, SE, pev=False)
    Py = (P @ y).reshape(3, n).T
    np.testing.assert_allclose(sol["Py"], Py, atol=1e-10 * np.abs(Py).max())
    np.testing.assert_allclose(sol["U_hat"], K @ Py @ SG, atol=1e-10 * np.abs(K @ Py @ SG).max())


@pytest.mark.parametrize("kind", ["ties", "near-ties", "singular"])
@pytest.mark.parametrize("layout", ["one record per level", "subset of levels, repeats"])
def test_equals_dense_eigenvector_rotation(kind, layout):
    rng = np.random.default_rng(5)
    N = 48
    K = kernel(kind, N, rng)
    if layout == "one record per level":
        codes = np.arange(N)
    else:  # 40 records on 34 levels (6 repeated); 14 levels without records
        lv = rng.permutation(N)[:34]
        codes = np.concatenate([lv, lv[:6]])
    Y, Xs = data(len(codes), rng)
    full = MultiTraitSpectral(Y, Xs, K, codes, vectors="full")
    tri = MultiTraitTridiagonal(Y, Xs, K, codes)
    f, r = full.pieces(SG, SE), tri.pieces(SG, SE)
    assert r["m2ll"] == pytest.approx(f["m2ll"], rel=1e-10)
    s_f, s_r = full.score(SG, SE)[0], tri.score(SG, SE)[0]
    np.testing.assert_allclose(s_r, s_f, atol=1e-10 * np.abs(s_f).max())
    ai_f, ai_r = full.average_information(SG, SE), tri.average_information(SG, SE)
    np.testing.assert_allclose(ai_r, ai_f, atol=1e-10 * np.abs(ai_f).max())
    for a, b in zip(tri.em_update(SG, SE), full.em_update(SG, SE)):
        np.testing.assert_allclose(a, b, atol=1e-10)
    a, b = tri.solve(SG, SE, pev=True), full.solve(SG, SE, pev=True)
    for key in ("b", "cov_b", "U_hat", "Py", "pev"):
        scale = max(np.abs(b[key]).max(), 1e-300)
        np.testing.assert_allclose(a[key], b[key], atol=1e-10 * scale, err_msg=key)
    assert tri.rank == full.rank


def test_eigenvectors_for_pev_are_orthonormal_and_reconstruct():
    rng = np.random.default_rng(2)
    for kind in ("ties", "near-ties", "singular"):
        K = kernel(kind, 50, rng)
        Y, Xs = data(50, rng)
        st = MultiTraitTridiagonal(Y, Xs, K, np.arange(50))
        U = st._form_eigenvectors()
        np.testing.assert_allclose(U.T @ U, np.eye(50), atol=1e-10)
        np.testing.assert_allclose((U * st.d_vec) @ U.T, K, atol=1e-10 * np.abs(K).max())


def test_ormtr_matches_dense_reflectors():
    rng = np.random.default_rng(4)
    n = 30
    A = rng.normal(size=(n, n))
    A = A + A.T
    c, d, e, tau, info = lapack.dsytrd(np.asfortranarray(A), lower=1)
    assert info == 0
    Q = np.eye(n)
    for i in range(n - 1):  # Q = H(1)···H(n−1), v = [0…0, 1, c[i+2:, i]]
        v = np.zeros(n)
        v[i + 1] = 1.0
        v[i + 2 :] = c[i + 2 :, i]
        Q = Q @ (np.eye(n) - tau[i] * np.outer(v, v))
    T = np.diag(d) + np.diag(e, 1) + np.diag(e, -1)
    np.testing.assert_allclose(Q @ T @ Q.T, A, atol=1e-12 * np.abs(A).max())
    B = rng.normal(size=(n, 4))
    c = np.asfortranarray(c)
    for side, trans, want in (("L", "N", Q @ B), ("L", "T", Q.T @ B), ("R", "N", B.T @ Q), ("R", "T", B.T @ Q.T)):
        C = np.array(B if side == "L" else B.T, order="F")  # a copy: ormtr overwrites it
        assert ormtr_lower(side, trans, c, tau, C) == 0
        np.testing.assert_allclose(C, want, atol=1e-12)


def test_singular_residual_covariance():
    """A singular Σ_e: an error with a G of rank n/2 whose null space the fixed effects do
    not absorb (V is singular on the error contrasts too); with a PD K the pencil
    diagonalisation (on Σ_g + Σ_e) equals the dense stacked REML and the dsyevr path."""
    rng = np.random.default_rng(1)
    Se = np.array([[1.0, 0.5, 0.0], [0.5, 0.25, 0.0], [0.0, 0.0, 0.7]])  # rank 2
    K = kernel("singular", 20, rng)
    Y, Xs = data(20, rng)
    st = MultiTraitTridiagonal(Y, Xs, K, np.arange(20))
    with pytest.raises(NotPositiveDefiniteError, match="residual covariance"):
        st.m2ll(SG, Se)
    K = kernel("ties", 24, rng)
    Y, Xs = data(24, rng)
    st = MultiTraitTridiagonal(Y, Xs, K, np.arange(24))
    full = MultiTraitSpectral(Y, Xs, K, np.arange(24), vectors="full")
    m2 = dense_reml(Y, Xs, K, SG, Se)[0]
    assert st.m2ll(SG, Se) == pytest.approx(m2, rel=1e-10)
    s_f, s_r = full.score(SG, Se)[0], st.score(SG, Se)[0]
    np.testing.assert_allclose(s_r, s_f, atol=1e-10 * np.abs(s_f).max())
    ai_f, ai_r = full.average_information(SG, Se), st.average_information(SG, Se)
    np.testing.assert_allclose(ai_r, ai_f, atol=1e-10 * np.abs(ai_f).max())
    a, b = st.solve(SG, Se, pev=True), full.solve(SG, Se, pev=True)
    for key in ("b", "U_hat", "Py", "pev"):
        np.testing.assert_allclose(a[key], b[key], atol=1e-10 * np.abs(b[key]).max(), err_msg=key)

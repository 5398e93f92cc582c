"""A G of low rank (m = 40 SNPs, n = 150: more than 100 null vectors) and a residual Σ_e
near singular (trait 2 measured with a residual SD of 1e-4).

The null vectors of G are deflated by the tridiagonal engine whatever their number
(before, only up to 64 were, and V was solved whole: along G's null space it is then
a_r T + b_r I with b_r ~ 1e-8 while T's rounding eigenvalues there are ~1e-15 ‖G‖, so
−2 log L was off by ~1e-4).

Reference, written here: G's eigenbasis from the SVD of the centred genotypes W (G = WW'/m,
exact zeros on the n − rank(W) null directions, the model's G), in which V is block-diagonal
with t × t blocks H_i = d_i Σ_g + Σ_e, and the textbook −2 log L_REML =
(nt − p) log 2π + Σ_i log|H_i| + log|X'V⁻¹X| + y'Py evaluated there (t × t inverses, no
n-dimensional factorisation). Σ_e = diag(1, ε) is given with its small eigenvalue in an entry
of its own, so nothing below is limited by the conditioning of the input. Accuracy of the
reference: y'Py is formed as r'V⁻¹r (r = y − Xβ̂; y'V⁻¹y − y'V⁻¹Xβ̂ would cancel terms
~|y|²/ε), and log|X'V⁻¹X| (2 × 2, one eigenvalue ~1/ε) costs ~1e-16 cond ≈ 1e-8 absolute on a −2 log L of ~ −2,000, so 1e-10 relative (2e-7 absolute)
is met with margin; the optimum (BFGS then Nelder–Mead on the Cholesky factors) is compared
to 1e-6 absolute (the optimisers stop within ~1e-8 of a flat optimum).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.optimize as so

import henderson as hd
from henderson.errors import ConvergenceWarning
from henderson.multitrait.spectral import MultiTraitTridiagonal

N_IND, M_SNP, EPS = 150, 40, 1e-8


def case(seed=3):
    rng = np.random.default_rng(seed)
    W = rng.binomial(2, rng.uniform(0.1, 0.5, M_SNP), size=(N_IND, M_SNP)).astype(float)
    W -= W.mean(0)
    K = W @ W.T / M_SNP
    g = W @ rng.normal(size=(M_SNP, 2)) / np.sqrt(M_SNP)
    e = rng.normal(size=(N_IND, 2)) * np.array([1.0, np.sqrt(EPS)])
    Y = np.array([1.0, 2.0]) + g + e
    return Y, K, W


def eigenbasis(W):
    """U (n × n orthogonal), d: G = U diag(d) U' with exact zeros on W's null space."""
    U, s, _ = np.linalg.svd(W, full_matrices=True)
    r = int(np.count_nonzero(s > 1e-10 * s[0]))
    d = np.zeros(W.shape[0])
    d[:r] = s[:r] ** 2 / W.shape[1]
    return U, d, r


def textbook_m2ll(Yr, Xr, d, Sg, Se):
    """−2 log L_REML in G's eigenbasis (module docstring); Yr (n, t) = U'Y, Xr (n, t, p)."""
    n, t = Yr.shape
    p = Xr.shape[2]
    H = d[:, None, None] * Sg + Se
    sign, ld = np.linalg.slogdet(H)
    if np.any(sign <= 0):
        return np.inf
    Hi = np.linalg.inv(H)
    HX = np.einsum("ikl,ilp->ikp", Hi, Xr)
    XVX = np.einsum("ikp,ikq->pq", Xr, HX)
    XVy = np.einsum("ikp,ik->p", HX, Yr)
    cf = np.linalg.cholesky(XVX)
    beta = np.linalg.solve(cf.T, np.linalg.solve(cf, XVy))
    # y'Py as r'V⁻¹r with r = y − Xβ̂ (y'V⁻¹y − y'V⁻¹X β̂ would cancel ~|y|²/ε ≈ 1e11)
    res = Yr - Xr @ beta
    ypy = np.einsum("ik,ikl,il->", res, Hi, res)
    return (n * t - p) * np.log(2 * np.pi) + ld.sum() + 2 * np.log(np.diag(cf)).sum() + ypy


def rotated(Y, U):
    n, t = Y.shape
    Xr = np.zeros((n, t, t))
    u1 = U.T @ np.ones(n)
    for k in range(t):
        Xr[:, k, k] = u1
    return U.T @ Y, Xr


SG = np.array([[0.6, 0.2], [0.2, 0.4]])
SE = np.diag([0.8, EPS])


def test_many_null_vectors_are_deflated_and_exact():
    Y, K, W = case()
    U, d, r = eigenbasis(W)
    assert N_IND - r > 64  # more null vectors than the old limit
    Yr, Xr = rotated(Y, U)
    ref = textbook_m2ll(Yr, Xr, d, SG, SE)
    st = MultiTraitTridiagonal(Y, [np.ones((N_IND, 1))] * 2, K, np.arange(N_IND))
    assert st.m2ll(SG, SE) == pytest.approx(ref, rel=1e-10)  # before: off by 3.5e-5 (3.5e-8 relative)
    assert st._n0 == N_IND - r
    # a PD Σ_e far from singular: the same with and without the null block's ε
    Se = np.array([[0.8, 0.1], [0.1, 0.5]])
    assert st.m2ll(SG, Se) == pytest.approx(textbook_m2ll(Yr, Xr, d, SG, Se), rel=1e-10)


def brute_force(Yr, Xr, d):
    def unpack(v):
        L1, L2 = np.zeros((2, 2)), np.zeros((2, 2))
        L1[np.tril_indices(2)] = v[:3]
        L2[np.tril_indices(2)] = v[3:]
        return L1 @ L1.T, L2 @ L2.T

    def f(v):
        return textbook_m2ll(Yr, Xr, d, *unpack(v))

    v0 = np.array([0.7, 0.1, 0.6, 0.9, 0.0, 1e-3])
    best = so.minimize(f, v0, method="BFGS", options={"gtol": 1e-9, "maxiter": 5000})
    best = so.minimize(f, best.x, method="Nelder-Mead", options={"xatol": 1e-12, "fatol": 1e-12, "maxfev": 6000})
    return best.fun, unpack(best.x)


def test_fit_with_many_null_vectors_near_a_singular_residual():
    Y, K, W = case()
    U, d, _ = eigenbasis(W)
    ref, (_, Se_bf) = brute_force(*rotated(Y, U), d)
    assert np.linalg.eigvalsh(Se_bf)[0] < 1e-6  # near singular (trait 2's residual ~1e-8)
    ids = [f"a{i}" for i in range(N_IND)]
    frame = pd.DataFrame({"id": ids, "y1": Y[:, 0], "y2": Y[:, 1]})
    Kf = pd.DataFrame(K, index=ids, columns=ids)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = hd.fit("cbind(y1, y2) ~ 1 + (1|id)", frame, cov={"id": Kf})
    assert not [c for c in caught if issubclass(c.category, ConvergenceWarning)]
    assert res.solver == "multitrait-spectral" and res.converged
    assert -2 * res.loglik == pytest.approx(ref, abs=1e-6)


def test_pev_with_repeated_records_and_many_null_vectors():
    """The null block's P_NN and P_Nβ enter PEV when levels have several records (K_r ≠
    diagonal-in-U): against the dense-eigenvector reference (dsyevr, no deflation) at a PD
    Σ_e, 1e-10 of the largest entry (both are float64 O(n³) paths; measured ~1e-14).
    This guards the reduced bordered system's PEV blocks; the old code passed it too."""
    from henderson.multitrait.spectral import MultiTraitSpectral

    rng = np.random.default_rng(5)
    q, m = 90, 30
    W = rng.binomial(2, 0.3, size=(q, m)).astype(float)
    W -= W.mean(0)
    K = W @ W.T / m
    codes = np.concatenate([np.arange(q), rng.integers(0, q, 40)])
    n = len(codes)
    Y = rng.normal(size=(n, 2))
    Xs = [np.column_stack([np.ones(n), rng.normal(size=n)])] * 2
    Se = np.array([[0.8, 0.1], [0.1, 0.5]])
    st = MultiTraitTridiagonal(Y, Xs, K, codes)
    assert st._n0 > 64
    a = st.solve(SG, Se, pev=True)
    b = MultiTraitSpectral(Y, Xs, K, codes, vectors="full").solve(SG, Se, pev=True)
    assert a["m2ll"] == pytest.approx(b["m2ll"], rel=1e-10)
    for key in ("b", "U_hat", "Py", "pev"):
        np.testing.assert_allclose(a[key], b[key], atol=1e-10 * np.abs(b[key]).max(), err_msg=key)

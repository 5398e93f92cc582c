"""Multi-trait single-step GBLUP at given (co)variances against brute-force dense GLS.

Reference, built without henderson: A by the tabular method (conftest.tabular_A), G =
WW'/(2Σpq) + 0.05 I with numpy, H⁻¹ = A⁻¹ + [[0,0],[0, G⁻¹ − A₂₂⁻¹]] by dense inverses,
then V = Z(Σ_g ⊗ H)Z' + R over the stacked observations, b̂ = (X'V⁻¹X)⁻¹X'V⁻¹y and
û = (Σ_g ⊗ H)Z'V⁻¹(y − Xb̂) (the GLS/BLUP form, not the MME the code solves), and
PEV = diag of the MME inverse formed densely. Tolerance 1e-10: order-40 dense
systems with condition numbers below 1e5.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SINGLE_STEP_GENOTYPED as GENOTYPED
from conftest import SINGLE_STEP_PED as PED
from conftest import tabular_A

from henderson.errors import AlignmentError, DataError, NotPositiveDefiniteError
from henderson.estimators import SingleStepGBLUP
from henderson.io.pedigree import read_pedigree
from henderson.multitrait.single_step import fit_ssgblup_traits

IDS = [r[0] for r in PED]
SG = np.array([[1.0, 0.4], [0.4, 0.8]])
SE = np.array([[2.0, 0.5], [0.5, 1.5]])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(31)
    p = rng.uniform(0.1, 0.9, 300)
    X = (rng.random((8, 300)) < p).astype(int) + (rng.random((8, 300)) < p).astype(int)
    freq = X.mean(axis=0) / 2
    W = X - 2 * freq
    G = W @ W.T / (2 * np.sum(freq * (1 - freq))) + 0.05 * np.eye(8)
    Gdf = pd.DataFrame(G, index=GENOTYPED, columns=GENOTYPED)
    ped = read_pedigree(pd.DataFrame(PED, columns=["id", "sire", "dam"]))
    A = tabular_A(PED)[0]
    gi = np.array([IDS.index(g) for g in GENOTYPED])
    Hinv = np.linalg.inv(A)
    Hinv[np.ix_(gi, gi)] += np.linalg.inv(G) - np.linalg.inv(A[np.ix_(gi, gi)])
    # records on animals 5..20; trait 2 missing on some, trait 1 on one
    rec = IDS[4:]
    Y = pd.DataFrame(rng.normal(size=(len(rec), 2)) + [10.0, 5.0], index=rec, columns=["milk", "fat"])
    Y.iloc[[1, 4, 9], 1] = np.nan
    Y.iloc[6, 0] = np.nan
    return ped, Gdf, Hinv, Y


def brute(Hinv, Y, Sg, Se):
    H = np.linalg.inv(Hinv)
    n, t = H.shape[0], Y.shape[1]
    vals = Y.to_numpy()
    obs = np.isfinite(vals)
    rows = []  # (record row, trait) of each stacked observation, in any order
    for i in range(vals.shape[0]):
        for j in range(t):
            if obs[i, j]:
                rows.append((i, j))
    m = len(rows)
    y = np.array([vals[i, j] for i, j in rows])
    Z = np.zeros((m, t * n))
    X = np.zeros((m, t))
    R = np.zeros((m, m))
    for a, (i, j) in enumerate(rows):
        Z[a, j * n + IDS.index(Y.index[i])] = 1.0
        X[a, j] = 1.0
        for b, (i2, j2) in enumerate(rows):
            if i2 == i:
                R[a, b] = Se[j, j2]
    Gu = np.kron(Sg, H)
    V = Z @ Gu @ Z.T + R
    Vi = np.linalg.inv(V)
    b = np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ y)
    u = Gu @ Z.T @ Vi @ (y - X @ b)
    Ri = np.linalg.inv(R)
    C = np.block([[Z.T @ Ri @ Z + np.kron(np.linalg.inv(Sg), Hinv), Z.T @ Ri @ X], [X.T @ Ri @ Z, X.T @ Ri @ X]])
    pev = np.diag(np.linalg.inv(C))[: t * n]
    return u.reshape(t, n).T, b, pev.reshape(t, n).T, np.diag(H)


def test_two_traits_equal_dense_gls(data):
    ped, Gdf, Hinv, Y = data
    res = fit_ssgblup_traits(Y, ped, Gdf, sigma_g=SG, sigma_e=SE, tuning=None, alpha=1.0, beta=0.0)
    u, b, pev, hdiag = brute(Hinv, Y, SG, SE)
    ebv = res.ebv.loc[IDS].to_numpy()
    np.testing.assert_allclose(ebv, u, atol=1e-10)
    np.testing.assert_allclose(res.fixed.to_numpy(), b, atol=1e-10)
    np.testing.assert_allclose(res.pev.loc[IDS].to_numpy(), pev, atol=1e-10)
    rel = 1 - pev / (hdiag[:, None] * np.diag(SG)[None, :])
    np.testing.assert_allclose(res.reliability.loc[IDS].to_numpy(), rel, atol=1e-10)
    assert res.info["n_records"] == {"milk": 15, "fat": 13}
    assert res.info["patterns"] == {"11": 12, "10": 3, "01": 1}


def test_estimator_traits_and_pedigree_only(data):
    ped, Gdf, Hinv, Y = data
    est = SingleStepGBLUP(traits=["milk", "fat"], sigma2=(SG, SE), tuning=None, alpha=1.0, beta=0.0)
    est.fit(ped, Gdf, Y)
    u, b, _, _ = brute(Hinv, Y, SG, SE)
    np.testing.assert_allclose(est.gebv_.loc[IDS, ["milk", "fat"]].to_numpy(), u, atol=1e-10)
    # no genotypes: multi-trait pedigree BLUP (H = A)
    A = tabular_A(PED)[0]
    res = fit_ssgblup_traits(Y, ped, None, sigma_g=SG, sigma_e=SE)
    u0, _, pev0, _ = brute(np.linalg.inv(A), Y, SG, SE)
    np.testing.assert_allclose(res.ebv.loc[IDS].to_numpy(), u0, atol=1e-10)
    np.testing.assert_allclose(res.pev.loc[IDS].to_numpy(), pev0, atol=1e-10)


def test_bad_input(data):
    ped, Gdf, _, Y = data
    kw = dict(tuning=None, alpha=1.0, beta=0.0)
    with pytest.raises(DataError, match="2 × 2"):
        fit_ssgblup_traits(Y, ped, Gdf, sigma_g=np.eye(3), sigma_e=SE, **kw)
    with pytest.raises(NotPositiveDefiniteError, match="sigma_e"):
        fit_ssgblup_traits(Y, ped, Gdf, sigma_g=SG, sigma_e=np.array([[1.0, 2.0], [2.0, 1.0]]), **kw)
    bad = Y.copy()
    bad.index = ["nobody"] + list(Y.index[1:])
    with pytest.raises(AlignmentError, match="nobody"):
        fit_ssgblup_traits(bad, ped, Gdf, sigma_g=SG, sigma_e=SE, **kw)
    with pytest.raises(DataError, match="sigma2"):
        SingleStepGBLUP(traits=["milk", "fat"], sigma2=(SG,)).fit(ped, Gdf, Y)
    with pytest.raises(DataError, match="both"):
        fit_ssgblup_traits(Y, ped, Gdf, sigma_g=SG, **kw)


def brute_m2ll(theta, H, Y):
    """REML −2 log L from V directly: (N − p) log 2π + log|V| + log|X'V⁻¹X| + y'Py."""
    Sg = np.array([[theta[0], theta[1]], [theta[1], theta[2]]])
    Se = np.array([[theta[3], theta[4]], [theta[4], theta[5]]])
    vals = Y.to_numpy()
    rows = [(i, j) for i in range(vals.shape[0]) for j in range(2) if np.isfinite(vals[i, j])]
    y = np.array([vals[i, j] for i, j in rows])
    n = H.shape[0]
    Z = np.zeros((len(rows), 2 * n))
    X = np.zeros((len(rows), 2))
    R = np.zeros((len(rows), len(rows)))
    for a, (i, j) in enumerate(rows):
        Z[a, j * n + IDS.index(Y.index[i])] = 1.0
        X[a, j] = 1.0
        for b, (i2, j2) in enumerate(rows):
            if i2 == i:
                R[a, b] = Se[j, j2]
    V = Z @ np.kron(Sg, H) @ Z.T + R
    Vi = np.linalg.inv(V)
    XVX = X.T @ Vi @ X
    P = Vi - Vi @ X @ np.linalg.solve(XVX, X.T @ Vi)
    N, p = len(y), 2
    return (N - p) * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + np.linalg.slogdet(XVX)[1] + y @ P @ y


def test_reml_is_a_stationary_point_of_the_dense_likelihood():
    """REML (general multi-trait engine, K⁻¹ = H⁻¹): its −2logL equals the dense one at
    the estimates (1e-8) and the dense gradient there is zero (central differences,
    1e-4). Data: u ~ N(0, Σ_g ⊗ H), seed 4 (a seed whose estimates are interior)."""
    rng = np.random.default_rng(4)
    p = rng.uniform(0.1, 0.9, 300)
    X = (rng.random((8, 300)) < p).astype(int) + (rng.random((8, 300)) < p).astype(int)
    freq = X.mean(axis=0) / 2
    W = X - 2 * freq
    G = W @ W.T / (2 * np.sum(freq * (1 - freq))) + 0.05 * np.eye(8)
    Gdf = pd.DataFrame(G, index=GENOTYPED, columns=GENOTYPED)
    ped = read_pedigree(pd.DataFrame(PED, columns=["id", "sire", "dam"]))
    A = tabular_A(PED)[0]
    gi = np.array([IDS.index(g) for g in GENOTYPED])
    Hinv = np.linalg.inv(A)
    Hinv[np.ix_(gi, gi)] += np.linalg.inv(G) - np.linalg.inv(A[np.ix_(gi, gi)])
    H = np.linalg.inv(Hinv)
    sg, se = np.array([[2.0, 1.0], [1.0, 1.5]]), np.array([[0.3, 0.1], [0.1, 0.3]])
    u = (np.linalg.cholesky(H) @ rng.normal(size=(20, 2))) @ np.linalg.cholesky(sg).T
    e = rng.normal(size=(20, 2)) @ np.linalg.cholesky(se).T
    Y = pd.DataFrame(u + e + [10.0, 5.0], index=IDS, columns=["milk", "fat"])
    Y.iloc[[1, 4, 9], 1] = np.nan
    Y.iloc[6, 0] = np.nan
    res = fit_ssgblup_traits(Y, ped, Gdf, tuning=None, alpha=1.0, beta=0.0)
    assert res.info["converged"]
    Sg, Se = res.info["sigma_g"], res.info["sigma_e"]
    theta = np.array([Sg[0, 0], Sg[1, 0], Sg[1, 1], Se[0, 0], Se[1, 0], Se[1, 1]])
    assert res.info["m2ll"] == pytest.approx(brute_m2ll(theta, H, Y), abs=1e-8)
    h = 1e-5
    grad = [(brute_m2ll(theta + h * d, H, Y) - brute_m2ll(theta - h * d, H, Y)) / (2 * h) for d in np.eye(6)]
    np.testing.assert_allclose(grad, 0.0, atol=1e-4)
    # and the solutions are the given-variance ones at the estimates
    given = fit_ssgblup_traits(Y, ped, Gdf, sigma_g=Sg, sigma_e=Se, tuning=None, alpha=1.0, beta=0.0)
    np.testing.assert_allclose(res.ebv.to_numpy(), given.ebv.to_numpy(), atol=1e-12)

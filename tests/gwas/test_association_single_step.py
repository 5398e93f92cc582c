"""Association from a single-step fit (``henderson.association(SingleStepGBLUP, genotypes)``).

Reference: a brute-force dense computation written here, independent of henderson's
H⁻¹ and MME code: A by the tabular method, G = WW'/2Σpq, G* = 0.95 G + 0.05 A22 tuned
to A22's means (preGSf90), H⁻¹ = A⁻¹ + [[0, 0], [0, G*⁻¹ − A22⁻¹]] (Aguilar et al.
2010), the MME [X'X X'Z; Z'X Z'Z + λH⁻¹] inverted densely; then the SNP effects
β̂ = W'G*⁻¹ĝ/c and Var(β̂) = diag(W'G*⁻¹(G*σ²_u − C^gg)G*⁻¹W)/c² (Aguilar et al.
2019, postGSf90). Tolerance 1e-8 relative (1e-12 absolute): every matrix is of order
≤ 21 and well conditioned, so two dense/sparse factorisations agree to ~1e-13.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SINGLE_STEP_GENOTYPED as GENOTYPED
from conftest import SINGLE_STEP_PED as PED
from conftest import tabular_A

import henderson
from henderson import SingleStepGBLUP
from henderson.data.genotypes import Genotypes
from henderson.errors import ModelError
from henderson.io.pedigree import read_pedigree

S_U, S_E = 0.6, 1.1


@pytest.fixture(scope="module")
def example():
    rng = np.random.default_rng(33)
    ped = read_pedigree(pd.DataFrame(PED, columns=["id", "sire", "dam"]))
    p = rng.uniform(0.1, 0.9, 50)
    X = (rng.random((8, 50)) < p).astype(int) + (rng.random((8, 50)) < p).astype(int)
    X[:, 7] = 1  # a monomorphic SNP: reported, not tested
    geno = Genotypes.from_frame(pd.DataFrame(X, index=GENOTYPED, columns=[f"s{j}" for j in range(50)]))
    rec = [r[0] for r in PED][4:]  # the 16 non-founders have records
    y = pd.Series(rng.normal(5, 1, len(rec)), index=rec, name="y")
    est = SingleStepGBLUP(sigma2=(S_U, S_E), snp_effects=True).fit(ped, geno, y)
    return ped, geno, X, y, est


def _dense_reference(X, y):
    """β̂ and Var(β̂) from the dense single-step MME inverse (module notes)."""
    ids = [r[0] for r in PED]
    n, k = len(ids), len(GENOTYPED)
    gi = [ids.index(g) for g in GENOTYPED]
    A = tabular_A(PED)[0]
    A22 = A[np.ix_(gi, gi)]
    freq = X.mean(0) / 2
    W = X - 2 * freq
    c = 2 * np.sum(freq * (1 - freq))
    Gw = 0.95 * (W @ W.T / c) + 0.05 * A22
    off = ~np.eye(k, dtype=bool)
    b = (np.diag(A22).mean() - A22[off].mean()) / (np.diag(Gw).mean() - Gw[off].mean())
    Gs = np.diag(A22).mean() - b * np.diag(Gw).mean() + b * Gw
    Hinv = np.linalg.inv(A)
    Hinv[np.ix_(gi, gi)] += np.linalg.inv(Gs) - np.linalg.inv(A22)
    Z = np.zeros((len(y), n))
    Z[np.arange(len(y)), [ids.index(i) for i in y.index]] = 1
    Xf = np.ones((len(y), 1))
    C = np.block([[Xf.T @ Xf, Xf.T @ Z], [Z.T @ Xf, Z.T @ Z + (S_E / S_U) * Hinv]])
    Cinv = np.linalg.inv(C)
    u = (Cinv @ np.concatenate([Xf.T @ y.to_numpy(), Z.T @ y.to_numpy()]))[1:]
    Cgg = Cinv[1:, 1:][np.ix_(gi, gi)] * S_E
    Gsi = np.linalg.inv(Gs)
    beta = W.T @ Gsi @ u[gi] / c
    var = np.diag(W.T @ Gsi @ (Gs * S_U - Cgg) @ Gsi @ W) / c**2
    return beta, var, Cgg


def test_association_equals_dense_single_step_mme(example):
    _, geno, X, y, est = example
    beta, var, Cgg = _dense_reference(X, y)
    np.testing.assert_allclose(est.genotyped_pec().loc[GENOTYPED, GENOTYPED].to_numpy(), Cgg, rtol=1e-8, atol=1e-12)
    t = henderson.association(est, geno)
    poly = X.std(axis=0) > 0
    assert t["tested"].to_numpy().tolist() == poly.tolist()
    np.testing.assert_allclose(t["effect"].to_numpy()[poly], beta[poly], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(t["se"].to_numpy()[poly], np.sqrt(var[poly]), rtol=1e-8, atol=1e-12)
    z = beta[poly] / np.sqrt(var[poly])
    np.testing.assert_allclose(t["z"].to_numpy()[poly], z, rtol=1e-8)
    from scipy.stats import norm

    np.testing.assert_allclose(t["p"].to_numpy()[poly], 2 * norm.sf(np.abs(z)), rtol=1e-7)
    assert t.loc[~poly, "p"].isna().all()
    assert "Aguilar et al. 2019" in t.attrs["method"] and "SingleStepGBLUP" in t.attrs["method"]


def test_association_equals_the_estimators_own_ssSNP_effects(example):
    _, geno, X, _, est = example
    t = henderson.association(est, geno)
    own = est.snp_effects_
    poly = X.std(axis=0) > 0
    np.testing.assert_allclose(t["effect"].to_numpy()[poly], own["effect"].to_numpy()[poly], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(t["se"].to_numpy()[poly] ** 2, own["var"].to_numpy()[poly], rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(t["p"].to_numpy()[poly], own["p_value"].to_numpy()[poly], rtol=1e-7)


def test_single_step_hook_refuses_what_it_cannot_back_solve(example):
    ped, geno, _, y, _ = example
    pb = SingleStepGBLUP(sigma2=(S_U, S_E)).fit(ped, None, y)  # no genotypes: pedigree BLUP
    with pytest.raises(ModelError, match="pedigree BLUP"):
        pb.genotyped_pec()
    apy = SingleStepGBLUP(sigma2=(S_U, S_E), apy_core=4, snp_effects=False).fit(ped, geno, y)
    with pytest.raises(ModelError, match="APY"):
        henderson.association(apy, geno)

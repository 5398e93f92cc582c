"""APY inverse built from genotypes by blocks (never the k × k G) against dense references.

References, computed here without henderson's G or A code: G = WW'/(2Σpq) with numpy
from the 0/1/2 counts (missing calls mean-imputed: centred value 0), A by the textbook
tabular rules (conftest ``tabular_A``), blending and tuning by their formulas, and the
APY inverse from its definition (Misztal 2016: G with G_NN replaced by
G_NC G_CC⁻¹ G_CN + diag(m), inverted densely). Also compared with henderson's existing
dense construction (``apy_inverse`` of a formed G*, and ``single_step_inverse(...,
apy_core=...)``'s G*⁻¹). Tolerance 1e-10: matrices of order ≤ 80 with condition
numbers below 1e5 (blended G), so double-precision inverses agree to ~1e-11.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import tabular_A

from henderson._testing.pedigree import simulate_pedigree
from henderson.errors import DataError
from henderson.io.pedigree import read_pedigree
from henderson.relationships.apy import ApyInverse, apy_inverse, apy_inverse_from_genotypes
from henderson.relationships.container import Relationship
from henderson.relationships.pedigree import colleau_product
from henderson.relationships.single_step import single_step_inverse

K, M = 60, 400


@pytest.fixture(scope="module")
def sim():
    frame = simulate_pedigree(300, 6, seed=4)
    rows = [tuple(r) for r in frame[["id", "sire", "dam"]].astype(str).itertuples(index=False)]
    A, ids = tabular_A(rows)
    gids = np.array(frame["id"].astype(str).to_numpy()[-K:], dtype=object)  # the youngest
    gi = [ids.index(i) for i in gids]
    A22 = A[np.ix_(gi, gi)]
    rng = np.random.default_rng(7)
    p = rng.uniform(0.05, 0.95, M)
    X = (rng.random((K, M)) < p).astype(np.int8) + (rng.random((K, M)) < p).astype(np.int8)
    geno = pd.DataFrame(X, index=gids, columns=[f"s{j}" for j in range(M)])
    return read_pedigree(frame), geno, A22, gids


def vanraden(X):
    """G = WW'/(2Σpq), current frequencies, NaN calls mean-imputed (centred 0)."""
    X = np.asarray(X, dtype=float)
    freq = np.nanmean(X, axis=0) / 2
    W = np.nan_to_num(X - 2 * freq)
    return W @ W.T / (2 * np.sum(freq * (1 - freq)))


def blend_tune(G, A22, alpha, beta, tune):
    Gw = alpha * G + beta * A22
    if not tune:
        return Gw
    off = ~np.eye(len(G), dtype=bool)
    b = (np.diag(A22).mean() - A22[off].mean()) / (np.diag(Gw).mean() - Gw[off].mean())
    return np.diag(A22).mean() - b * np.diag(Gw).mean() + b * Gw


def apy_by_definition(Gs, c):
    """inv(G_APY) with core positions c (Misztal 2016), and log|G_APY|."""
    nc = np.setdiff1d(np.arange(len(Gs)), c)
    Gcc, Gcn = Gs[np.ix_(c, c)], Gs[np.ix_(c, nc)]
    P = Gcn.T @ np.linalg.inv(Gcc)
    Gapy = Gs.copy()
    Gapy[np.ix_(nc, nc)] = P @ Gcn + np.diag(np.diag(Gs)[nc] - np.einsum("ij,ji->i", P, Gcn))
    return np.linalg.inv(Gapy), np.linalg.slogdet(Gapy)[1]


CORE = [3, 10, 11, 25, 40, 41, 52, 59, 0, 17, 33, 8]


def test_blocks_equal_dense_apy_with_blending_and_tuning(sim):
    ped, geno, A22, gids = sim
    core = gids[CORE]
    blk = apy_inverse_from_genotypes(geno, core, pedigree=ped, alpha=0.95, beta=0.05, tuning="mean")
    Gs = blend_tune(vanraden(geno.to_numpy()), A22, 0.95, 0.05, True)
    ref, logdet = apy_by_definition(Gs, np.array(CORE))
    np.testing.assert_allclose(blk.dense(), ref, atol=1e-10)
    assert blk.logdet == pytest.approx(logdet, abs=1e-9)
    # henderson's existing dense constructions: apy_inverse of the formed G*, and the
    # G*⁻¹ single_step_inverse keeps with the same settings (preGSf90 defaults)
    dense = apy_inverse(Relationship(gids, Gs, kind="G"), core)
    np.testing.assert_allclose(blk.dense(), dense.dense(), atol=1e-10)
    H = single_step_inverse(ped, geno, apy_core=core, keep_g_inverse=True, diag=False)
    np.testing.assert_allclose(blk.dense(), H.info["G_star_inverse"], atol=1e-10)
    assert blk.info["tuning_b"] == pytest.approx(H.info["tuning_b"], rel=1e-12)
    assert blk.info["tuning_a"] == pytest.approx(H.info["tuning_a"], rel=1e-12)


def test_every_animal_core_is_the_full_inverse(sim):
    ped, geno, A22, gids = sim
    blk = apy_inverse_from_genotypes(geno, K, pedigree=ped, alpha=0.9, beta=0.1)
    Gs = blend_tune(vanraden(geno.to_numpy()), A22, 0.9, 0.1, False)
    assert blk.info["n_core"] == K and len(blk.noncore_pos) == 0
    np.testing.assert_allclose(blk.dense(), np.linalg.inv(Gs), atol=1e-10)
    assert blk.logdet == pytest.approx(np.linalg.slogdet(Gs)[1], abs=1e-9)


def test_products_diagonal_and_csr_agree_with_the_dense_inverse(sim):
    ped, geno, _, gids = sim
    blk = apy_inverse_from_genotypes(geno, 15, seed=3, pedigree=ped, beta=0.05, alpha=0.95)
    D = blk.dense()
    assert isinstance(blk, ApyInverse) and D.shape == (K, K)
    np.testing.assert_allclose(D, D.T, atol=1e-12)
    V = np.random.default_rng(1).normal(size=(K, 3))
    np.testing.assert_allclose(blk @ V, D @ V, atol=1e-10)
    np.testing.assert_allclose(blk @ V[:, 0], D @ V[:, 0], atol=1e-10)
    np.testing.assert_allclose(blk.diagonal(), np.diag(D), atol=1e-10)
    rel = blk.to_relationship()
    assert rel.is_sparse and rel.matrix.nnz == 15**2 + 2 * 15 * 45 + 45
    np.testing.assert_allclose(rel.dense(), D, atol=1e-10)
    # a product with the independent dense G*_APY (not the block code) gives the identity
    Gs = blend_tune(vanraden(geno.to_numpy()), sim[2], 0.95, 0.05, False)
    ref, _ = apy_by_definition(Gs, blk.core_pos)
    np.testing.assert_allclose(blk @ np.linalg.inv(ref), np.eye(K), atol=1e-8)


def test_missing_calls_take_the_float64_path(sim):
    """Blocks with missing calls are centred in float64 (mean imputation, as G)."""
    _, geno, _, gids = sim
    X = geno.to_numpy().astype(float)
    rng = np.random.default_rng(5)
    X[rng.random(X.shape) < 0.02] = np.nan
    X[:, : M // 2] = geno.to_numpy()[:, : M // 2]  # half the SNPs complete: both paths run
    frame = pd.DataFrame(X, index=gids, columns=geno.columns)
    core = np.array(CORE)
    ref, logdet = apy_by_definition(vanraden(X), core)  # G's own APY: G_CC is PD, m > 0
    blk = apy_inverse_from_genotypes(frame, gids[core])
    np.testing.assert_allclose(blk.dense(), ref, rtol=0, atol=1e-10 * np.abs(ref).max())
    assert blk.logdet == pytest.approx(logdet, abs=1e-8)
    complete, _ = apy_by_definition(vanraden(geno.to_numpy()), core)
    assert np.abs(complete - ref).max() > 1e-3  # the missing calls matter: not vacuous


def test_colleau_product_equals_tabular_A22(sim):
    ped, _, A22, gids = sim
    X = np.random.default_rng(2).normal(size=(K, 4))
    AX, F = colleau_product(ped, gids, X)
    np.testing.assert_allclose(AX, A22 @ X, atol=1e-12)
    np.testing.assert_allclose(1.0 + F, np.diag(A22), atol=1e-12)


def test_bad_input_is_named(sim):
    ped, geno, _, gids = sim
    with pytest.raises(DataError, match="not genotyped"):
        apy_inverse_from_genotypes(geno, ["nope", gids[0]])
    with pytest.raises(DataError, match="pedigree="):
        apy_inverse_from_genotypes(geno, 10, beta=0.05)
    with pytest.raises(DataError, match="alpha"):
        apy_inverse_from_genotypes(geno, 10, alpha=1.5)
    with pytest.raises(DataError, match="tuning"):
        apy_inverse_from_genotypes(geno, 10, pedigree=ped, tuning="max")
    with pytest.raises(DataError, match="between 1 and the 60"):
        apy_inverse_from_genotypes(geno, 0)
    with pytest.raises(DataError, match="duplicated"):
        apy_inverse_from_genotypes(geno, [gids[1], gids[1]])


def test_float32_accumulator_flushes_keep_the_result(sim, monkeypatch):
    """The float32 integer products are flushed into float64 before 4m reaches 2²⁴; with
    the bound lowered to 2⁹ and 100-SNP blocks every block after the first flushes (the float64
    accumulators are then shared with the float32 ones): the same APY inverse."""
    import henderson.relationships.genomic as gm

    _, geno, _, gids = sim
    ref, logdet = apy_by_definition(vanraden(geno.to_numpy()), np.array(CORE))
    monkeypatch.setattr(gm, "_EXACT_F32", 2**9)  # 4 · 200 ≥ 512: a flush before every block after the first
    blk = apy_inverse_from_genotypes(geno, gids[CORE], block_size=100)
    np.testing.assert_allclose(blk.dense(), ref, rtol=0, atol=1e-10 * np.abs(ref).max())
    assert blk.logdet == pytest.approx(logdet, abs=1e-8)


def test_fit_takes_the_blocks_as_cov_inverse(sim):
    """``fit(cov_inverse={"id": ApyInverse})`` (converted through its CSR) gives the BLUPs
    of the same model with K⁻¹ = G_APY⁻¹ from its definition (numpy), to 1e-8."""
    from henderson import fit

    _, geno, _, gids = sim
    blk = apy_inverse_from_genotypes(geno, gids[CORE])
    ref, _ = apy_by_definition(vanraden(geno.to_numpy()), np.array(CORE))
    ref = 0.5 * (ref + ref.T)
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"id": np.repeat(gids, 2), "y": rng.normal(size=2 * K)})
    a = fit("y ~ 1 + (1|id)", frame, cov_inverse={"id": blk}, sigma2=(0.6, 1.0), solver="dense")
    b = fit(
        "y ~ 1 + (1|id)",
        frame,
        cov_inverse={"id": Relationship(gids, ref, inverse=True, kind="Ginv_APY")},
        sigma2=(0.6, 1.0),
        solver="dense",
    )
    np.testing.assert_allclose(a.blups["id"]["blup"], b.blups["id"]["blup"], atol=1e-8)

"""Lazy single-step H⁻¹ (A₂₂⁻¹ as an operator) against brute-force dense algebra and eager H⁻¹.

References: A by the tabular method (conftest, a Python loop), G = WW'/(2Σpq) with numpy,
blending and tuning by their formulas, A₂₂⁻¹ and G*⁻¹ by ``numpy.linalg.inv``: the
brute-force H⁻¹ = A⁻¹ + [[0, 0], [0, τG*⁻¹ − ωA₂₂⁻¹]] is assembled here, not by henderson.
Tolerances: 1e-10 for products and matrices of order 20 (condition numbers below 1e4:
double-precision inverses agree to ~1e-12); 1e-8 (relative to the largest solution) for
PCG at tol=1e-12 against a sparse direct solve.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SINGLE_STEP_GENOTYPED as GENOTYPED
from conftest import SINGLE_STEP_PED as PED
from conftest import tabular_A

import henderson as h
from henderson._testing.animal_model import simulate_animal_model
from henderson.data.genotypes import Genotypes
from henderson.errors import DataError
from henderson.io.pedigree import read_pedigree
from henderson.relationships.apy import apy_inverse, apy_inverse_from_dense
from henderson.relationships.container import Relationship
from henderson.relationships.single_step import single_step_inverse
from henderson.relationships.single_step_lazy import A22InverseOperator, LazySingleStepInverse, SingleStepBlock
from henderson.spec.levels import SparseInverseWithDenseBlock

IDS = [r[0] for r in PED]
GI = np.array([IDS.index(g) for g in GENOTYPED])


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
    G = W @ W.T / (2 * np.sum(freq * (1 - freq)))
    return ped, frame, A, G


def blend_tune(G, A22, alpha, beta, tune):
    Gw = alpha * G + beta * A22
    if not tune:
        return Gw
    off = ~np.eye(len(G), dtype=bool)
    b = (np.diag(A22).mean() - A22[off].mean()) / (np.diag(Gw).mean() - Gw[off].mean())
    return np.diag(A22).mean() - b * np.diag(Gw).mean() + b * Gw


def brute_Hinv(A, G, alpha, beta, tune, tau, omega):
    A22 = A[np.ix_(GI, GI)]
    ref = np.linalg.inv(A)
    ref[np.ix_(GI, GI)] += tau * np.linalg.inv(blend_tune(G, A22, alpha, beta, tune)) - omega * np.linalg.inv(A22)
    return ref


SETTINGS = [  # (alpha, beta, tune, tau, omega)
    (0.95, 0.05, True, 1.0, 1.0),  # preGSf90 defaults
    (1.0, 0.0, True, 1.0, 1.0),  # tuning without blending: A22's means by a Colleau product
    (0.9, 0.1, False, 1.0, 0.7),
    (0.95, 0.05, True, 1.3, 0.5),
]


def _kw(alpha, beta, tune, tau, omega):
    return dict(alpha=alpha, beta=beta, tuning="mean" if tune else None, tau=tau, omega=omega)


@pytest.mark.parametrize("alpha,beta,tune,tau,omega", SETTINGS)
def test_lazy_products_equal_brute_force_dense_H_inverse(data, alpha, beta, tune, tau, omega):
    ped, frame, A, G = data
    ref = brute_Hinv(A, G, alpha, beta, tune, tau, omega)
    L = single_step_inverse(ped, frame, lazy=True, **_kw(alpha, beta, tune, tau, omega))
    assert isinstance(L, LazySingleStepInverse) and isinstance(L, SparseInverseWithDenseBlock)
    assert L._dense_block is None  # nothing k × k formed for A22⁻¹ so far
    pos = L.ids.tolist()
    order = np.array([pos.index(i) for i in IDS])  # brute-force row i is L's row order[i]
    V = np.random.default_rng(1).standard_normal((20, 3))
    X = np.empty_like(V)
    X[order] = V
    np.testing.assert_allclose(L.apply_inverse(X)[order], ref @ V, atol=1e-10)
    np.testing.assert_allclose(L.apply_inverse(X[:, 0])[order], ref @ V[:, 0], atol=1e-10)
    # the genotyped block: D·v by matvec / matmat / @
    D = ref[np.ix_(GI, GI)] - np.linalg.inv(A)[np.ix_(GI, GI)]
    blk = L.block_operator()
    assert isinstance(blk, SingleStepBlock) and blk.k == 8
    gorder = [list(L.info["genotyped"]).index(g) for g in GENOTYPED]
    Vg = V[:8]
    Xg = np.empty_like(Vg)
    Xg[gorder] = Vg
    np.testing.assert_allclose(blk.matmat(Xg)[gorder], D @ Vg, atol=1e-10)
    np.testing.assert_allclose(blk.matvec(Xg[:, 1])[gorder], D @ Vg[:, 1], atol=1e-10)
    np.testing.assert_allclose((blk @ Xg)[gorder], D @ Vg, atol=1e-10)
    np.testing.assert_allclose(blk.diagonal()[gorder], np.diag(D), atol=1e-10)  # exact at this size
    assert L._dense_block is None  # still lazy after products and the diagonal
    # log|H| known without the dense block when omega = 1; NaN until formed otherwise
    logdet_ref = -np.linalg.slogdet(ref)[1]
    if omega == 1.0:
        assert L.info["logdet"] == pytest.approx(logdet_ref, abs=1e-10)
    else:
        assert np.isnan(L.logdet_inverse(compute=False))
        assert any("log|H| unknown" in n for n in L.info["notes"])
        assert L.logdet_contribution() == pytest.approx(logdet_ref, abs=1e-10)  # forms D on demand


def test_a22_operator_against_numpy_inverse(data):
    ped, _, A, _ = data
    A22 = A[np.ix_(GI, GI)]
    op = A22InverseOperator(ped, GENOTYPED)
    ref = np.linalg.inv(A22)
    V = np.random.default_rng(2).standard_normal((8, 4))
    np.testing.assert_allclose(op @ V, ref @ V, atol=1e-10)
    np.testing.assert_allclose(op.matvec(V[:, 0]), ref @ V[:, 0], atol=1e-10)
    np.testing.assert_allclose(op.dense(), ref, atol=1e-10)
    assert op.logdet_a22 == pytest.approx(np.linalg.slogdet(A22)[1], abs=1e-10)
    np.testing.assert_allclose(op.diagonal("exact"), np.diag(ref), atol=1e-10)
    np.testing.assert_allclose(op.inbreeding, np.diag(A22) - 1.0, atol=1e-12)
    # the stochastic diagonal (large pedigrees) stays within the exact bounds
    est = op.diagonal("estimate")
    assert np.all(est >= 1.0 / np.diag(A22) - 1e-12) and np.all(est <= op._b22_diag + 1e-12)
    assert np.any(np.abs(est - np.diag(ref)) > 1e-6)  # an estimate, not a copy of the exact one
    with pytest.raises(DataError, match="the operand has 5 rows, expected 8"):
        op @ np.ones(5)


@pytest.mark.parametrize("alpha,beta,tune,tau,omega", SETTINGS)
def test_dense_equals_eager(data, alpha, beta, tune, tau, omega):
    ped, frame, _, _ = data
    kw = _kw(alpha, beta, tune, tau, omega)
    E = single_step_inverse(ped, frame, **kw)
    Eb = single_step_inverse(ped, frame, as_blocks=True, **kw)
    L = single_step_inverse(ped, frame, lazy=True, **kw)
    assert list(L.ids) == list(E.ids) and np.array_equal(L.block_positions, Eb.block_positions)
    np.testing.assert_allclose(L.dense(), E.dense(), atol=1e-10)
    np.testing.assert_allclose(L.dense_block(), Eb.block, atol=1e-10)
    assert L.info["logdet"] == pytest.approx(E.info["logdet"], abs=1e-10)
    R = L.to_relationship()  # what direct solvers take: the filled CSR
    assert isinstance(R, Relationship) and R.inverse
    np.testing.assert_allclose(R.dense(), E.dense(), atol=1e-10)
    assert R.info["logdet"] == pytest.approx(E.info["logdet"], abs=1e-10)
    # blending and tuning identical to eager
    assert L.info["tuning_a"] == pytest.approx(E.info["tuning_a"], abs=1e-12)
    assert L.info["tuning_b"] == pytest.approx(E.info["tuning_b"], abs=1e-12)
    for key in ("G", "G_star", "A22"):
        if key in E.info["G_stats"]:
            for s in ("mean_diag", "mean_offdiag"):
                assert L.info["G_stats"][key][s] == pytest.approx(E.info["G_stats"][key][s], abs=1e-12)
    gpos = E.index_of(GENOTYPED)
    if omega == 1.0:
        np.testing.assert_allclose(L.info["diag"][gpos], E.info["diag"][gpos], atol=1e-10)
    assert np.isnan(np.delete(L.info["diag"], gpos)).all()  # non-genotyped: not computed lazily


@pytest.mark.parametrize("alpha,beta,tune", [(0.95, 0.05, True), (1.0, 0.0, False), (0.9, 0.1, False)])
def test_apy_lazy_equals_eager_apy(data, alpha, beta, tune):
    """APY: from genotypes (no k × k G or A22: apy_inverse_from_genotypes) and from a
    given G (apy_inverse_from_dense), both equal to eager APY H⁻¹."""
    ped, frame, A, G = data
    kw = _kw(alpha, beta, tune, 1.0, 1.0)
    E = single_step_inverse(ped, frame, apy_core=4, seed=3, **kw)
    L = single_step_inverse(ped, frame, apy_core=4, seed=3, lazy=True, **kw)
    assert "from the genotypes by blocks" in " ".join(L.info["notes"])
    assert "G_form" not in L.info["timings"]  # G never formed
    np.testing.assert_allclose(L.dense(), E.dense(), atol=1e-10)
    assert L.info["logdet"] == pytest.approx(E.info["logdet"], abs=1e-10)
    V = np.random.default_rng(4).standard_normal((20, 2))
    np.testing.assert_allclose(L.apply_inverse(V), E.matrix @ V, atol=1e-10)
    # a given (positive definite) G: APY from the dense G*
    Grel = Relationship(GENOTYPED, G + 0.05 * np.eye(8), kind="G")
    E2 = single_step_inverse(ped, Grel, apy_core=4, seed=3, **kw)
    L2 = single_step_inverse(ped, Grel, apy_core=4, seed=3, lazy=True, **kw)
    np.testing.assert_allclose(L2.dense(), E2.dense(), atol=1e-10)
    np.testing.assert_allclose(L2.apply_inverse(V), E2.matrix @ V, atol=1e-10)


def test_apy_inverse_from_dense_equals_apy_inverse(data):
    _, _, _, G = data
    Grel = Relationship(GENOTYPED, G + 0.05 * np.eye(8), kind="G")
    for core in (3, 8, ["5", "12", "20"]):
        ref = apy_inverse(Grel, core, seed=7)
        blk = apy_inverse_from_dense(Grel, core, seed=7)
        np.testing.assert_allclose(blk.dense(), ref.dense(), atol=1e-10)
        assert blk.logdet == pytest.approx(ref.info["logdet"], abs=1e-10)
    np.testing.assert_allclose(  # every animal core: the exact inverse
        apy_inverse_from_dense(Grel, 8).dense(), np.linalg.inv(G + 0.05 * np.eye(8)), atol=1e-10
    )


def test_lazy_refusals_and_missing_ids(data):
    ped, frame, _, _ = data
    with pytest.raises(DataError, match="a22_inverse='dense'.*contradicts"):
        single_step_inverse(ped, frame, lazy=True, a22_inverse="dense")
    with pytest.raises(DataError, match="diag=True"):
        single_step_inverse(ped, frame, lazy=True, diag=True)
    with pytest.raises(DataError, match="omega"):  # the eager checks apply
        single_step_inverse(ped, frame, lazy=True, omega=1.5)
    extra = frame.copy()
    extra.index = [*GENOTYPED[:-1], "x99"]
    with pytest.raises(h.AlignmentError, match="x99"):
        single_step_inverse(ped, extra, lazy=True)
    with pytest.warns(h.DataWarning, match="1 genotyped id"):
        E = single_step_inverse(ped, extra, missing="add")
    with pytest.warns(h.DataWarning, match="1 genotyped id"):
        L = single_step_inverse(ped, extra, missing="add", lazy=True)
    assert L.info["n_added_founders"] == 1
    np.testing.assert_allclose(L.dense(), E.dense(), atol=1e-10)


def test_genotypes_object_and_keep_g_inverse(data):
    ped, frame, _, _ = data
    geno = Genotypes.from_frame(frame)
    E = single_step_inverse(ped, geno, keep_g_inverse=True)
    L = single_step_inverse(ped, geno, keep_g_inverse=True, lazy=True)
    np.testing.assert_allclose(L.info["G_star_inverse"], E.info["G_star_inverse"], atol=1e-10)
    np.testing.assert_allclose(L.info["G_star"], E.info["G_star"], atol=1e-12)
    np.testing.assert_allclose(L.dense(), E.dense(), atol=1e-10)


# -- solvers ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def single_step():
    sim = simulate_animal_model(600, 5, seed=3, herds=10)
    rng = np.random.default_rng(5)
    ids = sim["pedigree"]["id"].astype(str).to_numpy()
    gids = np.sort(rng.choice(ids[200:], size=80, replace=False))
    p = rng.uniform(0.1, 0.9, 500)
    M = (rng.random((80, 500)) < p).astype(int) + (rng.random((80, 500)) < p).astype(int)
    geno = pd.DataFrame(M, index=gids, columns=[f"s{j}" for j in range(500)])
    rec = sim["records"].copy()
    rec["y2"] = 0.5 * rec["y"] + rng.normal(size=len(rec))
    rec.loc[rng.random(len(rec)) < 0.3, "y2"] = np.nan
    return rec, sim["pedigree"], geno


def close(a, b, tol=1e-8):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    np.testing.assert_allclose(a, b, rtol=0, atol=tol * np.abs(b).max())


@pytest.mark.parametrize("omega", [1.0, 0.6])
def test_pcg_with_lazy_equals_sparse_direct_with_eager(single_step, omega):
    rec, ped, geno = single_step
    E = single_step_inverse(ped, geno, omega=omega)
    L = single_step_inverse(ped, geno, omega=omega, lazy=True)
    f = "y ~ 1 + sex + (1|herd) + (1|id)"
    s2 = [0.5, 1.0, 2.0]
    pcg = h.fit(f, rec, solver="pcg", tol=1e-12, cov_inverse={"id": L}, sigma2=s2)
    ref = h.fit(f, rec, solver="sparse", cov_inverse={"id": E}, sigma2=s2)
    assert pcg.solver == "pcg" and pcg.converged
    assert any("kept in blocks" in n for n in pcg.notes)
    assert L._dense_block is None  # PCG never formed the dense block
    for term in ("id", "herd"):
        assert pcg.blups[term].index.equals(ref.blups[term].index)
        close(pcg.blups[term]["blup"], ref.blups[term]["blup"])
    close(pcg.fixed_effects["estimate"], ref.fixed_effects["estimate"])
    if omega != 1.0:
        assert any("log|H| of 'id' unknown (NaN)" in n for n in pcg.notes)
    # a direct solver given the lazy object forms the block on demand: the same answer
    direct = h.fit(f, rec, solver="sparse", cov_inverse={"id": L}, sigma2=s2)
    for term in ("id", "herd"):
        close(direct.blups[term]["blup"], ref.blups[term]["blup"], 1e-10)
    assert L._dense_block is not None and np.isfinite(L.info["logdet"])


def test_multitrait_pcg_with_lazy_equals_sparse_direct_with_eager(single_step):
    rec, ped, geno = single_step
    E = single_step_inverse(ped, geno, as_blocks=True)
    L = single_step_inverse(ped, geno, lazy=True)
    f = "cbind(y, y2) ~ 1 + sex + (1|id) + (1|herd)"
    sigma = {
        "Sigma": [np.array([[1.0, 0.4], [0.4, 0.8]]), np.array([[0.5, 0.1], [0.1, 0.3]])],
        "Residual": np.array([[2.0, 0.5], [0.5, 1.5]]),
    }
    pcg = h.fit(f, rec, cov_inverse={"id": L}, sigma2=sigma, solver="pcg", tol=1e-12)
    ref = h.fit(f, rec, cov_inverse={"id": E}, sigma2=sigma, solver="sparse")
    assert pcg.solver == "multitrait-pcg" and pcg.converged
    assert L._dense_block is None
    for term in ("id", "herd"):
        close(pcg.blups[term]["blup"], ref.blups[term]["blup"])
    close(pcg.fixed_effects["estimate"], ref.fixed_effects["estimate"])


def test_pcg_with_lazy_apy_equals_sparse_direct_with_eager_apy(single_step):
    rec, ped, geno = single_step
    E = single_step_inverse(ped, geno, apy_core=30, seed=2)
    L = single_step_inverse(ped, geno, apy_core=30, seed=2, lazy=True)
    f = "y ~ 1 + sex + (1|herd) + (1|id)"
    s2 = [0.5, 1.0, 2.0]
    pcg = h.fit(f, rec, solver="pcg", tol=1e-12, cov_inverse={"id": L}, sigma2=s2)
    ref = h.fit(f, rec, solver="sparse", cov_inverse={"id": E}, sigma2=s2)
    assert pcg.converged and L._dense_block is None
    close(pcg.blups["id"]["blup"], ref.blups["id"]["blup"])


# -- the estimator ----------------------------------------------------------------------------------
def test_estimator_lazy_ebvs_equal_eager(single_step):
    """SingleStepGBLUP(lazy=True): at given variances PCG with A22⁻¹ as an operator, with REML
    the direct MME with the block formed on demand; EBVs as the eager fit's to 1e-8."""
    rec, ped, geno = single_step
    y = rec.groupby("id")["y"].mean()
    s2 = (0.5, 2.0)
    eager = h.SingleStepGBLUP(sigma2=s2, snp_effects=False).fit(ped, geno, y)
    lazy = h.SingleStepGBLUP(sigma2=s2, snp_effects=False, lazy=True, pcg_tol=1e-12).fit(ped, geno, y)
    assert isinstance(lazy.Hinv_, LazySingleStepInverse) and lazy.Hinv_._dense_block is None
    assert lazy.fit_.spec is None and lazy.result_.solver == "pcg"
    assert lazy.gebv_.index.equals(eager.gebv_.index)
    close(lazy.gebv_["gebv"], eager.gebv_["gebv"])
    snp = h.SingleStepGBLUP(sigma2=s2, snp_effects=True, lazy=True, pcg_tol=1e-12).fit(
        ped, Genotypes.from_frame(geno), y
    )
    ref = h.SingleStepGBLUP(sigma2=s2, snp_effects=True).fit(ped, Genotypes.from_frame(geno), y)
    close(snp.snp_effects_["effect"], ref.snp_effects_["effect"])  # effects without their variances
    assert "var" not in snp.snp_effects_.columns
    with pytest.raises(DataError, match="refit with lazy=False"):
        snp.genotyped_pec()
    reml_eager = h.SingleStepGBLUP().fit(ped, geno, y)
    reml_lazy = h.SingleStepGBLUP(lazy=True).fit(ped, geno, y)
    assert reml_lazy.result_.loglik == pytest.approx(reml_eager.result_.loglik, abs=1e-8)
    close(reml_lazy.gebv_["gebv"], reml_eager.gebv_["gebv"])
    assert any("formed the genotyped block" in n for n in reml_lazy.result_.notes)
    with pytest.raises(h.ModelError, match="lazy=True"):
        h.SingleStepGBLUP(traits=["y", "y2"], lazy=True).fit(ped, geno, rec.groupby("id")[["y", "y2"]].mean())


def test_pcg_with_estimated_diagonal_still_exact(single_step, monkeypatch):
    """Beyond DIAG_BUDGET the preconditioner takes the stochastic diag(A22⁻¹): it changes
    the rounds, not the solution (1e-8 against the sparse direct solve with eager H⁻¹)."""
    from henderson.relationships import single_step_lazy

    monkeypatch.setattr(single_step_lazy, "DIAG_BUDGET", 0.0)
    rec, ped, geno = single_step
    L = single_step_inverse(ped, geno, lazy=True)
    E = single_step_inverse(ped, geno)
    f = "y ~ 1 + sex + (1|herd) + (1|id)"
    s2 = [0.5, 1.0, 2.0]
    pcg = h.fit(f, rec, solver="pcg", tol=1e-12, cov_inverse={"id": L}, sigma2=s2)
    assert L.block.a22.diag_method == "estimate"
    ref = h.fit(f, rec, solver="sparse", cov_inverse={"id": E}, sigma2=s2)
    close(pcg.blups["id"]["blup"], ref.blups["id"]["blup"])

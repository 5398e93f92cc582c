"""ssGBLUP against the models it must reduce to, and ssSNP effects against dense algebra.

- Every phenotyped animal genotyped, no blending, no tuning, τ = ω = 1: H's genotyped
  block is G, and y depends on u only through it, so the genotyped animals' ssGBLUP
  solutions equal GBLUP's with the same G (spectral solver, a different algorithm) at
  the same variances; 1e-8 is round-off of two different factorisations of order ~300.
- No animal genotyped: pedigree BLUP.
- SNP effects and their variances against dense numpy algebra (the MME inverted
  densely) on the 20-animal pedigree of test_single_step_inverse.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SINGLE_STEP_GENOTYPED as GENOTYPED
from conftest import SINGLE_STEP_PED as PED

from henderson import GBLUP, PedigreeBLUP, SingleStepGBLUP
from henderson._testing.genotypes import simulate_genotypes
from henderson._testing.pedigree import simulate_pedigree
from henderson.data.genotypes import Genotypes
from henderson.io.pedigree import read_pedigree
from henderson.relationships.container import Relationship
from henderson.relationships.genomic import genomic_relationship


@pytest.fixture(scope="module")
def sim():
    ped_frame = simulate_pedigree(400, 4, founders=80, seed=5)
    ped = read_pedigree(ped_frame)
    ids = ped_frame["id"].to_numpy()
    geno_ids = ids[-120:]  # the last generation and a half are genotyped
    geno = simulate_genotypes(120, 400, seed=6)
    frame = geno.to_frame()
    frame.index = geno_ids
    geno = Genotypes.from_frame(frame)
    rng = np.random.default_rng(7)
    G = genomic_relationship(geno)
    Gp = Relationship(G.ids, G.dense() + 0.02 * np.eye(G.n), kind="G")  # positive definite
    g = np.linalg.cholesky(Gp.dense()) @ rng.normal(size=G.n)  # h² ≈ 0.5: REML off the boundary
    y = pd.Series(10 + g + rng.normal(size=G.n), index=geno_ids, name="y")
    return ped, geno, y, Gp, rng, ids


def test_all_phenotyped_genotyped_equals_gblup(sim):
    ped, geno, y, Gp, _, _ = sim
    s2 = (1.3, 2.1)
    ss = SingleStepGBLUP(sigma2=s2, tuning=None, alpha=1.0, beta=0.0).fit(ped, Gp, y)
    gb = GBLUP(sigma2=s2).fit(Gp, y)
    a = ss.gebv_.loc[Gp.ids, "gebv"].to_numpy()
    b = gb.gebv_.loc[Gp.ids, "gebv"].to_numpy()
    np.testing.assert_allclose(a, b, atol=1e-8)
    np.testing.assert_allclose(ss.fixed_effects_["estimate"], gb.fixed_effects_["estimate"], atol=1e-8)
    # PEV of the genotyped animals too (same C²² block)
    np.testing.assert_allclose(ss.gebv_.loc[Gp.ids, "pev"], gb.gebv_.loc[Gp.ids, "pev"], atol=1e-8)
    assert ss.gebv_.shape[0] == len(ped) and ss.gebv_["genotyped"].sum() == Gp.n


def test_all_phenotyped_genotyped_reml_equals_gblup_reml(sim):
    ped, geno, y, Gp, _, _ = sim
    ss = SingleStepGBLUP(tuning=None, alpha=1.0, beta=0.0).fit(ped, Gp, y)
    gb = GBLUP().fit(Gp, y)
    # the same REML likelihood, maximised by AI-REML (sparse/dense) vs Brent (spectral)
    np.testing.assert_allclose(
        ss.variance_components_["variance"].to_numpy(), gb.variance_components_["variance"].to_numpy(), rtol=1e-4
    )
    assert ss.result_.loglik == pytest.approx(gb.result_.loglik, abs=1e-6)


def test_no_genotypes_equals_pedigree_blup(sim):
    ped, _, _, _, rng, ids = sim
    y = pd.Series(rng.normal(size=300), index=ids[100:], name="y")
    s2 = (0.8, 1.5)
    ss = SingleStepGBLUP(sigma2=s2).fit(ped, None, y)
    pb = PedigreeBLUP(sigma2=s2).fit(ped, y)
    np.testing.assert_allclose(ss.gebv_["gebv"], pb.gebv_.loc[ss.gebv_.index, "gebv"], atol=1e-10)
    ss_r = SingleStepGBLUP().fit(ped, None, y)
    pb_r = PedigreeBLUP().fit(ped, y)
    np.testing.assert_allclose(ss_r.variance_components_["variance"], pb_r.variance_components_["variance"], rtol=1e-8)


def test_snp_effects_and_variances_against_dense_mme():
    rng = np.random.default_rng(21)
    ped = read_pedigree(pd.DataFrame(PED, columns=["id", "sire", "dam"]))
    p = rng.uniform(0.1, 0.9, 60)
    X = (rng.random((8, 60)) < p).astype(int) + (rng.random((8, 60)) < p).astype(int)
    geno = Genotypes.from_frame(pd.DataFrame(X, index=GENOTYPED, columns=[f"s{j}" for j in range(60)]))
    rec = [r[0] for r in PED][4:]  # the 16 non-founders have records
    y = pd.Series(rng.normal(5, 1, len(rec)), index=rec, name="y")
    s_u, s_e = 0.6, 1.1
    m = SingleStepGBLUP(sigma2=(s_u, s_e), snp_effects=True).fit(ped, geno, y)
    H_rel = m.Hinv_
    Hinv = H_rel.dense()
    ids = list(H_rel.ids)
    n = len(ids)
    # dense MME: [X'X X'Z; Z'X Z'Z + λH⁻¹], X = 1
    Z = np.zeros((len(rec), n))
    Z[np.arange(len(rec)), [ids.index(i) for i in rec]] = 1
    Xf = np.ones((len(rec), 1))
    C = np.block([[Xf.T @ Xf, Xf.T @ Z], [Z.T @ Xf, Z.T @ Z + (s_e / s_u) * Hinv]])
    sol = np.linalg.solve(C, np.concatenate([Xf.T @ y.to_numpy(), Z.T @ y.to_numpy()]))
    u = sol[1:]
    Cinv = np.linalg.inv(C)[1:, 1:] * s_e
    gi = [ids.index(g) for g in GENOTYPED]
    np.testing.assert_allclose(m.gebv_.loc[ids, "gebv"].to_numpy(), u, atol=1e-10)
    # G* rebuilt by formula: 0.95 G + 0.05 A22, then tuned to A22's means
    freq = X.mean(0) / 2
    W = X - 2 * freq
    lam = 1 / (2 * np.sum(freq * (1 - freq)))
    G = W @ W.T * lam
    from henderson.relationships.pedigree import pedigree_relationship

    A22 = pedigree_relationship(ped, GENOTYPED).dense()
    Gw = 0.95 * G + 0.05 * A22
    off = ~np.eye(8, dtype=bool)
    b = (np.diag(A22).mean() - A22[off].mean()) / (np.diag(Gw).mean() - Gw[off].mean())
    Gs = np.diag(A22).mean() - b * np.diag(Gw).mean() + b * Gw
    Gsi = np.linalg.inv(Gs)
    a_hat = lam * W.T @ Gsi @ u[gi]
    var = lam**2 * np.diag(W.T @ Gsi @ (Gs * s_u - Cinv[np.ix_(gi, gi)]) @ Gsi @ W)
    eff = m.snp_effects_
    np.testing.assert_allclose(eff["effect"].to_numpy(), a_hat, atol=1e-10)
    np.testing.assert_allclose(eff["var"].to_numpy(), var, atol=1e-10)
    poly = X.std(axis=0) > 0  # a monomorphic SNP has W = 0: effect 0, variance 0
    assert (eff["var"][poly] > 0).all() and (eff["var"][~poly] == 0).all()
    np.testing.assert_allclose(eff["z"][poly], a_hat[poly] / np.sqrt(var[poly]), rtol=1e-8)
    # reliability = 1 − PEV/(σ²_u H_ii), H_ii from the dense inverse
    H = np.linalg.inv(Hinv)
    np.testing.assert_allclose(
        m.gebv_.loc[ids, "reliability"].to_numpy(), 1 - np.diag(Cinv) / (s_u * np.diag(H)), atol=1e-10
    )


def test_validate_young_masks_the_validation_records(sim):
    from henderson.cv.single_step import validate_young

    ped, geno, y, Gp, rng, ids = sim
    yy = y
    pred, metrics, info = validate_young(ped, Gp, yy, refit_variances=False, tuning=None, alpha=1.0, beta=0.0)
    test = pred.loc[pred["model"] == "ssGBLUP", "id"].to_numpy()
    assert set(test) <= set(Gp.ids) and info["n_test"] == len(test) >= 3
    # the same numbers as a fit that never saw the validation records
    full = SingleStepGBLUP(tuning=None, alpha=1.0, beta=0.0).fit(ped, Gp, yy)  # variances held at these
    s2 = tuple(full.variance_components_["variance"])
    ref = SingleStepGBLUP(sigma2=s2, tuning=None, alpha=1.0, beta=0.0).fit(ped, Gp, yy.drop(test))
    np.testing.assert_allclose(
        pred.loc[pred["model"] == "ssGBLUP", "predicted_bv"], ref.gebv_.loc[test, "gebv"], atol=1e-10
    )
    r = np.corrcoef(yy[test], ref.gebv_.loc[test, "gebv"])[0, 1]
    assert metrics.loc[0, "r"] == pytest.approx(r, abs=1e-12)


def test_hinv_in_fit_dense_and_sparse_solvers_agree(sim):
    """``fit(..., cov_inverse={"id": Hinv})`` by both MME solvers: the same BLUPs and REML."""
    from henderson import fit, single_step_inverse

    ped, geno, y, _, _, _ = sim
    H = single_step_inverse(ped, geno)
    frame = pd.DataFrame({"id": y.index, "y": y.to_numpy()})
    a = fit("y ~ 1 + (1|id)", frame, cov_inverse={"id": H}, sigma2=(1.0, 1.5), solver="dense")
    b = fit("y ~ 1 + (1|id)", frame, cov_inverse={"id": H}, sigma2=(1.0, 1.5), solver="sparse")
    np.testing.assert_allclose(a.blups["id"]["blup"], b.blups["id"]["blup"], atol=1e-8)
    np.testing.assert_allclose(a.blups["id"]["pev"], b.blups["id"]["pev"], atol=1e-8)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-6)


def test_gene_drop_genotypes_follow_the_pedigree():
    """Realised relationships (G with the simulating base frequencies) track A: the
    regression of G on A22 off-diagonals has slope ≈ 1 (5,000 unlinked SNPs: the SD of a
    realised full-sib relationship is ~0.005, so ±0.05 is generous)."""
    from henderson._testing.genotypes import simulate_genotypes_on_pedigree
    from henderson.relationships.pedigree import pedigree_relationship

    frame = simulate_pedigree(300, 3, founders=60, seed=8)
    ids = frame["id"].to_numpy()[-80:]
    geno = simulate_genotypes_on_pedigree(frame, ids, 5000, seed=9)
    G = genomic_relationship(geno, allele_freq=geno.info["true_freq"]).dense()
    A = pedigree_relationship(read_pedigree(frame), ids).dense()
    off = ~np.eye(len(ids), dtype=bool)
    slope = np.polyfit(A[off], G[off], 1)[0]
    assert abs(slope - 1) < 0.05 and abs(np.mean(np.diag(G)) - np.mean(np.diag(A))) < 0.05


def test_sparse_solve_with_the_genotyped_clique_ordered_last_is_unchanged(sim, monkeypatch):
    """The 120 genotyped animals' clique is ordered last outside METIS (linalg.ordering);
    BLUPs, PEV and log-likelihood equal those of the ordering with the clique in METIS's
    graph (rule switched off) to 1e-10: only round-off differs."""
    import henderson.linalg.ordering as ordering
    from henderson import fit, single_step_inverse

    ped, geno, y, _, _, _ = sim
    H = single_step_inverse(ped, geno)
    frame = pd.DataFrame({"id": y.index, "y": y.to_numpy()})
    a = fit("y ~ 1 + (1|id)", frame, cov_inverse={"id": H}, sigma2=(1.0, 1.5), solver="sparse")
    monkeypatch.setattr(ordering, "CLIQUE_MIN", 10**9)
    b = fit("y ~ 1 + (1|id)", frame, cov_inverse={"id": H}, sigma2=(1.0, 1.5), solver="sparse")
    np.testing.assert_allclose(a.blups["id"]["blup"], b.blups["id"]["blup"], atol=1e-10)
    np.testing.assert_allclose(a.blups["id"]["pev"], b.blups["id"]["pev"], atol=1e-10)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-9)

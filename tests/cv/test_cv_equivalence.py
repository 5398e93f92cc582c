"""GBLUP vs SNP-BLUP cross-validation at the same variance components.

GBLUP: validation ids stay in G (centred with the allele frequencies p_a of *all*
genotyped individuals), phenotypes masked. SNP-BLUP: fitted on the training genotypes
only (centred with the training frequencies p_T), effects applied to the validation
genotypes. With σ²_β = σ²_g / 2Σp_a q_a and an intercept, per fold (1e-8):

1. predicted phenotypes b̂₀ + ĝ are identical;
2. β̂ (back-solved from GBLUP: β̂ = W_a'α / 2Σp_a q_a) are identical;
3. the breeding values differ by the constant 2(p_a − p_T)'β̂, which is *not* zero;
4. GBLUP with G centred by p_T (scaled by 2Σp_T q_T, σ²_g = 2Σp_T q_T σ²_β) gives
   identical breeding values.
"""

import numpy as np
import pandas as pd
import pytest

import henderson as h
from henderson._testing.genotypes import simulate_genotypes
from henderson.cv import cross_validate
from henderson.models.snpblup import centred_markers
from henderson.relationships.genomic import genomic_relationship

SG, SE = 0.5, 1.0


@pytest.fixture(scope="module")
def sim():
    geno = simulate_genotypes(140, 350, seed=11)
    rng = np.random.default_rng(5)
    W, _ = centred_markers(geno)
    y = pd.Series(W @ rng.normal(0, 0.06, geno.p) + rng.normal(0, 1, geno.n) + 3.0, index=geno.ids, name="y")
    y.iloc[-15:] = np.nan  # genotyped but unphenotyped: in G, not in SNP-BLUP training
    return geno, y


def test_gblup_and_snpblup_folds_agree(sim):
    geno, y = sim
    p_a = geno.allele_freq
    k_a = 2 * np.sum(p_a * (1 - p_a))
    G_a = genomic_relationship(geno)
    W_a, _ = centred_markers(geno)
    phen = y.dropna().index.to_numpy()
    lab = np.random.default_rng(2).permutation(np.arange(len(phen)) % 4)
    consts = []
    for f in range(4):
        test, train = phen[lab == f], phen[lab != f]
        ym = y.copy()
        ym[~ym.index.isin(train)] = np.nan
        gb = h.GBLUP(sigma2=(SG, SE), pev=False).fit(G_a, ym)
        sb = h.SNPBLUP(sigma2=(SG / k_a, SE)).fit(geno.subset(ids=train), y.loc[train])
        bv_g = gb.gebv_.loc[test, "gebv"].to_numpy()
        bv_s = sb.predict(geno.subset(ids=test)).loc[test].to_numpy()
        yh_g = gb.fixed_effects_["estimate"].iloc[0] + bv_g
        yh_s = sb.fixed_effects_["estimate"].iloc[0] + bv_s
        # 1. predicted phenotypes identical
        np.testing.assert_allclose(yh_g, yh_s, atol=1e-8)
        # 2. identical marker effects
        beta_g = W_a.T @ gb.dual_coef_.loc[geno.ids].to_numpy() / k_a
        beta_s = sb.snp_effects_["effect"].to_numpy()
        np.testing.assert_allclose(beta_g, beta_s, atol=1e-10)
        # 3. breeding values up to the constant 2(p_a − p_T)'β̂, and the constant is real
        p_t = sb.allele_freq_
        const = 2 * (p_a - p_t) @ beta_s
        np.testing.assert_allclose(bv_s - bv_g, np.full(len(test), const), atol=1e-8)
        consts.append(const)
        # 4. GBLUP with G centred by the training frequencies: identical BVs
        G_t = genomic_relationship(geno, allele_freq=p_t)
        k_t = 2 * np.sum(p_t * (1 - p_t))
        gt = h.GBLUP(sigma2=(k_t * SG / k_a, SE), pev=False).fit(G_t, ym)
        np.testing.assert_allclose(gt.gebv_.loc[test, "gebv"].to_numpy(), bv_s, atol=1e-8)
    assert np.max(np.abs(consts)) > 1e-3  # the shift is real (5 orders above the tolerance)


def test_cross_validate_gblup_vs_snpblup_same_folds(sim):
    geno, y = sim
    p_a = geno.allele_freq
    k_a = 2 * np.sum(p_a * (1 - p_a))
    for fast in (False, True):
        a = cross_validate(h.GBLUP(sigma2=(SG, SE)), geno, y, cv=5, seed=4, fast=fast)
        b = cross_validate(h.SNPBLUP(sigma2=(SG / k_a, SE)), geno, y, cv=5, seed=4, fast=fast)
        pa, pb = a.predictions, b.predictions
        assert (pa[["id", "fold"]].to_numpy() == pb[["id", "fold"]].to_numpy()).all()
        np.testing.assert_allclose(pa["predicted_phenotype"], pb["predicted_phenotype"], atol=1e-8)
        d = (pb["predicted_bv"] - pa["predicted_bv"]).groupby(pa["fold"])
        np.testing.assert_allclose((d.max() - d.min()).to_numpy(), 0, atol=1e-8)  # constant per fold
        assert d.mean().abs().max() > 1e-3
        # per-fold r, slope, MSE, Spearman and top-k are therefore identical
        for m in ("r", "slope", "intercept", "mse", "spearman", "top_overlap"):
            np.testing.assert_allclose(a.fold_metrics[m], b.fold_metrics[m], atol=1e-8, err_msg=m)

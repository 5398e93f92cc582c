"""Association: calibration under the null, and clear messages for bad input."""

import warnings

import numpy as np
import pandas as pd
import pytest

import henderson
from henderson._testing.genotypes import simulate_genotypes
from henderson._threads import blas_threads_for
from henderson.gwas._model import design_of
from henderson.gwas._source import GenotypeSource
from henderson.gwas.mlma import mlma


def test_null_phenotypes_give_genomic_control_near_one():
    """20 seeded null traits y ~ N(0, G + I) on structured genotypes (3 subpopulations).

    λ_GC is pooled over 20 × 10,000 tests: the SE of a median-based λ over k tests is
    about 2.3/√k = 0.005 here, so 0.98-1.02 is four SEs each side (measured 0.998). The
    same data tested by least squares (σ²_g = 0) are inflated by the structure, so the
    check can fail.
    """
    geno = simulate_genotypes(150, 10000, seed=3, structure=3, fst=0.05)
    G = henderson.genomic_relationship(geno)
    w, V = np.linalg.eigh(G.matrix)
    root = V * np.sqrt(np.clip(w, 0, None))
    rng = np.random.default_rng(4)
    src = GenotypeSource(geno)
    mixed, ols = [], []
    with warnings.catch_warnings(), blas_threads_for(geno.n):
        warnings.simplefilter("ignore")  # a monomorphic SNP; REML at the σ²_e = 0 edge for some traits
        for k in range(20):
            y = pd.Series(root @ rng.normal(size=geno.n) + rng.normal(size=geno.n), index=geno.ids, name="y")
            d = design_of(y, geno.ids)
            mixed.append(mlma(d, src, G=G)[0].p.to_numpy())
            if k < 2:
                ols.append(mlma(d, src, G=G, sigma2=(0.0, 1.0))[0].p.to_numpy())
    lam = henderson.genomic_control(np.concatenate(mixed))
    assert 0.98 <= lam <= 1.02, lam
    assert henderson.genomic_control(np.concatenate(ols)) > 1.1


@pytest.fixture(scope="module")
def small():
    geno = simulate_genotypes(150, 120, seed=2, n_chrom=3)
    rng = np.random.default_rng(2)
    g = (geno.dosages - 2 * geno.allele_freq) @ rng.normal(scale=0.3, size=geno.p)  # polygenic
    y = pd.Series(g + rng.normal(size=150), index=geno.ids, name="y")
    return geno, y


def test_unmapped_snps_are_named_for_windows_and_loco(small):
    geno, y = small
    snps = geno.snps.copy()
    snps.loc[[3, 5], ["chrom", "pos"]] = ["0", 0]
    g2 = henderson.Genotypes(geno.ids, snps, geno.dosages)
    with pytest.raises(henderson.DataError, match=r"LOCO.*2 SNP\(s\) have none.*'snp4', 'snp6'"):
        henderson.association(y, g2, method="mlma", loco=True)
    gb = henderson.GBLUP(sigma2=(1.0, 1.0)).fit(g2, y)
    t = henderson.association(gb, g2)
    with pytest.raises(henderson.DataError, match=r"windows.*'snp4', 'snp6'"):
        henderson.variance_windows(t, g2, "10kb")
    nomap = henderson.Genotypes(geno.ids, list(geno.snp_ids), geno.dosages)
    with pytest.raises(henderson.DataError, match="no SNP has one"):
        henderson.variance_windows(t, nomap, 10)


def test_monomorphic_snps_are_reported_not_tested(small):
    geno, y = small
    d = np.array(geno.dosages)
    d[:, [0, 7]] = 2
    g2 = henderson.Genotypes(geno.ids, geno.snps, d)
    with pytest.warns(henderson.DataWarning, match=r"2 of 120 SNP\(s\) are monomorphic.*'snp1', 'snp8'"):
        t = henderson.association(y, g2, method="mlma")
    assert not t.tested[[0, 7]].any() and t.p[[0, 7]].isna().all()
    assert t.tested.sum() == 118 and t.p.notna().sum() == 118
    gb = henderson.GBLUP(sigma2=(1.0, 1.0)).fit(g2, y)
    with pytest.warns(henderson.DataWarning, match="'snp1', 'snp8'"):
        tb = henderson.association(gb, g2)
    assert not tb.tested[[0, 7]].any() and tb.tested.sum() == 118


def test_loco_needs_two_chromosomes(small):
    geno, y = small
    snps = geno.snps.copy()
    snps["chrom"] = "7"
    snps["pos"] = np.arange(1, geno.p + 1) * 100
    g1 = henderson.Genotypes(geno.ids, snps, geno.dosages)
    with pytest.raises(henderson.DataError, match=r"LOCO needs SNPs on two or more chromosomes.*'7'.*loco=False"):
        henderson.association(y, g1, method="mlma", loco=True)


def test_loco_equals_mlma_on_the_other_chromosomes_kernel(small):
    """LOCO for chromosome 1's SNPs is plain MLMA with G built from chromosomes 2 and 3."""
    geno, y = small
    t = henderson.association(y, geno, method="mlma", loco=True)
    on1 = (geno.snps.chrom == "1").to_numpy()
    others = geno.subset(snps=geno.snp_ids[~on1])
    G = henderson.genomic_relationship(others, allele_freq=geno.allele_freq[~on1])
    gb = henderson.GBLUP().fit(G, y)
    assert gb.variance_components_.loc["id", "variance"] > 0  # not the least-squares edge case
    sub = henderson.association(gb, geno.subset(snps=geno.snp_ids[on1]), method="mlma")
    # both REML fits converge to ~1e-8 in σ²: p-values agree far inside 1e-5
    np.testing.assert_allclose(t.p[on1], sub.p, rtol=1e-5)
    assert not np.allclose(t.p[on1], henderson.association(y, geno, method="mlma").p[on1], rtol=1e-3)


def test_genotypes_must_hold_the_models_individuals(small):
    geno, y = small
    gb = henderson.GBLUP(sigma2=(1.0, 1.0)).fit(geno, y)
    fewer = geno.subset(ids=geno.ids[5:])
    with pytest.raises(henderson.DataError, match=r"5 individual\(s\) of the fitted GBLUP.*'ind1'"):
        henderson.association(gb, fewer)
    other = geno.subset(snps=geno.snp_ids[:60])
    with pytest.raises(henderson.DataError, match="SNPs G was built from"):
        henderson.association(gb, other)
    with pytest.raises(henderson.DataError, match="method='backsolve' needs a fitted model"):
        henderson.association(y, geno)
    with pytest.raises(henderson.DataError, match="options of method='mlma'"):
        henderson.association(gb, geno, loco=True)
    with pytest.raises(henderson.DataError, match="method must be one of"):
        henderson.association(gb, geno, method="gwas")


def test_backsolve_on_a_g_from_other_genotypes_is_refused(small):
    geno, y = small
    G = henderson.genomic_relationship(geno.subset(snps=geno.snp_ids[:100]))
    gb = henderson.GBLUP(sigma2=(1.0, 1.0)).fit(G, y)
    with pytest.raises(henderson.DataError, match="G was scaled by"):
        henderson.association(gb, geno)

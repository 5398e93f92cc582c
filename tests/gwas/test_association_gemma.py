"""Mixed-model association against GEMMA 0.98.5 (Debian ``gemma``) on committed data.

``tests/data/gemma/`` holds a seeded simulation (250 individuals, 1,500 SNPs on five
chromosomes, a sex covariate) as PLINK files and GEMMA's outputs; ``regenerate.py``
there remakes them and ``commands.txt`` has the exact command lines. GEMMA drops SNPs
with minor allele frequency < 0.01 from its kinship and its tests (2 here), so ours run
on the SNPs GEMMA analysed: the same data, the same kinship.
"""

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import henderson

D = Path(__file__).resolve().parents[1] / "data" / "gemma"


@pytest.fixture(scope="module")
def data():
    geno = henderson.read_genotypes(D / "assoc.bed")
    y = pd.Series(np.loadtxt(D / "pheno.txt"), index=geno.ids, name="y")
    cov = pd.DataFrame({"sex": np.loadtxt(D / "covar.txt")[:, 1]}, index=geno.ids)
    exact = pd.read_csv(D / "exact.assoc.txt", sep="\t")
    p3d = pd.read_csv(D / "p3d.assoc.txt", sep="\t")
    assert list(exact.rs) == list(p3d.rs)
    return geno.subset(snps=exact.rs.to_numpy()), y, cov, exact, p3d


def _scale(geno):
    """GEMMA's centred kinship is WW'/m, ours WW'/c (c = 2Σpq): λ_GEMMA = λ_ours·m/c."""
    return henderson.genomic_relationship(geno).info["scale"] / geno.p


def _neglog10(p):
    return -np.log10(np.asarray(p, dtype=float))


def test_kinship_is_gemmas_centred_kinship(data):
    geno = data[0]
    K = np.loadtxt(gzip.open(D / "kinship.cXX.txt.gz"))
    G = henderson.genomic_relationship(geno)
    # GEMMA writes 10 significant digits; entries are O(0.1-1)
    np.testing.assert_allclose(G.matrix * _scale(geno), K, atol=1e-9, rtol=0)


def test_exact_per_snp_reml_matches_gemma_lmm1(data):
    geno, y, cov, exact, _ = data
    t = henderson.association(y, geno, method="mlma", p3d=False, fixed="sex", data=cov)
    assert list(t.snp) == list(exact.rs)
    ours, theirs = _neglog10(t.p), _neglog10(exact.p_wald)
    assert np.corrcoef(ours, theirs)[0, 1] >= 0.9999
    # measured max |Δ -log10 p| = 2.2e-6: GEMMA prints 7 significant digits and stops its
    # λ search at its own tolerance; 1e-4 leaves room for both and nothing else
    assert np.abs(ours - theirs).max() < 1e-4
    # β̂ moves with λ̂ where the likelihood is flat: measured |Δβ| ≤ 4.4e-7 (4e-6 SE)
    assert (np.abs(t.effect - exact.beta) / exact.se).max() < 1e-5
    np.testing.assert_allclose(t.se, exact.se, rtol=1e-5)
    # the REML likelihood is flat in λ: per-SNP ratios agree to 1e-3 (on GEMMA's scale)
    np.testing.assert_allclose(t["lambda"] / _scale(geno), exact.l_remle, rtol=1e-3)
    assert t.allele1.tolist() == exact.allele1.tolist()  # effects are per copy of the same allele


def test_p3d_matches_gemma_at_the_null_ratio(data):
    geno, y, cov, exact, p3d = data
    t = henderson.association(y, geno, method="mlma", fixed="sex", data=cov)
    ours = _neglog10(t.p)
    # GEMMA with -lmin = -lmax = its null REML ratio (6 digits in its log)
    assert np.corrcoef(ours, _neglog10(p3d.p_wald))[0, 1] >= 0.999
    assert np.abs(ours - _neglog10(p3d.p_wald)).max() < 1e-4  # measured 4.3e-7
    # our null REML ratio is GEMMA's (its log: vg, ve to 6 significant digits)
    log = (D / "exact.log.txt").read_text()
    vg = float(re.search(r"## vg estimate in the null model = (\S+)", log).group(1))
    ve = float(re.search(r"## ve estimate in the null model = (\S+)", log).group(1))
    np.testing.assert_allclose(t["lambda"].iloc[0] / _scale(geno), vg / ve, rtol=1e-5)
    # P3D against the exact per-SNP test: the approximation the brief allows (0.999)
    assert np.corrcoef(ours, _neglog10(exact.p_wald))[0, 1] >= 0.999  # measured 0.99958


def test_plink_file_read_in_blocks_gives_the_same_table(data, tmp_path):
    geno, y, cov, _, _ = data
    henderson.write_plink(tmp_path / "g", geno)
    a = henderson.association(y, geno, method="mlma", fixed="sex", data=cov)
    b = henderson.association(y, tmp_path / "g.bed", method="mlma", fixed="sex", data=cov, block_size=97)
    np.testing.assert_allclose(b.p, a.p, rtol=1e-10)
    np.testing.assert_allclose(b.effect, a.effect, rtol=1e-10)

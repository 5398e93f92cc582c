"""Genomic relationship matrices against rrBLUP / PLINK references and invariances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from henderson._testing.genotypes import simulate_genotypes
from henderson.data.genotypes import MISSING, Genotypes
from henderson.datasets.loaders import load_wheat
from henderson.errors import AlignmentError, DataError, DataWarning, GenotypeError
from henderson.relationships import Relationship
from henderson.relationships.genomic import (
    blend,
    genomic_relationship,
    relationship_diagnostics,
    tune_to_pedigree,
)

REFS = Path(__file__).parents[1] / "data" / "refs"


@pytest.fixture(scope="module")
def wheat():
    w = load_wheat()
    # references use M = 2X - 1, i.e. allele counts 0/2 for inbred lines
    return w, Genotypes.from_frame(2 * w.markers)


def _ref(name):
    return pd.read_csv(REFS / name, dtype={"id": str}).set_index("id")


@pytest.mark.parametrize("dtype", ["auto", "float64"])
def test_vanraden1_equals_rrblup_amat(wheat, dtype):
    _, geno = wheat
    G = genomic_relationship(geno, "vanraden1", dtype=dtype, block_size=300)
    ref = _ref("wheat_Amat_rrblup.csv.gz")
    np.testing.assert_allclose(G.dense(), ref.loc[G.ids, G.ids].to_numpy(), rtol=0, atol=1e-10)
    assert G.kind == "G" and G.info["n_snps_used"] == 1279
    assert G.info["blocks"]["float32" if dtype == "auto" else "float64"] == 5


def test_vanraden2_equals_plink_make_rel(wheat):
    _, geno = wheat
    G = genomic_relationship(geno, "vanraden2")
    ref = _ref("wheat_grm_plink.csv.gz")
    np.testing.assert_allclose(G.dense(), ref.loc[G.ids, G.ids].to_numpy(), rtol=0, atol=1e-10)


def _direct(x, p, method):
    """Textbook formulas on a dense matrix without missing calls."""
    w = x - 2 * p
    pq = p * (1 - p)
    if method == "vanraden1":
        return w @ w.T / (2 * pq.sum())
    z = w / np.sqrt(2 * pq)
    g = z @ z.T / len(p)
    if method == "yang":
        d = 1 + ((x**2 - (1 + 2 * p) * x + 2 * p**2) / (2 * pq)).mean(axis=1)
        np.fill_diagonal(g, d)
    if method == "vitezica":
        h = np.where(x == 2, -2 * (1 - p) ** 2, np.where(x == 1, 2 * pq, -2 * p**2))
        g = h @ h.T / ((2 * pq) ** 2).sum()
    return g


@pytest.mark.parametrize("method", ["vanraden1", "vanraden2", "yang", "vitezica"])
@pytest.mark.parametrize("freq", [None, 0.5, "array"])
def test_methods_match_textbook_formulas(method, freq):
    geno = simulate_genotypes(40, 300, seed=1, maf_range=(0.1, 0.5))
    x = geno.dosages.astype(float)
    p = geno.allele_freq if freq is None else (np.full(300, 0.5) if freq == 0.5 else np.linspace(0.2, 0.7, 300))
    # a Series is matched by SNP id: give it in reverse order
    arg = pd.Series(p[::-1], index=geno.snp_ids[::-1]) if freq == "array" else freq
    G = genomic_relationship(geno, method, allele_freq=arg, block_size=64)
    np.testing.assert_allclose(G.dense(), _direct(x, p, method), rtol=0, atol=1e-12)


def test_float32_path_equals_float64_and_block_size_invariance():
    geno = simulate_genotypes(200, 3000, seed=7)
    g64 = genomic_relationship(geno, dtype="float64").dense()
    for bs in (100, 999, 5000):
        g32 = genomic_relationship(geno, dtype="float32", block_size=bs)
        assert g32.info["blocks"]["float64"] == 0
        np.testing.assert_allclose(g32.dense(), g64, rtol=0, atol=1e-10)
    for bs in (100, 5000):
        np.testing.assert_allclose(
            genomic_relationship(geno, dtype="float64", block_size=bs).dense(), g64, rtol=0, atol=1e-12
        )


def test_missing_calls_mean_imputed_and_mixed_paths():
    geno = simulate_genotypes(50, 400, seed=2, missing_rate=0.02)
    G = genomic_relationship(geno, block_size=50)
    assert G.info["blocks"]["float64"] > 0 and G.info["n_missing_imputed"] == geno.n_missing
    x = geno.dosages.astype(float)
    p = geno.allele_freq
    w = np.where(geno.dosages == MISSING, 0.0, x - 2 * p)  # imputed at 2p
    np.testing.assert_allclose(G.dense(), w @ w.T / (2 * (p * (1 - p)).sum()), atol=1e-12)
    G64 = genomic_relationship(geno, block_size=50, dtype="float64")
    np.testing.assert_allclose(G.dense(), G64.dense(), atol=1e-12)


@pytest.mark.filterwarnings("ignore::henderson.errors.DataWarning")  # rare monomorphic SNPs
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), method=st.sampled_from(["vanraden1", "vanraden2", "yang", "vitezica"]))
def test_symmetric_and_permutation_invariant(seed, method):
    geno = simulate_genotypes(25, 120, seed=seed, maf_range=(0.1, 0.5), missing_rate=0.01)
    G = genomic_relationship(geno, method, block_size=37)
    g = G.dense()
    assert np.array_equal(g, g.T)
    rng = np.random.default_rng(seed)
    perm = geno.subset(ids=rng.permutation(geno.ids), snps=rng.permutation(geno.snp_ids))
    Gp = genomic_relationship(perm, method, block_size=37)
    np.testing.assert_allclose(Gp.subset(G.ids).dense(), g, rtol=0, atol=1e-12)


def test_monomorphic_and_errors():
    d = np.array([[0, 1, 2], [0, 2, 0], [0, 0, 1]], dtype=np.int8)
    geno = Genotypes(["a", "b", "c"], ["s1", "s2", "s3"], d)
    genomic_relationship(geno)  # vanraden1: a monomorphic SNP contributes 0, no warning
    with pytest.warns(DataWarning, match="1 SNP\\(s\\) with p\\(1-p\\) = 0"):
        G = genomic_relationship(geno, "vanraden2")
    assert G.info["n_snps_used"] == 2
    with pytest.raises(DataError, match="unknown method"):
        genomic_relationship(geno, "nope")
    with pytest.raises(DataError, match="lacks 1 SNP"):
        genomic_relationship(geno, allele_freq=pd.Series([0.5, 0.5], index=["s1", "s2"]))
    with pytest.raises(DataError, match="float32"):
        genomic_relationship(geno, "vanraden2", dtype="float32")
    with pytest.raises(GenotypeError, match="hard genotype calls"):
        genomic_relationship(Genotypes(["a"], ["s"], np.array([[0.5]])), "vitezica")


def test_blend_tune_and_diagnostics(wheat):
    w, geno = wheat
    G = genomic_relationship(geno)
    A = Relationship.from_frame(w.A, kind="A")
    A_rev = A.subset(A.ids[::-1])  # different order: matched by ids
    Gw = blend(G, A_rev, 0.1)
    np.testing.assert_allclose(Gw.dense(), 0.9 * G.dense() + 0.1 * A.subset(G.ids).dense(), atol=1e-14)
    T = tune_to_pedigree(G, A_rev)
    diag = relationship_diagnostics(T, A_rev)
    assert diag["mean_diag"] == pytest.approx(diag["mean_diag_A22"])
    assert diag["mean_offdiag"] == pytest.approx(diag["mean_offdiag_A22"])
    assert relationship_diagnostics(G)["min_eigenvalue"] < 1e-8  # centred G is singular
    with pytest.raises(AlignmentError, match=r"blend: 589 of 599 id\(s\) of G are not in .*missing='drop'"):
        blend(G, A.subset(A.ids[:10]), 0.1)


def test_missing_drop_where_genotypes_meet_the_pedigree(wheat):
    w, geno = wheat
    G = genomic_relationship(geno).subset(geno.ids[:150])  # small: eigvalsh stays cheap
    A = Relationship.from_frame(w.A, kind="A")
    part = A.subset(G.ids[::-1][:120])  # 30 genotyped lines without pedigree
    kept = [i for i in G.ids if i in set(part.ids)]
    with pytest.warns(DataWarning, match=r"30 of 150 id\(s\) of G are not in .*dropped them, 120 left"):
        Gw = blend(G, part, 0.2, missing="drop")
    assert list(Gw.ids) == kept and Gw.info["n_dropped_not_in_A22"] == 30
    np.testing.assert_allclose(
        Gw.dense(), 0.8 * G.subset(kept).dense() + 0.2 * A.subset(kept).dense(), rtol=0, atol=1e-14
    )
    with pytest.warns(DataWarning, match="30 of 150"):
        T = tune_to_pedigree(G, part, missing="drop")
    assert list(T.ids) == kept and T.info["n_dropped_not_in_A22"] == 30
    with pytest.warns(DataWarning, match="30 of 150"):
        dg = relationship_diagnostics(G, part, missing="drop")
    assert dg["n"] == 120 and dg["n_dropped_not_in_A22"] == 30
    g = G.subset(kept).dense()
    assert dg["mean_diag"] == pytest.approx(np.diag(g).mean(), rel=1e-12)
    a = A.subset(kept).dense()
    off = ~np.eye(len(kept), dtype=bool)
    t = T.dense()  # tuned on the kept ids: its means are A22's (Christensen et al. 2012)
    assert np.diag(t).mean() == pytest.approx(np.diag(a).mean(), rel=1e-12)
    assert t[off].mean() == pytest.approx(a[off].mean(), rel=1e-10)
    for f in (tune_to_pedigree, relationship_diagnostics):
        with pytest.raises(AlignmentError, match="30 of 150"):
            f(G, part)
    with pytest.raises(DataError, match="missing must be"):
        blend(G, part, missing="ignore")


# Peak memory of G: the n x n float64 result (+ the n x n float32 accumulator on the
# exact float32 path) plus one block. A "block" is n x block_size x 8 bytes; the
# scratch buffer is one block (float64 methods) or half of one (float32 codes).
# c = 1.25 leaves room for the small per-SNP/per-individual vectors and allocator
# slack; the audit measured 3.3-5.1 blocks for vanraden2/vitezica/yang before the
# blocks were filled in place.
_C_BLOCKS = 1.25


@pytest.mark.parametrize("method", ["vanraden1", "vanraden2", "yang", "vitezica"])
@pytest.mark.parametrize("missing_rate", [0.0, 0.01])
def test_peak_memory_is_result_plus_one_block(method, missing_rate):
    import tracemalloc

    n, p, bs = 300, 3000, 1000
    geno = simulate_genotypes(n, p, seed=4, missing_rate=missing_rate, maf_range=(0.05, 0.5))
    _ = geno.allele_freq  # cached column statistics are not part of G's working memory
    genomic_relationship(geno, method, block_size=bs)  # compile the kernels first
    tracemalloc.start()
    try:
        G = genomic_relationship(geno, method, block_size=bs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    f32 = G.info["blocks"]["float32"] > 0
    bound = n * n * 8 + (n * n * 4 if f32 else 0) + _C_BLOCKS * n * bs * 8
    assert peak <= bound, (peak - n * n * 8) / (n * bs * 8)

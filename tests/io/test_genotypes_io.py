"""Genotype container, readers/writers, QC and GRM file round trips."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from henderson._testing.genotypes import simulate_genotypes
from henderson.data.genotypes import MISSING, Genotypes
from henderson.errors import DataError, DataWarning, GenotypeError
from henderson.io.genotypes import read_genotypes, write_plink
from henderson.io.qc import genotype_qc, impute_mean
from henderson.relationships import Relationship
from henderson.relationships.genomic import genomic_relationship
from henderson.relationships.grm_io import (
    read_gcta_grm,
    read_relationship_csv,
    write_gcta_grm,
    write_relationship_csv,
)


@pytest.fixture(scope="module")
def small():
    return simulate_genotypes(30, 80, seed=3, missing_rate=0.05)


def test_container_basics(small):
    assert (small.n, small.p) == (30, 80)
    assert copy.deepcopy(small) is small
    assert not small.dosages.flags.writeable
    d = small.dosages.astype(float)
    d[d == MISSING] = np.nan
    np.testing.assert_allclose(small.allele_freq, np.nanmean(d, axis=0) / 2)
    assert small.n_missing == int(np.isnan(d).sum())
    frame = small.to_frame()
    assert list(frame.index[:2]) == ["ind1", "ind2"] and frame.columns[0] == "snp1"
    assert np.isnan(frame.to_numpy()).sum() == small.n_missing


def test_subset_by_ids_and_unknown_ids(small):
    sub = small.subset(ids=["ind5", "ind2"], snps=["snp10", "snp1"])
    np.testing.assert_array_equal(sub.dosages, small.dosages[np.ix_([4, 1], [9, 0])])
    assert list(sub.snps["snp"]) == ["snp10", "snp1"]
    with pytest.raises(DataError, match=r"2 unknown individual id\(s\): 'x1', 'x2'"):
        small.subset(ids=["ind1", "x1", "x2"])
    with pytest.raises(DataError, match="unknown SNP id.*'nope'"):
        small.subset(snps=["nope"])


def test_bad_codes_refused():
    with pytest.raises(GenotypeError, match="genotype 3 for id .b., SNP .s1."):
        Genotypes(["a", "b"], ["s1"], np.array([[0], [3]], dtype=np.int8))
    with pytest.raises(DataError, match="duplicated individual ids"):
        Genotypes(["a", "a"], ["s1"], np.zeros((2, 1), dtype=np.int8))


def test_plink_round_trip(tmp_path, small):
    bed = write_plink(tmp_path / "sim", small)
    back = read_genotypes(bed)
    np.testing.assert_array_equal(back.ids, small.ids)
    np.testing.assert_array_equal(back.dosages, small.dosages)  # A1 counted both ways
    pd.testing.assert_frame_equal(back.snps, small.snps)
    assert read_genotypes(tmp_path / "sim").p == small.p  # prefix works too


VCF = """##fileformat=VCFv4.2
##contig=<ID=1,length=1000>
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=DS,Number=1,Type=Float,Description="Dosage">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1\ts2\ts3
1\t100\trs1\tA\tG\t.\tPASS\t.\tGT:DS\t0/0:0.1\t0/1:0.9\t1/1:1.8
1\t200\trs2\tC\tT,G\t.\tPASS\t.\tGT:DS\t0/1:1\t0/2:1\t1/1:2
1\t300\t.\tG\tA\t.\tPASS\t.\tGT:DS\t./.:.\t1|1:2\t0|1:1.1
"""


def test_vcf_read_multiallelic_skipped_and_missing_kept(tmp_path):
    path = tmp_path / "x.vcf"
    path.write_text(VCF)
    with pytest.warns(DataWarning, match="skipped 1 multi-allelic site"):
        g = read_genotypes(path)
    assert list(g.ids) == ["s1", "s2", "s3"]
    assert list(g.snps["snp"]) == ["rs1", "1:300:G:A"]
    assert list(g.snps["allele1"]) == ["G", "A"]  # ALT is counted
    np.testing.assert_array_equal(g.dosages, [[0, MISSING], [1, 2], [2, 1]])
    assert g.info["n_multiallelic_skipped"] == 1 and g.info["multiallelic_skipped"] == ["rs2"]
    with pytest.warns(DataWarning):
        ds = read_genotypes(path, field="DS")
    np.testing.assert_allclose(ds.dosages[:, 0], [0.1, 0.9, 1.8], rtol=1e-6)
    assert np.isnan(ds.dosages[0, 1])


def test_csv_012_and_minus101_detection(tmp_path):
    p1 = tmp_path / "g.csv"
    p1.write_text("id,m1,m2,m3\na,0,1,2\nb,2,NA,0\n")
    with pytest.warns(DataWarning, match="detected as '012'"):  # every detection is announced
        g = read_genotypes(p1)
    assert g.info["coding"] == "012"
    np.testing.assert_array_equal(g.dosages, [[0, 1, 2], [2, MISSING, 0]])
    p2 = tmp_path / "g.tsv"
    p2.write_text("id\tm1\tm2\na\t-1\t1\nb\t0\t-1\n")
    with pytest.warns(DataWarning, match="-1/0/1"):
        g2 = read_genotypes(p2)
    assert g2.info["coding"] == "-101"
    np.testing.assert_array_equal(g2.dosages, [[0, 2], [1, 0]])
    # declared coding: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_genotypes(p2, coding="-101")


def test_csv_bad_code_names_id_column_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("id,m1,m2\na,0,1\n\nb,1,2\nc,3,0\n")
    with pytest.raises(GenotypeError, match=r"genotype 3 for id 'c', SNP 'm1' \(line 5, column 2\)"):
        read_genotypes(path)
    with pytest.raises(GenotypeError, match=r"id 'b', SNP 'm2' \(line 4, column 3\).*'-101'"):
        read_genotypes(path, coding="-101")
    path.write_text("id,m1\na,0\nb,AA\n")
    with pytest.raises(GenotypeError, match=r"non-numeric genotype 'AA' for id 'b', SNP 'm1' \(line 3"):
        read_genotypes(path)


def test_qc_reports_everything(small):
    d = np.array(small.dosages)
    d[:, 0] = 0  # monomorphic
    d[: small.n - 1, 1] = MISSING  # call rate 1/30
    d[0, :] = MISSING  # individual without calls
    g = Genotypes(small.ids, small.snps, d)
    geno, snps, inds = genotype_qc(g, min_call_rate=0.5, min_individual_call_rate=0.5, impute=True)
    assert snps.loc["snp1", "reason"] == "monomorphic"
    assert "call_rate" in snps.loc["snp2", "reason"]
    assert inds.loc["ind1", "reason"] == "call_rate" and not inds.loc["ind1", "kept"]
    assert geno.n == small.n - 1 and geno.p == int(snps["kept"].sum())
    assert geno.info["qc"]["n_snps_removed"] == small.p - geno.p
    assert geno.n_missing == 0 and geno.info["qc"]["n_imputed"] == snps["n_imputed"].sum() > 0
    assert inds["n_imputed"].sum() == snps["n_imputed"].sum()
    imp = impute_mean(small)
    assert imp.n_missing == 0 and imp.info["n_imputed"] == small.n_missing


def test_grm_csv_and_gcta_round_trip(tmp_path, small):
    G = genomic_relationship(small, "vanraden1")
    back = read_relationship_csv(write_relationship_csv(G, tmp_path / "g.csv"))
    np.testing.assert_array_equal(back.ids, G.ids)
    np.testing.assert_allclose(back.dense(), G.dense(), rtol=0, atol=1e-15)
    write_gcta_grm(G, tmp_path / "g")
    gd = G.dense()
    g2 = read_gcta_grm(tmp_path / "g")
    np.testing.assert_array_equal(g2.ids, G.ids)
    np.testing.assert_allclose(g2.dense(), gd, rtol=1e-6, atol=1e-6)
    assert (g2.info["n_snps"] == G.info["n_snps_used"]).all()


def test_bad_code_after_missing_code_is_found():
    d = np.array([[MISSING, 0], [1, -5]], dtype=np.int8)
    with pytest.raises(GenotypeError, match="genotype -5 for id 'b', SNP 's2'"):
        Genotypes(["a", "b"], ["s1", "s2"], d)
    with pytest.raises(GenotypeError, match="genotype 7 for id 'y', SNP 'm'"):
        Genotypes.from_frame(pd.DataFrame({"m": [0, 7]}, index=["x", "y"]))


def test_gcta_files_follow_the_gcta_layout(tmp_path, small):
    """Read the three files with numpy/pandas only, as GCTA documents them."""
    with pytest.warns(DataWarning, match="1 SNP"):  # one SNP of `small` is monomorphic
        G = genomic_relationship(small, "yang")
    gd = G.dense()
    n = G.n
    write_gcta_grm(G, tmp_path / "g")
    # .grm.bin: float32 little-endian, lower triangle incl. diagonal, row by row:
    # G[0,0], G[1,0], G[1,1], G[2,0], G[2,1], G[2,2], ...
    raw = np.fromfile(tmp_path / "g.grm.bin", dtype="<f4")
    assert raw.size == n * (n + 1) // 2
    expected = np.concatenate([gd[i, : i + 1] for i in range(n)]).astype(np.float32)
    np.testing.assert_array_equal(raw, expected)  # float32 rounding of the same numbers
    nbin = np.fromfile(tmp_path / "g.grm.N.bin", dtype="<f4")
    assert nbin.size == raw.size and (nbin == small.p - 1).all()  # SNPs used per pair
    ids = (tmp_path / "g.grm.id").read_text().splitlines()
    assert ids == [f"{i}\t{i}" for i in G.ids]  # FID IID; FID = IID without a .fam


def test_min_maf_filter(small):
    freq = small.allele_freq
    maf = np.minimum(freq, 1 - freq)
    # a MAF that occurs in the data, so the boundary case below really is at the cut
    cut = float(np.sort(np.unique(maf[maf > 0]))[len(np.unique(maf[maf > 0])) // 3])
    geno, snps, _ = genotype_qc(small, min_maf=cut)
    # from the documented definitions: maf < min_maf fails 'maf' unless the SNP is
    # monomorphic (maf 0), which fails 'monomorphic' instead
    low = set(small.snp_ids[(maf < cut) & (maf > 0)])
    mono = set(small.snp_ids[maf == 0])
    assert len(low) > 5 and len(mono) == 1
    assert set(snps.index[snps["reason"] == "maf"]) == low
    assert set(snps.index[snps["reason"] == "monomorphic"]) == mono
    assert set(geno.snp_ids) == set(small.snp_ids) - low - mono
    assert geno.info["qc"]["n_snps_failed_maf"] == len(low)
    # boundary: SNPs at exactly min_maf are kept (the filter is maf < min_maf, not <=)
    at = set(small.snp_ids[maf == cut])
    assert at and at <= set(geno.snp_ids)


def test_relationship_subset_reindexes_per_id_info(tmp_path, small):
    G = genomic_relationship(small)
    write_gcta_grm(G, tmp_path / "g", fid=[f"F{i}" for i in range(G.n)])
    back = read_gcta_grm(tmp_path / "g")
    sub = back.subset(back.ids[:3])  # used to fail: info arrays kept the old length
    assert list(sub.info["fid"]) == ["F0", "F1", "F2"]
    rev = back.subset(back.ids[::-1])
    write_gcta_grm(rev, tmp_path / "rev")
    pairs = [line.split("\t") for line in (tmp_path / "rev.grm.id").read_text().splitlines()]
    assert pairs == [[f"F{i}", G.ids[i]] for i in range(G.n)][::-1]
    assert rev.info["n_snps"].shape == (G.n, G.n)


def test_relationship_is_read_only(small):
    G = genomic_relationship(small)
    with pytest.raises(ValueError, match="read-only"):
        G.dense()[0, 0] = 99.0
    with pytest.raises(ValueError, match="read-only"):
        G.matrix[0, 0] = 99.0
    a = np.eye(3)
    r = Relationship(["x", "y", "z"], a)
    a[0, 0] = 5.0  # the caller's own array stays writeable (a view, not a copy)
    assert r.matrix[0, 0] == 5.0 and np.shares_memory(r.matrix, a)
    Ainv = Relationship(["x", "y", "z"], sp.csr_matrix(np.eye(3)), inverse=True)
    with pytest.raises(ValueError, match="read-only"):
        Ainv.matrix.data[0] = 2.0


def test_inverse_csv_round_trip_dense_and_triplet(tmp_path):
    from henderson.io.pedigree import read_pedigree
    from henderson.relationships.pedigree import pedigree_inverse

    ped = read_pedigree(
        pd.DataFrame({"id": ["3", "1", "2", "04"], "sire": [None, None, "1", "1"], "dam": [None, None, "3", "2"]})
    )
    Ainv = pedigree_inverse(ped)
    path = write_relationship_csv(Ainv, tmp_path / "ainv.csv")  # sparse: id1,id2,value triplets
    table = pd.read_csv(path, dtype={"id1": str, "id2": str})
    assert list(table.columns) == ["id1", "id2", "value"]
    pos = {i: k for k, i in enumerate(Ainv.ids)}
    assert all(pos[a] >= pos[b] for a, b in zip(table["id1"], table["id2"]))  # lower triangle
    dense = Ainv.dense()
    low = np.tril(dense)
    assert len(table) == np.count_nonzero(low)
    for a, b, v in table.itertuples(index=False):
        assert v == dense[pos[a], pos[b]]  # %.17g round-trips float64 exactly
    back = read_relationship_csv(path, kind="Ainv", inverse=True)
    assert back.inverse and back.is_sparse and list(back.ids) == list(Ainv.ids)
    np.testing.assert_array_equal(back.dense(), dense)
    square = write_relationship_csv(Ainv, tmp_path / "sq.csv", format="square")
    back2 = read_relationship_csv(square, inverse=True)
    np.testing.assert_array_equal(back2.dense(), dense)
    assert list(back2.ids) == list(Ainv.ids) and "04" in back2.ids  # ids stay text


def test_triplet_reader_mirrors_and_checks(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id1,id2,value\na,a,2\nb,a,-1\nb,b,2\nc,c,1\n")
    r = read_relationship_csv(path)
    np.testing.assert_array_equal(r.dense(), [[2, -1, 0], [-1, 2, 0], [0, 0, 1]])
    path.write_text("id1,id2,value\na,a,2\nb,a,-1\na,b,-1\nb,b,2\n")  # full storage, consistent
    np.testing.assert_array_equal(read_relationship_csv(path).dense(), [[2, -1], [-1, 2]])
    path.write_text("id1,id2,value\na,a,2\nb,a,-1\na,b,-2\nb,b,2\n")
    with pytest.raises(DataError, match="not symmetric"):
        read_relationship_csv(path)
    path.write_text("id1,id2,value\na,a,2\na,a,3\n")
    with pytest.raises(DataError, match=r"\('a', 'a'\) is given more than once \(lines 2, 3\)"):
        read_relationship_csv(path)

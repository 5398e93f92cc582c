"""Genotype container, readers/writers, QC and GRM file round trips."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import pytest

from henderson.data.genotypes import MISSING, Genotypes
from henderson.errors import DataError, DataWarning, GenotypeError
from henderson.io.genotypes import read_genotypes, write_plink
from henderson.io.qc import genotype_qc, impute_mean
from henderson.relationships.genomic import genomic_relationship
from henderson.relationships.grm_io import (
    read_gcta_grm,
    read_relationship_csv,
    write_gcta_grm,
    write_relationship_csv,
)
from henderson._testing.genotypes import simulate_genotypes


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
    # layout check: lower triangle row by row
    raw = np.fromfile(tmp_path / "g.grm.bin", dtype="<f4")
    gd = G.dense()
    np.testing.assert_allclose(raw[:3], np.float32([gd[0, 0], gd[1, 0], gd[1, 1]]))
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

"""Genotype file readers against hand-made files: PLINK bytes, VCF calls, CSV codings.

Every expected value here is written from the file formats' specifications, not
produced by the reader under test.
"""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from henderson._testing.genotypes import simulate_genotypes
from henderson.data.genotypes import MISSING
from henderson.datasets.loaders import data_path
from henderson.errors import DataError, DataWarning, GenotypeError
from henderson.io.genotypes import read_genotypes, write_plink
from henderson.relationships.genomic import genomic_relationship
from henderson.relationships.grm_io import read_gcta_grm, write_gcta_grm

REFS = Path(__file__).parents[1] / "data" / "refs"

# --- PLINK .bed built byte by byte --------------------------------------------------

# PLINK 1.9 "bed" spec: 2-bit codes per individual, packed lowest bits first, SNP-major.
HOM_A1, MISS, HET, HOM_A2 = 0b00, 0b01, 0b10, 0b11
# Counting A1 (PLINK's convention): hom A1 = 2 copies, het = 1, hom A2 = 0.
A1_COUNT = {HOM_A1: 2, HET: 1, HOM_A2: 0, MISS: MISSING}


def _pack(calls: list[int]) -> bytes:
    out = bytearray((len(calls) + 3) // 4)
    for k, code in enumerate(calls):
        out[k // 4] |= code << (2 * (k % 4))
    return bytes(out)


def _write_fileset(prefix: Path, calls_by_snp, n_fam=None, truncate=0):
    n = len(calls_by_snp[0])
    body = b"".join(_pack(c) for c in calls_by_snp)
    data = bytes([0x6C, 0x1B, 0x01]) + body
    prefix.with_suffix(".bed").write_bytes(data[: len(data) - truncate])
    fam = [f"FAM{k % 2} i{k + 1} 0 0 {1 + k % 2} -9" for k in range(n if n_fam is None else n_fam)]
    prefix.with_suffix(".fam").write_text("\n".join(fam) + "\n")
    bim = [f"{j + 1}\tsnp{j + 1}\t0\t{100 * (j + 1)}\tA\tC" for j in range(len(calls_by_snp))]
    prefix.with_suffix(".bim").write_text("\n".join(bim) + "\n")


# 5 individuals (so the last byte of each SNP is half padding), 3 SNPs
CALLS = [
    [HOM_A1, HET, HOM_A2, MISS, HOM_A1],
    [HOM_A2, HOM_A2, HET, HET, MISS],
    [HET, HOM_A1, HOM_A1, HOM_A2, HOM_A2],
]


def test_plink_bed_built_by_hand(tmp_path):
    _write_fileset(tmp_path / "hand", CALLS)
    g = read_genotypes(tmp_path / "hand.bed")
    expected = np.array([[A1_COUNT[c] for c in snp] for snp in CALLS], dtype=np.int8).T
    np.testing.assert_array_equal(g.dosages, expected)
    assert list(g.ids) == [f"i{k}" for k in range(1, 6)]
    assert list(g.snps["allele1"]) == ["A"] * 3 and list(g.snps["allele2"]) == ["C"] * 3  # A1 counted
    assert list(g.snps["pos"]) == [100, 200, 300] and list(g.snps["chrom"]) == ["1", "2", "3"]
    assert g.n_missing == 2 and g.info["coding"] == "012"
    assert list(g.info["fid"]) == ["FAM0", "FAM1", "FAM0", "FAM1", "FAM0"]
    # p of A1 at SNP 1 over the 4 calls: (2 + 1 + 0 + 2) / 8
    assert g.allele_freq[0] == pytest.approx(5 / 8, abs=0)


def test_plink_fam_shorter_than_bed(tmp_path):
    _write_fileset(tmp_path / "x", CALLS, n_fam=2)  # .bed sized for 5 (2 bytes per SNP)
    with pytest.raises(GenotypeError, match=r"x.fam has 2 individuals but x.bed is sized for 5 to 8"):
        read_genotypes(tmp_path / "x")


def test_plink_truncated_bed(tmp_path):
    _write_fileset(tmp_path / "t", CALLS, truncate=1)
    with pytest.raises(GenotypeError, match=r"t.bed has 8 bytes, but 3 \+ 3 SNPs x ceil\(5/4\) = 9"):
        read_genotypes(tmp_path / "t.bed")


def test_plink_not_a_bed_and_missing_parts(tmp_path):
    _write_fileset(tmp_path / "j", CALLS)
    (tmp_path / "j.bed").write_bytes(b"hello world")
    with pytest.raises(GenotypeError, match="not a PLINK 1 .bed file"):
        read_genotypes(tmp_path / "j.bed")
    (tmp_path / "j.bim").unlink()
    with pytest.raises(DataError, match=r"missing file\(s\) .*j.bim"):
        read_genotypes(tmp_path / "j.bed")


def test_plink_bad_bim_is_a_genotype_error(tmp_path):
    _write_fileset(tmp_path / "b", CALLS)
    (tmp_path / "b.bim").write_text("1 snp1 0 100 A C\n1 snp2\n1 snp3 0 300 A C\n")
    with pytest.raises(GenotypeError, match=r"PLINK fileset .*b: cannot read"):
        read_genotypes(tmp_path / "b")


def test_fid_follows_ids_into_G_and_gcta(tmp_path):
    _write_fileset(tmp_path / "f", CALLS)
    g = read_genotypes(tmp_path / "f")
    sub = g.subset(ids=["i4", "i1"])
    assert list(sub.info["fid"]) == ["FAM1", "FAM0"]
    G = genomic_relationship(g.subset(snps=["snp1", "snp3"]))
    rev = G.subset(G.ids[::-1])
    write_gcta_grm(rev, tmp_path / "rev")
    table = pd.read_csv(tmp_path / "rev.grm.id", sep="\t", header=None, dtype=str)
    assert table.values.tolist() == [["FAM0", "i5"], ["FAM1", "i4"], ["FAM0", "i3"], ["FAM1", "i2"], ["FAM0", "i1"]]
    assert list(read_gcta_grm(tmp_path / "rev").info["fid"]) == ["FAM0", "FAM1", "FAM0", "FAM1", "FAM0"]


# --- VCF -------------------------------------------------------------------------------

HEAD = """##fileformat=VCFv4.2
##contig=<ID=1,length=1000>
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
"""
COLS = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1\ts2\ts3\ts4\ts5\ts6\n"


def _vcf(tmp_path, body, head=HEAD, cols=COLS, name="x.vcf"):
    path = tmp_path / name
    path.write_text(head + cols + body)
    return path


def test_vcf_half_missing_calls_are_missing(tmp_path):
    path = _vcf(
        tmp_path,
        "1\t100\trs1\tA\tG\t.\tPASS\t.\tGT\t0/0\t./1\t1/.\t./.\t1|1\t0|1\n"
        "1\t200\trs2\tA\tG\t.\tPASS\t.\tGT\t.|0\t0/.\t1/1\t1/0\t0/0\t./.\n",
    )
    g = read_genotypes(path)
    # any missing allele makes the call missing; the rest count ALT copies
    np.testing.assert_array_equal(g.dosages[:, 0], [0, MISSING, MISSING, MISSING, 2, 1])
    np.testing.assert_array_equal(g.dosages[:, 1], [MISSING, MISSING, 2, 1, 0, MISSING])


def test_vcf_allele_index_beyond_alt_names_site_and_sample(tmp_path):
    path = _vcf(tmp_path, "1\t100\trs1\tA\tG\t.\tPASS\t.\tGT\t0/0\t0/1\t0/1\t0/0\t1/1\t0/3\n")
    with pytest.raises(
        GenotypeError, match=r"x.vcf: site 'rs1' .*1 ALT allele\(s\) but sample 's6' has allele index 3"
    ):
        read_genotypes(path)


def test_vcf_haploid_calls_count_as_homozygous(tmp_path):
    path = _vcf(tmp_path, "1\t100\trs1\tA\tG\t.\tPASS\t.\tGT\t0\t1\t.\t0/1\t1\t0\n")
    with pytest.warns(DataWarning, match="4 haploid call"):
        g = read_genotypes(path)
    np.testing.assert_array_equal(g.dosages[:, 0], [0, 2, MISSING, 1, 2, 0])


def test_vcf_dosage_field_absent_from_header(tmp_path):
    path = _vcf(tmp_path, "1\t100\trs1\tA\tG\t.\tPASS\t.\tGT\t0/0\t0/1\t0/1\t0/0\t1/1\t0/0\n")
    with pytest.raises(GenotypeError, match=r"x.vcf: the header declares no FORMAT field 'DS'.*'GT'"):
        read_genotypes(path, field="DS")


def test_vcf_sites_without_dosage_are_counted(tmp_path):
    head = HEAD + '##FORMAT=<ID=DS,Number=1,Type=Float,Description="Dosage">\n'
    path = _vcf(
        tmp_path,
        "1\t100\trs1\tA\tG\t.\tPASS\t.\tGT:DS\t0/0:0\t0/1:1.1\t0/1:.\t0/0:0.2\t1/1:2\t0/0:0\n"
        "1\t200\trs2\tA\tG\t.\tPASS\t.\tGT\t0/0\t0/1\t0/1\t0/0\t1/1\t0/0\n",
        head=head,
    )
    with pytest.warns(DataWarning, match=r"1 site\(s\) have no DS .*'rs2'"):
        g = read_genotypes(path, field="DS")
    assert g.info["n_sites_without_field"] == 1 and g.info["coding"] == "dosage"
    np.testing.assert_allclose(g.dosages[:, 0], [0, 1.1, np.nan, 0.2, 2, 0], rtol=1e-6)  # float32 in VCF
    assert np.isnan(g.dosages[:, 1]).all()


def test_vcf_junk_and_unparsable_records(tmp_path):
    junk = tmp_path / "junk.vcf"
    junk.write_text("hello\nthis is not a vcf\n")
    with pytest.raises(GenotypeError, match="junk.vcf: not a readable VCF/BCF file"):
        read_genotypes(junk)
    # a record with fewer sample columns than the header: htslib cannot parse it
    path = _vcf(
        tmp_path,
        "1\t100\trs1\tA\tG\t.\tPASS\t.\tGT\t0/0\t0/1\t0/1\t0/0\t1/1\t0/0\n1\t200\trs2\tA\tG\t.\tPASS\t.\tGT\t0/0\n",
    )
    with pytest.raises(GenotypeError, match=r"x.vcf: cannot parse the record after site 'rs1' \(data record 2\)"):
        read_genotypes(path)
    # a record whose FORMAT lacks GT while GT is asked: counted, read as missing
    path = _vcf(
        tmp_path,
        "1\t100\trs1\tA\tG\t.\tPASS\t.\tXX\t1\t1\t1\t1\t1\t1\n"
        "1\t200\trs2\tA\tG\t.\tPASS\t.\tGT\t0/0\t0/1\t0/1\t0/0\t1/1\t0/0\n",
        name="y.vcf",
    )
    with pytest.warns(DataWarning, match=r"1 site\(s\) have no GT"):
        g = read_genotypes(path)
    assert (g.dosages[:, 0] == MISSING).all() and list(g.dosages[:, 1]) == [0, 1, 1, 0, 2, 0]


# --- numeric CSV matrices ---------------------------------------------------------------


def test_csv_ids_are_text_and_duplicate_snps_refused(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("id,m1,m2\n001,0,2\n002,1,1\n")
    with pytest.warns(DataWarning, match="'012'"):
        g = read_genotypes(path)
    assert list(g.ids) == ["001", "002"]
    path.write_text("id,m1,m2,m1\n001,0,2,1\n002,1,1,1\n")
    with pytest.raises(GenotypeError, match=r"g.csv: duplicated column name\(s\) in the header: 'm1' \(columns 2, 4\)"):
        read_genotypes(path)
    path.write_text("id,m1,m2\n001,0,2\n001,1,1\n")
    with pytest.raises(GenotypeError, match=r"duplicated individual id\(s\): '001' \(line 2\), '001' \(line 3\)"):
        read_genotypes(path)
    path.write_text("id,m1,m2\n001,0,2\n002,1,1,2\n")
    with pytest.raises(GenotypeError, match="g.csv: cannot parse"):
        read_genotypes(path)


@pytest.mark.parametrize(
    "text, coding, evidence",
    [("id,a,b\nx,0,1\ny,2,1\n", "012", "a 2 and no -1"), ("id,a,b\nx,0,1\ny,-1,1\n", "-101", "a -1 and no 2")],
)
def test_every_detected_coding_is_announced(tmp_path, text, coding, evidence):
    path = tmp_path / "g.csv"
    path.write_text(text)
    with pytest.warns(DataWarning, match=f"detected as '{coding}'.*{evidence}"):
        g = read_genotypes(path)
    assert g.info["coding"] == coding and g.info["coding_detected"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # declared: silent
        assert not read_genotypes(path, coding=coding).info["coding_detected"]


def test_zero_one_data_are_ambiguous_and_01_means_inbred_counts_0_2(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("id,a,b,c\nx,0,1,NA\ny,1,1,0\n")
    with pytest.raises(GenotypeError, match=r"only the values \{0, 1\}.*coding='01'.*pass coding="):
        read_genotypes(path)
    g = read_genotypes(path, coding="01")  # 1 = homozygous for the counted allele: 2 copies
    np.testing.assert_array_equal(g.dosages, [[0, 2, MISSING], [2, 2, 0]])
    g = read_genotypes(path, coding="012")
    np.testing.assert_array_equal(g.dosages, [[0, 1, MISSING], [1, 1, 0]])
    g = read_genotypes(path, coding="-101")
    np.testing.assert_array_equal(g.dosages, [[1, 2, MISSING], [2, 2, 1]])
    path.write_text("id,a\nx,0\ny,2\n")
    with pytest.raises(GenotypeError, match=r"genotype 2 .*outside coding '01' \(0/1\)"):
        read_genotypes(path, coding="01")


def test_wheat_markers_need_coding_and_01_gives_rrblup_G():
    """The audit's silent doubling: raw 0/1 wheat markers read as 0/1/2 counts."""
    wheat_x = data_path("wheat", "wheat_X.csv.gz")
    with pytest.raises(GenotypeError, match="ambiguous"):
        read_genotypes(wheat_x)
    geno = read_genotypes(wheat_x, coding="01")
    # rrBLUP's A.mat on M = 2X - 1 (references in tests/data/refs/README.md); VanRaden 1
    # is invariant to the shift, so only the 0/2 scale can make it match. Tolerance 1e-10
    # as for the same comparison from Genotypes.from_frame(2 * X).
    ref = pd.read_csv(REFS / "wheat_Amat_rrblup.csv.gz", dtype={"id": str}).set_index("id")
    G = genomic_relationship(geno)
    np.testing.assert_allclose(G.dense(), ref.loc[G.ids, G.ids].to_numpy(), rtol=0, atol=1e-10)


def test_wheat_to_plink_and_back(tmp_path):
    """The README snippet: wheat markers to PLINK with write_plink, and back."""
    geno = read_genotypes(data_path("wheat", "wheat_X.csv.gz"), coding="01")
    write_plink(tmp_path / "wheat", geno)
    back = read_genotypes(tmp_path / "wheat.bed")
    np.testing.assert_array_equal(back.dosages, geno.dosages)
    assert list(back.ids) == list(geno.ids) and (back.n, back.p) == (599, 1279)
    # no allele names in a CSV: PLINK refuses empty .bim fields, so 1 (A1) and 2 are written
    first = (tmp_path / "wheat.bim").read_text().splitlines()[0].split("\t")
    assert first[1] == "wPt.0538" and first[4:] == ["1", "2"]


def test_gz_and_tab_csv(tmp_path):
    path = tmp_path / "g.tsv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("id\ts1\ts2\n007\t2\t0\n008\t1\tNA\n")
    with pytest.warns(DataWarning):
        g = read_genotypes(path)
    assert list(g.ids) == ["007", "008"]
    np.testing.assert_array_equal(g.dosages, [[2, 0], [1, MISSING]])


# ---- PLINK 1.9 as the reference, from files it wrote (tests/data/plink; regenerate.py remakes them) ----

PLINK_DIR = Path(__file__).parents[1] / "data" / "plink"


def test_plink19_files_ours_read_by_it_and_its_read_by_us():
    """PLINK 1.9's --freq of a .bed we wrote, and its --make-bed output (A1 = minor
    allele, so some alleles swapped) read back by us: counts of the other allele."""
    geno = read_genotypes(PLINK_DIR / "ours.bed")
    # our writer still writes the same bytes for the same seeded genotypes
    sim = simulate_genotypes(40, 60, seed=5, missing_rate=0.05)
    np.testing.assert_array_equal(geno.dosages, sim.dosages)
    frq = pd.read_csv(PLINK_DIR / "theirs.frq", sep=r"\s+").set_index("SNP").loc[geno.snp_ids]
    p = geno.allele_freq
    # PLINK prints MAF with 4 significant digits
    np.testing.assert_allclose(frq["MAF"], np.minimum(p, 1 - p), rtol=1e-3, atol=1e-4)
    assert (frq["NCHROBS"].to_numpy() == 2 * geno.n_called).all()
    back = read_genotypes(PLINK_DIR / "theirs")
    assert list(back.ids) == list(geno.ids) and list(back.snp_ids) == list(geno.snp_ids)
    same = (back.snps["allele1"] == geno.snps["allele1"]).to_numpy()
    assert (~same).any()  # PLINK swapped some, so the check below means something
    x, y = geno.dosages.astype(int), back.dosages.astype(int)
    miss = geno.dosages == MISSING
    assert ((back.dosages == MISSING) == miss).all()
    assert (y[~miss] == np.where(same, x, 2 - x)[~miss]).all()


def test_gcta_binary_grm_file_written_by_plink19():
    """PLINK 1.9's --make-grm-bin (its --make-rel matrix, i.e. VanRaden 2 with that
    diagonal, in GCTA's layout) equals our vanraden2 up to float32 storage."""
    geno = read_genotypes(PLINK_DIR / "sim.bed")
    R = read_gcta_grm(PLINK_DIR / "sim")
    assert list(R.ids) == list(geno.ids)
    assert list(R.info["fid"]) == [f"fam{k % 3}" for k in range(geno.n)]
    assert (R.info["n_snps"] == 300).all()
    G = genomic_relationship(geno, "vanraden2")
    # float32 storage: relative rounding 6e-8 on entries of order 1
    np.testing.assert_allclose(R.dense(), G.dense(), rtol=1e-6, atol=1e-6)

"""Issue 10, item 5: genotypes with missing calls, broken rows and filesets, filters,
GCTA pair counts and relationship CSVs with text ids.

Expected counts are computed here with plain numpy on the matrix written to the file
(isnan sums, pairwise products of call indicators), independently of henderson.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from henderson import Genotypes, genomic_relationship, read_genotypes, write_plink
from henderson.datasets import load_wheat
from henderson.errors import GenotypeError
from henderson.io.qc import call_report
from henderson.relationships.grm_io import pair_call_counts


@pytest.fixture(scope="module")
def holes(tmp_path_factory):
    """40 wheat lines x 80 markers with ~4 % missing calls, as CSV; phenotypes of all."""
    d = tmp_path_factory.mktemp("holes")
    w = load_wheat()
    m = (2 * w.markers.iloc[:40, :80]).rename_axis("id").astype(float)
    rng = np.random.default_rng(5)
    m = m.mask(rng.random(m.shape) < 0.04)
    m.iloc[:, 7] = m.iloc[:, 7].mask(rng.random(40) < 0.5)  # one bad SNP: ~half missing
    m.to_csv(d / "geno.csv", na_rep="NA")
    y = w.phenotypes.loc[m.index, "env1"]
    pd.DataFrame({"id": m.index, "y": y.to_numpy()}).to_csv(d / "ph.csv", index=False)
    return d, m


def test_missing_calls_counted_on_console_summary_and_api(holes, tmp_path, capsys):
    d, m = holes
    miss = m.isna().to_numpy()
    code, _, err = run_cli(
        ["gblup", "-p", d / "ph.csv", "-t", "y", "-g", d / "geno.csv", "--coding", "012", "-o", tmp_path / "o"], capsys
    )
    assert code == 0, err
    n_snp, n_ind = int(miss.any(axis=0).sum()), int(miss.any(axis=1).sum())
    assert f"{int(miss.sum()):,} missing calls" in err
    assert f"in {n_snp} of 80 SNPs and {n_ind} of 40 individuals" in err
    worst = m.columns[int(np.argmax(miss.sum(axis=0)))]
    assert f"Most missing: SNP {worst!r}" in err
    doc = json.loads((tmp_path / "o" / "summary.json").read_text())
    g = doc["results"]["genotypes"]["as_read"]
    assert g["n_missing_calls"] == int(miss.sum()) and g["n_snps_with_missing"] == n_snp
    assert g["worst_snps"][0] == {
        "id": worst,
        "n_missing": int(miss.sum(axis=0).max()),
        "call_rate": pytest.approx(1 - miss.sum(axis=0).max() / 40),
    }
    rep = call_report(read_genotypes(d / "geno.csv", coding="012"))
    np.testing.assert_array_equal(rep.snps["n_missing"].to_numpy(), miss.sum(axis=0))
    np.testing.assert_array_equal(rep.individuals["n_missing"].to_numpy(), miss.sum(axis=1))


def test_individual_without_calls_dropped_with_count_or_refused(holes, tmp_path, capsys):
    d, m = holes
    m2 = m.copy()
    m2.iloc[3, :] = np.nan
    m2.to_csv(tmp_path / "g.csv", na_rep="NA")
    code, _, err = run_cli(
        [
            "gblup",
            "-p",
            d / "ph.csv",
            "-t",
            "y",
            "-g",
            tmp_path / "g.csv",
            "--coding",
            "012",
            "--drop-unknown",
            "-o",
            tmp_path / "o",
        ],
        capsys,
    )
    assert code == 0, err
    assert f"1 individual(s) without any genotype call dropped: {m.index[3]!r}" in err
    bv = pd.read_csv(tmp_path / "o" / "breeding_values.csv", dtype={"id": str})
    assert len(bv) == 39 and m.index[3] not in set(bv["id"])
    # the API refuses to build a G row of zeros
    with pytest.raises(GenotypeError, match=rf"1 individual\(s\) have no genotype call at any SNP: '{m.index[3]}'"):
        genomic_relationship(read_genotypes(tmp_path / "g.csv", coding="012"))


def test_short_csv_row_names_its_line(tmp_path, capsys):
    (tmp_path / "g.csv").write_text("id,s1,s2,s3\nA,0,1,2\nB,2,1\nC,1,1,0\n")
    (tmp_path / "ph.csv").write_text("id,y\nA,1\nB,2\nC,3\n")
    code, _, err = run_cli(
        ["gblup", "-p", tmp_path / "ph.csv", "-t", "y", "-g", tmp_path / "g.csv", "-o", tmp_path / "o"], capsys
    )
    assert code == 2 and "line 3 has 3 fields, the header has 4" in err
    # an explicit empty last field is a missing call, not a short row
    (tmp_path / "g2.csv").write_text("id,s1,s2,s3\nA,0,1,2\nB,2,1,\nC,1,1,0\n")
    assert read_genotypes(tmp_path / "g2.csv", coding="012").n_missing == 1


def _fileset(tmp_path, n=40, p=30):
    w = load_wheat()
    m = (2 * w.markers.iloc[:n, :p]).rename_axis("id")
    write_plink(tmp_path / "ok", Genotypes.from_frame(m))
    return m


def test_fam_with_a_deleted_middle_line_is_caught(tmp_path, capsys):
    _fileset(tmp_path)  # 40 individuals: 10 bytes per SNP, as for 39
    fam = (tmp_path / "ok.fam").read_text().splitlines(keepends=True)
    for ext in (".bed", ".bim"):
        (tmp_path / f"cut{ext}").write_bytes((tmp_path / f"ok{ext}").read_bytes())
    (tmp_path / "cut.fam").write_text("".join(fam[:9] + fam[10:]))
    code, _, err = run_cli(["grm", "-g", tmp_path / "cut", "-o", tmp_path / "G.csv"], capsys)
    assert code == 2 and "cut.fam lists 39 individuals" in err and "line is probably missing" in err
    with pytest.raises(GenotypeError, match="holds genotypes for more"):
        read_genotypes(tmp_path / "cut.bed")


def test_bim_with_a_deleted_line_is_caught(tmp_path, capsys):
    _fileset(tmp_path)
    bim = (tmp_path / "ok.bim").read_text().splitlines(keepends=True)
    for ext in (".bed", ".fam"):
        (tmp_path / f"cut{ext}").write_bytes((tmp_path / f"ok{ext}").read_bytes())
    (tmp_path / "cut.bim").write_text("".join(bim[:5] + bim[6:]))
    code, _, err = run_cli(["grm", "-g", tmp_path / "cut", "-o", tmp_path / "G.csv"], capsys)
    assert code == 2 and "cut.bim has 29 SNPs" in err


def test_grm_n_bin_holds_pairwise_call_counts(holes, tmp_path, capsys):
    d, m = holes
    code, _, err = run_cli(["grm", "-g", d / "geno.csv", "--coding", "012", "-o", tmp_path / "g.grm"], capsys)
    assert code == 0, err
    called = (~m.isna().to_numpy()).astype(int)
    expect = called @ called.T  # SNPs called in both j and k (all 80 SNPs are used by vanraden1)
    nv = np.fromfile(tmp_path / "g.grm.N.bin", dtype="<f4")
    low = expect[np.tril_indices(40)]  # row-major lower triangle, the GCTA layout
    row_major = np.concatenate([expect[i, : i + 1] for i in range(40)])
    np.testing.assert_array_equal(nv, row_major)
    assert len(low) == len(nv) and nv.min() < 80  # the counts really differ from m
    geno = read_genotypes(d / "geno.csv", coding="012")
    np.testing.assert_array_equal(pair_call_counts(geno), expect)


def test_maf_and_call_rate_filters_are_counted(holes, tmp_path, capsys):
    d, m = holes
    code, _, err = run_cli(
        [
            "snpblup",
            "-p",
            d / "ph.csv",
            "-t",
            "y",
            "-g",
            d / "geno.csv",
            "--coding",
            "012",
            "--maf",
            "0.2",
            "--call-rate",
            "0.9",
            "--drop-unknown",
            "-o",
            tmp_path / "o",
        ],
        capsys,
    )
    assert code == 0, err
    x = m.to_numpy()
    ind_ok = (1 - np.isnan(x).mean(axis=1)) >= 0.9
    xs = x[ind_ok]
    cr = 1 - np.isnan(xs).mean(axis=0)
    p = np.nanmean(xs, axis=0) / 2
    maf = np.minimum(p, 1 - p)
    removed = (cr < 0.9) | (maf < 0.2)
    assert f"removed {int(removed.sum())} of 80 SNPs" in err
    assert f"and {int((~ind_ok).sum())} of 40 individuals" in err
    doc = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert doc["results"]["genotypes"]["qc"]["n_snps_removed"] == int(removed.sum())
    assert doc["results"]["genotypes"]["used"]["n_snps"] == int((~removed).sum())
    eff = pd.read_csv(tmp_path / "o" / "snp_effects.csv")
    assert len(eff) == int((~removed).sum())


def test_relationship_csv_ids_are_text(tmp_path, capsys):
    ids = [f"{i:03d}" for i in range(1, 81)]
    rng = np.random.default_rng(0)
    W = rng.integers(0, 3, (80, 200)).astype(float)
    W -= W.mean(axis=0)
    G = W @ W.T / 200 + 0.05 * np.eye(80)
    pd.DataFrame(G, index=pd.Index(ids, name="id"), columns=ids).to_csv(tmp_path / "G.csv")
    y = rng.normal(size=80)
    pd.DataFrame({"id": ids, "y": y}).to_csv(tmp_path / "ph.csv", index=False)
    code, _, err = run_cli(
        ["gblup", "-p", tmp_path / "ph.csv", "-t", "y", "--grm", tmp_path / "G.csv", "-o", tmp_path / "o"], capsys
    )
    assert code == 0, err
    bv = pd.read_csv(tmp_path / "o" / "breeding_values.csv", dtype={"id": str})
    assert sorted(bv["id"]) == ids

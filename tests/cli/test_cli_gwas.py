"""``henderson gwas`` and ``--gwas`` on gblup/snpblup: outputs equal the library's, errors name options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli, strict_json

import henderson

GEMMA = Path(__file__).resolve().parents[1] / "data" / "gemma"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The GEMMA test data as a phenotype CSV (id, y, sex) next to its PLINK fileset."""
    d = tmp_path_factory.mktemp("gwas")
    geno = henderson.read_genotypes(GEMMA / "assoc.bed")
    sex = np.loadtxt(GEMMA / "covar.txt")[:, 1]
    pd.DataFrame({"id": geno.ids, "y": np.loadtxt(GEMMA / "pheno.txt"), "sex": sex}).to_csv(
        d / "pheno.csv", index=False
    )
    y = pd.Series(np.loadtxt(GEMMA / "pheno.txt"), index=geno.ids, name="y")
    return {
        "pheno": d / "pheno.csv",
        "bed": GEMMA / "assoc.bed",
        "geno": geno,
        "y": y,
        "data": pd.DataFrame({"sex": sex}, index=geno.ids),
    }


def test_gwas_mlma_loco_streams_plink_and_matches_the_library(tmp_path, capsys, files):
    out = tmp_path / "m"
    code, stdout, err = run_cli(
        [
            "gwas",
            "-p",
            files["pheno"],
            "-t",
            "y",
            "--fixed",
            "sex",
            "-g",
            files["bed"],
            "--method",
            "mlma",
            "--loco",
            "--out",
            out,
        ],
        capsys,
    )
    assert code == 0, err
    got = pd.read_csv(out / "association.csv", dtype={"chrom": str})
    ref = henderson.association(files["y"], files["geno"], method="mlma", loco=True, fixed="sex", data=files["data"])
    np.testing.assert_allclose(got.p, ref.p, rtol=1e-6)
    s = strict_json(out / "summary.json")["results"]["association"]
    assert s["n_tested"] == 1500 and "LOCO" in s["method"]
    assert s["lambda_gc"] == pytest.approx(ref.attrs["lambda_gc"], rel=1e-6)
    html = (out / "report.html").read_text()
    assert html.count("<img") == 2 and "Manhattan" in html and "QQ plot" in html
    assert "genomic control lambda" in stdout


def test_gwas_backsolve_with_windows(tmp_path, capsys, files):
    out = tmp_path / "b"
    code, _, err = run_cli(
        ["gwas", "-p", files["pheno"], "-t", "y", "-g", files["bed"], "--window", "50snps", "--out", out], capsys
    )
    assert code == 0, err
    got = pd.read_csv(out / "association.csv")
    gb = henderson.GBLUP().fit(files["geno"], files["y"])
    ref = henderson.association(gb, files["geno"])
    np.testing.assert_allclose(got.p, ref.p, rtol=1e-5)  # two REML fits, each converged to ~1e-8
    win = pd.read_csv(out / "windows.csv")
    assert list(win.columns[:5]) == ["chrom", "start", "end", "n_snps", "pct_var"] and win.n_snps.sum() == 1500
    assert (out / "report.html").read_text().count("<img") == 3  # Manhattan, QQ, windows


@pytest.mark.parametrize("command", ["gblup", "snpblup"])
def test_gwas_option_of_the_genetic_models(tmp_path, capsys, files, command):
    out = tmp_path / command
    code, _, err = run_cli(
        [command, "-p", files["pheno"], "-t", "y", "-g", files["bed"], "--gwas", "--window", "1Mb", "--out", out],
        capsys,
    )
    assert code == 0, err
    assert (out / "association.csv").exists() and (out / "windows.csv").exists()
    assert "Association" in (out / "report.html").read_text()
    assert "association" in strict_json(out / "summary.json")["results"]


def test_gwas_usage_errors_name_the_options(tmp_path, capsys, files):
    code, _, err = run_cli(
        ["gwas", "-p", files["pheno"], "-t", "y", "-g", files["bed"], "--loco", "--out", tmp_path / "x"], capsys
    )
    assert code == 2 and "--loco" in err and "--method mlma" in err
    code, _, err = run_cli(
        ["gwas", "-p", files["pheno"], "-t", "y", "-g", files["bed"], "--method", "lm", "--out", tmp_path / "x"], capsys
    )
    assert code == 2 and "--method" in err
    code, _, err = run_cli(
        [
            "gwas",
            "-p",
            files["pheno"],
            "-t",
            "y",
            "-g",
            files["bed"],
            "--window",
            "1 megabase",
            "--out",
            tmp_path / "x",
        ],
        capsys,
    )
    assert code == 2 and "window" in err
    code, _, err = run_cli(
        ["snpblup", "-p", files["pheno"], "-t", "y", "-g", files["bed"], "--window", "1Mb", "--out", tmp_path / "x"],
        capsys,
    )
    assert code == 2 and "--window is an option of --gwas" in err


def test_gwas_out_of_another_trait_refused_unless_force(tmp_path, capsys, files):
    """--out holding gwas results on trait y is not replaced by a run on y2 without --force."""
    ph = pd.read_csv(files["pheno"])
    ph.assign(y2=ph["y"]).to_csv(tmp_path / "pheno.csv", index=False)
    out = tmp_path / "g"

    def run(trait, *extra):
        return run_cli(
            ["gwas", "-p", tmp_path / "pheno.csv", "-t", trait, "-g", files["bed"], "--out", out, "-q", *extra], capsys
        )

    assert run("y")[0] == 0
    code, _, err = run("y2")
    assert code == 2 and "'gwas' on trait 'y'" in err and "trait 'y2'" in err and "--force" in err, err
    assert strict_json(out / "summary.json")["settings"]["trait"] == "y"
    code, _, err = run("y2", "--force")
    assert code == 0, err
    assert strict_json(out / "summary.json")["settings"]["trait"] == "y2"

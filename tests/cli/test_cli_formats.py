"""The command line end to end on the bundled data written as a user would bring it:
CSV, PLINK (henderson.write_plink) and VCF (written here) genotypes; the gryphon pedigree.

References (independent of henderson):
- wheat ``env1`` GBLUP / SNP-BLUP: ``tests/data/refs/wheat_rrblup.json``, the tightly
  converged REML optimum (``exact_reml_optimum``: σ²_g 0.3014828, σ²_e 0.5409987,
  σ²_β 7.07257e-4 per SNP with centred markers);
- gryphon BWT animal model: ``tests/data/refs/gryphon_asreml.json`` (ASReml-R 4.1 output
  printed in the Wilson et al. 2010 tutorial).
CV predictive abilities are compared with the Python API's exact values (same folds).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import load_ref, run_cli, run_script, strict_json

from henderson.datasets import load_gryphon, load_wheat

EXACT = load_ref("wheat_rrblup.json")["exact_reml_optimum"]
ASREML = load_ref("gryphon_asreml.json")["models"]
# Our REML converges to ~1e-8 relative; the reference optimum is converged to 1e-12 on
# log λ. 1e-6 relative leaves room for the optimiser's stopping rule, nothing more.
VC_RTOL = 1e-6


def write_vcf(path: Path, counts: pd.DataFrame) -> None:
    """Individuals x SNPs allele counts (0/1/2) → a minimal VCF 4.2 with GT calls."""
    gt = np.array(["0/0", "0/1", "1/1"])[counts.to_numpy().T]  # SNPs x individuals
    head = (
        "##fileformat=VCFv4.2\n##contig=<ID=1>\n"
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(counts.index) + "\n"
    )
    rows = [
        "\t".join(["1", str(1000 * (j + 1)), snp, "A", "G", ".", "PASS", ".", "GT", *gt[j]])
        for j, snp in enumerate(counts.columns)
    ]
    path.write_text(head + "\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def wheat(tmp_path_factory):
    """Wheat phenotypes (with the 10 bundled folds) and 0/2 genotypes as CSV, PLINK and VCF."""
    from henderson import write_plink
    from henderson.data.genotypes import Genotypes

    d = tmp_path_factory.mktemp("wheat_formats")
    w = load_wheat()
    ph = w.phenotypes.copy()
    ph["fold"] = w.folds.reindex(ph.index)
    ph["half"] = np.where(np.arange(len(ph)) % 2 == 0, "a", "b")  # a made-up fixed factor for --fixed
    ph.rename_axis("id").reset_index().to_csv(d / "pheno.csv", index=False)
    counts = (2 * w.markers).rename_axis("id")  # DArT 0/1 → homozygous counts 0/2 (refs: M = 2X − 1)
    counts.to_csv(d / "geno.csv")
    write_plink(d / "geno", Genotypes.from_frame(counts))
    write_vcf(d / "geno.vcf", counts)
    return {
        "pheno": d / "pheno.csv",
        "csv": d / "geno.csv",
        "plink": d / "geno",
        "vcf": d / "geno.vcf",
        "w": w,
        "counts": counts,
        "ph": ph,
    }


def _check_cv_output(out: Path, w, counts, fixed=None, data=None, sigma2=None):
    """cv's files checked without cross_validate: each fold's r in cv_metrics.csv is
    cor(observed, predicted) of cv_predictions.csv, and fold 1's predicted breeding
    values are a GBLUP fitted with fold 1's phenotypes masked by hand (to 1e-8)."""
    from henderson import GBLUP, genomic_relationship
    from henderson.data.genotypes import Genotypes

    got = pd.read_csv(out / "cv_metrics.csv", dtype={"fold": str}).set_index("fold")
    pred = pd.read_csv(out / "cv_predictions.csv", dtype={"id": str, "fold": str})
    r = pred.groupby("fold").apply(lambda f: np.corrcoef(f["observed"], f["predicted_bv"])[0, 1])
    assert len(got) == 10
    np.testing.assert_allclose(got.loc[r.index, "r"], r, rtol=1e-8)  # 10 significant digits in the CSV
    assert (got.loc[r.index, "n_test"].to_numpy() == pred.groupby("fold").size().loc[r.index].to_numpy()).all()
    y = w.phenotypes["env1"].copy()
    y[y.index.isin(w.folds.index[w.folds.astype(str) == "1"])] = np.nan
    fit = GBLUP(fixed=fixed, sigma2=sigma2).fit(genomic_relationship(Genotypes.from_frame(counts)), y, data=data)
    f1 = pred[pred["fold"] == "1"].set_index("id")
    np.testing.assert_allclose(f1["predicted_bv"], fit.gebv_["gebv"].loc[f1.index], atol=1e-8)
    return got


def _vc(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "variance_components.csv", index_col="term")


@pytest.mark.parametrize("fmt", ["plink", "vcf"])  # CSV: test_gblup_script_csv
def test_gblup_plink_vcf_match_reference(tmp_path, capsys, wheat, fmt):
    out = tmp_path / "g"
    code, _, err = run_cli(["gblup", "-p", wheat["pheno"], "-t", "env1", "-g", wheat[fmt], "-o", out, "-q"], capsys)
    assert code == 0, err
    vc = _vc(out)
    assert vc.loc["id", "variance"] == pytest.approx(EXACT["gblup"]["Vu"], rel=VC_RTOL)
    assert vc.loc["Residual", "variance"] == pytest.approx(EXACT["gblup"]["Ve"], rel=VC_RTOL)


@pytest.mark.slow  # the installed script in a subprocess
def test_gblup_script_csv(tmp_path, wheat):
    out = tmp_path / "g"
    p = run_script(
        ["gblup", "--phenotypes", wheat["pheno"], "--trait", "env1", "--genotypes", wheat["csv"], "--out", out]
    )
    assert p.returncode == 0, p.stderr
    assert f"Wrote {out}/" in p.stdout
    vc = _vc(out)
    assert vc.loc["id", "variance"] == pytest.approx(EXACT["gblup"]["Vu"], rel=VC_RTOL)
    assert vc.loc["Residual", "variance"] == pytest.approx(EXACT["gblup"]["Ve"], rel=VC_RTOL)
    bv = pd.read_csv(out / "breeding_values.csv")
    assert len(bv) == 599 and bv["reliability"].between(0, 1).all()
    html = (out / "report.html").read_text()
    for caption in (
        "599 records of env1 on 599 individuals",
        "Distribution of the 599 GEBVs",
        "Absolute SNP effects by chromosome",
        "Distribution of the diagonal (1 + inbreeding)",
    ):
        assert caption in html, caption


@pytest.mark.slow  # the installed script in a subprocess
def test_snpblup_script_plink(tmp_path, wheat):
    out = tmp_path / "s"
    p = run_script(["snpblup", "-p", wheat["pheno"], "-t", "env1", "-g", wheat["plink"], "-o", out])
    assert p.returncode == 0, p.stderr
    model = json.loads((out / "model.json").read_text())
    # σ²_β per SNP with centred markers; 2Σpq σ²_β is GBLUP's σ²_g
    assert model["sigma2_beta"] == pytest.approx(EXACT["snpblup"]["Vu"], rel=VC_RTOL)
    assert model["sigma2_g"] == pytest.approx(EXACT["gblup"]["Vu"], rel=VC_RTOL)
    assert _vc(out).loc["Residual", "variance"] == pytest.approx(EXACT["snpblup"]["Ve"], rel=VC_RTOL)
    snp = pd.read_csv(out / "snp_effects.csv")
    assert len(snp) == 1279
    html = (out / "report.html").read_text()
    for caption in ("Absolute SNP effects", "Distribution of the diagonal (1 + inbreeding)", "Largest 10 |effects|"):
        assert caption in html, caption


@pytest.mark.slow  # the installed script in a subprocess
def test_cv_script_vcf_matches_python_api(tmp_path, wheat):
    """cv on the VCF with the bundled folds, variances re-estimated per fold: every fold's r
    is cor(observed, predicted) of its predictions, and fold 1 equals a fit masked by hand."""
    out = tmp_path / "cv"
    p = run_script(
        [
            "cv",
            "--model",
            "gblup",
            "-p",
            wheat["pheno"],
            "-t",
            "env1",
            "-g",
            wheat["vcf"],
            "--fold-column",
            "fold",
            "-o",
            out,
        ]
    )
    assert p.returncode == 0, p.stderr
    got = _check_cv_output(out, wheat["w"], wheat["counts"])  # REML in fold 1, by hand
    assert "n" not in got.columns
    html = (out / "report.html").read_text()
    for caption in ("Each point is an individual predicted without its own", "Per-fold metrics"):
        assert caption in html, caption
    # one model: a bar chart of one bar would only repeat the summary table (issue 10)
    assert "Predictive ability per model" not in html
    doc = strict_json(out / "summary.json")
    assert [i["role"] for i in doc["inputs"]] == ["phenotypes", "genotypes"]


def test_cv_fixed_and_coding_options(tmp_path, capsys, wheat):
    """cv takes --fixed/--coding/--method like gblup: a fixed factor changes the model, and
    fold 1 (fast path at held variances) equals a fit with the same fixed part masked by hand."""
    out = tmp_path / "cv"
    code, _, err = run_cli(
        [
            "cv",
            "--model",
            "gblup",
            "-p",
            wheat["pheno"],
            "-t",
            "env1",
            "-g",
            wheat["csv"],
            "--coding",
            "012",
            "--fixed",
            "half",
            "--fold-column",
            "fold",
            "--fixed-variances",
            "-o",
            out,
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    doc = json.loads((out / "summary.json").read_text())
    held = doc["results"]["cv_settings"]["full_data_variances"]  # the variances every fold used
    _check_cv_output(
        out,
        wheat["w"],
        wheat["counts"],
        fixed="half",
        data=wheat["ph"][["half"]],
        sigma2=(held["id"], held["Residual"]),
    )
    assert doc["settings"]["fixed"] == "half" and doc["results"]["cv_settings"]["model_params"]["fixed"] == "half"
    code, out_, err = run_cli(["cv", "--help"], capsys)
    for opt in ("--coding", "--fixed", "--method", "--drop-unknown", "--selfing", "--id-column", "--ped-columns"):
        assert opt in out_, opt


def test_pblup_gryphon_matches_asreml(tmp_path, capsys):
    """Gryphon BWT ~ 1 + SEX + animal (model 2 of the tutorial): ASReml-R's variance
    components to 2e-5 (it prints 7 digits; test_models_gryphon uses the same bound)."""
    g = load_gryphon()
    g.records.to_csv(tmp_path / "gryphon.csv", index=False)
    g.pedigree.to_csv(tmp_path / "ped.csv", index=False)
    out = tmp_path / "p"
    code, stdout, err = run_cli(
        [
            "pblup",
            "-p",
            tmp_path / "gryphon.csv",
            "-t",
            "BWT",
            "--id-column",
            "ANIMAL",
            "--fixed",
            "SEX",
            "--pedigree",
            tmp_path / "ped.csv",
            "-o",
            out,
        ],
        capsys,
    )
    assert code == 0, err
    ref = ASREML["model2"]["varcomp"]
    vc = _vc(out)
    assert vc.loc["id", "variance"] == pytest.approx(ref["animal"]["component"], rel=2e-5)
    assert vc.loc["Residual", "variance"] == pytest.approx(ref["residual"]["component"], rel=2e-5)
    assert vc.loc["id", "se"] == pytest.approx(ref["animal"]["std.error"], rel=2e-4)
    bv = pd.read_csv(out / "breeding_values.csv", dtype={"id": str})
    assert len(bv) == 1309  # every animal of the pedigree, 854 of them with a record
    html = (out / "report.html").read_text()
    for caption in (
        "854 records of BWT on 854 individuals (230 rows without a value were left out)",
        "Top 20 of 1,309 animals in the pedigree",
    ):
        assert caption in html, caption

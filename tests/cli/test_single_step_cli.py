"""``henderson ssgblup``: outputs, the numbers against the Python API, bad input messages."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

import henderson
from henderson import SingleStepGBLUP
from henderson._testing.genotypes import simulate_genotypes
from henderson._testing.pedigree import simulate_pedigree
from henderson.data.genotypes import Genotypes
from henderson.io.pedigree import read_pedigree


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ss")
    ped = simulate_pedigree(300, 4, founders=60, seed=2)
    ped.to_csv(d / "ped.csv", index=False)
    gids = ped["id"].to_numpy()[-90:]
    g = simulate_genotypes(90, 300, seed=3).to_frame()
    g.index = pd.Index(gids, name="id")
    g.to_csv(d / "geno.csv")
    rng = np.random.default_rng(4)
    u = {}  # true breeding values down the pedigree (parents first): h² ≈ 0.5
    for i, s_, d_ in ped[["id", "sire", "dam"]].itertuples(index=False):
        u[i] = 0.5 * (u.get(s_, 0.0) + u.get(d_, 0.0)) + rng.normal(0, 3 * np.sqrt(0.75))
    rec = ped["id"].to_numpy()[100:280]  # some genotyped animals (the youngest) have no record
    y = [20 + u[i] + rng.normal(0, 3) for i in rec]
    pd.DataFrame({"id": rec, "y": y}).to_csv(d / "rec.csv", index=False)
    return d, ped, g, rec


def test_ssgblup_outputs_match_the_estimator(files, capsys):
    d, ped, g, rec = files
    out = d / "o1"
    code, _, err = run_cli(
        [
            "ssgblup",
            "--phenotypes",
            d / "rec.csv",
            "--trait",
            "y",
            "--pedigree",
            d / "ped.csv",
            "--genotypes",
            d / "geno.csv",
            "--out",
            out,
            "-q",
            "--sigma2",
            "2.0,5.0",
        ],
        capsys,
    )
    assert code == 0, err
    for f in ("variance_components.csv", "breeding_values.csv", "summary.json", "report.html", "snp_effects.csv"):
        assert (out / f).exists(), f
    bv = pd.read_csv(out / "breeding_values.csv", dtype={"id": str}).set_index("id")
    assert len(bv) == 300 and bv["genotyped"].sum() == 90
    est = SingleStepGBLUP(sigma2=(2.0, 5.0), snp_effects=False).fit(
        read_pedigree(ped), Genotypes.from_frame(g), pd.Series(pd.read_csv(d / "rec.csv")["y"].to_numpy(), index=rec)
    )
    np.testing.assert_allclose(bv.loc[est.gebv_.index, "value"], est.gebv_["gebv"], atol=1e-8)
    s = json.loads((out / "summary.json").read_text())["results"]
    assert s["n_genotyped"] == 90 and s["n_genotyped_with_records"] == int(np.isin(g.index, rec).sum())
    html = (out / "report.html").read_text()
    for phrase in (
        "G against A22",
        "Pedigree EBV against single-step GEBV",
        "Reliability gains",
        "genotyped with records",
    ):
        assert phrase in html


def test_ssgblup_reml_and_tuning_options(files, capsys):
    d, *_ = files
    code, _, err = run_cli(
        [
            "ssgblup",
            "--phenotypes",
            d / "rec.csv",
            "--trait",
            "y",
            "--pedigree",
            d / "ped.csv",
            "--genotypes",
            d / "geno.csv",
            "--out",
            d / "o2",
            "-q",
            "--tuning",
            "none",
            "--alpha",
            "0.9",
            "--beta",
            "0.1",
            "--omega",
            "0.8",
            "--no-snp-effects",
        ],
        capsys,
    )
    assert code == 0, err
    vc = pd.read_csv(d / "o2" / "variance_components.csv")
    assert (vc["variance"] > 0).all()
    s = json.loads((d / "o2" / "summary.json").read_text())
    assert s["settings"]["omega"] == 0.8 and s["settings"]["tuning"] == "none"


def test_ssgblup_bad_input(files, capsys):
    d, ped, g, rec = files
    g2 = g.rename(index={g.index[0]: "ghost"})
    g2.to_csv(d / "geno_bad.csv")
    code, _, err = run_cli(
        [
            "ssgblup",
            "--phenotypes",
            d / "rec.csv",
            "--trait",
            "y",
            "--pedigree",
            d / "ped.csv",
            "--genotypes",
            d / "geno_bad.csv",
            "--out",
            d / "o3",
            "-q",
        ],
        capsys,
    )
    assert code == 2 and "ghost" in err and "not in the pedigree" in err
    code, _, err = run_cli(
        [
            "ssgblup",
            "--phenotypes",
            d / "rec.csv",
            "--trait",
            "y",
            "--pedigree",
            d / "ped.csv",
            "--genotypes",
            d / "geno.csv",
            "--out",
            d / "o4",
            "-q",
            "--tau",
            "-1",
        ],
        capsys,
    )
    assert code == 2 and "tau" in err and "-1" in err


def test_cv_ssgblup_young_and_forward_in_time(files, capsys):
    d, ped, g, rec = files
    r = pd.read_csv(d / "rec.csv", dtype={"id": str})
    r["year"] = 2000 + (r.index.to_numpy() * 5) // len(r)  # later rows are younger animals
    r.to_csv(d / "rec_year.csv", index=False)
    code, _, err = run_cli(
        [
            "cv",
            "--model",
            "ssgblup",
            "--phenotypes",
            d / "rec.csv",
            "--trait",
            "y",
            "--pedigree",
            d / "ped.csv",
            "--genotypes",
            d / "geno.csv",
            "--out",
            d / "cv1",
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    m = pd.read_csv(d / "cv1" / "cv_metrics.csv")
    assert list(m["model"]) == ["ssGBLUP", "pedigree BLUP"] and (m["n_test"] >= 3).all()
    p = pd.read_csv(d / "cv1" / "cv_predictions.csv", dtype={"id": str})
    # predictions are of genotyped animals with records (masked), and agree with a fit without their records
    assert set(p["id"]) <= set(g.index) & set(rec)
    code, _, err = run_cli(
        [
            "cv",
            "--model",
            "ssgblup",
            "--phenotypes",
            d / "rec_year.csv",
            "--trait",
            "y",
            "--pedigree",
            d / "ped.csv",
            "--genotypes",
            d / "geno.csv",
            "--out",
            d / "cv2",
            "-q",
            "--birth-year",
            "year",
            "--fixed-variances",
        ],
        capsys,
    )
    assert code == 0, err
    s = json.loads((d / "cv2" / "summary.json").read_text())["results"]
    assert "forward in time" in s["validation"]["scheme"] and "2004" in s["validation"]["scheme"]
    p2 = pd.read_csv(d / "cv2" / "cv_predictions.csv", dtype={"id": str})
    assert set(p2["id"]) <= set(r.loc[r["year"] >= 2004, "id"])


def test_ssgblup_add_missing_genotyped(files, capsys):
    d, ped, g, rec = files
    g2 = g.rename(index={g.index[0]: "newcomer"})
    g2.to_csv(d / "geno_new.csv")
    code, _, err = run_cli(
        [
            "ssgblup",
            "--phenotypes",
            d / "rec.csv",
            "--trait",
            "y",
            "--pedigree",
            d / "ped.csv",
            "--genotypes",
            d / "geno_new.csv",
            "--out",
            d / "o5",
            "-q",
            "--sigma2",
            "2,5",
            "--add-missing-genotyped",
            "--no-snp-effects",
        ],
        capsys,
    )
    assert code == 0, err
    assert "1 genotyped id(s) not in the pedigree were added as founders" in (d / "o5" / "summary.json").read_text()
    bv = pd.read_csv(d / "o5" / "breeding_values.csv", dtype={"id": str}).set_index("id")
    assert len(bv) == 301 and bv.loc["newcomer", "genotyped"] and np.isnan(bv.loc["newcomer", "ebv_pedigree"])
    assert json.loads((d / "o5" / "summary.json").read_text())["results"]["n_added_founders"] == 1


def test_ssgblup_gwas_equals_the_association_api(files, capsys):
    """``--gwas``: association.csv is henderson.association of the same fit (given variances)."""
    d, ped, g, rec = files
    out = d / "gw"
    code, _, err = run_cli(
        [
            "ssgblup",
            "--phenotypes",
            d / "rec.csv",
            "--trait",
            "y",
            "--pedigree",
            d / "ped.csv",
            "--genotypes",
            d / "geno.csv",
            "--out",
            out,
            "-q",
            "--sigma2",
            "2.0,5.0",
            "--no-snp-effects",
            "--gwas",
        ],
        capsys,
    )
    assert code == 0, err
    got = pd.read_csv(out / "association.csv", dtype={"snp": str, "chrom": str})
    geno = Genotypes.from_frame(g)
    est = SingleStepGBLUP(sigma2=(2.0, 5.0), snp_effects=False).fit(
        read_pedigree(ped), geno, pd.Series(pd.read_csv(d / "rec.csv")["y"].to_numpy(), index=rec)
    )
    ref = henderson.association(est, geno)
    assert got["snp"].tolist() == ref["snp"].astype(str).tolist()
    assert got["tested"].tolist() == ref["tested"].tolist() and ref["tested"].sum() > 250
    # the same computation on the same inputs: differences are the CSV's printed digits
    for col in ("effect", "se", "z", "p"):
        np.testing.assert_allclose(got[col], ref[col], rtol=1e-9, atol=1e-14, err_msg=col)
    html = (out / "report.html").read_text()
    assert "Manhattan" in html and "QQ plot" in html
    s = json.loads((out / "summary.json").read_text())["results"]["association"]
    assert "Aguilar et al. 2019" in s["method"] and s["n_tested"] == int(ref["tested"].sum())


def test_ssgblup_gwas_usage_errors(files, capsys):
    d, *_ = files
    base = [
        "ssgblup",
        "--phenotypes",
        d / "rec.csv",
        "--trait",
        "y",
        "--pedigree",
        d / "ped.csv",
        "--genotypes",
        d / "geno.csv",
        "--out",
        d / "x",
        "-q",
    ]
    code, _, err = run_cli(base + ["--window", "50"], capsys)
    assert code == 2 and "--window" in err and "--gwas" in err
    code, _, err = run_cli(base + ["--gwas", "--apy-core", "20"], capsys)
    assert code == 2 and "--apy-core" in err


def test_ssgblup_out_of_another_trait_refused_unless_force(files, tmp_path, capsys):
    """--out holding ssgblup results on trait y is not replaced by a run on y2 without --force."""
    d = files[0]
    rec = pd.read_csv(d / "rec.csv")
    rec.assign(y2=rec["y"] + 1.0).to_csv(tmp_path / "rec.csv", index=False)
    out = tmp_path / "o"

    def run(trait, *extra):
        return run_cli(
            [
                "ssgblup",
                "--phenotypes",
                tmp_path / "rec.csv",
                "--trait",
                trait,
                "--pedigree",
                d / "ped.csv",
                "--genotypes",
                d / "geno.csv",
                "--out",
                out,
                "-q",
                "--sigma2",
                "2.0,5.0",
                "--no-snp-effects",
                *extra,
            ],
            capsys,
        )

    assert run("y")[0] == 0
    code, _, err = run("y2")
    assert code == 2 and "'ssgblup' on trait 'y'" in err and "trait 'y2'" in err and "--force" in err, err
    assert json.loads((out / "summary.json").read_text())["settings"]["trait"] == "y"
    code, _, err = run("y2", "--force")
    assert code == 0, err
    assert json.loads((out / "summary.json").read_text())["settings"]["trait"] == "y2"


def test_cv_ssgblup_refuses_drop_unknown(files, capsys):
    # validate_young has no drop mode: the option was accepted and ignored before
    d, ped, g, rec = files
    args = ["cv", "--model", "ssgblup", "--phenotypes", d / "rec.csv", "--trait", "y", "--pedigree", d / "ped.csv"]
    code, _, err = run_cli(args + ["--genotypes", d / "geno.csv", "--out", d / "cv_drop", "--drop-unknown"], capsys)
    assert code == 2 and "--drop-unknown" in err and "ssgblup" in err


def test_ssgblup_lazy_a22_matches_the_eager_fit(files, capsys):
    """--lazy-a22 --sigma2: PCG with A22⁻¹ as an operator. Its EBVs equal the eager direct
    fit's to 1e-7 of the largest: PCG stops at the default relative residual 1e-10, and
    the 300-animal H⁻¹ MME's condition number (~1e2–1e3) brings that to ≲ 1e-7 in the solutions."""
    d, ped, g, rec = files
    args = ["ssgblup", "--phenotypes", d / "rec.csv", "--trait", "y", "--pedigree", d / "ped.csv"]
    args += ["--genotypes", d / "geno.csv", "-q", "--sigma2", "2.0,5.0", "--no-snp-effects"]
    code, _, err = run_cli([*args, "--out", d / "lazy", "--lazy-a22"], capsys)
    assert code == 0, err
    code, _, err = run_cli([*args, "--out", d / "eager"], capsys)
    assert code == 0, err
    lazy = pd.read_csv(d / "lazy" / "breeding_values.csv", dtype={"id": str}).set_index("id")
    eager = pd.read_csv(d / "eager" / "breeding_values.csv", dtype={"id": str}).set_index("id")
    assert sorted(lazy.index) == sorted(eager.index)  # rows sorted by value: ties may swap
    np.testing.assert_allclose(
        lazy.loc[eager.index, "value"], eager["value"], rtol=0, atol=1e-7 * eager["value"].abs().max()
    )
    s = json.loads((d / "lazy" / "summary.json").read_text())
    assert s["settings"]["lazy_a22"] is True
    code, _, err = run_cli([*args, "--out", d / "lazy_gwas", "--lazy-a22", "--gwas"], capsys)
    assert code != 0 and "--lazy-a22" in err

"""The ``henderson`` command line on bundled data: numbers in output files, errors, exit codes.

Most runs call ``henderson.cli.main.main(argv)`` in-process (fast); a few run the
installed ``henderson`` script in a subprocess, as a user would.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli, run_script, strict_json, tabular_A

import henderson as h
from henderson.datasets import data_path, load_wheat

POTATO = data_path("potato", "DT_example.csv")


@pytest.fixture(scope="module")
def wheat_files(tmp_path_factory):
    """The bundled wheat phenotypes and 0/2 genotypes written as plain CSV files."""
    d = tmp_path_factory.mktemp("wheat")
    w = load_wheat()
    ph = w.phenotypes.copy()
    ph["fold"] = w.folds.reindex(ph.index)
    ph.rename_axis("id").reset_index().to_csv(d / "pheno.csv", index=False)
    (2 * w.markers).copy().rename_axis("id").to_csv(d / "geno.csv")
    return {"dir": d, "pheno": d / "pheno.csv", "geno": d / "geno.csv", "wheat": w}


@pytest.fixture(scope="module")
def small_geno(tmp_path_factory):
    """40 wheat lines x 150 markers, tab-separated (delimiter detection)."""
    d = tmp_path_factory.mktemp("small")
    w = load_wheat()
    m = (2 * w.markers.iloc[:40, :150]).copy().rename_axis("id")
    m.to_csv(d / "geno.tsv", sep="\t")
    return d / "geno.tsv", m


# --------------------------------------------------------------------------- fit


@pytest.mark.slow  # the installed script in a subprocess
def test_fit_potato_script(tmp_path):
    out = tmp_path / "potato"
    p = run_script(["fit", "--data", POTATO, "--formula", "Yield ~ Env + (1|Name)", "--out", out])
    assert p.returncode == 0, p.stderr
    assert "Variance components" in p.stdout
    vc = pd.read_csv(out / "variance_components.csv", index_col="term")
    assert vc.loc["Name", "variance"] == pytest.approx(4.85594439, rel=1e-5)
    assert vc.loc["Residual", "variance"] == pytest.approx(8.10863269, rel=1e-5)
    fe = pd.read_csv(out / "fixed_effects.csv", index_col="effect")
    assert list(fe.columns[:3]) == ["estimate", "se", "t"] and len(fe) == 3
    bv = pd.read_csv(out / "breeding_values.csv", dtype={"id": str})
    assert list(bv.columns) == ["term", "id", "value", "pev", "reliability", "n_records"]
    assert len(bv) == 41 and bv["value"].is_monotonic_decreasing
    s = strict_json(out / "summary.json")
    import hashlib

    assert s["inputs"] == [
        {
            "role": "data",
            "path": str(POTATO),
            "bytes": POTATO.stat().st_size,
            "sha256": hashlib.sha256(POTATO.read_bytes()).hexdigest(),
        }
    ]
    assert s["versions"]["henderson"] and "total" in s["timings_seconds"]
    assert s["results"]["fit"]["variance_components"]["Name"]["variance"] == pytest.approx(4.85594439, rel=1e-5)
    html = (out / "report.html").read_text()
    # one figure for the response, one per factor (fixed Env and random Name), one of the BLUPs
    assert html.count("data:image/png;base64,") == 4
    # captions count the records the model used (issue 10: here all 185 rows of the file)
    for caption in (
        "Yield: the 185 records used",
        "Records per level of Env (fixed; 3 levels) in the 185 records used",
        "Records per level of Name (random; 41 levels) in the 185 records used",
        "Distribution of the 41 BLUPs of Name",
    ):
        assert f"<figcaption>{caption}</figcaption>" in html, caption
    assert 'alt="figure"' not in html


def test_fit_with_cov_matrix(tmp_path, capsys, small_geno):
    """--cov id=FILE attaches a known covariance (here G written by 'henderson grm')."""
    path, m = small_geno
    G = tmp_path / "G.csv"
    assert run_cli(["grm", "--genotypes", path, "--out", G, "-q"], capsys)[0] == 0
    w = load_wheat()
    data = pd.DataFrame({"id": m.index, "yield": w.phenotypes.loc[m.index, "env1"].to_numpy()})
    data.to_csv(tmp_path / "d.csv", index=False)
    code, out, err = run_cli(
        [
            "fit",
            "--data",
            tmp_path / "d.csv",
            "--formula",
            "yield ~ 1 + (1|id)",
            "--cov",
            f"id={G}",
            "--out",
            tmp_path / "o",
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    from henderson import fit
    from henderson.data.genotypes import Genotypes
    from henderson.relationships.genomic import genomic_relationship

    ref = fit(
        "y ~ 1 + (1|id)",
        data.rename(columns={"yield": "y"}),
        cov={"id": genomic_relationship(Genotypes.from_frame(m), method="vanraden1")},
    )
    vc = pd.read_csv(tmp_path / "o" / "variance_components.csv", index_col="term")
    np.testing.assert_allclose(vc["variance"].to_numpy(), ref.sigma2.to_numpy(), rtol=1e-6)


# --------------------------------------------------------------------------- genetic models


def test_gblup_wheat(tmp_path, capsys, wheat_files):
    out = tmp_path / "g"
    code, stdout, err = run_cli(
        [
            "gblup",
            "--phenotypes",
            wheat_files["pheno"],
            "--trait",
            "env1",
            "--genotypes",
            wheat_files["geno"],
            "--out",
            out,
        ],
        capsys,
    )
    assert code == 0, err
    vc = pd.read_csv(out / "variance_components.csv", index_col="term")
    assert vc.loc["id", "variance"] == pytest.approx(0.3014828, rel=1e-5)
    assert vc.loc["Residual", "variance"] == pytest.approx(0.5409987, rel=1e-5)
    bv = pd.read_csv(out / "breeding_values.csv", dtype={"id": str})
    assert list(bv.columns) == ["id", "value", "pev", "reliability", "n_records"] and len(bv) == 599
    assert ((bv["reliability"] > 0) & (bv["reliability"] < 1)).all()
    assert "h² = 0.35" in stdout
    snp = pd.read_csv(out / "snp_effects.csv")
    assert len(snp) == 1279 and {"snp", "freq", "effect"} <= set(snp.columns)
    s = strict_json(out / "summary.json")
    assert s["results"]["h2"] == pytest.approx(0.3014828 / (0.3014828 + 0.5409987), rel=1e-4)
    assert [(i["role"], Path(i["path"]).name) for i in s["inputs"]] == [
        ("phenotypes", "pheno.csv"),
        ("genotypes", "geno.csv"),
    ]
    assert all(len(i["sha256"]) == 64 and i["bytes"] > 0 for i in s["inputs"])


def test_snpblup_then_predict(tmp_path, capsys, wheat_files):
    out = tmp_path / "s"
    code, _, err = run_cli(
        [
            "snpblup",
            "--phenotypes",
            wheat_files["pheno"],
            "--trait",
            "env1",
            "--genotypes",
            wheat_files["geno"],
            "--out",
            out,
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    vc = pd.read_csv(out / "variance_components.csv", index_col="term")
    assert vc.loc["Residual", "variance"] == pytest.approx(0.5409987, rel=1e-5)
    bv = pd.read_csv(out / "breeding_values.csv", dtype={"id": str}).set_index("id")
    # score 30 of the lines as if new: (X - 2p_train) beta reproduces their GEBVs
    new = pd.read_csv(wheat_files["geno"], dtype={"id": str}).iloc[:30]
    new.to_csv(tmp_path / "new.csv", index=False)
    code, stdout, err = run_cli(
        ["predict", "--model", out, "--genotypes", tmp_path / "new.csv", "--out", tmp_path / "pred.csv"], capsys
    )
    assert code == 0, err
    pred = pd.read_csv(tmp_path / "pred.csv", dtype={"id": str}).set_index("id")
    np.testing.assert_allclose(pred["gebv"], bv.loc[pred.index, "value"], atol=1e-8)
    assert "predicted_phenotype" in pred and "Scored 30 individuals" in stdout


def test_pblup_half_sibs(tmp_path, capsys):
    """Sire families (whitespace pedigree, ';' records, other id column): REML runs and
    every animal, parents without records included, gets an EBV; h² is in the summary."""
    rng = np.random.default_rng(1)
    sires = [f"S{i}" for i in range(8)]
    ped = ["id sire dam"] + [f"{s} 0 0" for s in sires]
    rec = ["animal;y"]
    for s, u in zip(sires, rng.normal(0, 1.5, len(sires))):
        for k in range(12):
            ped.append(f"{s}_{k} {s} 0")
            rec.append(f"{s}_{k};{10 + u / 2 + rng.normal():.4f}")
    (tmp_path / "ped.txt").write_text("\n".join(ped) + "\n")
    (tmp_path / "rec.csv").write_text("\n".join(rec) + "\n")
    code, _, err = run_cli(
        [
            "pblup",
            "--phenotypes",
            tmp_path / "rec.csv",
            "--trait",
            "y",
            "--id-column",
            "animal",
            "--pedigree",
            tmp_path / "ped.txt",
            "--out",
            tmp_path / "o",
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    bv = pd.read_csv(tmp_path / "o" / "breeding_values.csv", dtype={"id": str}).set_index("id")
    assert len(bv) == 8 + 96 and (bv.loc[sires, "n_records"] == 0).all()
    assert bv.loc[sires, "value"].abs().sum() > 0
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert 0 < s["results"]["h2"] < 1


# --------------------------------------------------------------------------- relationship files


def test_grm_csv_and_gcta(tmp_path, capsys, small_geno):
    from henderson.data.genotypes import Genotypes
    from henderson.relationships.genomic import genomic_relationship
    from henderson.relationships.grm_io import read_gcta_grm

    path, m = small_geno
    ref = genomic_relationship(Genotypes.from_frame(m), method="vanraden2").to_frame()
    code, out, err = run_cli(["grm", "--genotypes", path, "--method", "vanraden2", "--out", tmp_path / "G.csv"], capsys)
    assert code == 0, err
    assert "G (vanraden2): 40 individuals, 150 SNPs" in out
    got = pd.read_csv(tmp_path / "G.csv", index_col=0, dtype={"id": str})
    got.index = got.index.astype(str)
    np.testing.assert_allclose(got.loc[ref.index, ref.columns].to_numpy(), ref.to_numpy(), atol=1e-12)
    code, _, err = run_cli(
        ["grm", "--genotypes", path, "--method", "vanraden2", "--out", tmp_path / "G.grm", "-q"], capsys
    )
    assert code == 0, err
    g2 = read_gcta_grm(tmp_path / "G").to_frame()
    np.testing.assert_allclose(g2.loc[ref.index, ref.columns].to_numpy(), ref.to_numpy(), atol=1e-6)


def test_ainv_lower_triangle(tmp_path, capsys):
    from henderson.io.pedigree import read_pedigree
    from henderson.relationships.pedigree import pedigree_relationship

    (tmp_path / "ped.csv").write_text("id,sire,dam\n1,0,0\n2,0,0\n3,1,2\n4,1,0\n5,4,3\n6,5,2\n")
    code, out, err = run_cli(
        [
            "ainv",
            "--pedigree",
            tmp_path / "ped.csv",
            "--out",
            tmp_path / "ainv.csv",
            "--inbreeding",
            tmp_path / "F.csv",
        ],
        capsys,
    )
    assert code == 0, err
    t = pd.read_csv(tmp_path / "ainv.csv", dtype={"id1": str, "id2": str})
    assert list(t.columns) == ["id1", "id2", "value"]
    A = pedigree_relationship(read_pedigree(tmp_path / "ped.csv")).to_frame()
    Ainv = np.linalg.inv(A.to_numpy())
    pos = {k: i for i, k in enumerate(A.index)}
    dense = np.zeros_like(Ainv)
    for a, b, v in t.itertuples(index=False):
        i, j = pos[a], pos[b]
        assert i >= j  # lower triangle (in the pedigree's order)
        dense[i, j] = dense[j, i] = v
    np.testing.assert_allclose(dense, Ainv, atol=1e-10)
    F = pd.read_csv(tmp_path / "F.csv", dtype={"id": str}).set_index("id")["F"]
    assert F["6"] == pytest.approx(0.125) and F["1"] == 0


def test_selfing_pedigree(tmp_path, capsys):
    """Plant pedigree with selfings (sire == dam): refused without --selfing, with advice;
    with it, A⁻¹ is the inverse of the tabular A and F(self of a non-inbred line) = 1/2."""
    rows = [
        ("P1", "0", "0"),
        ("P2", "0", "0"),
        ("F1", "P1", "P2"),
        ("S1", "F1", "F1"),
        ("S2", "S1", "S1"),
        ("X", "S1", "P2"),
    ]
    (tmp_path / "ped.csv").write_text("id,sire,dam\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
    code, _, err = run_cli(["ainv", "--pedigree", tmp_path / "ped.csv", "--out", tmp_path / "a.csv"], capsys)
    assert code == 2 and "ped.csv" in err and "--selfing" in err and "monoecious=" not in err
    code, _, err = run_cli(
        [
            "ainv",
            "--pedigree",
            tmp_path / "ped.csv",
            "--out",
            tmp_path / "a.csv",
            "--selfing",
            "--inbreeding",
            tmp_path / "F.csv",
        ],
        capsys,
    )
    assert code == 0, err
    t = pd.read_csv(tmp_path / "a.csv", dtype=str).astype({"value": float})
    ids = [r[0] for r in rows]
    pos = {k: i for i, k in enumerate(ids)}
    dense = np.zeros((len(ids), len(ids)))
    for a, b, v in t.itertuples(index=False):
        dense[pos[a], pos[b]] = dense[pos[b], pos[a]] = v
    np.testing.assert_allclose(dense, np.linalg.inv(tabular_A(rows)[0]), atol=1e-10)
    F = pd.read_csv(tmp_path / "F.csv", dtype={"id": str}).set_index("id")["F"]
    assert F["S1"] == pytest.approx(0.5) and F["S2"] == pytest.approx(0.75) and F["X"] == pytest.approx(0.25)
    # three records per plant (repeated records), so that REML can separate σ²_a and σ²_e
    y = np.random.default_rng(3).normal(size=18) + np.repeat([1.0, 2, 3, 4, 5, 2], 3)
    pd.DataFrame({"id": np.repeat(ids, 3), "y": y}).to_csv(tmp_path / "ph.csv", index=False)
    # (--repeated-records declares them: without it an id repeated with different values is an error)
    code, _, err = run_cli(
        [
            "pblup",
            "-p",
            tmp_path / "ph.csv",
            "-t",
            "y",
            "--pedigree",
            tmp_path / "ped.csv",
            "--selfing",
            "--repeated-records",
            "--out",
            tmp_path / "o",
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    bv = pd.read_csv(tmp_path / "o" / "breeding_values.csv", dtype={"id": str}).set_index("id")
    vc = pd.read_csv(tmp_path / "o" / "variance_components.csv").set_index("term")["variance"]
    assert len(bv) == 6
    # the same BLUPs from the independent tabular A (selfing rule) as a dense K, at the
    # CLI's variance components: both solve the same MME exactly (1e-8: solver round-off)
    K = pd.DataFrame(tabular_A(rows)[0], index=ids, columns=ids)
    frame = pd.DataFrame({"id": np.repeat(ids, 3), "y": y})
    ref = h.fit("y ~ 1 + (1|id)", frame, cov={"id": K}, sigma2=[vc["id"], vc["Residual"]])
    np.testing.assert_allclose(bv.loc[ids, "value"], ref.blups["id"].loc[ids, "blup"], atol=1e-8)


# --------------------------------------------------------------------------- cross-validation


def test_cv_given_folds_fixed_variances(tmp_path, capsys, wheat_files):
    out = tmp_path / "cv"
    code, stdout, err = run_cli(
        [
            "cv",
            "--model",
            "gblup",
            "--phenotypes",
            wheat_files["pheno"],
            "--trait",
            "env1",
            "--genotypes",
            wheat_files["geno"],
            "--fold-column",
            "fold",
            "--fixed-variances",
            "--out",
            out,
        ],
        capsys,
    )
    assert code == 0, err
    pred = pd.read_csv(out / "cv_predictions.csv", dtype={"id": str})
    assert len(pred) == 599 and {"observed", "predicted_bv", "fold"} <= set(pred.columns)
    m = pd.read_csv(out / "cv_metrics.csv")
    assert len(m) == 10 and m["r"].between(0, 1).all()
    assert 0.45 < m["r"].mean() < 0.58
    assert "LEAKAGE" in err  # fixed variances are flagged loudly
    assert "data:image/png;base64," in (out / "report.html").read_text()


def test_cv_random_folds_repeats(tmp_path, capsys, wheat_files):
    code, _, err = run_cli(
        [
            "cv",
            "--model",
            "gblup",
            "--phenotypes",
            wheat_files["pheno"],
            "--trait",
            "env2",
            "--genotypes",
            wheat_files["geno"],
            "--folds",
            "2",
            "--repeats",
            "2",
            "--seed",
            "7",
            "--fixed-variances",
            "--out",
            tmp_path / "cv",
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    m = pd.read_csv(tmp_path / "cv" / "cv_metrics.csv")
    assert len(m) == 4 and sorted(m["repeat"].unique()) == [0, 1]


def test_cv_leave_one_out_prints_pooled_metrics(tmp_path, capsys, wheat_files):
    code, out, err = run_cli(
        [
            "cv",
            "--model",
            "gblup",
            "--phenotypes",
            wheat_files["pheno"],
            "--trait",
            "env1",
            "--genotypes",
            wheat_files["geno"],
            "--loo",
            "--fixed-variances",
            "--out",
            tmp_path / "cv",
        ],
        capsys,
    )
    assert code == 0, err
    pred = pd.read_csv(tmp_path / "cv" / "cv_predictions.csv", dtype={"id": str})
    assert len(pred) == 599 and pred["fold"].nunique() == 599
    # pooled r over all out-of-fold predictions, by hand (per-fold r is undefined at n = 1)
    r = np.corrcoef(pred["observed"], pred["predicted_bv"])[0, 1]
    row = next(ln for ln in out.splitlines() if ln.startswith("r "))
    assert f"{r:.4f}" in row, row


# --------------------------------------------------------------------------- errors


def test_missing_column_names_it(tmp_path, capsys, wheat_files):
    code, _, err = run_cli(
        [
            "gblup",
            "--phenotypes",
            wheat_files["pheno"],
            "--trait",
            "env9",
            "--genotypes",
            wheat_files["geno"],
            "--out",
            tmp_path,
        ],
        capsys,
    )
    assert code == 2
    assert "no column 'env9'" in err and "--trait" in err and "'env1'" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_formula_column_missing(tmp_path, capsys):
    code, _, err = run_cli(["fit", "--data", POTATO, "--formula", "Yield ~ Site + (1|Name)", "--out", tmp_path], capsys)
    assert code == 2 and "no column 'Site'" in err


def test_unknown_ids(tmp_path, capsys, small_geno):
    path, m = small_geno
    ph = pd.DataFrame({"id": list(m.index[:20]) + ["ghost1", "ghost2"], "y": np.arange(22.0)})
    ph.to_csv(tmp_path / "ph.csv", index=False)
    code, _, err = run_cli(
        ["gblup", "--phenotypes", tmp_path / "ph.csv", "--trait", "y", "--genotypes", path, "--out", tmp_path / "o"],
        capsys,
    )
    assert code == 2
    assert "'ghost1'" in err and "'ghost2'" in err and "--drop-unknown" in err
    code, _, err = run_cli(
        [
            "gblup",
            "--phenotypes",
            tmp_path / "ph.csv",
            "--trait",
            "y",
            "--genotypes",
            path,
            "--drop-unknown",
            "--out",
            tmp_path / "o",
            "-q",
        ],
        capsys,
    )
    assert code == 0, err


@pytest.mark.slow  # the installed script in a subprocess
def test_pedigree_loop_script(tmp_path):
    (tmp_path / "ped.csv").write_text("id,sire,dam\nA,0,0\nB,A,C\nC,B,0\n")
    (tmp_path / "ph.csv").write_text("id,y\nA,1\nB,2\nC,3\n")
    p = run_script(
        [
            "pblup",
            "--phenotypes",
            tmp_path / "ph.csv",
            "--trait",
            "y",
            "--pedigree",
            tmp_path / "ped.csv",
            "--out",
            tmp_path / "o",
        ]
    )
    assert p.returncode == 2
    assert p.stderr.startswith("henderson: error: ") and "own ancestor" in p.stderr
    assert "ped.csv line 3" in p.stderr and "Traceback" not in p.stderr


def test_debug_shows_traceback(tmp_path, capsys):
    (tmp_path / "ped.csv").write_text("id,sire,dam\nA,0,0\nB,A,C\nC,B,0\n")
    code, _, err = run_cli(["ainv", "--pedigree", tmp_path / "ped.csv", "--out", tmp_path / "a.csv", "--debug"], capsys)
    assert code == 2 and "Traceback" in err and "PedigreeError" in err


def test_bad_genotype_code(tmp_path, capsys):
    (tmp_path / "g.csv").write_text("id,snp1,snp2,snp3\nA,0,1,2\nB,2,3,0\nC,1,1,1\n")
    (tmp_path / "ph.csv").write_text("id,y\nA,1\nB,2\nC,4\n")
    code, _, err = run_cli(
        [
            "snpblup",
            "--phenotypes",
            tmp_path / "ph.csv",
            "--trait",
            "y",
            "--genotypes",
            tmp_path / "g.csv",
            "--out",
            tmp_path / "o",
        ],
        capsys,
    )
    assert code == 2
    assert "genotype 3" in err and "'B'" in err and "'snp2'" in err and "line 3" in err
    assert "--coding" in err


def test_missing_file_and_bad_rows(tmp_path, capsys):
    # --out is a directory of its own: the input's directory (holding bad.csv) would be refused
    code, _, err = run_cli(
        ["fit", "--data", tmp_path / "nope.csv", "--formula", "y ~ (1|g)", "--out", tmp_path / "o"], capsys
    )
    assert code == 2 and "file not found" in err and "nope.csv" in err
    (tmp_path / "bad.csv").write_text("g,y\na,1\nb,2,3\nc,4\n")
    code, _, err = run_cli(
        ["fit", "--data", tmp_path / "bad.csv", "--formula", "y ~ (1|g)", "--out", tmp_path / "o"], capsys
    )
    assert code == 2 and "line 3" in err and "bad.csv" in err


def test_usage_errors_exit_2(capsys):
    code, _, err = run_cli(["gblup", "--trait", "y"], capsys)
    assert code == 2 and "Missing option" in err
    code, _, err = run_cli(
        ["cv", "--model", "bayesb", "--phenotypes", POTATO, "--trait", "Yield", "--out", "x"], capsys
    )
    assert code == 2 and "bayesb" in err


@pytest.mark.parametrize("cmd", ["fit", "gblup", "snpblup", "pblup", "predict", "grm", "ainv", "cv", "demo"])
def test_help(cmd, capsys):
    code, out, _ = run_cli([cmd, "--help"], capsys)
    assert code == 0 and "Usage: henderson" in out and "--quiet" in out


@pytest.mark.slow  # runs the whole demo (~3 s)
def test_demo(tmp_path, capsys):
    """The main job (about 8 s): GBLUP = SNP-BLUP, three CV arms, potato model, report."""
    from henderson import GBLUP
    from henderson.relationships.container import Relationship

    code, out, err = run_cli(["demo", "--out", tmp_path], capsys)
    assert code == 0, err
    assert "max |GEBV difference|" in out and out.count(" r = ") == 3
    s = strict_json(tmp_path / "summary.json")
    wheat = s["results"]["wheat"]
    # rrBLUP/own tight REML optimum (tests/data/refs/wheat_rrblup.json): our optimiser
    # converges to ~1e-8 relative, so 1e-5 only absorbs the reference's printed digits
    assert wheat["gblup"]["variance_components"]["id"]["variance"] == pytest.approx(0.3014828, rel=1e-5)
    assert wheat["snpblup_sigma2_g"] == pytest.approx(0.3014828, rel=1e-5)
    assert wheat["max_abs_gebv_difference"] < 1e-6  # the same model in two parameterisations
    # the "pedigree BLUP (A)" arm, checked without cross_validate: its printed mean r is the
    # mean over folds of cor(observed, predicted) in cv_predictions.csv, and fold 1's
    # predictions are those of a GBLUP fit with fold 1's phenotypes masked by hand
    w = load_wheat()
    pred = pd.read_csv(tmp_path / "cv_predictions.csv", dtype={"id": str, "fold": str})
    arm = pred[pred["model"] == "pedigree BLUP (A)"]
    r = arm.groupby("fold").apply(lambda f: np.corrcoef(f["observed"], f["predicted_bv"])[0, 1])
    got = wheat["cv_predictive_ability"]["pedigree BLUP (A)"]["mean"]
    assert len(r) == 10 and got == pytest.approx(r.mean(), rel=1e-10)
    y = w.phenotypes["env1"].copy()
    fold1 = w.folds.index[w.folds.astype(str) == "1"]
    y[y.index.isin(fold1)] = np.nan
    by_hand = GBLUP().fit(Relationship.from_frame(w.A, kind="A"), y).gebv_["gebv"]
    f1 = arm[arm["fold"] == "1"].set_index("id")
    np.testing.assert_allclose(f1["predicted_bv"], by_hand.loc[f1.index], atol=1e-8)
    pa = {m: v["mean"] for m, v in wheat["cv_predictive_ability"].items()}
    assert pa["GBLUP"] == pytest.approx(pa["SNP-BLUP"], abs=1e-6)  # same model, same folds
    assert s["results"]["potato"]["variance_components"]["Name"]["variance"] == pytest.approx(4.85594439, rel=1e-5)
    html = (tmp_path / "report.html").read_text()
    for caption in (
        "Records per level of Env (fixed; 3 levels)",
        "Records per level of Name (random; 41 levels)",
        "Predictive ability per model",
        "Each point is an individual predicted without its own",
        "Distribution of the diagonal (1 + inbreeding)",
        "Absolute SNP effects by chromosome",
    ):
        assert caption in html, caption
    m = pd.read_csv(tmp_path / "cv_metrics.csv")
    assert "n_test" in m and "n" not in m and len(m) == 30

"""Reports (issue 10, item 9), through the command line: h² with its denominator named,
captions that count the records used, CV scatter plots of phenotypes corrected for fixed
effects, no plots that carry no information, a pedigree summary and a genotype QC
section."""

from __future__ import annotations

import html as _html
import re

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from henderson.datasets import data_path, load_potato, load_wheat

POTATO = data_path("potato", "DT_example.csv")


def report(out) -> str:
    return _html.unescape((out / "report.html").read_text())


def captions(text: str) -> list[str]:
    return re.findall(r"<figcaption>(.*?)</figcaption>", text)


@pytest.fixture(scope="module")
def identity_K(tmp_path_factory):
    d = tmp_path_factory.mktemp("K")
    names = sorted(load_potato()["Name"].astype(str).unique())
    pd.DataFrame(np.eye(len(names)), index=pd.Index(names, name="id"), columns=names).to_csv(d / "K.csv")
    return d / "K.csv"


def test_h2_denominator_is_genetic_plus_residual(tmp_path, capsys, identity_K):
    """A second random term (Env, like a herd) is not silently in h²'s denominator."""
    out = tmp_path / "o"
    code, _, err = run_cli(
        [
            "fit",
            "--data",
            POTATO,
            "--formula",
            "Yield ~ 1 + (1|Name) + (1|Env)",
            "--cov",
            f"Name={identity_K}",
            "--out",
            out,
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    vc = pd.read_csv(out / "variance_components.csv", index_col="term")["variance"]
    h2 = vc["Name"] / (vc["Name"] + vc["Residual"])
    share = vc["Name"] / vc.sum()
    assert abs(h2 - share) > 0.01  # the two definitions differ on these data
    text = report(out)
    assert f"h² = σ²_Name / (σ²_Name + σ²_e) = {h2:.3f} ± " in text
    assert f"σ²_Name / (σ²_Name + σ²_Env + σ²_e) = {share:.3f}" in text


def test_h2_of_genetic_models_names_its_denominator(tmp_path, capsys):
    d = data_path("gryphon", "DT_gryphon.csv")
    code, _, err = run_cli(
        [
            "pblup",
            "--phenotypes",
            d,
            "--trait",
            "BWT",
            "--id-column",
            "ANIMAL",
            "--pedigree",
            data_path("gryphon", "P_gryphon.csv"),
            "--out",
            tmp_path / "o",
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    vc = pd.read_csv(tmp_path / "o" / "variance_components.csv", index_col="term")["variance"]
    text = report(tmp_path / "o")
    assert f"h² = σ²_a / (σ²_a + σ²_e) = {vc['id'] / vc.sum():.3f}" in text
    # pedigree summary, counted here from the file itself
    ped = pd.read_csv(data_path("gryphon", "P_gryphon.csv"), dtype=str)
    founders = int((ped["sire"].isna() & ped["dam"].isna()).sum())
    assert "<h2>Pedigree</h2>" in text
    assert f"<dt>founders (both parents unknown)</dt><dd>{founders:,}</dd>" in text
    assert f"<dt>animals</dt><dd>{len(ped):,}</dd>" in text
    assert "<dt>phenotyped animals in the pedigree</dt><dd>854</dd>" in text


def test_pedigree_summary_counts_generations_and_inbreeding(tmp_path, capsys):
    """Full sibs mated (F = 1/4) and their offspring mated back to a parent: counted by hand."""
    rows = [
        ("A", "0", "0"),
        ("B", "0", "0"),
        ("C", "A", "B"),
        ("D", "A", "B"),
        ("E", "C", "D"),
        ("F", "C", "D"),
        ("G", "E", "F"),
        ("H", "A", "0"),
    ]
    (tmp_path / "ped.csv").write_text("id,sire,dam\n" + "\n".join(",".join(r) for r in rows) + "\n")
    rng = np.random.default_rng(0)
    ids = [r[0] for r in rows]
    pd.DataFrame({"id": ids, "y": rng.normal(size=len(ids))}).to_csv(tmp_path / "y.csv", index=False)
    from henderson.io.pedigree import read_pedigree
    from henderson.report.sections import pedigree_summary

    info = pedigree_summary(read_pedigree(tmp_path / "ped.csv"), phenotyped=ids)
    # by the tabular rules: a_CD = 1/2, so F_E = F_F = 1/4; a_EF = (a_CF + a_DF)/2 = 3/4, F_G = 3/8
    assert info["animals"] == 8 and info["founders (both parents unknown)"] == 2
    assert info["one parent known"] == 1 and info["generations"] == 4
    assert info["inbred animals (F > 0)"] == 3
    assert info["largest F"] == pytest.approx(0.375, abs=1e-12)
    assert info["mean F (all animals)"] == pytest.approx((0.25 + 0.25 + 0.375) / 8, abs=1e-12)
    code, _, err = run_cli(
        [
            "pblup",
            "--phenotypes",
            tmp_path / "y.csv",
            "--trait",
            "y",
            "--pedigree",
            tmp_path / "ped.csv",
            "--method",
            "ml",
            "--out",
            tmp_path / "o",
            "-q",
        ],
        capsys,
    )
    # 8 records may leave REML on a boundary; only the report's pedigree section is checked
    assert code == 0, err
    text = report(tmp_path / "o")
    assert "<dt>generations</dt><dd>4</dd>" in text and "<dt>largest F</dt><dd>0.3750 (G)</dd>" in text
    assert "Inbreeding coefficients of the" not in text  # 3 inbred animals: no histogram


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """30 wheat lines x 120 markers with 7 missing calls; env1 with a made-up location effect."""
    d = tmp_path_factory.mktemp("small")
    w = load_wheat()
    m = (2 * w.markers.iloc[:30, :120]).astype(float).rename_axis("id")
    miss = [(0, 3), (0, 4), (2, 3), (5, 10), (7, 11), (7, 12), (7, 13)]
    for i, j in miss:
        m.iat[i, j] = np.nan
    m.to_csv(d / "geno.csv", na_rep="NA")
    ph = w.phenotypes.iloc[:30][["env1"]].rename_axis("id").reset_index()
    ph["loc"] = np.where(np.arange(30) % 2 == 0, "north", "south")
    ph.loc[ph["loc"] == "south", "env1"] += 5.0  # a large location effect
    ph.to_csv(d / "pheno.csv", index=False)
    return d, m


def test_genotype_qc_section(tmp_path, capsys, small):
    d, m = small
    code, _, err = run_cli(
        [
            "gblup",
            "--phenotypes",
            d / "pheno.csv",
            "--trait",
            "env1",
            "--genotypes",
            d / "geno.csv",
            "--fixed",
            "loc",
            "--out",
            tmp_path / "o",
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    text = report(tmp_path / "o")
    n_miss = int(m.isna().to_numpy().sum())
    assert "<h2>Genotype quality</h2>" in text
    assert f"<dt>missing calls</dt><dd>{n_miss} ({n_miss / m.size:.2%})</dd>" in text
    assert f"<dt>SNPs with a missing call</dt><dd>{int(m.isna().any().sum())}</dd>" in text
    assert f"<dt>individuals with a missing call</dt><dd>{int(m.isna().any(axis=1).sum())}</dd>" in text
    mono = int(((m.min() == m.max()) | m.isna().all()).sum())
    assert f"<dt>monomorphic SNPs</dt><dd>{mono}</dd>" in text
    assert "Individuals with the most missing calls" in text


def test_cv_scatter_uses_phenotypes_corrected_for_fixed_effects(tmp_path, capsys, small, monkeypatch):
    """The points drawn are observed − (predicted phenotype − predicted BV), i.e. y − Xβ̂
    of the fold's training fit, recomputed here from cv_predictions.csv."""
    import matplotlib.axes

    drawn = []
    real = matplotlib.axes.Axes.scatter

    def spy(self, x, y, *a, **k):
        drawn.append((np.asarray(x, float), np.asarray(y, float)))
        return real(self, x, y, *a, **k)

    monkeypatch.setattr(matplotlib.axes.Axes, "scatter", spy)
    d, _ = small
    code, _, err = run_cli(
        [
            "cv",
            "--model",
            "gblup",
            "--phenotypes",
            d / "pheno.csv",
            "--trait",
            "env1",
            "--genotypes",
            d / "geno.csv",
            "--fixed",
            "loc",
            "--folds",
            "3",
            "--fixed-variances",
            "--out",
            tmp_path / "o",
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    pred = pd.read_csv(tmp_path / "o" / "cv_predictions.csv")
    corrected = pred["observed"] - (pred["predicted_phenotype"] - pred["predicted_bv"])
    ((x, y),) = drawn
    # the CSV holds 10 significant digits (%.10g): 1e-8 covers that rounding, three terms of it
    np.testing.assert_allclose(x, pred["predicted_bv"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(y, corrected, rtol=0, atol=1e-8)
    assert np.ptp(pred["observed"]) > np.ptp(corrected) + 3  # the location effect is gone
    text = report(tmp_path / "o")
    assert "phenotype corrected for fixed effects" in text
    assert "Predictive ability per model" not in text  # one model: no one-bar chart


def test_no_plots_without_information(tmp_path, capsys, small):
    """BLUPs of a 3-level term: no histogram; one record per level: no bar chart."""
    p = load_potato()
    p.to_csv(tmp_path / "d.csv", index=False)
    code, _, err = run_cli(
        [
            "fit",
            "--data",
            tmp_path / "d.csv",
            "--formula",
            "Yield ~ 1 + (1|Env) + (1|Name)",
            "--out",
            tmp_path / "o",
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    caps = captions(report(tmp_path / "o"))
    assert "Distribution of the 41 BLUPs of Name" in caps
    assert not any("BLUPs of Env" in c for c in caps), caps  # 3 values: the table shows them
    # an animal-model-like fit: one record per line, G from the genotypes
    d, _ = small
    code, _, err = run_cli(
        [
            "fit",
            "--data",
            d / "pheno.csv",
            "--formula",
            "env1 ~ loc + (1|id)",
            "--genotypes",
            d / "geno.csv",
            "--out",
            tmp_path / "o1",
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    text = report(tmp_path / "o1")
    assert not any("Records per level of id" in c for c in captions(text))
    assert "Records per level of loc (fixed; 2 levels) in the 30 records used" in captions(text)
    assert "One record per level (no plot): id (30 levels)." in text


def test_captions_count_the_records_used(tmp_path, capsys, identity_K):
    """With --drop-unknown and a missing value, the captions count what the model used."""
    p = load_potato()
    p.loc[3, "Yield"] = np.nan
    p.to_csv(tmp_path / "d.csv", index=False)
    K = pd.read_csv(identity_K, index_col=0)
    K = K.iloc[:-1, :-1]  # one clone without a covariance row
    K.to_csv(tmp_path / "K.csv")
    gone = set(p["Name"].astype(str)) - set(K.index.astype(str))
    n_used = int((p["Yield"].notna() & ~p["Name"].astype(str).isin(gone)).sum())
    code, _, err = run_cli(
        [
            "fit",
            "--data",
            tmp_path / "d.csv",
            "--formula",
            "Yield ~ Env + (1|Name)",
            "--cov",
            f"Name={tmp_path / 'K.csv'}",
            "--drop-unknown",
            "--out",
            tmp_path / "o",
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    caps = captions(report(tmp_path / "o"))
    assert f"Yield: the {n_used} records used; {len(p) - n_used} record(s) of the file not used" in caps, caps
    assert f"Records per level of Env (fixed; 3 levels) in the {n_used} records used" in caps

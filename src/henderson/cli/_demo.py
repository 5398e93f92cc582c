"""The worked example behind ``henderson demo``.

Wheat (599 CIMMYT lines, 1,279 DArT markers, yield in environment 1):
G (VanRaden 1) → GBLUP and SNP-BLUP by REML, shown to agree; 10-fold CV (the bundled
folds) of GBLUP, SNP-BLUP and "pedigree BLUP" — the wheat data carry the pedigree
relationship matrix A but no pedigree, so that arm is GBLUP with A as the
relationship matrix (the same model as the animal model with A). Then the classic
potato mixed model ``Yield ~ Env + (1|Name)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ._common import Session, bv_table, fe_table, vc_table
from ._cv import cv_summary_table, order_metrics

TRAIT = "env1"
POTATO_FORMULA = "Yield ~ Env + (1|Name)"
_INPUTS = [
    ("wheat", "wheat_Y.csv"),
    ("wheat", "wheat_X.csv.gz"),
    ("wheat", "wheat_A.csv.gz"),
    ("wheat", "wheat_sets.csv"),
    ("potato", "DT_example.csv"),
]


@dataclass
class _Wheat:
    """The wheat inputs: the bundled data set, the trait, markers (0/2) and A."""

    data: Any
    y: pd.Series
    geno: Any
    A: Any


@dataclass
class _WheatFits:
    """G, the GBLUP and SNP-BLUP fits on it, and their largest GEBV difference."""

    G: Any
    gb: Any
    sb: Any
    max_diff: float


@dataclass
class _CV:
    """The three CV arms: out-of-fold predictions, fold metrics, their summary, settings."""

    pred: pd.DataFrame
    fm: pd.DataFrame
    summ: pd.DataFrame
    settings: dict


def run_demo(s: Session) -> None:
    """Run the demo: load, fit, cross-validate, write the tables, report and summary."""
    from ..api import fit as api_fit
    from ..datasets import load_potato

    _register_inputs(s)
    wheat = _load_wheat(s)
    _write_demo_data(s, wheat)
    fits = _fit_wheat(s, wheat)
    cv = _cross_validate_arms(s, wheat, fits.G)
    with s.step("Potato mixed model"):
        potato = load_potato()
        pres = api_fit(POTATO_FORMULA, potato)
    with s.step("Writing tables and the report"):
        _write_tables(s, fits, cv, pres)
        _write_report(s, wheat, fits, cv, potato, pres)
        _write_summary(s, fits, cv, pres)
    _print_closing(s, cv, pres)


def _register_inputs(s: Session) -> None:
    """Record the bundled input files and the demo's settings in the session."""
    from ..datasets import data_path

    for name in _INPUTS:
        s.add_input("/".join(name), data_path(*name))
    s.settings.update(
        {"trait": TRAIT, "grm_method": "vanraden1", "cv": "10 bundled folds (wheat_sets.csv)", "refit_variances": True}
    )


def _load_wheat(s: Session) -> _Wheat:
    """Load the bundled wheat data: the trait, markers as allele counts, and A."""
    from ..data.genotypes import Genotypes
    from ..datasets import load_wheat
    from ..relationships.container import Relationship

    with s.step("Loading the wheat data"):
        w = load_wheat()
        y = w.phenotypes[TRAIT].rename(TRAIT)
        geno = Genotypes.from_frame(2 * w.markers.astype(np.int8))  # DArT 0/1 → allele counts 0/2
        A = Relationship.from_frame(w.A, kind="A")
    s.info(f"Wheat: {geno.n} lines, {geno.p} markers, trait {TRAIT} (grain yield, environment 1)")
    return _Wheat(w, y, geno, A)


def _write_demo_data(s: Session, wheat: _Wheat) -> None:
    """Write the demo's inputs as plain files in ``out/data``, so every other command can be tried on them."""
    from ..datasets import load_gryphon, load_potato
    from ..io.genotypes import write_plink

    w = wheat.data
    d = s.outdir() / "data"
    d.mkdir(exist_ok=True)
    with s.step("Writing the demo data as CSV"):
        pheno = w.phenotypes.copy()
        pheno["fold"] = w.folds.reindex(pheno.index)
        pheno.rename_axis("id").reset_index().to_csv(d / "wheat_phenotypes.csv", index=False)
        (2 * w.markers).copy().rename_axis("id").to_csv(d / "wheat_genotypes.csv")
        w.A.copy().rename_axis("id").to_csv(d / "wheat_A.csv", float_format="%.8g")
        load_potato().to_csv(d / "potato.csv", index=False)
        gry = load_gryphon()
        gry.pedigree.to_csv(d / "gryphon_pedigree.csv", index=False)
        gry.records.to_csv(d / "gryphon_records.csv", index=False)
        write_plink(d / "wheat", wheat.geno)  # wheat.bed/.bim/.fam: the same markers as PLINK


def _fit_wheat(s: Session, wheat: _Wheat) -> _WheatFits:
    """Fit GBLUP on the markers (G, VanRaden 1, built in the fit) and SNP-BLUP, print both."""
    from ..estimators import GBLUP, SNPBLUP

    geno, y = wheat.geno, wheat.y
    with s.step("Building G (VanRaden 1) and fitting GBLUP by REML"):
        gb = GBLUP().fit(geno, y)
    G = gb.G_
    with s.step("SNP-BLUP by REML"):
        sb = SNPBLUP().fit(geno, y)
    diff = (gb.gebv_["gebv"] - sb.gebv_["gebv"].reindex(gb.gebv_.index)).abs()
    max_diff = float(diff.max())
    s.stdout.print(
        f"GBLUP:    sigma2_g = {_sigma2_g(gb):.6f}, sigma2_e = {gb.variance_components_.loc['Residual', 'variance']:.6f}, "
        f"h2 = {gb.h2_:.3f} ± {gb.h2_se_:.3f}"
    )
    s.stdout.print(
        f"SNP-BLUP: 2Σpq·sigma2_beta = {sb.sigma2_g_:.6f}, sigma2_e = "
        f"{sb.variance_components_.loc['Residual', 'variance']:.6f}, h2 = {sb.h2_:.3f}"
    )
    s.stdout.print(f"GBLUP and SNP-BLUP agree: max |GEBV difference| = {max_diff:.2e} over {len(diff)} lines")
    return _WheatFits(G, gb, sb, max_diff)


def _sigma2_g(gb) -> float:
    """GBLUP's genetic variance σ²_g (the ``id`` term)."""
    return float(gb.variance_components_.loc["id", "variance"])


def _cross_validate_arms(s: Session, wheat: _Wheat, G) -> _CV:
    """10-fold CV (bundled folds, variances refitted) of GBLUP on G, SNP-BLUP, and GBLUP on A."""
    from ..cv import cross_validate
    from ..estimators import GBLUP, SNPBLUP

    folds = wheat.data.folds.astype(str)
    arms = [("GBLUP", GBLUP(), G), ("SNP-BLUP", SNPBLUP(), wheat.geno), ("pedigree BLUP (A)", GBLUP(), wheat.A)]
    preds, metrics, settings = [], [], {}
    for label, est, X in arms:
        with s.step(f"10-fold CV: {label}"):
            r = cross_validate(est, X, wheat.y, cv=folds, refit_variances=True)
        preds.append(r.predictions.assign(model=label))
        metrics.append(r.fold_metrics.assign(model=label))
        settings[label] = r.settings
    pred = pd.concat(preds, ignore_index=True)
    pred = pred[["model"] + [c for c in pred if c != "model"]]
    fm = order_metrics(pd.concat(metrics, ignore_index=True))
    return _CV(pred, fm, cv_summary_table(fm), settings)


def _write_tables(s: Session, fits: _WheatFits, cv: _CV, pres) -> None:
    """Write the wheat, CV and potato tables as CSV."""
    gb, sb = fits.gb, fits.sb
    s.write_csv(vc_table(gb.variance_components_), "gblup_variance_components.csv")
    s.write_csv(bv_table(gb.gebv_), "gblup_breeding_values.csv")
    s.write_csv(vc_table(sb.variance_components_), "snpblup_variance_components.csv")
    s.write_csv(bv_table(sb.gebv_), "snpblup_breeding_values.csv")
    s.write_csv(sb.snp_effects_, "snp_effects.csv")
    s.write_csv(cv.pred, "cv_predictions.csv")
    s.write_csv(cv.fm, "cv_metrics.csv")
    s.write_csv(vc_table(pres.variance_components), "potato_variance_components.csv")
    s.write_csv(fe_table(pres.fixed_effects), "potato_fixed_effects.csv")
    s.write_csv(bv_table(pres.blups["Name"], "Name"), "potato_blups.csv")


def _write_report(s: Session, wheat: _Wheat, fits: _WheatFits, cv: _CV, potato: pd.DataFrame, pres) -> None:
    """Write report.html: at a glance, CV, GBLUP vs SNP-BLUP, genetics, genotype QC, potato."""
    from ..report.html import Report
    from ..report.sections import add_cv, add_fit, add_genetic, add_genotype_qc

    geno = wheat.geno
    rep = Report(
        "henderson demo: genomic prediction in wheat, and a potato trial",
        f"CIMMYT wheat: {geno.n} lines × {geno.p} markers, trait {TRAIT}; potato: sommer's DT_example",
    )
    _report_glance(rep, fits, cv, pres)
    add_cv(
        rep,
        cv.pred,
        cv.fm,
        cv.summ,
        title="Cross-validation: GBLUP, SNP-BLUP and pedigree BLUP "
        "(10 bundled folds, variances re-estimated in every fold)",
    )
    _report_agreement(rep, fits)
    add_genetic(
        rep,
        fits.gb,
        "GBLUP",
        TRAIT,
        wheat.y,
        G=fits.G,
        snp_effects=fits.sb.snp_effects_,
        relationship_note=f"G (VanRaden 1) from {geno.n} lines × {geno.p} markers",
    )
    add_genotype_qc(rep, geno)
    rep.html("<hr style='margin:36px 0;border:0;border-top:3px solid #2b6cb0'>")
    rep.html(f"<h1 style='font-size:22px'>Potato: {POTATO_FORMULA}</h1>")
    add_fit(rep, pres, potato.copy(), POTATO_FORMULA, ["Name"], top=10)
    rep.section("Summary text (as printed by FitResult.summary())", level=3)
    rep.pre(pres.summary())
    rep.write(s.outdir() / "report.html")
    s.outputs.append("report.html")


def _report_glance(rep, fits: _WheatFits, cv: _CV, pres) -> None:
    """The report's "At a glance" section: h², agreement, predictive abilities, potato variances."""
    gb, summ = fits.gb, cv.summ
    rep.section("At a glance")
    pa = summ["r"]
    items = {
        "GBLUP h² (± SE)": f"{gb.h2_:.3f} ± {gb.h2_se_:.3f}",
        "GBLUP vs SNP-BLUP": f"max |GEBV difference| = {fits.max_diff:.2e} (the same model, two parameterisations)",
    }
    for m in summ.index:
        items[f"predictive ability, {m}"] = f"{pa[m]:.3f} ± {summ.loc[m, 'r sd']:.3f} (10 folds)"
    items["potato σ²_Name / σ²_e"] = f"{pres.sigma2['Name']:.4f} / {pres.sigma2['Residual']:.4f}"
    rep.kv(items)
    rep.callout(
        "The wheat data ship the pedigree relationship matrix A but no pedigree file, so the "
        "'pedigree BLUP (A)' arm is GBLUP with A in place of G — the same model as the animal "
        "model with A⁻¹ on these 599 lines."
    )


def _report_agreement(rep, fits: _WheatFits) -> None:
    """The report section showing GBLUP and SNP-BLUP give the same breeding values."""
    from ..report import plots
    from ..report.sections import variance_table

    gb, sb = fits.gb, fits.sb
    rep.section("GBLUP and SNP-BLUP give the same breeding values")
    rep.start_grid()
    rep.image(
        plots.scatter_agreement(
            gb.gebv_["gebv"],
            sb.gebv_["gebv"].reindex(gb.gebv_.index),
            "GBLUP GEBV",
            "SNP-BLUP GEBV (Wβ̂)",
            f"max |difference| {fits.max_diff:.1e}",
        ),
        caption="Each point is a line; dashed: the identity",
        alt="Scatter plot of GBLUP against SNP-BLUP breeding values on the identity line",
    )
    both = pd.concat(
        {
            "GBLUP": variance_table(gb.variance_components_),
            "SNP-BLUP": variance_table(sb.variance_components_, {"id": "id (σ²_β per SNP)"}),
        },
        names=["model", "term"],
    )
    rep.table(both.reset_index(level=0), caption="REML variance components")
    rep.end_grid()
    rep.text(
        f"SNP-BLUP's genetic variance on the G scale, 2Σpq·σ²_β = {sb.sigma2_g_:.6f}, "
        f"equals GBLUP's σ²_g = {_sigma2_g(gb):.6f}."
    )


def _write_summary(s: Session, fits: _WheatFits, cv: _CV, pres) -> None:
    """Write summary.json: both wheat fits, their agreement, CV abilities and the potato fit."""
    gb, sb, summ = fits.gb, fits.sb, cv.summ
    pa = summ["r"]
    s.write_summary(
        {
            "wheat": {
                "gblup": gb.result_.to_dict(),
                "snpblup": sb.result_.to_dict(),
                "gblup_h2": gb.h2_,
                "gblup_h2_se": gb.h2_se_,
                "snpblup_sigma2_g": sb.sigma2_g_,
                "max_abs_gebv_difference": fits.max_diff,
                "cv_predictive_ability": {
                    m: {"mean": float(pa[m]), "sd": float(summ.loc[m, "r sd"])} for m in summ.index
                },
                "cv_settings": cv.settings,
            },
            "potato": pres.to_dict(),
        }
    )


def _print_closing(s: Session, cv: _CV, pres) -> None:
    """Print the potato summary, the predictive abilities and where the report is."""
    summ = cv.summ
    pa = summ["r"]
    s.stdout.print("")
    s.stdout.print(f"Potato trial, {POTATO_FORMULA}:")
    s.stdout.print(pres.summary())
    s.stdout.print("")
    s.stdout.print("Predictive ability (cor of observed yield and out-of-fold GEBV, 10 folds):")
    for m in summ.index:
        s.stdout.print(f"  {m:<20} r = {pa[m]:.3f} ± {summ.loc[m, 'r sd']:.3f}")
    s.done()
    s.stdout.print(f"Report: {(s.result_dir / 'report.html').resolve()}")

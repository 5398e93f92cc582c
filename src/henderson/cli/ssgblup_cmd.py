"""``henderson ssgblup``: single-step GBLUP from phenotypes, a pedigree and genotypes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from ._common import DebugOpt, ForceOpt, OutDirOpt, QuietOpt, Session, ThreadsOpt, bv_table, fe_table, vc_table
from ._errors import CLIError
from ._inputs import read_genotypes_file, read_pedigree_file, read_phenotypes
from ._steps import GeneticOptions, checked_method, ped_cols
from .genetic_cmd import (
    CodingOpt,
    DropOpt,
    FixedOpt,
    GwasOpt,
    GwasWindowOpt,
    IdOpt,
    MethodOpt,
    PedColsOpt,
    PhenoOpt,
    TopOpt,
    TraitOpt,
    _write_model,
)

#: largest number of genotyped animals for which the report forms A22 and the raw G
#: to draw them (two k × k matrices besides those H⁻¹ needs)
REPORT_MAX_GENOTYPED = 20000


SsPedigreeOpt = Annotated[
    Path, typer.Option("--pedigree", help="Pedigree file with id, sire, dam columns (all animals).")
]
SsGenotypesOpt = Annotated[
    Path,
    typer.Option(
        "--genotypes",
        "-g",
        help="Genotypes of the genotyped animals: PLINK prefix or .bed, VCF, or CSV/TSV matrix (first column id).",
    ),
]
TuningOpt = Annotated[
    str,
    typer.Option(
        "--tuning",
        help="mean: G's mean diagonal and off-diagonal matched to A22's (preGSf90 tunedG 2, default); none: no tuning.",
    ),
]
AlphaOpt = Annotated[
    float,
    typer.Option("--alpha", help="Blending G_w = alpha G + beta A22: weight on G (preGSf90 AlphaBeta; default 0.95)."),
]
BetaOpt = Annotated[float, typer.Option("--beta", help="Blending weight on A22 (default 0.05).")]
TauOpt = Annotated[float, typer.Option("--tau", help="Weight of G⁻¹ in H⁻¹ (preGSf90 TauOmega; default 1).")]
OmegaOpt = Annotated[float, typer.Option("--omega", help="Weight of A22⁻¹ in H⁻¹ (default 1).")]
ApyCoreOpt = Annotated[
    int | None,
    typer.Option("--apy-core", help="APY: number of core animals drawn at random (--seed); default: the full G⁻¹."),
]
ApySeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the APY core draw.")]
AddMissingGenotypedOpt = Annotated[
    bool,
    typer.Option(
        "--add-missing-genotyped",
        help="Add genotyped ids absent from the pedigree as founders (counted) instead of stopping.",
    ),
]
Sigma2Opt = Annotated[
    str | None,
    typer.Option("--sigma2", help="Given variances 'genetic,residual' (BLUP without REML, the BLUPF90 workflow)."),
]
LazyA22Opt = Annotated[
    bool,
    typer.Option(
        "--lazy-a22",
        help="Apply A22⁻¹ as an operator (sparse Cholesky of the pruned pedigree's A⁻¹), never formed: with "
        "--sigma2 the model is solved by PCG (no SNP-effect variances, no --gwas); with REML the block is "
        "formed on demand.",
    ),
]
SnpEffectsOpt = Annotated[
    bool,
    typer.Option(
        "--snp-effects/--no-snp-effects",
        help="Back-solve SNP effects with their variances and p-values (postGSf90).",
    ),
]


def ssgblup(
    phenotypes: PhenoOpt,
    trait: TraitOpt,
    out: OutDirOpt,
    pedigree: SsPedigreeOpt,
    genotypes: SsGenotypesOpt,
    ped_columns: PedColsOpt = "id,sire,dam",
    tuning: TuningOpt = "mean",
    alpha: AlphaOpt = 0.95,
    beta: BetaOpt = 0.05,
    tau: TauOpt = 1.0,
    omega: OmegaOpt = 1.0,
    apy_core: ApyCoreOpt = None,
    seed: ApySeedOpt = 0,
    add_missing_genotyped: AddMissingGenotypedOpt = False,
    sigma2: Sigma2Opt = None,
    lazy_a22: LazyA22Opt = False,
    snp_effects: SnpEffectsOpt = True,
    id_column: IdOpt = "id",
    fixed: FixedOpt = None,
    method: MethodOpt = "reml",
    drop_unknown: DropOpt = False,
    coding: CodingOpt = None,
    top: TopOpt = 20,
    force: ForceOpt = False,
    gwas: GwasOpt = False,
    window: GwasWindowOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    threads: ThreadsOpt = None,
):
    """Single-step GBLUP (H⁻¹ = A⁻¹ + [[0,0],[0, tau G⁻¹ − omega A22⁻¹]]): every pedigree animal gets a GEBV.

    Defaults are BLUPF90's (preGSf90): VanRaden G with current allele frequencies,
    blended 0.95 G + 0.05 A22, tuned to A22's means, tau = omega = 1.

    Example: henderson ssgblup --phenotypes records.csv --trait y --pedigree ped.csv --genotypes geno.csv --out ss
    """
    s = Session("ssgblup", quiet, debug, threads, out, trait=trait, force=force)
    method, tun, s2 = _checked_options(method, tuning, sigma2, gwas, window, apy_core)
    if lazy_a22 and gwas and s2 is not None:
        raise CLIError(
            "--gwas needs the PEV covariance of the genotyped animals from the direct MME: not with "
            "--lazy-a22 and --sigma2 (solved by PCG)"
        )
    missing = "drop" if drop_unknown else "error"
    h = {"tuning": tun, "alpha": alpha, "beta": beta, "tau": tau, "omega": omega, "apy_core": apy_core, "seed": seed}
    genotyped_missing = "add" if add_missing_genotyped else "error"
    s.settings.update(
        {"model": "ssgblup", "trait": trait, "fixed": fixed, "method": method, "missing": missing, **h, "sigma2": s2}
        | {"gwas": gwas, "window": window, "genotyped_missing": genotyped_missing, "lazy_a22": lazy_a22}
    )
    y, data, _, ped, geno = _read_inputs(
        s, phenotypes, trait, id_column, fixed, pedigree, ped_columns, genotypes, coding
    )
    est, ebv_ped = _fit_single_step(
        s,
        ped,
        geno,
        y,
        data,
        dict(h, tuning=None if tun == "none" else "mean"),
        method=method,
        fixed=fixed,
        sigma2=s2,
        missing=missing,
        genotyped_missing=genotyped_missing,
        snp_effects=snp_effects,
        **({"lazy": True} if lazy_a22 else {}),
    )
    G, A22 = _report_matrices(s, est, ped, geno)
    gids = est.Hinv_.info["genotyped"]
    if not quiet:
        s.stdout.print(est.result_.summary())
        s.stdout.print(
            f"\nh² = {est.h2_:.4f} (SE {est.h2_se_:.4f}); {len(gids):,} genotyped of {len(est.gebv_):,} animals"
        )
    with s.step("Writing outputs"):
        title = (
            f"{Path(phenotypes).name} — pedigree of {len(ped):,} animals, {len(gids):,} genotyped at {geno.p:,} SNPs"
        )
        _write_outputs(s, est, ebv_ped, geno, trait, y, (G, A22), title, gwas=gwas, window=window, top=top)
    s.done()


def _write_outputs(s: Session, est, ebv_ped, geno, trait: str, y, G_A22, title: str, *, gwas: bool, window, top: int):
    """Tables, report.html (with the SNP tests when ``gwas``) and summary.json."""
    from ..report.html import Report

    extra = _write_single_step_tables(s, est, ebv_ped, trait)
    rep = Report(f"single-step GBLUP: {trait}", title)
    G, A22 = G_A22
    _single_step_report(rep, est, ebv_ped, trait, y, G, A22, top)
    if gwas:  # SNP tests back-solved from the genotyped animals' GEBVs and C^gg (postGSf90)
        from .gwas_cmd import association_outputs

        extra.update(association_outputs(s, rep, est, geno, trait, window=window, top=top))
    rep.write(s.outdir() / "report.html")
    s.outputs.append("report.html")
    s.write_summary({"fit": est.result_.to_dict(), "h2": est.h2_, "h2_se": est.h2_se_, **extra})


def _checked_options(method: str, tuning: str, sigma2: str | None, gwas: bool, window, apy_core):
    """(--method, --tuning, --sigma2 as numbers), checked with the --gwas options before reading."""
    method = checked_method(method)
    tun = tuning.lower()
    if tun not in ("mean", "none"):
        raise CLIError(f"--tuning must be mean or none, not {tuning!r}")
    s2 = _parse_sigma2(sigma2)
    _check_gwas(gwas, window, apy_core)
    return method, tun, s2


def _parse_sigma2(sigma2: str | None):
    """``--sigma2 'genetic,residual'`` as two non-negative numbers, or None."""
    if sigma2 is None:
        return None
    try:
        s2 = tuple(float(v) for v in sigma2.split(","))
    except ValueError:
        s2 = ()
    if len(s2) != 2 or not all(np.isfinite(s2)) or min(s2) < 0:
        raise CLIError(f"--sigma2 needs two non-negative numbers 'genetic,residual', got {sigma2!r}")
    return s2


def _check_gwas(gwas: bool, window, apy_core) -> None:
    """--window goes with --gwas, which needs G*'s full inverse (no --apy-core); checked before reading."""
    if window and not gwas:
        raise CLIError("--window is an option of --gwas")
    if gwas and apy_core is not None:
        raise CLIError("--gwas back-solves SNP tests with G*'s full inverse: not with --apy-core")
    if window:
        from ..gwas import parse_window

        parse_window(window)  # before reading and fitting


def _fit_single_step(s: Session, ped, geno, y, data, h: dict, *, fixed, missing, **settings):
    """ssGBLUP (H⁻¹ from ``h``: tuning, blending, tau/omega, APY), then pedigree BLUP at
    its variances for the comparison. Returns (estimator, pedigree EBV table)."""
    from ..estimators import PedigreeBLUP, SingleStepGBLUP

    est = SingleStepGBLUP(fixed=fixed, missing=missing, **h, **settings)
    with s.step("Building H⁻¹ and fitting ssGBLUP", counted="REML steps"):
        est.fit(ped, geno, y, data=data)
    s.notes += list(est.result_.notes)
    with s.step("Pedigree BLUP at the same variances (for the comparison)"):
        sig = tuple(float(v) for v in est.result_.sigma2.to_numpy())
        pb = PedigreeBLUP(fixed=fixed, sigma2=sig, missing=missing).fit(ped, y, data=data)
    return est, pb.gebv_


def _report_matrices(s: Session, est, ped, geno):
    """G and A22 of the genotyped animals for the report, when they are few enough (else None)."""
    from ..relationships.genomic import genomic_relationship
    from ..relationships.pedigree import pedigree_relationship

    gids = est.Hinv_.info["genotyped"]
    if len(gids) > REPORT_MAX_GENOTYPED or est.Hinv_.info.get("n_added_founders", 0) != 0:
        return None, None
    with s.step("G and A22 for the report"):
        G = genomic_relationship(geno.subset(ids=gids)).dense()
        A22 = pedigree_relationship(ped, gids).dense()
    return G, A22


def _write_single_step_tables(s: Session, est, ebv_ped: pd.DataFrame, trait: str) -> dict:
    """The CSV tables and model.json; returns the summary's entries beyond the fit."""
    res, info = est.result_, est.Hinv_.info
    gids = info["genotyped"]
    s.write_csv(vc_table(res.variance_components), "variance_components.csv")
    s.write_csv(fe_table(res.fixed_effects), "fixed_effects.csv")
    bv = bv_table(est.gebv_)
    bv["genotyped"] = bv["id"].isin(pd.Index(gids))
    # genotyped ids added as founders (--add-missing-genotyped) have no pedigree EBV: NaN
    bv["ebv_pedigree"] = ebv_ped["gebv"].reindex(bv["id"]).to_numpy()
    bv["reliability_pedigree"] = ebv_ped["reliability"].reindex(bv["id"]).to_numpy()
    s.write_csv(bv, "breeding_values.csv")
    if est.snp_effects_ is not None:
        s.write_csv(est.snp_effects_, "snp_effects.csv")
    extra = {
        "n_animals": len(est.gebv_),
        "n_genotyped": int(len(gids)),
        "n_genotyped_with_records": int((est.gebv_["genotyped"] & (est.gebv_["n_records"] > 0)).sum()),
        "n_added_founders": int(info.get("n_added_founders", 0)),
        "tuning_a": float(info.get("tuning_a", 0.0)),
        "tuning_b": float(info.get("tuning_b", 1.0)),
        "G_stats": info.get("G_stats"),
        "hinv_timings_s": info.get("timings"),
    }
    _write_model(s, est, "ssgblup", trait, {"h2": est.h2_, "h2_se": est.h2_se_, **extra})
    return extra


def _single_step_report(rep, est, ebv_ped, trait: str, y, G, A22, top: int) -> None:
    """The report's genetic and single-step sections."""
    from ..report.sections import add_genetic
    from ..report.single_step import add_single_step

    add_genetic(
        rep,
        est,
        "single-step GBLUP",
        trait,
        y,
        snp_effects=est.snp_effects_,
        top=top,
        relationship_note="H⁻¹ (pedigree + genotypes)",
    )
    add_single_step(rep, est, ebv_ped, G=G, A22=A22)


def run_cv_ssgblup(s: Session, o: GeneticOptions, *, birth_year, cutoff, refit: bool) -> None:
    """``henderson cv --model ssgblup``: ssGBLUP and pedigree BLUP on young genotyped animals."""
    from ..cv.single_step import validate_young
    from ._cv import order_metrics
    from ._inputs import require_columns

    if o.genotypes is None or o.pedigree is None:
        raise CLIError("--model ssgblup needs --pedigree FILE and --genotypes FILE")
    if o.drop_unknown:  # validate_young has no such option: say so rather than ignore it
        raise CLIError("--drop-unknown is not an option of --model ssgblup (phenotyped ids must be in the pedigree)")
    method = o.method.lower()
    s.settings.update(
        {
            "model": "ssgblup",
            "trait": o.trait,
            "fixed": o.fixed,
            "method": method,
            "birth_year": birth_year,
            "cutoff_year": cutoff,
            "refit_variances": refit,
        }
    )
    y, data, frame, ped, geno = _read_inputs(
        s, o.phenotypes, o.trait, o.id_column, o.fixed, o.pedigree, o.ped_columns, o.genotypes, o.coding
    )
    by = None
    if birth_year:
        require_columns(frame, [birth_year], option="--birth-year")
        by = pd.Series(frame[birth_year].to_numpy(), index=frame[o.id_column].astype(str).str.strip())
    with s.step("Validating ssGBLUP and pedigree BLUP on young genotyped animals"):
        pred, fm, info = validate_young(
            ped, geno, y, birth_year=by, cutoff=cutoff, refit_variances=refit, fixed=o.fixed, data=data, method=method
        )
    fm = order_metrics(fm)
    if not s.quiet:
        s.stdout.print(f"Validation: {info['scheme']} ({info['n_test']} animals)")
        s.stdout.print(fm[["model", "n_train", "n_test", "r", "slope"]].to_string(index=False))
    with s.step("Writing outputs"):
        s.write_csv(pred, "cv_predictions.csv")
        s.write_csv(fm, "cv_metrics.csv")
        _write_validation_report(s, o.trait, o.phenotypes, info, pred, fm, refit)
        s.write_summary({"validation": info, "metrics": fm.to_dict(orient="records")})
    s.done()


def _write_validation_report(s: Session, trait: str, phenotypes, info: dict, pred, fm, refit: bool) -> None:
    """report.html of ``cv --model ssgblup``: the scheme, both models' metrics and predictions."""
    from ..report.html import Report
    from ..report.sections import add_cv
    from ._cv import cv_summary_table

    rep = Report(f"Validation on young genotyped animals: {trait}", f"{Path(phenotypes).name} — {info['scheme']}")
    kv = {
        "models": "ssGBLUP (pedigree + genotypes) and pedigree BLUP, same training records",
        "validation": f"{info['scheme']}; {info['n_test']} animals, {info['n_masked_records']} record(s) masked",
        "variances": "re-estimated by REML on the training records"
        if refit
        else "held at the full-data REML estimates (--fixed-variances)",
    }
    add_cv(rep, pred, fm, cv_summary_table(fm), title="Validation", settings=kv)
    rep.write(s.outdir() / "report.html")
    s.outputs.append("report.html")


def _read_inputs(s, phenotypes, trait, id_column, fixed, pedigree, ped_columns, genotypes, coding):
    """The single-step commands' shared step "read inputs": phenotypes, pedigree (its notes
    warned), genotypes, each recorded with its checksum. Returns (y, data, frame, ped, geno)."""
    with s.step("Reading phenotypes"):
        y, data, frame = read_phenotypes(phenotypes, trait, id_column, fixed)
        s.add_input("phenotypes", phenotypes)
    with s.step("Reading pedigree"):
        ped, notes = read_pedigree_file(pedigree, *ped_cols(ped_columns))
        s.add_input("pedigree", pedigree)
    for note in notes:
        s.warn(note)
    with s.step("Reading genotypes"):
        geno = read_genotypes_file(genotypes, coding)
        s.add_input("genotypes", genotypes)
    return y, data, frame, ped, geno

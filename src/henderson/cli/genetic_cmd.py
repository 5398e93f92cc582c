"""``henderson gblup | snpblup | pblup | predict``: genetic evaluation from files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from ._common import DebugOpt, ForceOpt, OutDirOpt, QuietOpt, Session, ThreadsOpt, bv_table, fe_table, vc_table
from ._errors import CLIError
from ._inputs import read_genotypes_file
from ._steps import (
    GeneticOptions,
    checked_method,
    input_options,
    read_grm,
    read_model_genotypes,
    read_pedigree,
    read_trait,
)

PhenoOpt = Annotated[
    Path, typer.Option("--phenotypes", "-p", help="Phenotypes: CSV/TSV with an id column (delimiter detected).")
]
TraitOpt = Annotated[str, typer.Option("--trait", "-t", help="Column of the trait to analyse.")]
TraitsOpt = Annotated[
    list[str],
    typer.Option(
        "--trait",
        "-t",
        help="Column of the trait to analyse; give it several times (--trait y1 --trait y2) for a multi-trait model.",
    ),
]
IdOpt = Annotated[str, typer.Option("--id-column", help="Column of the individual ids.")]
FixedOpt = Annotated[
    str | None,
    typer.Option(
        "--fixed", help='Fixed effects (columns of the phenotype file), e.g. "loc + year". Default: intercept.'
    ),
]
OutOpt = OutDirOpt
GenoOpt = Annotated[
    Path | None,
    typer.Option(
        "--genotypes", "-g", help="Genotypes: PLINK prefix or .bed, VCF, or CSV/TSV matrix (first column id, 0/1/2)."
    ),
]
PedOpt = Annotated[Path | None, typer.Option("--pedigree", help="Pedigree file with id, sire, dam columns.")]
PedColsOpt = Annotated[str, typer.Option("--ped-columns", help="Pedigree column names id,sire,dam.")]
MethodOpt = Annotated[str, typer.Option("--method", help="reml or ml.")]
DropOpt = Annotated[
    bool,
    typer.Option(
        "--drop-unknown",
        help="Drop (and count) phenotyped ids missing from the genotypes/pedigree instead of stopping.",
    ),
]
TopOpt = Annotated[int, typer.Option("--top", help="Rows of the ranking shown in the report.")]
CodingOpt = Annotated[
    str | None,
    typer.Option(
        "--coding",
        help="Genotype coding of a CSV matrix: 012 (allele counts), -101, 01 (inbred lines, 0/1 = homozygous) or dosage (detected when unambiguous, with a warning).",
    ),
]
GwasOpt = Annotated[
    bool,
    typer.Option(
        "--gwas",
        help="Also test every SNP from the fit's back-solved effects and their exact SEs (association.csv, Manhattan and QQ plots in the report).",
    ),
]
GwasWindowOpt = Annotated[
    str | None,
    typer.Option(
        "--window", help="With --gwas: windows for the share of genetic variance, in SNPs (50) or base pairs (1Mb)."
    ),
]
SelfingOpt = Annotated[
    bool,
    typer.Option(
        "--selfing",
        help="Plant (monoecious) pedigree: selfings (sire == dam) allowed, and an id may be sire of one individual and dam of another.",
    ),
]
NaValuesOpt = Annotated[
    str | None,
    typer.Option(
        "--na-values",
        help='Missing-value codes of the trait, comma-separated, e.g. "-9,-99" (blank, NA and . are always missing).',
    ),
]
DecimalOpt = Annotated[
    str,
    typer.Option(
        "--decimal",
        help="Decimal mark of the phenotype file: . or , (a decimal comma needs a semicolon- or tab-delimited file).",
    ),
]
MissingParentOpt = Annotated[
    str | None,
    typer.Option(
        "--missing-parent",
        help="Codes of an unknown parent, comma-separated; they replace the default codes 0, NA, . and - (a blank is always unknown).",
    ),
]
BirthYearOpt = Annotated[
    str | None,
    typer.Option(
        "--birth-year",
        help="Pedigree column with birth years (or dates as numbers): a parent born after its offspring is an error.",
    ),
]
MafOpt = Annotated[
    float | None,
    typer.Option("--maf", min=0.0, max=0.5, help="Drop SNPs with minor allele frequency below this (counted)."),
]
RepeatedOpt = Annotated[
    bool,
    typer.Option(
        "--repeated-records",
        help="Ids may repeat: every record is fitted (replicates of a line or clone; the model has no permanent-environment term). Without it an id with several different values is an error.",
    ),
]
CallRateOpt = Annotated[
    float | None,
    typer.Option(
        "--call-rate", min=0.0, max=1.0, help="Drop individuals, then SNPs, with a call rate below this (counted)."
    ),
]
GrmOpt = Annotated[
    Path | None,
    typer.Option(
        "--grm",
        help="A precomputed relationship matrix instead of genotypes: square CSV with an id column, or a GCTA .grm prefix.",
    ),
]
GrmMethodOpt = Annotated[str, typer.Option("--grm-method", help="vanraden1, vanraden2, yang or vitezica.")]


#: Largest n²·p for which SNP-BLUP's report builds G to draw its distribution: G costs
#: ~n²p/2 multiply-adds (1.5e11 is about a second with a multithreaded BLAS; the
#: bundled wheat data are 4.6e8).
REPORT_G_MAX_WORK = 1.5e11


def _report_grm(s: Session, geno):
    """G (VanRaden 1) for SNP-BLUP's report when it is cheap, else None and a note saying why."""
    from ..relationships.genomic import genomic_relationship

    work = float(geno.n) ** 2 * geno.p
    if work > REPORT_G_MAX_WORK:
        return None, (
            f"The distribution of G is not drawn: {geno.n:,} individuals x {geno.p:,} SNPs would "
            "make building G for the report slower than the fit; 'henderson grm' writes it."
        )
    with s.step("Building G for the report", counted="SNPs"):
        G = genomic_relationship(geno, method="vanraden1")
    return G, "G (VanRaden 1) built from the same genotypes to show the relationships SNP-BLUP implies."


def _write_model(s: Session, est, kind: str, trait: str, extra: dict) -> None:
    fe = est.fixed_effects_["estimate"]
    intercept = float(fe.iloc[0]) if list(fe.index) == ["(Intercept)"] else None
    # fit_id is also a column of snp_effects.csv: predict refuses a pair from two fits
    doc = {
        "model": kind,
        "trait": trait,
        "fit_id": s.run_id,
        "intercept": intercept,
        "fixed_effects": {k: float(v) for k, v in fe.items()},
        **extra,
    }
    s.write_json(doc, "model.json")


@dataclass
class _Fitted:
    """A fitted single-trait model and what its outputs need besides the estimator."""

    label: str
    est: Any = None
    geno: Any = None
    G: Any = None
    ped: Any = None
    snp_effects: pd.DataFrame | None = None
    rel_note: str = ""
    g_note: str = ""
    #: model.json and summary.json entries beyond the fit
    extra: dict = field(default_factory=dict)


def run_genetic(s: Session, kind: str, o: GeneticOptions, *, top: int = 20, gwas: bool = False, window=None) -> None:
    """gblup, snpblup or pblup on one trait: read the inputs, fit, write the tables, model.json,
    report.html and summary.json."""
    o = replace(o, method=checked_method(o.method))
    s.settings.update(
        {
            "model": kind,
            "trait": o.trait,
            "id_column": o.id_column,
            "fixed": o.fixed,
            "method": o.method,
            "missing": o.missing,
        }
    )
    _check_gwas(kind, o, gwas, window)
    y, data, _ = read_trait(s, o)
    f = _FITS[kind](s, o, y, data)
    res = f.est.result_
    s.notes += list(res.notes)
    if not s.quiet:
        s.stdout.print(res.summary())
        s.stdout.print(f"\nh² = {f.est.h2_:.4f} (SE {f.est.h2_se_:.4f})")
    with s.step("Writing outputs"):
        _write_genetic_tables(s, kind, o.trait, f)
        _write_genetic_report(s, kind, o, f, y, top=top, gwas=gwas, window=window)
        s.write_summary({"fit": res.to_dict(), "h2": f.est.h2_, "h2_se": f.est.h2_se_, **f.extra})
    s.done()


def _check_gwas(kind: str, o: GeneticOptions, gwas: bool, window) -> None:
    """--gwas and --window need genotypes (and vanraden1 for gblup): checked before reading."""
    if (gwas or window) and o.genotypes is None:
        raise CLIError("--gwas needs --genotypes (the SNPs to test)")
    if window and not gwas:
        raise CLIError("--window is an option of --gwas")
    if window:
        from ..gwas import parse_window

        parse_window(window)  # before reading and fitting
    if gwas and kind == "gblup" and o.grm_method != "vanraden1":
        raise CLIError(f"--gwas back-solves SNP effects, which needs --grm-method vanraden1 (not {o.grm_method})")


def _fit_gblup(s: Session, o: GeneticOptions, y, data) -> _Fitted:
    """GBLUP on --genotypes (G built in the fit, SNP effects back-solved) or on --grm."""
    from ..estimators import GBLUP

    if (o.genotypes is None) == (o.grm is None):
        raise CLIError("gblup needs exactly one of --genotypes FILE or --grm FILE")
    f = _Fitted("GBLUP")
    if o.grm is None:  # exactly one of the two: --genotypes
        f.geno = read_model_genotypes(s, o, f.extra)
        f.rel_note = f"G ({o.grm_method}) from {f.geno.n} individuals x {f.geno.p} SNPs"
        s.settings["grm_method"] = o.grm_method
    else:
        f.G = read_grm(s, o.grm)
        f.rel_note = f"{f.G.n} x {f.G.n} matrix from {Path(o.grm).name}"
    f.est = GBLUP(method=o.method, grm=o.grm_method, fixed=o.fixed, missing=o.missing)
    # from genotypes GBLUP.fit builds G (its SNP blocks drive the bar, then the REML
    # steps) and back-solves the SNP effects (None unless vanraden1)
    on_geno = f.geno is not None
    what = "Building G and fitting GBLUP" if on_geno else "Fitting GBLUP"
    with s.step(what, counted="SNPs, then REML steps" if on_geno else "REML steps"):
        f.est.fit(f.geno if on_geno else f.G, y, data=data)
    f.G, f.snp_effects = f.est.G_, f.est.snp_effects_
    return f


def _fit_snpblup(s: Session, o: GeneticOptions, y, data) -> _Fitted:
    """SNP-BLUP on --genotypes; G for the report when it is cheap."""
    from ..estimators import SNPBLUP

    if o.genotypes is None:
        raise CLIError("snpblup needs --genotypes FILE")
    f = _Fitted("SNP-BLUP")
    f.geno = read_model_genotypes(s, o, f.extra)
    f.est = est = SNPBLUP(method=o.method, fixed=o.fixed, missing=o.missing)
    with s.step("Fitting SNP-BLUP", counted="REML steps"):
        est.fit(f.geno, y, data=data)
    f.snp_effects = est.snp_effects_
    f.rel_note = f"{f.geno.n} individuals x {f.geno.p} SNPs, solved in {est.space_} space"
    f.G, f.g_note = _report_grm(s, f.geno)
    f.extra.update({"sigma2_beta": est.sigma2_beta_, "sigma2_g": est.sigma2_g_})
    return f


def _fit_pblup(s: Session, o: GeneticOptions, y, data) -> _Fitted:
    """Pedigree BLUP (sparse A⁻¹) on --pedigree."""
    from ..estimators import PedigreeBLUP

    if o.pedigree is None:
        raise CLIError("pblup needs --pedigree FILE")
    f = _Fitted("pedigree BLUP")
    f.ped = read_pedigree(s, o)
    f.est = PedigreeBLUP(method=o.method, fixed=o.fixed, missing=o.missing)
    with s.step("Fitting pedigree BLUP (A⁻¹)", counted="REML steps"):
        f.est.fit(f.ped, y, data=data)
    f.rel_note = f"pedigree of {len(f.ped.ids)} animals (sparse A⁻¹)"
    return f


_FITS = {"gblup": _fit_gblup, "snpblup": _fit_snpblup, "pblup": _fit_pblup}


def _write_genetic_tables(s: Session, kind: str, trait: str, f: _Fitted) -> None:
    """variance_components.csv, fixed_effects.csv, breeding_values.csv, snp_effects.csv, model.json."""
    est, res = f.est, f.est.result_
    s.write_csv(vc_table(res.variance_components), "variance_components.csv")
    s.write_csv(fe_table(res.fixed_effects), "fixed_effects.csv")
    s.write_csv(bv_table(est.gebv_), "breeding_values.csv")
    if f.snp_effects is not None:
        s.write_csv(f.snp_effects.assign(fit_id=s.run_id), "snp_effects.csv")
    _write_model(
        s,
        est,
        kind,
        trait,
        {
            "h2": est.h2_,
            "h2_se": est.h2_se_,
            "n_snps": None if f.snp_effects is None else len(f.snp_effects),
            **{k: v for k, v in f.extra.items() if k != "genotypes"},
        },
    )


def _write_genetic_report(
    s: Session, kind: str, o: GeneticOptions, f: _Fitted, y, *, top: int, gwas: bool, window
) -> None:
    """report.html; with --gwas also the association outputs (their summary goes to ``f.extra``)."""
    from ..report.html import Report
    from ..report.sections import add_genetic, add_genotype_qc, add_pedigree_summary

    rep = Report(f"{f.label}: {o.trait}", f"{Path(o.phenotypes).name} — {f.rel_note}")
    add_genetic(
        rep,
        f.est,
        f.label,
        o.trait,
        y,
        G=f.G,
        snp_effects=f.snp_effects,
        top=top,
        relationship_note=f.rel_note,
        g_note=f.g_note,
    )
    if kind == "pblup":
        add_pedigree_summary(rep, f.ped, phenotyped=y.index[y.notna()])
    if f.geno is not None:
        add_genotype_qc(rep, f.geno)
    if gwas:  # back-solved SNP tests of this fit (henderson.association)
        from .gwas_cmd import association_outputs

        f.extra.update(association_outputs(s, rep, f.est, f.geno, o.trait, window=window, top=top))
    rep.write(s.outdir() / "report.html")
    s.outputs.append("report.html")


def gblup(
    phenotypes: PhenoOpt,
    trait: TraitsOpt,
    out: OutOpt,
    genotypes: GenoOpt = None,
    grm: GrmOpt = None,
    grm_method: GrmMethodOpt = "vanraden1",
    id_column: IdOpt = "id",
    fixed: FixedOpt = None,
    method: MethodOpt = "reml",
    drop_unknown: DropOpt = False,
    coding: CodingOpt = None,
    top: TopOpt = 20,
    gwas: GwasOpt = False,
    window: GwasWindowOpt = None,
    force: ForceOpt = False,
    na_values: NaValuesOpt = None,
    decimal: DecimalOpt = ".",
    maf: MafOpt = None,
    call_rate: CallRateOpt = None,
    repeated_records: RepeatedOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    threads: ThreadsOpt = None,
):
    """Genomic BLUP: REML variances, GEBVs with PEV and reliability (and SNP effects from genotypes).

    Example: henderson gblup --phenotypes pheno.csv --trait env1 --genotypes geno.csv --out gblup
    (several --trait: multi-trait GBLUP, genetic correlations with SEs)
    """
    o = GeneticOptions(
        phenotypes,
        trait[0],
        id_column,
        fixed,
        method,
        drop_unknown,
        genotypes=genotypes,
        grm=grm,
        grm_method=grm_method,
        coding=coding,
        inputs=input_options(na_values, decimal, maf=maf, call_rate=call_rate, repeated_records=repeated_records),
    )
    _run_one_or_more("gblup", o, trait, out, quiet, debug, threads, force, top=top, gwas=gwas, window=window)


def snpblup(
    phenotypes: PhenoOpt,
    trait: TraitsOpt,
    out: OutOpt,
    genotypes: GenoOpt = None,
    id_column: IdOpt = "id",
    fixed: FixedOpt = None,
    method: MethodOpt = "reml",
    drop_unknown: DropOpt = False,
    coding: CodingOpt = None,
    top: TopOpt = 20,
    gwas: GwasOpt = False,
    window: GwasWindowOpt = None,
    force: ForceOpt = False,
    na_values: NaValuesOpt = None,
    decimal: DecimalOpt = ".",
    maf: MafOpt = None,
    call_rate: CallRateOpt = None,
    repeated_records: RepeatedOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    threads: ThreadsOpt = None,
):
    """SNP-BLUP (RR-BLUP): REML variances, SNP effects and GEBVs; 'henderson predict' scores new individuals.

    Example: henderson snpblup --phenotypes pheno.csv --trait env1 --genotypes geno.csv --out snpblup
    """
    o = GeneticOptions(
        phenotypes,
        trait[0],
        id_column,
        fixed,
        method,
        drop_unknown,
        genotypes=genotypes,
        coding=coding,
        inputs=input_options(na_values, decimal, maf=maf, call_rate=call_rate, repeated_records=repeated_records),
    )
    _run_one_or_more("snpblup", o, trait, out, quiet, debug, threads, force, top=top, gwas=gwas, window=window)


def pblup(
    phenotypes: PhenoOpt,
    trait: TraitsOpt,
    out: OutOpt,
    pedigree: PedOpt = None,
    ped_columns: PedColsOpt = "id,sire,dam",
    id_column: IdOpt = "id",
    fixed: FixedOpt = None,
    method: MethodOpt = "reml",
    drop_unknown: DropOpt = False,
    selfing: SelfingOpt = False,
    top: TopOpt = 20,
    force: ForceOpt = False,
    na_values: NaValuesOpt = None,
    decimal: DecimalOpt = ".",
    missing_parent: MissingParentOpt = None,
    birth_year: BirthYearOpt = None,
    repeated_records: RepeatedOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    threads: ThreadsOpt = None,
):
    """Pedigree BLUP (animal model, sparse A⁻¹): every animal in the pedigree gets an EBV.

    Example: henderson pblup --phenotypes records.csv --trait BWT --id-column ANIMAL --pedigree ped.csv --out pblup
    (several --trait: multi-trait model with the dense A, complete records)
    """
    o = GeneticOptions(
        phenotypes,
        trait[0],
        id_column,
        fixed,
        method,
        drop_unknown,
        pedigree=pedigree,
        ped_columns=ped_columns,
        selfing=selfing,
        inputs=input_options(na_values, decimal, missing_parent, birth_year, repeated_records=repeated_records),
    )
    _run_one_or_more("pblup", o, trait, out, quiet, debug, threads, force, top=top)


def _run_one_or_more(kind: str, o: GeneticOptions, traits, out, quiet, debug, threads, force, **run) -> None:
    """One --trait: :func:`run_genetic`; several: the multi-trait model (``run_multitrait``)."""
    s = Session(kind, quiet, debug, threads, out, trait=",".join(traits), force=force)
    if len(traits) > 1:
        from .multitrait_cmd import run_multitrait

        return run_multitrait(kind, s, o, traits)
    run_genetic(s, kind, o, **run)


PredictModelOpt = Annotated[
    Path,
    typer.Option(
        "--model",
        "-m",
        help="Output directory of 'henderson snpblup' (or gblup on genotypes) holding snp_effects.csv.",
    ),
]
PredictGenotypesOpt = Annotated[
    Path, typer.Option("--genotypes", "-g", help="Genotypes of the individuals to score (same SNP ids).")
]
PredictOutOpt = Annotated[
    Path,
    typer.Option(
        "--out",
        "-o",
        help="Output FILE (not a directory), a CSV: id, gebv[, predicted_phenotype]. Replaced only at the end of a successful run.",
    ),
]


def predict(
    model: PredictModelOpt,
    genotypes: PredictGenotypesOpt,
    out: PredictOutOpt,
    coding: CodingOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    threads: ThreadsOpt = None,
):
    """Score new individuals from saved SNP effects: ĝ = (X − 2p_train)β̂, SNPs matched by id.

    Example: henderson predict --model snpblup --genotypes new.csv --out new_gebv.csv
    """
    from ..errors import DataError, format_ids
    from ..models.snpblup import predict_from_snp_effects
    from ._inputs import read_table, require_columns

    s = Session("predict", quiet, debug, threads, None)
    eff_path = Path(model) / "snp_effects.csv"
    if not Path(model).is_dir():
        raise CLIError(f"--model {model}: not a directory (give the --out directory of snpblup or gblup)")
    if not eff_path.exists():
        raise CLIError(
            f"{eff_path} not found: --model must be the output directory of 'henderson snpblup' "
            "or of 'henderson gblup --genotypes' (vanraden1)"
        )
    files = s.output_files([out])
    with s.step("Reading SNP effects and genotypes"):
        eff = read_table(eff_path, str_columns=["snp", "chrom", "fit_id"], what="SNP-effect table")
        require_columns(eff, ["snp", "freq", "effect"])
        meta = _read_model_json(Path(model) / "model.json", eff, eff_path)
        geno = read_genotypes_file(genotypes, coding)
    absent = np.setdiff1d(eff["snp"].astype(str).to_numpy(), np.asarray(geno.snp_ids, dtype=str))
    if len(absent):
        raise DataError(
            f"{genotypes}: {len(absent)} SNP(s) of the model are not in the genotypes: {format_ids(absent)}"
        )
    with s.step("Scoring"):
        g = predict_from_snp_effects(geno, eff)
    table = pd.DataFrame({"id": g.index.astype(str), "gebv": g.to_numpy()})
    if meta is not None and meta.get("intercept") is not None:
        table["predicted_phenotype"] = meta["intercept"] + table["gebv"]
    table.to_csv(files.where(out), index=False, float_format="%.10g")
    s.done()
    if not quiet:
        s.stdout.print(table.sort_values("gebv", ascending=False).head(10).to_string(index=False))
        s.stdout.print(f"Scored {len(table)} individuals on {len(eff)} SNPs; wrote {out}")


def _read_model_json(path: Path, eff: pd.DataFrame, eff_path: Path) -> dict | None:
    """model.json of the fit that wrote ``eff`` (snp_effects.csv), or None when absent.

    Both carry the fit's id: SNP effects of one fit and the intercept of another (a
    file copied in by hand) would give wrong predicted phenotypes without a word.
    """
    from ..errors import DataError

    ids = sorted(set(eff["fit_id"].dropna().astype(str))) if "fit_id" in eff else []
    if len(ids) > 1:
        raise DataError(
            f"{eff_path}: rows from {len(ids)} different fits (column fit_id); "
            "rerun snpblup/gblup to write one set of SNP effects"
        )
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a henderson model.json ({err})") from err
    fit = meta.get("fit_id") if isinstance(meta, dict) else None
    if (ids[0] if ids else None) != fit:
        raise DataError(
            f"{eff_path} and {path} come from different fits (fit_id "
            f"{ids[0] if ids else 'absent'} vs {fit or 'absent'}): the SNP effects and the "
            "intercept must come from one run of snpblup or gblup; rerun it"
        )
    return meta

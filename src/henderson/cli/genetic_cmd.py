"""``henderson gblup | snpblup | pblup | predict``: genetic evaluation from files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from ._common import DebugOpt, ForceOpt, OutDirOpt, QuietOpt, Session, ThreadsOpt, bv_table, fe_table, vc_table
from ._errors import CLIError
from ._inputs import read_genotypes_file, read_pedigree_file, read_phenotypes, read_relationship_file

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


def input_options(
    na_values: str | None = None,
    decimal: str = ".",
    missing_parent: str | None = None,
    birth_year: str | None = None,
    maf: float | None = None,
    call_rate: float | None = None,
    repeated_records: bool = False,
) -> dict:
    """The reader options of the command line, as one dict for :func:`run_genetic` and ``run_cv``."""
    return {
        "na_values": _codes(na_values),
        "decimal": decimal,
        "repeated_records": repeated_records,
        "missing_parent": None if missing_parent is None else _codes(missing_parent),
        "birth_year": birth_year,
        "maf": maf,
        "call_rate": call_rate,
    }


def _codes(text: str | None) -> list[str]:
    return [] if text is None else [c.strip() for c in text.split(",") if c.strip()]


def check_fixed(frame: pd.DataFrame, fixed: str | None) -> None:
    """--fixed names columns of the phenotype file: an error lists the file's columns."""
    if fixed:
        from ..spec.formula import formula_variables
        from ._inputs import require_columns

        require_columns(frame, formula_variables(fixed), option="--fixed")


def _ped_cols(spec: str) -> tuple[str, str, str]:
    cols = [c.strip() for c in spec.split(",")]
    if len(cols) != 3 or not all(cols):
        raise CLIError(f"--ped-columns needs three names id,sire,dam, got {spec!r}")
    return cols[0], cols[1], cols[2]


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


def _model_genotypes(s: Session, geno, opts: dict, extra: dict):
    """Missing calls counted, no-call individuals dropped, --maf/--call-rate applied; the
    report goes to ``extra["genotypes"]`` (model.json and summary.json)."""
    from ._inputs import prepare_genotypes

    geno, report, notes = prepare_genotypes(geno, maf=opts.get("maf"), call_rate=opts.get("call_rate"))
    for note in notes:
        s.warn(note)
    extra["genotypes"] = report
    s.settings.update({"maf": opts.get("maf"), "call_rate": opts.get("call_rate")})
    return geno


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


def run_genetic(
    kind: str,
    phenotypes: Path,
    trait: str,
    id_column: str,
    fixed: str | None,
    out: Path,
    genotypes: Path | None,
    pedigree: Path | None,
    grm: Path | None,
    grm_method: str,
    ped_columns: str,
    method: str,
    drop_unknown: bool,
    top: int,
    coding: str | None,
    quiet: bool,
    debug: bool,
    threads: int | None,
    selfing: bool = False,
    gwas: bool = False,
    window: str | None = None,
    force: bool = False,
    inputs: dict | None = None,
) -> None:
    from ..estimators import GBLUP, SNPBLUP, PedigreeBLUP
    from ..report.html import Report
    from ..report.sections import add_genetic, add_genotype_qc, add_pedigree_summary

    s = Session(kind, quiet, debug, threads, out, trait=trait, force=force)
    method = method.lower()
    if method not in ("reml", "ml"):
        raise CLIError(f"--method must be reml or ml, not {method!r}")
    s.settings.update(
        {
            "model": kind,
            "trait": trait,
            "id_column": id_column,
            "fixed": fixed,
            "method": method,
            "missing": "drop" if drop_unknown else "error",
        }
    )
    if (gwas or window) and genotypes is None:
        raise CLIError("--gwas needs --genotypes (the SNPs to test)")
    if window and not gwas:
        raise CLIError("--window is an option of --gwas")
    if window:
        from ..gwas import parse_window

        parse_window(window)  # before reading and fitting
    if gwas and kind == "gblup" and grm_method != "vanraden1":
        raise CLIError(f"--gwas back-solves SNP effects, which needs --grm-method vanraden1 (not {grm_method})")
    missing = "drop" if drop_unknown else "error"
    opts = inputs or input_options()
    with s.step("Reading phenotypes"):
        y, data, frame = read_phenotypes(
            phenotypes,
            trait,
            id_column,
            fixed,
            na_values=opts["na_values"],
            decimal=opts["decimal"],
            one_record_per_id=not opts["repeated_records"],
        )
        s.add_input("phenotypes", phenotypes)
        check_fixed(frame, fixed)
    geno = G = snp_effects = None
    rel_note = g_note = ""
    extra: dict = {}
    if kind == "gblup":
        if (genotypes is None) == (grm is None):
            raise CLIError("gblup needs exactly one of --genotypes FILE or --grm FILE")
        if genotypes is not None:
            with s.step("Reading genotypes"):
                geno = read_genotypes_file(genotypes, coding)
                s.add_input("genotypes", genotypes)
            geno = _model_genotypes(s, geno, opts, extra)
            rel_note = f"G ({grm_method}) from {geno.n} individuals x {geno.p} SNPs"
            s.settings["grm_method"] = grm_method
        else:
            with s.step("Reading the relationship matrix"):
                G = read_relationship_file(grm, kind="G")
                s.add_input("grm", grm)
            rel_note = f"{G.n} x {G.n} matrix from {Path(grm).name}"
        est = GBLUP(method=method, grm=grm_method, fixed=fixed, missing=missing)
        # from genotypes GBLUP.fit builds G (its SNP blocks drive the bar, then the REML
        # steps) and back-solves the SNP effects (None unless vanraden1)
        what = "Building G and fitting GBLUP" if geno is not None else "Fitting GBLUP"
        with s.step(what, counted="SNPs, then REML steps" if geno is not None else "REML steps"):
            est.fit(geno if geno is not None else G, y, data=data)
        G, snp_effects = est.G_, est.snp_effects_
        label = "GBLUP"
    elif kind == "snpblup":
        if genotypes is None:
            raise CLIError("snpblup needs --genotypes FILE")
        with s.step("Reading genotypes"):
            geno = read_genotypes_file(genotypes, coding)
            s.add_input("genotypes", genotypes)
        geno = _model_genotypes(s, geno, opts, extra)
        est = SNPBLUP(method=method, fixed=fixed, missing=missing)
        with s.step("Fitting SNP-BLUP", counted="REML steps"):
            est.fit(geno, y, data=data)
        snp_effects = est.snp_effects_
        rel_note = f"{geno.n} individuals x {geno.p} SNPs, solved in {est.space_} space"
        G, g_note = _report_grm(s, geno)
        extra.update({"sigma2_beta": est.sigma2_beta_, "sigma2_g": est.sigma2_g_})
        label = "SNP-BLUP"
    else:
        if pedigree is None:
            raise CLIError("pblup needs --pedigree FILE")
        with s.step("Reading pedigree"):
            ped, notes = read_pedigree_file(
                pedigree,
                *_ped_cols(ped_columns),
                selfing=selfing,
                missing=opts["missing_parent"],
                birth_year=opts["birth_year"],
            )
            s.add_input("pedigree", pedigree)  # once, with or without reader notes
        for note in notes:
            s.warn(note)
        est = PedigreeBLUP(method=method, fixed=fixed, missing=missing)
        with s.step("Fitting pedigree BLUP (A⁻¹)", counted="REML steps"):
            est.fit(ped, y, data=data)
        rel_note = f"pedigree of {len(ped.ids)} animals (sparse A⁻¹)"
        label = "pedigree BLUP"
    res = est.result_
    s.notes += list(res.notes)
    if not quiet:
        s.stdout.print(res.summary())
        s.stdout.print(f"\nh² = {est.h2_:.4f} (SE {est.h2_se_:.4f})")
    with s.step("Writing outputs"):
        s.write_csv(vc_table(res.variance_components), "variance_components.csv")
        s.write_csv(fe_table(res.fixed_effects), "fixed_effects.csv")
        s.write_csv(bv_table(est.gebv_), "breeding_values.csv")
        if snp_effects is not None:
            s.write_csv(snp_effects.assign(fit_id=s.run_id), "snp_effects.csv")
        _write_model(
            s,
            est,
            kind,
            trait,
            {
                "h2": est.h2_,
                "h2_se": est.h2_se_,
                "n_snps": None if snp_effects is None else len(snp_effects),
                **{k: v for k, v in extra.items() if k != "genotypes"},
            },
        )
        rep = Report(f"{label}: {trait}", f"{Path(phenotypes).name} — {rel_note}")
        add_genetic(
            rep, est, label, trait, y, G=G, snp_effects=snp_effects, top=top, relationship_note=rel_note, g_note=g_note
        )
        if kind == "pblup":
            add_pedigree_summary(rep, ped, phenotyped=y.index[y.notna()])
        if geno is not None:
            add_genotype_qc(rep, geno)
        if gwas:  # back-solved SNP tests of this fit (henderson.association)
            from .gwas_cmd import association_outputs

            extra.update(association_outputs(s, rep, est, geno, trait, window=window, top=top))
        rep.write(s.outdir() / "report.html")
        s.outputs.append("report.html")
        s.write_summary({"fit": res.to_dict(), "h2": est.h2_, "h2_se": est.h2_se_, **extra})
    s.done()


def gblup(
    phenotypes: PhenoOpt,
    trait: TraitsOpt,
    out: OutOpt,
    genotypes: GenoOpt = None,
    grm: Annotated[
        Path | None,
        typer.Option(
            "--grm",
            help="A precomputed relationship matrix instead of genotypes: square CSV with an id column, or a GCTA .grm prefix.",
        ),
    ] = None,
    grm_method: Annotated[
        str, typer.Option("--grm-method", help="vanraden1, vanraden2, yang or vitezica.")
    ] = "vanraden1",
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
    if len(trait) > 1:
        from .multitrait_cmd import run_multitrait

        return run_multitrait(
            "gblup",
            Session("gblup", quiet, debug, threads, out, trait=",".join(trait), force=force),
            phenotypes,
            trait,
            id_column,
            fixed,
            genotypes=genotypes,
            grm=grm,
            grm_method=grm_method,
            coding=coding,
            method=method,
        )
    run_genetic(
        "gblup",
        phenotypes,
        trait[0],
        id_column,
        fixed,
        out,
        genotypes,
        None,
        grm,
        grm_method,
        "id,sire,dam",
        method,
        drop_unknown,
        top,
        coding,
        quiet,
        debug,
        threads,
        gwas=gwas,
        window=window,
        force=force,
        inputs=input_options(na_values, decimal, maf=maf, call_rate=call_rate, repeated_records=repeated_records),
    )


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
    if len(trait) > 1:
        from .multitrait_cmd import run_multitrait

        return run_multitrait(
            "snpblup",
            Session("snpblup", quiet, debug, threads, out, trait=",".join(trait), force=force),
            phenotypes,
            trait,
            id_column,
            fixed,
            genotypes=genotypes,
            coding=coding,
            method=method,
        )
    run_genetic(
        "snpblup",
        phenotypes,
        trait[0],
        id_column,
        fixed,
        out,
        genotypes,
        None,
        None,
        "vanraden1",
        "id,sire,dam",
        method,
        drop_unknown,
        top,
        coding,
        quiet,
        debug,
        threads,
        gwas=gwas,
        window=window,
        force=force,
        inputs=input_options(na_values, decimal, maf=maf, call_rate=call_rate, repeated_records=repeated_records),
    )


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
    if len(trait) > 1:
        from .multitrait_cmd import run_multitrait

        return run_multitrait(
            "pblup",
            Session("pblup", quiet, debug, threads, out, trait=",".join(trait), force=force),
            phenotypes,
            trait,
            id_column,
            fixed,
            pedigree=pedigree,
            ped_columns=ped_columns,
            selfing=selfing,
            method=method,
        )
    run_genetic(
        "pblup",
        phenotypes,
        trait[0],
        id_column,
        fixed,
        out,
        None,
        pedigree,
        None,
        "vanraden1",
        ped_columns,
        method,
        drop_unknown,
        top,
        None,
        quiet,
        debug,
        threads,
        selfing=selfing,
        force=force,
        inputs=input_options(na_values, decimal, missing_parent, birth_year, repeated_records=repeated_records),
    )


def predict(
    model: Annotated[
        Path,
        typer.Option(
            "--model",
            "-m",
            help="Output directory of 'henderson snpblup' (or gblup on genotypes) holding snp_effects.csv.",
        ),
    ],
    genotypes: Annotated[
        Path, typer.Option("--genotypes", "-g", help="Genotypes of the individuals to score (same SNP ids).")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Output FILE (not a directory), a CSV: id, gebv[, predicted_phenotype]. Replaced only at the end of a successful run.",
        ),
    ],
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

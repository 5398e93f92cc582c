"""``henderson cv``: k-fold cross-validation of GBLUP, SNP-BLUP or pedigree BLUP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import DebugOpt, ForceOpt, OutDirOpt, QuietOpt, SchedulerOpt, Session, ThreadsOpt
from .genetic_cmd import (
    CallRateOpt,
    CodingOpt,
    DecimalOpt,
    DropOpt,
    FixedOpt,
    IdOpt,
    MafOpt,
    MethodOpt,
    MissingParentOpt,
    NaValuesOpt,
    PedColsOpt,
    PhenoOpt,
    RepeatedOpt,
    SelfingOpt,
    TraitsOpt,
    input_options,
)


def cv(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="gblup, snpblup, pblup or ssgblup (validated on young genotyped animals against pedigree BLUP).",
        ),
    ],
    phenotypes: PhenoOpt,
    trait: TraitsOpt,
    out: OutDirOpt,
    genotypes: Annotated[
        Path | None,
        typer.Option(
            "--genotypes",
            "-g",
            help="Genotypes (gblup, snpblup): PLINK prefix or .bed, VCF, or CSV/TSV matrix (first column id).",
        ),
    ] = None,
    pedigree: Annotated[Path | None, typer.Option("--pedigree", help="Pedigree file (pblup, ssgblup).")] = None,
    grm: Annotated[
        Path | None,
        typer.Option("--grm", help="gblup with a precomputed relationship matrix (CSV with id column or GCTA prefix)."),
    ] = None,
    folds: Annotated[int, typer.Option("--folds", "-k", min=2, help="Number of folds.")] = 5,
    repeats: Annotated[int, typer.Option("--repeats", "-r", min=1, help="Repeats with new random folds.")] = 1,
    leave_one_out: Annotated[
        bool,
        typer.Option(
            "--leave-one-out",
            "--loo",
            help="Leave-one-out (overrides --folds, --repeats); metrics are pooled over all predictions.",
        ),
    ] = False,
    groups: Annotated[
        str | None,
        typer.Option(
            "--groups",
            help="Column of the phenotype file: individuals sharing a value are kept in the same fold (e.g. family).",
        ),
    ] = None,
    fold_column: Annotated[
        str | None,
        typer.Option(
            "--fold-column", help="Column of the phenotype file with given fold labels (overrides --folds, --repeats)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the fold assignment.")] = 0,
    fixed_variances: Annotated[
        bool,
        typer.Option(
            "--fixed-variances",
            help="Keep the full-data REML variances in every fold (faster) instead of re-estimating them.",
        ),
    ] = False,
    id_column: IdOpt = "id",
    fixed: FixedOpt = None,
    method: MethodOpt = "reml",
    drop_unknown: DropOpt = False,
    coding: CodingOpt = None,
    ped_columns: PedColsOpt = "id,sire,dam",
    selfing: SelfingOpt = False,
    grm_method: Annotated[
        str,
        typer.Option("--grm-method", help="G method for gblup on genotypes: vanraden1, vanraden2, yang or vitezica."),
    ] = "vanraden1",
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Folds fitted in parallel.")] = 1,
    birth_year: Annotated[
        str | None,
        typer.Option(
            "--birth-year",
            help="Column with birth years: for ssgblup, of the phenotype file (validate forward in time on the genotyped animals born in or after --cutoff-year, default the last year); for pblup, of the pedigree file (a parent born after its offspring is an error).",
        ),
    ] = None,
    cutoff_year: Annotated[
        float | None,
        typer.Option("--cutoff-year", help="ssgblup with --birth-year: first birth year of the validation animals."),
    ] = None,
    na_values: NaValuesOpt = None,
    decimal: DecimalOpt = ".",
    repeated_records: RepeatedOpt = False,
    missing_parent: MissingParentOpt = None,
    maf: MafOpt = None,
    call_rate: CallRateOpt = None,
    design: Annotated[
        str,
        typer.Option(
            "--design",
            help="Multi-trait (several --trait): CV1 (new lines) or CV2 (trait-assisted: --target masked on the test lines, the other traits kept).",
        ),
    ] = "CV1",
    target: Annotated[
        str | None,
        typer.Option("--target", help="CV2: the trait masked on the test lines (default: each trait in turn)."),
    ] = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    threads: ThreadsOpt = None,
    scheduler: SchedulerOpt = None,
):
    """Cross-validate a genomic or pedigree model: out-of-fold predictions, per-fold predictive ability, report.

    The model and input options (--fixed, --method, --drop-unknown, --coding, --ped-columns,
    --selfing, --grm-method, --na-values, --decimal, --repeated-records, --missing-parent,
    --birth-year, --maf, --call-rate) mean what they mean for gblup, snpblup and pblup.

    Example: henderson cv --model gblup --phenotypes pheno.csv --trait env1 --genotypes geno.csv --folds 5 --repeats 10 --out cv
    """
    from ._cv import run_cv

    session = Session("cv", quiet, debug, threads, out, trait=",".join(trait), force=force)
    if len(trait) > 1:
        from ._errors import CLIError
        from .multitrait_cmd import run_multitrait_cv

        if model != "gblup":
            raise CLIError("multi-trait cross-validation (several --trait) supports --model gblup so far")
        return run_multitrait_cv(
            session,
            phenotypes=phenotypes,
            traits=trait,
            genotypes=genotypes,
            grm=grm,
            folds="loo" if leave_one_out else folds,
            repeats=repeats,
            seed=seed,
            id_column=id_column,
            grm_method=grm_method,
            coding=coding,
            design=design.upper(),
            target=target,
        )
    single = trait[0]
    if model.lower() == "ssgblup":
        from .ssgblup_cmd import run_cv_ssgblup

        return run_cv_ssgblup(
            session,
            phenotypes=phenotypes,
            trait=single,
            genotypes=genotypes,
            pedigree=pedigree,
            birth_year=birth_year,
            cutoff=cutoff_year,
            refit=not fixed_variances,
            id_column=id_column,
            ped_columns=ped_columns,
            fixed=fixed,
            method=method,
            drop_unknown=drop_unknown,
            coding=coding,
        )
    run_cv(
        session,
        model=model,
        phenotypes=phenotypes,
        trait=single,
        genotypes=genotypes,
        pedigree=pedigree,
        grm=grm,
        folds="loo" if leave_one_out else folds,
        repeats=repeats,
        groups=groups,
        fold_column=fold_column,
        seed=seed,
        refit=not fixed_variances,
        id_column=id_column,
        ped_columns=ped_columns,
        grm_method=grm_method,
        jobs=jobs,
        fixed=fixed,
        method=method,
        drop_unknown=drop_unknown,
        coding=coding,
        selfing=selfing,
        scheduler=scheduler,
        inputs=input_options(na_values, decimal, missing_parent, birth_year, maf, call_rate, repeated_records),
    )

"""``henderson cv``: k-fold cross-validation of GBLUP, SNP-BLUP or pedigree BLUP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import DebugOpt, ForceOpt, OutDirOpt, QuietOpt, SchedulerOpt, Session, ThreadsOpt
from ._steps import GeneticOptions, input_options
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
)

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        help="gblup, snpblup, pblup or ssgblup (validated on young genotyped animals against pedigree BLUP).",
    ),
]
GenotypesOpt = Annotated[
    Path | None,
    typer.Option(
        "--genotypes",
        "-g",
        help="Genotypes (gblup, snpblup): PLINK prefix or .bed, VCF, or CSV/TSV matrix (first column id).",
    ),
]
PedigreeOpt = Annotated[Path | None, typer.Option("--pedigree", help="Pedigree file (pblup, ssgblup).")]
GrmOpt = Annotated[
    Path | None,
    typer.Option("--grm", help="gblup with a precomputed relationship matrix (CSV with id column or GCTA prefix)."),
]
FoldsOpt = Annotated[int, typer.Option("--folds", "-k", min=2, help="Number of folds.")]
RepeatsOpt = Annotated[int, typer.Option("--repeats", "-r", min=1, help="Repeats with new random folds.")]
LeaveOneOutOpt = Annotated[
    bool,
    typer.Option(
        "--leave-one-out",
        "--loo",
        help="Leave-one-out (overrides --folds, --repeats); metrics are pooled over all predictions.",
    ),
]
GroupsOpt = Annotated[
    str | None,
    typer.Option(
        "--groups",
        help="Column of the phenotype file: individuals sharing a value are kept in the same fold (e.g. family).",
    ),
]
FoldColumnOpt = Annotated[
    str | None,
    typer.Option(
        "--fold-column", help="Column of the phenotype file with given fold labels (overrides --folds, --repeats)."
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed of the fold assignment.")]
FixedVariancesOpt = Annotated[
    bool,
    typer.Option(
        "--fixed-variances",
        help="Keep the full-data REML variances in every fold (faster) instead of re-estimating them.",
    ),
]
GrmMethodOpt = Annotated[
    str,
    typer.Option("--grm-method", help="G method for gblup on genotypes: vanraden1, vanraden2, yang or vitezica."),
]
JobsOpt = Annotated[int, typer.Option("--jobs", "-j", min=1, help="Folds fitted in parallel.")]
CVBirthYearOpt = Annotated[
    str | None,
    typer.Option(
        "--birth-year",
        help="Column with birth years: for ssgblup, of the phenotype file (validate forward in time on the genotyped animals born in or after --cutoff-year, default the last year); for pblup, of the pedigree file (a parent born after its offspring is an error).",
    ),
]
CutoffYearOpt = Annotated[
    float | None,
    typer.Option("--cutoff-year", help="ssgblup with --birth-year: first birth year of the validation animals."),
]
DesignOpt = Annotated[
    str,
    typer.Option(
        "--design",
        help="Multi-trait (several --trait): CV1 (new lines) or CV2 (trait-assisted: --target masked on the test lines, the other traits kept).",
    ),
]
TargetOpt = Annotated[
    str | None,
    typer.Option("--target", help="CV2: the trait masked on the test lines (default: each trait in turn)."),
]


def cv(
    model: ModelOpt,
    phenotypes: PhenoOpt,
    trait: TraitsOpt,
    out: OutDirOpt,
    genotypes: GenotypesOpt = None,
    pedigree: PedigreeOpt = None,
    grm: GrmOpt = None,
    folds: FoldsOpt = 5,
    repeats: RepeatsOpt = 1,
    leave_one_out: LeaveOneOutOpt = False,
    groups: GroupsOpt = None,
    fold_column: FoldColumnOpt = None,
    seed: SeedOpt = 0,
    fixed_variances: FixedVariancesOpt = False,
    id_column: IdOpt = "id",
    fixed: FixedOpt = None,
    method: MethodOpt = "reml",
    drop_unknown: DropOpt = False,
    coding: CodingOpt = None,
    ped_columns: PedColsOpt = "id,sire,dam",
    selfing: SelfingOpt = False,
    grm_method: GrmMethodOpt = "vanraden1",
    jobs: JobsOpt = 1,
    birth_year: CVBirthYearOpt = None,
    cutoff_year: CutoffYearOpt = None,
    na_values: NaValuesOpt = None,
    decimal: DecimalOpt = ".",
    repeated_records: RepeatedOpt = False,
    missing_parent: MissingParentOpt = None,
    maf: MafOpt = None,
    call_rate: CallRateOpt = None,
    design: DesignOpt = "CV1",
    target: TargetOpt = None,
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
    from ._cv import CVOptions, run_cv

    session = Session("cv", quiet, debug, threads, out, trait=",".join(trait), force=force)
    o = GeneticOptions(
        phenotypes,
        trait[0],
        id_column,
        fixed,
        method,
        drop_unknown,
        genotypes=genotypes,
        pedigree=pedigree,
        grm=grm,
        grm_method=grm_method,
        ped_columns=ped_columns,
        coding=coding,
        selfing=selfing,
        inputs=input_options(na_values, decimal, missing_parent, birth_year, maf, call_rate, repeated_records),
    )
    c = CVOptions(
        "loo" if leave_one_out else folds, repeats, groups, fold_column, seed, not fixed_variances, jobs, scheduler
    )
    if len(trait) > 1:
        return _cv_multitrait(session, model, trait, o, c, design, target)
    if model.lower() == "ssgblup":
        return _cv_ssgblup(session, o, c, birth_year, cutoff_year)
    run_cv(session, model, o, c)


def _cv_multitrait(session: Session, model: str, traits: list[str], o: GeneticOptions, c, design: str, target):
    """Multi-trait CV (several --trait): CV1 or CV2 of multi-trait GBLUP."""
    from ._errors import CLIError
    from .multitrait_cmd import run_multitrait_cv

    if model != "gblup":
        raise CLIError("multi-trait cross-validation (several --trait) supports --model gblup so far")
    return run_multitrait_cv(
        session,
        phenotypes=o.phenotypes,
        traits=traits,
        genotypes=o.genotypes,
        grm=o.grm,
        folds=c.folds,
        repeats=c.repeats,
        seed=c.seed,
        id_column=o.id_column,
        grm_method=o.grm_method,
        coding=o.coding,
        design=design.upper(),
        target=target,
    )


def _cv_ssgblup(session: Session, o: GeneticOptions, c, birth_year, cutoff_year):
    """Single-step GBLUP validated on young genotyped animals against pedigree BLUP."""
    from .ssgblup_cmd import run_cv_ssgblup

    return run_cv_ssgblup(session, o, birth_year=birth_year, cutoff=cutoff_year, refit=c.refit)

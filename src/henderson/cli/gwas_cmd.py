"""``henderson gwas``: SNP association from phenotypes and genotypes, with a report.

Also the shared step behind ``--gwas`` of ``gblup`` and ``snpblup``
(:func:`association_outputs`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import DebugOpt, ForceOpt, OutDirOpt, QuietOpt, Session, ThreadsOpt
from ._errors import CLIError
from ._inputs import read_genotypes_file, read_phenotypes
from .genetic_cmd import CodingOpt, DropOpt, FixedOpt, IdOpt, PhenoOpt, TopOpt, TraitOpt

WindowOpt = Annotated[
    str | None,
    typer.Option(
        "--window", help="Windows for the share of genetic variance: SNPs (50, 50snps) or base pairs (1Mb, 500kb)."
    ),
]


def association_outputs(
    s: Session,
    report,
    model,
    genotypes,
    trait: str,
    *,
    method: str = "backsolve",
    p3d: bool = True,
    loco: bool = False,
    window: str | None = None,
    fixed=None,
    data=None,
    missing: str = "error",
    top: int = 20,
    effects_model=None,
) -> dict:
    """Run association, write ``association.csv`` (and ``windows.csv``), add the report section.

    ``effects_model``: a fitted GBLUP/SNP-BLUP whose back-solved effects feed the windows
    (default ``model`` when it is one).
    """
    from ..gwas import association, parse_window, variance_windows
    from ..gwas.report import add_association, top_hits

    if window is not None:
        parse_window(window)  # a bad --window fails before the long steps
    with s.step(f"Association ({method})", counted="SNPs"):
        table = association(
            model, genotypes, method=method, p3d=p3d, loco=loco, fixed=fixed, data=data, missing=missing
        )
    for note in table.attrs["notes"]:
        s.notes.append(note)
    windows = None
    if window is not None:
        src = effects_model if effects_model is not None else model
        effects = table if method == "backsolve" and src is model else association(src, genotypes)
        with s.step("Windows of genetic variance"):
            windows = variance_windows(effects, genotypes, window)
        s.write_csv(windows, "windows.csv")
    s.write_csv(table, "association.csv")
    add_association(report, table, windows, trait=trait, top=top)
    hits = top_hits(table, 10)
    if not s.quiet:
        s.stdout.print(f"\nAssociation: {table.attrs['method']}")
        s.stdout.print(f"genomic control lambda = {table.attrs['lambda_gc']:.4f}; top SNPs:")
        s.stdout.print(hits.to_string(index=False))
    return {
        "association": {
            "method": table.attrs["method"],
            "lambda_gc": table.attrs["lambda_gc"],
            "n_snps": len(table),
            "n_tested": int(table["tested"].sum()),
            "window": window,
            "top": hits.to_dict(orient="records"),
        }
    }


GwasGenotypesOpt = Annotated[
    Path,
    typer.Option(
        "--genotypes",
        "-g",
        help="Genotypes: PLINK prefix or .bed (read block by block with --method mlma), VCF, or CSV/TSV matrix.",
    ),
]
GwasMethodOpt = Annotated[
    str,
    typer.Option(
        "--method",
        help="backsolve (SNP effects of a GBLUP fit and their exact SEs) or mlma (each SNP a fixed effect in the mixed model).",
    ),
]
ExactOpt = Annotated[
    bool,
    typer.Option(
        "--exact",
        help="mlma: re-estimate the variance ratio by REML for every SNP (as GEMMA -lmm 1) instead of once in the null model (P3D).",
    ),
]
LocoOpt = Annotated[
    bool,
    typer.Option("--loco", help="mlma: leave the tested SNP's chromosome out of G (needs a map and 2+ chromosomes)."),
]


def gwas(
    phenotypes: PhenoOpt,
    trait: TraitOpt,
    out: OutDirOpt,
    genotypes: GwasGenotypesOpt,
    method: GwasMethodOpt = "backsolve",
    exact: ExactOpt = False,
    loco: LocoOpt = False,
    window: WindowOpt = None,
    id_column: IdOpt = "id",
    fixed: FixedOpt = None,
    drop_unknown: DropOpt = False,
    coding: CodingOpt = None,
    top: TopOpt = 20,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    threads: ThreadsOpt = None,
):
    """Genome-wide association: back-solved GBLUP tests or MLMA, Manhattan and QQ plots, windows.

    Example: henderson gwas --phenotypes pheno.csv --trait bmi --genotypes mice.bed --method mlma --loco --window 1Mb --out gwas
    """
    from ..report.html import Report

    method = _checked_gwas_method(method, exact, loco, window)
    s = Session("gwas", quiet, debug, threads, out, trait=trait, force=force)
    missing = "drop" if drop_unknown else "error"
    s.settings.update(
        {
            "trait": trait,
            "id_column": id_column,
            "fixed": fixed,
            "method": method,
            "p3d": not exact,
            "loco": loco,
            "window": window,
            "missing": missing,
        }
    )
    with s.step("Reading phenotypes"):
        y, data, _ = read_phenotypes(phenotypes, trait, id_column, fixed)
        s.add_input("phenotypes", phenotypes)
    geno = _gwas_genotypes(s, genotypes, coding, streamed=method == "mlma" and window is None)
    rep = Report(f"Association: {trait}", f"{Path(phenotypes).name}, {Path(genotypes).name}")
    gb = None
    if method == "backsolve" or window is not None:
        gb = _fit_gblup_section(s, rep, geno, y, data, fixed, missing)
    if method == "backsolve":
        summary = association_outputs(s, rep, gb, geno, trait, window=window, top=top)
    else:
        summary = association_outputs(
            s,
            rep,
            y,
            geno,
            trait,
            method="mlma",
            p3d=not exact,
            loco=loco,
            window=window,
            fixed=fixed,
            data=data,
            missing=missing,
            top=top,
            effects_model=gb,
        )
    with s.step("Writing outputs"):
        rep.write(s.outdir() / "report.html")
        s.outputs.append("report.html")
        s.write_summary(summary)
    s.done()


def _checked_gwas_method(method: str, exact: bool, loco: bool, window) -> str:
    """--method in lower case, and the options that go with it; checked before reading."""
    method = method.lower()
    if method not in ("backsolve", "mlma"):
        raise CLIError(f"--method must be backsolve or mlma, not {method!r}")
    if method == "backsolve" and (exact or loco):
        raise CLIError("--exact and --loco are options of --method mlma")
    if window is not None:
        from ..gwas import parse_window

        parse_window(window)  # before reading and fitting
    return method


def _gwas_genotypes(s: Session, genotypes: Path, coding, *, streamed: bool):
    """The genotypes, or the path of a PLINK fileset that MLMA reads block by block
    (``streamed``: memory stays bounded)."""
    from ..io.genotypes import genotype_format

    gpath = Path(genotypes)
    if (
        streamed
        and (gpath.suffix == ".bed" or Path(str(gpath) + ".bed").exists())
        and genotype_format(gpath) == "plink"
    ):
        s.add_input("genotypes", genotypes)
        return gpath
    with s.step("Reading genotypes"):
        geno = read_genotypes_file(genotypes, coding)
        s.add_input("genotypes", genotypes)
    return geno


def _fit_gblup_section(s: Session, rep, geno, y, data, fixed, missing):
    """GBLUP on the genotypes (the back-solved tests, or MLMA's window effects), and its
    variances in the report."""
    from ..estimators import GBLUP

    gb = GBLUP(fixed=fixed, missing=missing)
    with s.step("Fitting GBLUP", counted="REML steps"):
        gb.fit(geno, y, data=data)
    s.notes += list(gb.result_.notes)
    vc = gb.variance_components_
    rep.section("Genomic model")
    rep.kv(
        {
            "sigma2_g": f"{vc['variance'].iloc[0]:.6g}",
            "sigma2_e": f"{vc.loc['Residual', 'variance']:.6g}",
            "h2": f"{gb.h2_:.4f} (SE {gb.h2_se_:.4f})",
        }
    )
    return gb

"""``henderson fit``: a general linear mixed model from an lme4-style formula."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from ..spec.formula import formula_variables, parse_formula, random_groups, response_of
from ._common import DebugOpt, ForceOpt, OutDirOpt, QuietOpt, Session, ThreadsOpt, bv_table, fe_table, vc_table
from ._errors import CLIError
from ._inputs import (
    count_response_codes,
    read_genotypes_file,
    read_pedigree_file,
    read_relationship_file,
    read_table,
    require_columns,
    require_numeric,
)
from ._steps import input_options
from .genetic_cmd import (
    CodingOpt,
    DecimalOpt,
    GrmMethodOpt,
    MethodOpt,
    NaValuesOpt,
    PedColsOpt,
    SelfingOpt,
    TopOpt,
)


def _choose_term(groups: list[str], wanted: str | None, option: str, default: str = "id") -> str:
    if wanted:
        if wanted not in groups:
            raise CLIError(
                f"{option} {wanted!r} is not a random term of the formula; random terms: {', '.join(groups) or 'none'}"
            )
        return wanted
    if default in groups:
        return default
    if len(groups) == 1:
        return groups[0]
    raise CLIError(
        f"the formula has several random terms ({', '.join(groups)}); say which one "
        f"carries the relationship with {option}"
    )


def _known_levels(s: Session, frame, rels: dict, sources: dict, data: Path, drop: bool, terms: dict):
    """Records whose level of a term is absent from its relationship matrix: an error
    naming them (the default) or, with --drop-unknown, dropped and counted.

    ``terms`` maps term names to their parsed terms; the level of an interaction ``a:b``
    is ``"<a>:<b>"``, as :func:`henderson.fit` labels it.
    """
    import pandas as pd

    from ..errors import AlignmentError, format_ids
    from ..spec.model import term_labels

    keep = pd.Series(True, index=frame.index)
    for term, rel in rels.items():
        cols = list(terms[term].columns)
        missing = frame[cols].isna().any(axis=1)
        labels = pd.Series(term_labels(frame, terms[term]), index=frame.index).where(~missing)
        unknown = labels.notna() & ~labels.astype(str).isin(pd.Index(rel.ids).astype(str))
        if not unknown.any():
            continue
        ids = pd.unique(labels[unknown].astype(str))
        what = (
            f"{int(unknown.sum())} record(s) of {len(ids)} level(s) of {term!r} not in {sources[term]}: "
            f"{format_ids(ids)}"
        )
        if not drop:
            raise AlignmentError(f"{data}: {what}; pass --drop-unknown to drop them")
        s.warn(f"{data}: dropped {what}")
        keep &= ~unknown
    if keep.all():
        return frame
    if not keep.any():
        raise AlignmentError(f"{data}: no record left after --drop-unknown")
    return frame[keep.to_numpy()]


FitDataOpt = Annotated[Path, typer.Option("--data", "-d", help="Records: CSV/TSV with a header (delimiter detected).")]
FitFormulaOpt = Annotated[
    str, typer.Option("--formula", "-f", help='lme4-style formula, e.g. "Yield ~ Env + (1|Name)".')
]
FitCovOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--cov",
        help="TERM=FILE: known covariance of a random term's levels, a square CSV matrix "
        "whose first column holds the ids (or a GCTA .grm prefix). Repeatable.",
    ),
]
FitPedigreeOpt = Annotated[
    Path | None,
    typer.Option(
        "--pedigree",
        help="Pedigree file (id, sire, dam): A⁻¹ is attached to the term named 'id' (or --pedigree-term).",
    ),
]
FitPedigreeTermOpt = Annotated[str | None, typer.Option("--pedigree-term", help="Random term that gets A⁻¹.")]
FitGenotypesOpt = Annotated[
    Path | None,
    typer.Option(
        "--genotypes",
        help="Genotypes (PLINK prefix/.bed, VCF, CSV matrix): G is attached to the term "
        "named 'id' (or --genotypes-term).",
    ),
]
FitGenotypesTermOpt = Annotated[str | None, typer.Option("--genotypes-term", help="Random term that gets G.")]
FitWeightsOpt = Annotated[
    str | None, typer.Option("--weights", help="Column of record weights: var(e_i) = sigma2_e / w_i.")
]
FitResidualOpt = Annotated[
    str | None,
    typer.Option("--residual", help="Column whose levels each get their own residual variance (e.g. Env)."),
]
FitCorrelatedOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--correlated",
        help="TERM1,TERM2: two random intercept terms sharing levels with an "
        "unstructured 2 x 2 covariance (direct and maternal). Repeatable.",
    ),
]
FitDropUnknownOpt = Annotated[
    bool,
    typer.Option(
        "--drop-unknown",
        help="Drop (and count) records whose level of a term with --pedigree, --genotypes "
        "or --cov is missing from that file, instead of stopping.",
    ),
]


def fit(
    data: FitDataOpt,
    formula: FitFormulaOpt,
    out: OutDirOpt,
    cov: FitCovOpt = None,
    pedigree: FitPedigreeOpt = None,
    pedigree_term: FitPedigreeTermOpt = None,
    genotypes: FitGenotypesOpt = None,
    genotypes_term: FitGenotypesTermOpt = None,
    coding: CodingOpt = None,
    grm_method: GrmMethodOpt = "vanraden1",
    ped_columns: PedColsOpt = "id,sire,dam",
    selfing: SelfingOpt = False,
    method: MethodOpt = "reml",
    weights: FitWeightsOpt = None,
    residual: FitResidualOpt = None,
    correlated: FitCorrelatedOpt = None,
    drop_unknown: FitDropUnknownOpt = False,
    top: TopOpt = 20,
    na_values: NaValuesOpt = None,
    decimal: DecimalOpt = ".",
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    threads: ThreadsOpt = None,
):
    """Fit a linear mixed model by REML (or ML) and write tables, summary.json and report.html.

    Example: henderson fit --data DT_example.csv --formula "Yield ~ Env + (1|Name)" --out potato

    Structured terms as in lme4/glmmTMB: "Reaction ~ Days + (Days|Subject)",
    "Yield ~ Env + us(0 + Env|Name)" (also diag, cs, fa(0 + Env|Name, 1)); with
    --residual Env one residual variance per environment.
    """
    from ..api import fit as api_fit

    s = Session("fit", quiet, debug, threads, out, trait=response_of(formula) if "~" in formula else None, force=force)
    method = method.lower()
    if method not in ("reml", "ml"):
        raise CLIError(f"--method must be reml or ml, not {method!r}")
    if "~" not in formula:
        raise CLIError(f"--formula {formula!r} has no '~' (write e.g. \"Yield ~ Env + (1|Name)\")")
    groups = random_groups(formula)  # grouping columns: read as text labels
    terms = {t.name: t for t in parse_formula(formula, multitrait=True).random}
    s.settings.update(
        {"formula": formula, "method": method, "grm_method": grm_method, "missing": "drop" if drop_unknown else "error"}
    )
    frame = _read_data(s, data, formula, groups, weights, residual, input_options(na_values, decimal))
    rels = _read_relationships(
        s,
        list(terms),
        cov=cov,
        pedigree=pedigree,
        pedigree_term=pedigree_term,
        ped_columns=ped_columns,
        selfing=selfing,
        genotypes=genotypes,
        genotypes_term=genotypes_term,
        coding=coding,
        grm_method=grm_method,
    )
    file_frame = frame  # the report counts what was used against the whole file
    frame = _known_levels(s, frame, {**rels.covs, **rels.covs_inv}, rels.sources, data, drop_unknown, terms)
    with s.step("Fitting (REML)" if method == "reml" else "Fitting (ML)", counted="REML steps"):
        pairs = [tuple(p.strip() for p in c.split(",")) for c in correlated or []]
        res = api_fit(
            formula,
            frame,
            cov=rels.covs or None,
            cov_inverse=rels.covs_inv or None,
            method=method,
            weights=weights,
            residual=residual,
            correlated=pairs or None,
        )
    _write_outputs(s, res, formula, data, file_frame, frame, groups, rels, top)
    s.done()


def _read_data(s: Session, data: Path, formula: str, groups: list, weights, residual, opts: dict):
    """Step "read inputs" (the data file): every column the formula names must be there;
    grouping columns are read as text labels."""
    with s.step("Reading data"):
        frame = read_table(
            data, str_columns=groups, what="data file", na_values=opts["na_values"], decimal=opts["decimal"]
        )
        s.add_input("data", data)
        require_columns(frame, formula_variables(formula), option="--formula")
        require_columns(frame, [c for c in (weights, residual) if c], option="--weights/--residual")
        response = response_of(formula)
        if response in frame:  # (a transformed response, log(y), is the formula engine's to check)
            require_numeric(frame, response, "--formula", id_column=groups[0] if groups else None)
            count_response_codes(frame, response, id_column=groups[0] if groups else None)
        for g in groups:  # grouping factors are labels, never numbers
            frame[g] = frame[g].astype(object).where(frame[g].isna(), frame[g].astype(str))
    return frame


@dataclass
class _Relationships:
    """Known covariances (``cov=``) and inverses (``cov_inverse=``) by term, with what the
    report says of each, and the pedigree / genotypes read for its sections."""

    covs: dict = field(default_factory=dict)
    covs_inv: dict = field(default_factory=dict)
    genetic: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    ped: Any = None
    geno: Any = None
    pedigree_term: str | None = None


def _read_relationships(
    s: Session,
    terms: list[str],
    *,
    cov,
    pedigree,
    pedigree_term,
    ped_columns,
    selfing,
    genotypes,
    genotypes_term,
    coding,
    grm_method,
) -> _Relationships:
    """Step "read inputs" (relationships): --cov files, a pedigree (A⁻¹), genotypes (G)."""
    r = _Relationships()
    _read_cov_files(s, r, terms, cov or [])
    if pedigree is not None:
        _read_pedigree_inverse(
            s, r, _choose_term(terms, pedigree_term, "--pedigree-term"), pedigree, ped_columns, selfing
        )
    if genotypes is not None:
        term = _choose_term(terms, genotypes_term, "--genotypes-term")
        with s.step("Reading genotypes and building G", counted="SNPs"):
            from ..relationships.genomic import genomic_relationship

            r.geno = read_genotypes_file(genotypes, coding)
            r.covs[term] = genomic_relationship(r.geno, method=grm_method)
            s.add_input("genotypes", genotypes)
        r.genetic[term] = f"genomic G ({grm_method})"
        r.sources[term] = f"the genotypes {genotypes}"
    overlap = set(r.covs) & set(r.covs_inv)
    if overlap:
        raise CLIError(f"term {sorted(overlap)[0]!r} got two relationship matrices; give one")
    return r


def _read_cov_files(s: Session, r: _Relationships, terms: list[str], cov: list[str]) -> None:
    """--cov TERM=FILE: each term's covariance matrix, read from its file."""
    for item in cov:
        if "=" not in item:
            raise CLIError(f"--cov {item!r}: write TERM=FILE, e.g. --cov id=G.csv")
        term, path = item.split("=", 1)
        term = _choose_term(terms, term.strip(), "--cov")
        with s.step(f"Reading covariance of {term}"):
            r.covs[term] = read_relationship_file(path, kind="K")
            s.add_input(f"cov:{term}", path)
        r.genetic[term] = f"covariance from {Path(path).name}"
        r.sources[term] = f"--cov {path}"


def _read_pedigree_inverse(s: Session, r: _Relationships, term: str, pedigree, ped_columns, selfing) -> None:
    """--pedigree: the pedigree's A⁻¹ for ``term`` (its notes said as warnings)."""
    from ._steps import ped_cols

    cols = ped_cols(ped_columns)
    with s.step("Reading pedigree and building A⁻¹"):
        from ..relationships.pedigree import pedigree_inverse

        r.ped, notes = read_pedigree_file(pedigree, *cols, selfing=selfing)
        r.covs_inv[term] = pedigree_inverse(r.ped)
        s.add_input("pedigree", pedigree)
    for note in notes:
        s.warn(note)
    r.genetic[term] = "pedigree A"
    r.pedigree_term = term
    r.sources[term] = f"the pedigree {pedigree}"


def _write_outputs(s: Session, res, formula: str, data: Path, file_frame, frame, groups, rels: _Relationships, top):
    """Step "write outputs": the CSV tables, report.html and summary.json (trait x trait
    tables for a multi-trait formula)."""
    from ..multitrait import MultiTraitResult

    if isinstance(res, MultiTraitResult):  # cbind(y1, y2, ...) ~ ...: trait x trait tables
        from .multitrait_cmd import write_outputs

        write_outputs(s, res, "multi-trait model", "Multi-trait linear mixed model", f"{formula} — {Path(data).name}")
        return
    import pandas as pd

    from ..report.html import Report
    from ..report.sections import add_fit, add_genotype_qc, add_pedigree_summary

    s.stdout.print(res.summary())
    with s.step("Writing outputs"):
        s.write_csv(vc_table(res.variance_components), "variance_components.csv")
        s.write_csv(fe_table(res.fixed_effects), "fixed_effects.csv")
        bvs = pd.concat([bv_table(t, term) for term, t in res.blups.items()], ignore_index=True)
        s.write_csv(bvs, "breeding_values.csv")
        rep = Report("Linear mixed model", f"{formula} — {Path(data).name}")
        add_fit(rep, res, file_frame, formula, groups, rels.genetic, top=top)
        if rels.ped is not None:
            add_pedigree_summary(rep, rels.ped, phenotyped=frame[rels.pedigree_term].dropna())
        if rels.geno is not None:
            add_genotype_qc(rep, rels.geno)
        rep.write(s.outdir() / "report.html")
        s.outputs.append("report.html")
        s.notes += list(res.notes)
        s.write_summary({"fit": res.to_dict(), "relationships": rels.genetic})

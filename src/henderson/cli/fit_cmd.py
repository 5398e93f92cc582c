"""``henderson fit``: a general linear mixed model from an lme4-style formula."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
from .genetic_cmd import DecimalOpt, NaValuesOpt, SelfingOpt, input_options


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


def fit(
    data: Annotated[Path, typer.Option("--data", "-d", help="Records: CSV/TSV with a header (delimiter detected).")],
    formula: Annotated[str, typer.Option("--formula", "-f", help='lme4-style formula, e.g. "Yield ~ Env + (1|Name)".')],
    out: OutDirOpt,
    cov: Annotated[
        list[str] | None,
        typer.Option(
            "--cov",
            help="TERM=FILE: known covariance of a random term's levels, a square CSV matrix "
            "whose first column holds the ids (or a GCTA .grm prefix). Repeatable.",
        ),
    ] = None,
    pedigree: Annotated[
        Path | None,
        typer.Option(
            "--pedigree",
            help="Pedigree file (id, sire, dam): A⁻¹ is attached to the term named 'id' (or --pedigree-term).",
        ),
    ] = None,
    pedigree_term: Annotated[str | None, typer.Option("--pedigree-term", help="Random term that gets A⁻¹.")] = None,
    genotypes: Annotated[
        Path | None,
        typer.Option(
            "--genotypes",
            help="Genotypes (PLINK prefix/.bed, VCF, CSV matrix): G is attached to the term "
            "named 'id' (or --genotypes-term).",
        ),
    ] = None,
    genotypes_term: Annotated[str | None, typer.Option("--genotypes-term", help="Random term that gets G.")] = None,
    coding: Annotated[
        str | None,
        typer.Option(
            "--coding",
            help="Genotype coding of a CSV matrix: 012 (allele counts), -101, 01 (inbred lines, 0/1 = homozygous) or dosage (detected when unambiguous, with a warning).",
        ),
    ] = None,
    grm_method: Annotated[
        str, typer.Option("--grm-method", help="vanraden1, vanraden2, yang or vitezica.")
    ] = "vanraden1",
    ped_columns: Annotated[
        str, typer.Option("--ped-columns", help="Pedigree column names id,sire,dam.")
    ] = "id,sire,dam",
    selfing: SelfingOpt = False,
    method: Annotated[str, typer.Option("--method", help="reml or ml.")] = "reml",
    weights: Annotated[
        str | None, typer.Option("--weights", help="Column of record weights: var(e_i) = sigma2_e / w_i.")
    ] = None,
    residual: Annotated[
        str | None,
        typer.Option("--residual", help="Column whose levels each get their own residual variance (e.g. Env)."),
    ] = None,
    correlated: Annotated[
        list[str] | None,
        typer.Option(
            "--correlated",
            help="TERM1,TERM2: two random intercept terms sharing levels with an "
            "unstructured 2 x 2 covariance (direct and maternal). Repeatable.",
        ),
    ] = None,
    drop_unknown: Annotated[
        bool,
        typer.Option(
            "--drop-unknown",
            help="Drop (and count) records whose level of a term with --pedigree, --genotypes "
            "or --cov is missing from that file, instead of stopping.",
        ),
    ] = False,
    top: Annotated[int, typer.Option("--top", help="Rows of the ranking shown in the report.")] = 20,
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
    from ..report.html import Report
    from ..report.sections import add_fit, add_genotype_qc, add_pedigree_summary

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
    with s.step("Reading data"):
        opts = input_options(na_values, decimal)
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
    covs, covs_inv, genetic, sources = {}, {}, {}, {}
    ped = geno = pedigree_term_used = None
    for item in cov or []:
        if "=" not in item:
            raise CLIError(f"--cov {item!r}: write TERM=FILE, e.g. --cov id=G.csv")
        term, path = item.split("=", 1)
        term = _choose_term(list(terms), term.strip(), "--cov")
        with s.step(f"Reading covariance of {term}"):
            covs[term] = read_relationship_file(path, kind="K")
            s.add_input(f"cov:{term}", path)
        genetic[term] = f"covariance from {Path(path).name}"
        sources[term] = f"--cov {path}"
    if pedigree is not None:
        term = _choose_term(list(terms), pedigree_term, "--pedigree-term")
        from .genetic_cmd import _ped_cols

        cols = _ped_cols(ped_columns)
        with s.step("Reading pedigree and building A⁻¹"):
            from ..relationships.pedigree import pedigree_inverse

            ped, notes = read_pedigree_file(pedigree, *cols, selfing=selfing)
            covs_inv[term] = pedigree_inverse(ped)
            s.add_input("pedigree", pedigree)
        for note in notes:
            s.warn(note)
        genetic[term] = "pedigree A"
        pedigree_term_used = term
        sources[term] = f"the pedigree {pedigree}"
    if genotypes is not None:
        term = _choose_term(list(terms), genotypes_term, "--genotypes-term")
        with s.step("Reading genotypes and building G", counted="SNPs"):
            from ..relationships.genomic import genomic_relationship

            geno = read_genotypes_file(genotypes, coding)
            covs[term] = genomic_relationship(geno, method=grm_method)
            s.add_input("genotypes", genotypes)
        genetic[term] = f"genomic G ({grm_method})"
        sources[term] = f"the genotypes {genotypes}"
    overlap = set(covs) & set(covs_inv)
    if overlap:
        raise CLIError(f"term {sorted(overlap)[0]!r} got two relationship matrices; give one")
    file_frame = frame  # the report counts what was used against the whole file
    frame = _known_levels(s, frame, {**covs, **covs_inv}, sources, data, drop_unknown, terms)
    with s.step("Fitting (REML)" if method == "reml" else "Fitting (ML)", counted="REML steps"):
        pairs = [tuple(p.strip() for p in c.split(",")) for c in correlated or []]
        res = api_fit(
            formula,
            frame,
            cov=covs or None,
            cov_inverse=covs_inv or None,
            method=method,
            weights=weights,
            residual=residual,
            correlated=pairs or None,
        )
    from ..multitrait import MultiTraitResult

    if isinstance(res, MultiTraitResult):  # cbind(y1, y2, ...) ~ ...: trait x trait tables
        from .multitrait_cmd import write_outputs

        write_outputs(s, res, "multi-trait model", "Multi-trait linear mixed model", f"{formula} — {Path(data).name}")
        return
    s.stdout.print(res.summary())
    with s.step("Writing outputs"):
        s.write_csv(vc_table(res.variance_components), "variance_components.csv")
        s.write_csv(fe_table(res.fixed_effects), "fixed_effects.csv")
        import pandas as pd

        bvs = pd.concat([bv_table(t, term) for term, t in res.blups.items()], ignore_index=True)
        s.write_csv(bvs, "breeding_values.csv")
        rep = Report("Linear mixed model", f"{formula} — {Path(data).name}")
        add_fit(rep, res, file_frame, formula, groups, genetic, top=top)
        if ped is not None:
            add_pedigree_summary(rep, ped, phenotyped=frame[pedigree_term_used].dropna())
        if geno is not None:
            add_genotype_qc(rep, geno)
        rep.write(s.outdir() / "report.html")
        s.outputs.append("report.html")
        s.notes += list(res.notes)
        s.write_summary({"fit": res.to_dict(), "relationships": genetic})
    s.done()

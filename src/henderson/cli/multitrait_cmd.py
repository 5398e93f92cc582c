"""``henderson gblup|snpblup|pblup|cv --trait y1 --trait y2 ...``: multi-trait runs from files.

Called by the single-trait commands when ``--trait`` is given more than once. Outputs:
``covariances.csv`` (every (co)variance with its SE), ``genetic_correlations.csv``,
``breeding_values.csv`` (id, trait, value, pev, reliability), ``fixed_effects.csv``,
``report.html`` (the genetic correlation matrix with SEs as a table and a heat map),
``summary.json``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ._common import Session
from ._errors import CLIError
from ._inputs import read_genotypes_file, read_pedigree_file, read_phenotypes, read_relationship_file
from ._steps import GeneticOptions


def read_traits(phenotypes: Path, traits: list[str], id_column: str, fixed: str | None):
    """The trait columns (numeric, checked per column by read_phenotypes) as one frame by id."""
    cols, data = {}, None
    for t in traits:
        y, d, _ = read_phenotypes(phenotypes, t, id_column, fixed)
        cols[t] = y
        data = d if data is None else data
    Y = pd.DataFrame(cols)
    return Y, data


def correlation_table(res) -> pd.DataFrame:
    """Genetic correlations 'r (se)' as text, diagonal h² (se)."""
    R, SE = res.correlations["genetic"], res.correlation_se["genetic"]
    h = res.heritability
    out = pd.DataFrame(index=R.index, columns=R.columns, dtype=object)
    for i, a in enumerate(R.index):
        for j, _b in enumerate(R.columns):
            if i == j:
                out.iloc[i, j] = f"h² {h.loc[a, 'h2']:.3f} ({h.loc[a, 'se']:.3f})"
            else:
                se = SE.iloc[i, j]
                out.iloc[i, j] = f"{R.iloc[i, j]:+.3f}" + ("" if not np.isfinite(se) else f" ({se:.3f})")
    out.index.name = "trait"
    return out


def add_multitrait(rep, res, label: str) -> None:
    from ..report.multitrait_plots import correlation_heatmap

    rep.section("Model")
    rep.kv(
        {
            "model": label,
            "solver": res.solver,
            "traits": ", ".join(res.traits),
            "records": f"{res.n_obs:,} (every trait on every record); per trait: "
            + ", ".join(f"{k} {int(v)}" for k, v in res.n_records.items()),
            "log-likelihood (REML)": f"{res.loglik:.4f}",
            "iterations": res.iterations,
            "converged": "yes" if res.converged else "NO",
        }
    )
    for note in res.notes:
        rep.callout(note, warn="boundary" in note or "singular" in note)
    rep.section("Genetic correlations (SE); heritabilities on the diagonal")
    rep.start_grid()
    rep.table(correlation_table(res), caption="Genetic correlation matrix, standard errors by the delta method")
    rep.image(
        correlation_heatmap(res.correlations["genetic"], res.correlation_se["genetic"], "Genetic correlations"),
        caption="Genetic correlations (heat map; SE in brackets)",
    )
    rep.end_grid()
    rep.section("Covariance matrices")
    rep.table(res.covariances["genetic"], caption="Genetic covariance matrix Σ_g", digits=5)
    rep.table(res.covariance_se["genetic"], caption="SE of Σ_g (inverse average information)", digits=5)
    rep.table(res.covariances["Residual"], caption="Residual covariance matrix Σ_e", digits=5)
    rep.table(res.correlations["Residual"], caption="Residual correlations", digits=3)
    rep.section("Top breeding values")
    rep.table(
        res.gebv.sort_values(res.traits[0], ascending=False).head(20),
        caption=f"GEBVs of every trait, top 20 by {res.traits[0]}",
    )


def run_multitrait(kind: str, s: Session, o: GeneticOptions, traits: list[str]) -> None:
    """gblup, snpblup or pblup on several traits (``Var(u) = Σ_g ⊗ K``): read, fit, write."""
    if o.method.lower() != "reml":
        raise CLIError("multi-trait models are fitted by REML only (--method reml)")
    s.settings.update({"model": kind, "traits": list(traits), "id_column": o.id_column, "fixed": o.fixed})
    with s.step("Reading phenotypes"):
        Y, data = read_traits(o.phenotypes, traits, o.id_column, o.fixed)
        s.add_input("phenotypes", o.phenotypes)
    est, X, label = _multitrait_model(s, kind, o, traits)
    with s.step(f"Fitting {label}", counted="REML steps"):
        est.fit(X, Y, data=data)
    write_outputs(
        s,
        est.result_,
        label,
        f"{label}: {', '.join(traits)}",
        Path(o.phenotypes).name,
        snp_effects=getattr(est, "snp_effects_", None),
    )


def _multitrait_model(s: Session, kind: str, o: GeneticOptions, traits: list[str]):
    """(the unfitted multi-trait estimator, what it is fitted on, its label): genotypes or
    --grm for gblup, genotypes for snpblup, the pedigree (dense A) for pblup."""
    from ..estimators import GBLUP, SNPBLUP, PedigreeBLUP

    if kind == "pblup":
        if o.pedigree is None:
            raise CLIError("pblup needs --pedigree FILE")
        from ._steps import ped_cols

        with s.step("Reading pedigree"):
            X, notes = read_pedigree_file(o.pedigree, *ped_cols(o.ped_columns), selfing=o.selfing)
        for note in notes:
            s.warn(note)
        return PedigreeBLUP(fixed=o.fixed, traits=traits), X, "multi-trait pedigree BLUP (dense A)"
    if kind == "gblup" and (o.genotypes is None) == (o.grm is None):
        raise CLIError("gblup needs exactly one of --genotypes FILE or --grm FILE")
    if o.genotypes is None and kind == "snpblup":
        raise CLIError("snpblup needs --genotypes FILE")
    if o.genotypes is not None:
        with s.step("Reading genotypes"):
            X = read_genotypes_file(o.genotypes, o.coding)
            s.add_input("genotypes", o.genotypes)
    else:
        with s.step("Reading the relationship matrix"):
            X = read_relationship_file(o.grm, kind="G")
    if kind == "gblup":
        return GBLUP(grm=o.grm_method, fixed=o.fixed, traits=traits), X, "multi-trait GBLUP"
    return SNPBLUP(fixed=o.fixed, traits=traits), X, "multi-trait SNP-BLUP"


def write_outputs(s: Session, res, label: str, title: str, subtitle: str, snp_effects=None) -> None:
    """covariances.csv, genetic_correlations.csv, fixed_effects.csv, breeding_values.csv, report, summary."""
    from ..report.html import Report

    s.notes += list(res.notes)
    if not s.quiet:
        s.stdout.print(res.summary())
    with s.step("Writing outputs"):
        vc = res.variance_components.reset_index()
        s.write_csv(vc, "covariances.csv")
        s.write_csv(correlation_table(res).reset_index(), "genetic_correlations.csv")
        s.write_csv(res.fixed_effects.reset_index(), "fixed_effects.csv")
        b = res.blups[res.term].reset_index().rename(columns={res.term: "id", "blup": "value"})
        s.write_csv(b, "breeding_values.csv")
        if snp_effects is not None:
            s.write_csv(snp_effects, "snp_effects.csv")
        rep = Report(title, subtitle)
        add_multitrait(rep, res, label)
        rep.write(s.outdir() / "report.html")
        s.outputs.append("report.html")
        s.write_summary({"fit": res.to_dict()})
    s.done()


def run_multitrait_cv(
    s: Session,
    *,
    phenotypes: Path,
    traits: list[str],
    genotypes,
    grm,
    folds,
    repeats: int,
    seed: int,
    id_column: str,
    grm_method: str,
    coding,
    design: str,
    target,
) -> None:
    from ..cv import cross_validate
    from ..estimators import GBLUP

    s.settings.update({"model": "gblup", "traits": list(traits), "design": design, "target": target})
    with s.step("Reading phenotypes"):
        Y, _ = read_traits(phenotypes, traits, id_column, None)
    if (genotypes is None) == (grm is None):
        raise CLIError("multi-trait cv needs exactly one of --genotypes FILE or --grm FILE")
    if genotypes is not None:
        with s.step("Reading genotypes"):
            X = read_genotypes_file(genotypes, coding)
    else:
        X = read_relationship_file(grm, kind="G")
    with s.step(f"Cross-validating ({design})"):
        res = cross_validate(
            GBLUP(grm=grm_method, traits=traits),
            X,
            Y,
            cv=folds,
            repeats=repeats,
            seed=seed,
            design=design,
            target=target,
        )
    if not s.quiet:
        s.stdout.print(repr(res))
    _write_multitrait_cv(s, res, phenotypes, design)
    s.done()


def _write_multitrait_cv(s: Session, res, phenotypes: Path, design: str) -> None:
    """cv_predictions.csv, cv_metrics.csv, cv_summary.csv, report.html and summary.json."""
    from ..report.html import Report

    with s.step("Writing outputs"):
        s.write_csv(res.predictions, "cv_predictions.csv")
        s.write_csv(res.fold_metrics, "cv_metrics.csv")
        s.write_csv(res.summary.reset_index(), "cv_summary.csv")
        rep = Report(f"Multi-trait cross-validation ({design})", Path(phenotypes).name)
        rep.section("Predictive ability per trait: multi-trait vs single-trait GBLUP on the same folds")
        rep.table(res.summary, digits=3)
        rep.text(
            "CV1: new lines, no trait observed. CV2: the target trait masked on the test lines, the other "
            "traits kept; covariances by REML on the training lines, then the exact BLUP given all observed "
            "records."
        )
        rep.write(s.outdir() / "report.html")
        s.outputs.append("report.html")
        s.write_summary({"summary": res.summary.reset_index().to_dict(orient="records"), "settings": res.settings})

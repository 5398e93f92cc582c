"""Report sections for the command line's analyses (fit, genetic models, CV)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..spec.formula import response_of
from . import plots
from .formula import formula_factors, formula_variables  # noqa: F401 - re-exported
from .html import Report

#: Up to this many values a histogram shows nothing the table beside it does not.
MIN_HISTOGRAM = 5


def heritability_text(res, term: str, what: str = "", label: str | None = None) -> str:
    """h² = σ²_term / (σ²_term + σ²_e), with a delta-method SE, its denominator named.

    Other random terms (a herd, a permanent environment) are not in the denominator;
    the share of the total, with every term named, follows when there are any.
    """
    from ..results import ratio_table

    vc = res.variance_components
    names = list(vc.index)
    i, e = names.index(term), names.index("Residual")
    s2 = vc["variance"].to_numpy(dtype=float)
    cov = None if res.vcov is None else np.asarray(res.vcov, dtype=float)[np.ix_([i, e], [i, e])]
    h2, h2_se = (float(v[0]) for v in ratio_table([term, "Residual"], s2[[i, e]], cov))
    label = label or f"σ²_{term}"
    text = (
        "Heritability"
        + (f" ({term}: {what})" if what else "")
        + f": h² = {label} / ({label} + σ²_e) = {h2:.3f}"
        + (f" ± {h2_se:.3f}" if np.isfinite(h2_se) else "")
    )
    others = [n for n in names if n not in (term, "Residual")]
    if others:
        r = vc.loc[term]
        denom = " + ".join([label] + [f"σ²_{o}" for o in others] + ["σ²_e"])
        text += f"; as a share of all variance, {label} / ({denom}) = {r['ratio']:.3f}" + (
            f" ± {r['ratio_se']:.3f}" if np.isfinite(r["ratio_se"]) else ""
        )
    return text


def variance_table(vc: pd.DataFrame, labels: dict | None = None) -> pd.DataFrame:
    """Variance components with SEs and shares of the total (h² for a genetic term)."""
    t = pd.DataFrame(
        {
            "variance": vc["variance"].to_numpy(dtype=float),
            "SE": vc["se"].to_numpy(dtype=float),
            "share of total": vc["ratio"].to_numpy(dtype=float),
            "share SE": vc["ratio_se"].to_numpy(dtype=float),
        },
        index=[(labels or {}).get(i, i) for i in vc.index],
    )
    if "levels" in vc:  # ints (right-aligned like the numbers), blank for the residual
        t["levels"] = pd.Series([int(v) if pd.notna(v) else None for v in vc["levels"]], index=t.index, dtype=object)
    if "boundary" in vc and vc["boundary"].astype(bool).any():
        t["at zero"] = vc["boundary"].astype(bool).to_numpy()
    t.index.name = "term"
    return t


def fit_stats(res) -> dict:
    crit = "REML" if res.method == "reml" else "ML"
    return {
        "records used": f"{res.n_obs}" + (f" ({res.n_dropped} dropped: missing values)" if res.n_dropped else ""),
        "method / solver": f"{crit} / {res.solver}",
        "log-likelihood": f"{res.loglik:.4f}",
        "AIC / BIC": f"{res.aic:.2f} / {res.bic:.2f}",
        "iterations": f"{res.iterations} ({'converged' if res.converged else 'NOT converged'})",
    }


def ranking_table(bv: pd.DataFrame, n: int = 20, value: str = "value") -> pd.DataFrame:
    """Top of the ranking: rank, id, value, PEV, reliability, records."""
    t = bv.sort_values(value, ascending=False).head(n).copy()
    t.insert(0, "rank", np.arange(1, len(t) + 1))
    t = t.set_index("rank")
    return t


def add_fit(
    report: Report,
    res,
    data: pd.DataFrame,
    formula: str,
    groups: list[str] | None = None,
    genetic_terms: dict | None = None,
    top: int = 20,
) -> None:
    """Sections of a general mixed-model fit.

    The data section draws the response, the records per level of every factor of the
    formula (fixed and random; ``groups`` are the random terms' grouping factors) and
    each numeric covariate.
    """
    genetic_terms = genetic_terms or {}
    report.section("Model")
    report.kv({"formula": formula, **fit_stats(res)})
    if res.notes:
        for n in res.notes:
            report.callout(n, warn=True)
    if res.covariances:  # structured terms: Σ per term as a table and a heat map
        _add_structures(report, res)
    else:
        _add_variances(report, res, genetic_terms)
    report.table(res.fixed_effects, caption="Fixed effects", digits=4)
    _add_data(report, res, data, formula, groups)
    _add_blups(report, res, genetic_terms, top)


def _add_structures(report: Report, res) -> None:
    report.section("Covariance structures")
    vc = res.variance_components
    report.table(
        vc[["term", "type", "estimate", "se"]],
        caption="Covariance parameters (SE from the inverse average information)",
    )
    for term, S in res.covariances.items():
        report.start_grid()
        report.table(S, caption=f"Covariance matrix of {term}", digits=4)
        if S.shape[0] > 1 and term != "Residual":
            report.image(
                plots.correlation_heatmap(res.correlations[term], f"Correlations: {term}"),
                caption=f"Correlations between the components of {term}",
                alt=f"Heat map of the correlations of {term}",
            )
        report.end_grid()
    if res.derived is not None and len(res.derived):
        report.table(res.derived, caption="Correlations and variance ratios (delta-method SE)", digits=4)
    for term, fa in res.factor_analytic.items():
        tab = fa["loadings"].copy()
        tab["specific variance"] = fa["specific"]
        report.table(
            tab,
            caption=f"Factor-analytic {term}: loadings and specific variances; % of variance: "
            + ", ".join(f"{k} {v:.1f}%" for k, v in fa["variance_explained"].items()),
            digits=4,
        )


def _add_variances(report: Report, res, genetic_terms: dict) -> None:
    report.section("Variance components")
    report.table(
        variance_table(res.variance_components),
        caption="Variance components (SE from the inverse average information); share = σ²/Σσ² with delta-method SE",
    )
    for term, what in genetic_terms.items():
        if term in res.variance_components.index:
            report.callout(heritability_text(res, term, what))


def _add_data(report: Report, res, data, formula, groups) -> None:
    """The response, every factor's records per level and the covariates, over the records used."""
    report.section("Data")
    response = response_of(formula)
    # the records the model used: rows with a missing value (or dropped with
    # --drop-unknown) are not in the plots, and the captions say how many there are
    used = data.loc[data.index.intersection(res.fitted.index)] if len(res.fitted) else data
    left_out = len(data) - len(used)
    out_note = f"; {left_out:,} record(s) of the file not used" if left_out else ""
    factors, numeric = formula_factors(formula, data, groups or ())
    single = []
    report.start_grid()
    if response in used:
        report.image(
            plots.histogram(used[response], f"Response: {response}", response),
            caption=f"{response}: the {len(used):,} records used{out_note}",
            alt=f"Histogram of the response {response}",
        )
    for g in factors:  # every factor of the formula, fixed and random
        counts = used[g].dropna().astype(str).value_counts()
        if len(counts) and counts.max() == 1:  # a bar of height one per level says nothing
            single.append(f"{g} ({len(counts):,} levels)")
            continue
        kind = "random" if g in (groups or ()) else "fixed"
        report.image(
            plots.level_counts(counts, g),
            caption=f"Records per level of {g} ({kind}; {len(counts)} levels) in the {len(used):,} records used",
            alt=f"Bar chart or histogram of the number of records per level of {g}",
        )
    for v in numeric:
        report.image(
            plots.histogram(used[v], f"Covariate: {v}", v, color=plots.GREY),
            caption=f"Covariate {v}: the {len(used):,} records used",
            alt=f"Histogram of the covariate {v}",
        )
    report.end_grid()
    if single:
        report.text("One record per level (no plot): " + ", ".join(single) + ".", cls="note")


def _add_blups(report: Report, res, genetic_terms, top) -> None:
    """Per random term: the top-ranked predictions and their histogram."""
    for term, tab in res.blups.items():
        report.section(f"Predictions of {term}" + (" (breeding values)" if term in genetic_terms else " (BLUPs)"))
        if isinstance(tab.index, pd.MultiIndex):  # "level [trait or group]"
            lv = [tab.index.get_level_values(k).astype(str) for k in (0, 1)]
            ids = lv[0] + " [" + lv[1] + "]"
        else:
            ids = tab.index.astype(str)
        bv = pd.DataFrame(
            {
                "id": ids,
                "value": tab["blup"].to_numpy(),
                "PEV": tab["pev"].to_numpy(),
                "reliability": tab["reliability"].to_numpy(),
                "records": tab["n_records"].to_numpy(),
            }
        )
        report.start_grid()
        report.table(ranking_table(bv, top), caption=f"Top {min(top, len(bv))} of {len(bv)} levels")
        if len(bv) > MIN_HISTOGRAM:  # the table already shows every one of a few values
            report.image(
                plots.histogram(bv["value"], f"BLUPs of {term}", "predicted value", color=plots.ORANGE),
                caption=f"Distribution of the {len(bv)} BLUPs of {term}",
                alt=f"Histogram of the predicted values (BLUPs) of {term}",
            )
        report.end_grid()
        report.text(RANKING_NOTE, cls="note")


def add_genetic(
    report: Report,
    est,
    kind: str,
    trait: str,
    y: pd.Series,
    G=None,
    snp_effects: pd.DataFrame | None = None,
    top: int = 20,
    relationship_note: str = "",
    g_note: str = "",
) -> None:
    """Sections of a GBLUP / SNP-BLUP / pedigree-BLUP fit.

    ``G`` (a Relationship or array) draws the distribution of its diagonal and
    off-diagonal; ``g_note`` says why it is absent or how it was built.
    """
    res = est.result_
    _genetic_model(report, est, kind, trait, relationship_note)
    n_ind = _phenotype_section(report, res, trait, y)
    _breeding_values(report, est.gebv_, kind, top, n_ind)
    if snp_effects is not None:
        _snp_effects_section(report, snp_effects)
    if G is not None or g_note:
        report.section("Relationship matrix")
        if g_note:
            report.text(g_note, cls="note")
    if G is not None:
        M = G.dense() if hasattr(G, "dense") else np.asarray(G)
        name = getattr(G, "kind", "G")
        report.image(
            plots.g_distribution(M, f"{name}: {M.shape[0]:,} individuals"),
            caption="Distribution of the diagonal (1 + inbreeding) and of the off-diagonal relationships",
            alt=f"Histograms of the diagonal and off-diagonal elements of {name}",
        )


def _genetic_model(report: Report, est, kind: str, trait: str, relationship_note: str) -> None:
    """Sections "Model" (fit statistics, notes) and "Variance components and heritability"."""
    res = est.result_
    report.section("Model")
    kv = {"model": kind, "trait": trait, **fit_stats(res)}
    if relationship_note:
        kv["relationship"] = relationship_note
    report.kv(kv)
    for n in res.notes:
        report.callout(n, warn=("dropped" in n or "boundary" in n))
    report.section("Variance components and heritability")
    labels = {"id": "σ²_β (per SNP)" if kind == "SNP-BLUP" else "genetic (id)"}
    report.table(
        variance_table(res.variance_components, labels),
        caption="Variance components (SE from the inverse average information)",
    )
    if kind == "SNP-BLUP":  # σ²_β is per SNP: h² needs it on the scale of G
        extra = f"; σ²_g = 2Σpq·σ²_β = {est.sigma2_g_:.4g}"
        report.callout(f"Heritability: h² = σ²_g / (σ²_g + σ²_e) = {est.h2_:.3f} ± {est.h2_se_:.3f}{extra}")
    else:
        report.callout(heritability_text(res, "id", "", label="σ²_a" if kind == "pedigree BLUP" else "σ²_g"))
    report.table(res.fixed_effects, caption="Fixed effects")


def _phenotype_section(report: Report, res, trait: str, y: pd.Series) -> int:
    """Section "Phenotypes": the records the model used; returns the individuals with records."""
    report.section("Phenotypes")
    # the records the model used (y = fitted + residual), not the rows of the file
    y_used = (res.fitted + res.residuals).to_numpy(dtype=float)
    yy = pd.to_numeric(y, errors="coerce")
    n_rec = len(y_used)
    n_ind = int(pd.unique(np.asarray(res.record_levels.get("id", []), dtype=object)).size) or n_rec
    n_na, n_unused = int(yy.isna().sum()), int(yy.notna().sum()) - n_rec
    cap = f"{n_rec:,} records of {trait} on {n_ind:,} individuals"  # counted from the fit
    if n_na:
        cap += f" ({n_na:,} rows without a value were left out)"
    if n_unused > 0:
        cap += f" ({n_unused:,} records dropped: their ids are not in the relationship matrix)"
    report.start_grid()
    report.image(
        plots.histogram(y_used, f"Phenotype: {trait}", trait), caption=cap, alt=f"Histogram of the phenotype {trait}"
    )
    report.end_grid()
    return n_ind


def _breeding_values(report: Report, g: pd.DataFrame, kind: str, top: int, n_ind: int) -> None:
    """Section "Breeding values": the ranking and the distribution."""
    report.section("Breeding values")
    bv = pd.DataFrame(
        {
            "id": g.index.astype(str),
            "value": g.iloc[:, 0].to_numpy(),
            "PEV": g["pev"].to_numpy(),
            "reliability": g["reliability"].to_numpy(),
            "records": g["n_records"].to_numpy(),
        }
    )
    who = "animals in the pedigree" if kind == "pedigree BLUP" else "individuals"
    report.start_grid()
    report.table(ranking_table(bv, top), caption=f"Top {min(top, len(bv))} of {len(bv):,} {who}")
    ebv = "GEBV" if kind != "pedigree BLUP" else "EBV"
    if len(bv) > MIN_HISTOGRAM:
        report.image(
            plots.histogram(bv["value"], "Breeding values", ebv, color=plots.ORANGE),
            caption=f"Distribution of the {len(bv):,} {ebv}s ({n_ind:,} with records)",
            alt=f"Histogram of the predicted breeding values ({ebv})",
        )
    report.end_grid()
    report.text(RANKING_NOTE, cls="note")


def _snp_effects_section(report: Report, snp_effects: pd.DataFrame) -> None:
    """Section "SNP effects": the Manhattan-style plot and the largest effects."""
    report.section("SNP effects")
    report.image(
        plots.manhattan(snp_effects, f"SNP effects ({len(snp_effects)} SNPs)"),
        caption="Absolute SNP effects by chromosome and position (file order when the genotypes carry no map)",
        alt="Manhattan-style plot of the absolute SNP effects along the genome",
    )
    top_snps = snp_effects.reindex(snp_effects["effect"].abs().sort_values(ascending=False).index).head(10)
    cols = [c for c in ("snp", "chrom", "pos", "freq", "effect") if c in top_snps]
    if _unmapped(snp_effects):  # chromosome 0 / position 0 everywhere says nothing
        cols = [c for c in cols if c not in ("chrom", "pos")]
    report.table(top_snps[cols], caption="Largest 10 |effects|", index=False, digits=5)
    report.text("freq: frequency of the counted allele; effect: per copy of that allele, in trait units.", cls="note")


def _unmapped(snps: pd.DataFrame) -> bool:
    chrom = snps["chrom"].astype(str) if "chrom" in snps else pd.Series(["0"])
    pos = pd.to_numeric(snps["pos"], errors="coerce").fillna(0) if "pos" in snps else pd.Series([0])
    return chrom.isin(["0", "", "nan"]).all() or pos.nunique() <= 1


#: What the columns of a ranking table mean (shown under it).
RANKING_NOTE = (
    "value: predicted (breeding) value in trait units; PEV: prediction error variance, in "
    "squared trait units; reliability = 1 − PEV/(σ²·K_ii), K_ii the diagonal of the term's "
    "relationship matrix (1 for independent levels); records: phenotypic records "
    "of the individual (0 = predicted through relationships only)."
)


def _fold_key(v):
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def add_cv(
    report: Report,
    predictions: pd.DataFrame,
    fold_metrics: pd.DataFrame,
    summary: pd.DataFrame | None = None,
    title: str = "Cross-validation",
    note: str = "",
    settings: dict | None = None,
) -> None:
    """Sections of a cross-validation: settings, summary, observed vs predicted, per-fold table."""
    report.section(title)
    if settings:
        report.kv(settings)
    if note:
        report.callout(note, warn=True)
    fm = fold_metrics.copy()
    if "model" not in fm:
        fm["model"] = "model"
    fm = fm.assign(_k=fm["fold"].map(_fold_key)).sort_values(["repeat", "_k"], kind="stable").drop(columns="_k")
    report.start_grid()
    if summary is not None and len(summary):
        report.table(
            summary, caption="Predictive ability r = cor(observed, predicted BV), mean over folds (and repeats)"
        )
    if "r" in fm and fm["model"].nunique() > 1:  # one bar repeats the table
        pa = fm.groupby("model", sort=False)["r"].agg(["mean", "std"])
        pa.columns = ["mean", "sd"]
        report.image(
            plots.ability_bars(pa, "Predictive ability r (mean ± sd over folds)"),
            width=420,
            caption="Predictive ability per model: mean over folds, error bars ± 1 sd",
            alt="Bar chart of the mean predictive ability of each model with ± sd error bars",
        )
    report.end_grid()
    _observed_vs_predicted(report, predictions)
    _per_fold_table(report, fm)


def _observed_vs_predicted(report: Report, predictions: pd.DataFrame) -> None:
    """Observed (or corrected for fixed effects) against out-of-fold predictions, first repeat."""
    corrected = plots.has_fixed_effects(predictions)
    what = "phenotype corrected for fixed effects" if corrected else "observed phenotype"
    report.image(
        plots.observed_vs_predicted(predictions, f"{what[:1].upper() + what[1:]} vs out-of-fold prediction"),
        alt=f"Scatter plots of the {what} against the out-of-fold predicted breeding value",
        caption="Each point is an individual predicted without its own phenotype (first repeat); "
        "line: least-squares fit"
        + (
            "; y axis: observed − Xβ̂, the fixed effects estimated in the fold's training "
            "set, so that only the genetic part is compared with the prediction"
            if corrected
            else ""
        ),
    )


#: per-fold metrics shown for one model, in this order (when present)
_FOLD_COLUMNS = (
    "repeat",
    "fold",
    "n_train",
    "n_test",
    "r",
    "accuracy",
    "slope",
    "mse",
    "spearman",
    "top_overlap",
    "sigma2_g",
    "h2",
)


def _per_fold_table(report: Report, fm: pd.DataFrame) -> None:
    """Per fold: r and slope side by side for several models, else the fold metrics."""
    models = list(dict.fromkeys(fm["model"]))
    if len(models) > 1 and "r" in fm:
        keys = ["repeat", "fold"] if fm["repeat"].nunique() > 1 else ["fold"]
        wide = fm.pivot_table(index=keys, columns="model", values=["r", "slope"], sort=False)
        wide = wide.reindex(columns=[(v, m) for v in ("r", "slope") for m in models])
        wide.columns = [f"{v} {m}" for v, m in wide.columns]
        n_test = fm.groupby(keys, sort=False)["n_test"].first()
        wide.insert(0, "n_test", n_test.reindex(wide.index).astype(int).to_numpy())
        report.table(
            wide,
            caption="Per fold: predictive ability r = cor(observed, predicted BV) and "
            "slope of observed on predicted (all metrics in cv_metrics.csv)",
        )
        return
    cols = [c for c in _FOLD_COLUMNS if c in fm]
    if fm["repeat"].nunique() <= 1:
        cols.remove("repeat")
    report.table(fm[cols], caption="Per-fold metrics (all in cv_metrics.csv)", index=False, max_rows=400)


def pedigree_summary(ped, F: pd.Series | None = None, phenotyped=None) -> dict:
    """Counts of a pedigree: animals, founders, parents, generations, inbreeding.

    ``F`` (inbreeding by id) defaults to :func:`henderson.inbreeding`; ``phenotyped``
    (ids with records) adds how many of them are in the pedigree.
    """
    from ..relationships.pedigree import inbreeding

    F = inbreeding(ped) if F is None else F
    sire, dam = np.asarray(ped.sire), np.asarray(ped.dam)
    gen = np.asarray(ped.generation)
    Fv = F.reindex(pd.Index(ped.ids)).to_numpy(dtype=float)
    inbred = Fv > 0
    out = {
        "animals": len(ped.ids),
        "founders (both parents unknown)": int(((sire < 0) & (dam < 0)).sum()),
        "of them added (parents without a row)": len(ped.added_founders),
        "one parent known": int(((sire < 0) ^ (dam < 0)).sum()),
        "both parents known": int(((sire >= 0) & (dam >= 0)).sum()),
        "sires / dams": f"{len(np.unique(sire[sire >= 0])):,} / {len(np.unique(dam[dam >= 0])):,}",
        "generations": int(gen.max()) + 1 if len(gen) else 0,
        "inbred animals (F > 0)": int(inbred.sum()),
        "mean F (all animals)": float(Fv.mean()) if len(Fv) else float("nan"),
        "mean F of the inbred": float(Fv[inbred].mean()) if inbred.any() else 0.0,
        "largest F": float(Fv.max()) if len(Fv) else float("nan"),
    }
    if phenotyped is not None:
        ph = pd.Index(pd.unique(np.asarray(phenotyped, dtype=object)))
        out["phenotyped animals in the pedigree"] = int(ph.isin(pd.Index(ped.ids)).sum())
    return out


def add_pedigree_summary(report: Report, ped, F: pd.Series | None = None, phenotyped=None) -> None:
    """Section: founders, generations and inbreeding of the pedigree behind A⁻¹."""
    from ..relationships.pedigree import inbreeding

    F = inbreeding(ped) if F is None else F
    info = pedigree_summary(ped, F, phenotyped)
    report.section("Pedigree")
    worst = F.idxmax() if len(F) and F.max() > 0 else None

    def show(k, v):
        if isinstance(v, float):
            return f"{v:.4f}" + (f" ({worst})" if k == "largest F" and worst is not None else "")
        return f"{v:,}" if isinstance(v, int) else v

    report.start_grid()
    report.html(f"<div>{_kv_html({k: show(k, v) for k, v in info.items()})}</div>")
    gen = pd.Series(np.asarray(ped.generation)).value_counts().sort_index()
    if len(gen) > 1:
        report.table(
            pd.DataFrame({"animals": gen.to_numpy()}, index=pd.Index(gen.index, name="generation")),
            caption="Animals per generation (0: both parents unknown)",
        )
    Fi = F[F > 0]
    if len(Fi) > MIN_HISTOGRAM:
        report.image(
            plots.histogram(Fi, "Inbreeding of the inbred animals", "F", color=plots.GREY),
            caption=f"Inbreeding coefficients of the {len(Fi):,} inbred animals "
            f"({info['animals'] - len(Fi):,} have F = 0)",
            alt="Histogram of the inbreeding coefficients of the inbred animals",
        )
    report.end_grid()


def _kv_html(items: dict) -> str:
    import html as _html

    body = "".join(f"<dt>{_html.escape(str(k))}</dt><dd>{_html.escape(str(v))}</dd>" for k, v in items.items())
    return f'<dl class="kv">{body}</dl>'


def genotype_summary(geno) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """(counts, per-SNP table, per-individual table) of a genotype matrix's quality.

    Per SNP: call rate and minor allele frequency; per individual: call rate and the
    number of missing calls (:func:`henderson.genotype_qc`, nothing removed).
    """
    from ..io.qc import genotype_qc

    qc = genotype_qc(geno, drop_monomorphic=False)
    snp, ind = qc.snp_report, qc.individual_report
    n_miss = int(ind["n_missing"].sum())
    counts = {
        "individuals × SNPs": f"{geno.n:,} × {geno.p:,}",
        "missing calls": f"{n_miss:,} ({n_miss / max(1, geno.n * geno.p):.2%})",
        "SNPs with a missing call": int((snp["call_rate"] < 1).sum()),
        "lowest SNP call rate": float(snp["call_rate"].min()),
        "individuals with a missing call": int((ind["n_missing"] > 0).sum()),
        "lowest individual call rate": float(ind["call_rate"].min()),
        "monomorphic SNPs": int(snp["monomorphic"].sum()),
        "SNPs with MAF < 0.01 / < 0.05": f"{int(((snp['maf'] < 0.01) & ~snp['monomorphic']).sum()):,} / "
        f"{int(((snp['maf'] < 0.05) & ~snp['monomorphic']).sum()):,}",
    }
    return counts, snp, ind


def add_genotype_qc(report: Report, geno, used_note: str = "") -> None:
    """Section: missing calls per SNP and per individual, allele frequencies."""
    counts, snp, ind = genotype_summary(geno)
    report.section("Genotype quality")
    report.start_grid()
    report.html(
        f"<div>{_kv_html({k: f'{v:.4f}' if isinstance(v, float) else (f'{v:,}' if isinstance(v, int) else v) for k, v in counts.items()})}</div>"
    )
    maf = snp["maf"].dropna()
    if len(maf) > MIN_HISTOGRAM:
        report.image(
            plots.histogram(maf, "Minor allele frequency", "MAF", color=plots.GREY),
            caption=f"Minor allele frequency of the {len(maf):,} SNPs with calls",
            alt="Histogram of the minor allele frequencies of the SNPs",
        )
    worst = ind[ind["n_missing"] > 0].sort_values("call_rate").head(10)
    if len(worst):
        report.table(worst[["call_rate", "n_missing"]], caption="Individuals with the most missing calls")
    report.end_grid()
    report.text(
        "call rate: share of individuals (per SNP) or SNPs (per individual) with a call. Missing "
        "calls are mean-imputed when relationships or SNP effects are computed (centred value 0)."
        + (" " + used_note if used_note else ""),
        cls="note",
    )

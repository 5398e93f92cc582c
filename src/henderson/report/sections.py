"""Report sections for the command line's analyses (fit, genetic models, CV)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import plots
from .formula import formula_factors, formula_variables  # noqa: F401 - re-exported
from .html import Report

def variance_table(vc: pd.DataFrame, labels: dict | None = None) -> pd.DataFrame:
    """Variance components with SEs and shares of the total (h² for a genetic term)."""
    t = pd.DataFrame({
        "variance": vc["variance"].to_numpy(dtype=float),
        "SE": vc["se"].to_numpy(dtype=float),
        "share of total": vc["ratio"].to_numpy(dtype=float),
        "share SE": vc["ratio_se"].to_numpy(dtype=float),
    }, index=[(labels or {}).get(i, i) for i in vc.index])
    if "levels" in vc:  # ints (right-aligned like the numbers), blank for the residual
        t["levels"] = pd.Series([int(v) if pd.notna(v) else None for v in vc["levels"]], index=t.index,
                                dtype=object)
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


def add_fit(report: Report, res, data: pd.DataFrame, formula: str, groups: list[str] | None = None,
            genetic_terms: dict | None = None, top: int = 20) -> None:
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
    _add_data_and_blups(report, res, data, formula, groups, genetic_terms, top)


def _add_structures(report: Report, res) -> None:
    report.section("Covariance structures")
    vc = res.variance_components
    report.table(vc[["term", "type", "estimate", "se"]],
                 caption="Covariance parameters (SE from the inverse average information)")
    for term, S in res.covariances.items():
        report.start_grid()
        report.table(S, caption=f"Covariance matrix of {term}", digits=4)
        if S.shape[0] > 1 and term != "Residual":
            report.image(plots.correlation_heatmap(res.correlations[term], f"Correlations: {term}"),
                         caption=f"Correlations between the components of {term}",
                         alt=f"Heat map of the correlations of {term}")
        report.end_grid()
    if res.derived is not None and len(res.derived):
        report.table(res.derived, caption="Correlations and variance ratios (delta-method SE)", digits=4)
    for term, fa in res.factor_analytic.items():
        tab = fa["loadings"].copy()
        tab["specific variance"] = fa["specific"]
        report.table(tab, caption=f"Factor-analytic {term}: loadings and specific variances; % of variance: "
                     + ", ".join(f"{k} {v:.1f}%" for k, v in fa["variance_explained"].items()), digits=4)


def _add_variances(report: Report, res, genetic_terms: dict) -> None:
    report.section("Variance components")
    report.table(variance_table(res.variance_components),
                 caption="Variance components (SE from the inverse average information); "
                         "share = σ²/Σσ² with delta-method SE")
    for term, what in genetic_terms.items():
        if term in res.variance_components.index:
            r = res.variance_components.loc[term]
            report.callout(f"Heritability (share of {term}, {what}): h² = {r['ratio']:.3f} ± {r['ratio_se']:.3f}")


def _add_data_and_blups(report: Report, res, data, formula, groups, genetic_terms, top) -> None:
    report.section("Data")
    response = formula.split("~")[0].strip()
    factors, numeric = formula_factors(formula, data, groups or ())
    report.start_grid()
    if response in data:
        report.image(plots.histogram(data[response], f"Response: {response}", response),
                     caption=f"{response}: {data[response].notna().sum()} non-missing records",
                     alt=f"Histogram of the response {response}")
    for g in factors:  # every factor of the formula, fixed and random
        counts = data[g].dropna().astype(str).value_counts()
        kind = "random" if g in (groups or ()) else "fixed"
        report.image(plots.level_counts(counts, g),
                     caption=f"Records per level of {g} ({kind}; {len(counts)} levels)",
                     alt=f"Bar chart or histogram of the number of records per level of {g}")
    for v in numeric:
        report.image(plots.histogram(data[v], f"Covariate: {v}", v, color=plots.GREY),
                     caption=f"Covariate {v}: {data[v].notna().sum()} non-missing values",
                     alt=f"Histogram of the covariate {v}")
    report.end_grid()

    for term, tab in res.blups.items():
        report.section(f"Predictions of {term}" + (" (breeding values)" if term in genetic_terms else " (BLUPs)"))
        ids = (tab.index.map(lambda t: f"{t[0]} [{t[1]}]") if isinstance(tab.index, pd.MultiIndex)
               else tab.index.astype(str))
        bv = pd.DataFrame({"id": ids, "value": tab["blup"].to_numpy(),
                           "PEV": tab["pev"].to_numpy(), "reliability": tab["reliability"].to_numpy(),
                           "records": tab["n_records"].to_numpy()})
        report.start_grid()
        report.table(ranking_table(bv, top), caption=f"Top {min(top, len(bv))} of {len(bv)} levels")
        report.image(plots.histogram(bv["value"], f"BLUPs of {term}", "predicted value", color=plots.ORANGE),
                     caption=f"Distribution of the {len(bv)} BLUPs of {term}",
                     alt=f"Histogram of the predicted values (BLUPs) of {term}")
        report.end_grid()
        report.text(RANKING_NOTE, cls="note")


def add_genetic(report: Report, est, kind: str, trait: str, y: pd.Series, G=None,
                snp_effects: pd.DataFrame | None = None, top: int = 20, relationship_note: str = "",
                g_note: str = "") -> None:
    """Sections of a GBLUP / SNP-BLUP / pedigree-BLUP fit.

    ``G`` (a Relationship or array) draws the distribution of its diagonal and
    off-diagonal; ``g_note`` says why it is absent or how it was built.
    """
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
    report.table(variance_table(res.variance_components, labels),
                 caption="Variance components (SE from the inverse average information)")
    extra = ""
    if kind == "SNP-BLUP":
        extra = f"; σ²_g = 2Σpq·σ²_β = {est.sigma2_g_:.4g}"
    report.callout(f"Heritability h² = {est.h2_:.3f} ± {est.h2_se_:.3f}{extra}")
    report.table(res.fixed_effects, caption="Fixed effects")

    report.section("Phenotypes")
    yy = pd.to_numeric(y, errors="coerce")
    n_rec, n_ind = int(yy.notna().sum()), int(yy.index[yy.notna()].nunique())
    n_na = int(yy.isna().sum())
    cap = f"{n_rec:,} records of {trait} on {n_ind:,} individuals"
    if n_na:
        cap += f" ({n_na:,} rows without a value were left out)"
    report.start_grid()
    report.image(plots.histogram(yy, f"Phenotype: {trait}", trait), caption=cap,
                 alt=f"Histogram of the phenotype {trait}")
    report.end_grid()

    report.section("Breeding values")
    g = est.gebv_
    bv = pd.DataFrame({"id": g.index.astype(str), "value": g.iloc[:, 0].to_numpy(), "PEV": g["pev"].to_numpy(),
                       "reliability": g["reliability"].to_numpy(), "records": g["n_records"].to_numpy()})
    who = "animals in the pedigree" if kind == "pedigree BLUP" else "individuals"
    report.start_grid()
    report.table(ranking_table(bv, top), caption=f"Top {min(top, len(bv))} of {len(bv):,} {who}")
    ebv = "GEBV" if kind != "pedigree BLUP" else "EBV"
    report.image(plots.histogram(bv["value"], "Breeding values", ebv, color=plots.ORANGE),
                 caption=f"Distribution of the {len(bv):,} {ebv}s ({n_ind:,} with records)",
                 alt=f"Histogram of the predicted breeding values ({ebv})")
    report.end_grid()
    report.text(RANKING_NOTE, cls="note")

    if snp_effects is not None:
        report.section("SNP effects")
        report.image(plots.manhattan(snp_effects, f"SNP effects ({len(snp_effects)} SNPs)"),
                     caption="Absolute SNP effects by chromosome and position "
                             "(file order when the genotypes carry no map)",
                     alt="Manhattan-style plot of the absolute SNP effects along the genome")
        top_snps = snp_effects.reindex(snp_effects["effect"].abs().sort_values(ascending=False).index).head(10)
        cols = [c for c in ("snp", "chrom", "pos", "freq", "effect") if c in top_snps]
        if _unmapped(snp_effects):  # chromosome 0 / position 0 everywhere says nothing
            cols = [c for c in cols if c not in ("chrom", "pos")]
        report.table(top_snps[cols], caption="Largest 10 |effects|", index=False, digits=5)
        report.text("freq: frequency of the counted allele; effect: per copy of that allele, in trait units.",
                    cls="note")
    if G is not None or g_note:
        report.section("Relationship matrix")
        if g_note:
            report.text(g_note, cls="note")
    if G is not None:
        M = G.dense() if hasattr(G, "dense") else np.asarray(G)
        name = getattr(G, "kind", "G")
        report.image(plots.g_distribution(M, f"{name}: {M.shape[0]:,} individuals"),
                     caption="Distribution of the diagonal (1 + inbreeding) and of the off-diagonal relationships",
                     alt=f"Histograms of the diagonal and off-diagonal elements of {name}")


def _unmapped(snps: pd.DataFrame) -> bool:
    chrom = snps["chrom"].astype(str) if "chrom" in snps else pd.Series(["0"])
    pos = pd.to_numeric(snps["pos"], errors="coerce").fillna(0) if "pos" in snps else pd.Series([0])
    return chrom.isin(["0", "", "nan"]).all() or pos.nunique() <= 1


#: What the columns of a ranking table mean (shown under it).
RANKING_NOTE = ("value: predicted (breeding) value in trait units; PEV: prediction error variance, in "
                "squared trait units; reliability = 1 − PEV/(σ²·K_ii), K_ii the diagonal of the term's "
                "relationship matrix (1 for independent levels); records: phenotypic records "
                "of the individual (0 = predicted through relationships only).")


def _fold_key(v):
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def add_cv(report: Report, predictions: pd.DataFrame, fold_metrics: pd.DataFrame,
           summary: pd.DataFrame | None = None, title: str = "Cross-validation", note: str = "",
           settings: dict | None = None) -> None:
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
        report.table(summary, caption="Predictive ability r = cor(observed, predicted BV), "
                                      "mean over folds (and repeats)")
    if "r" in fm:
        pa = fm.groupby("model", sort=False)["r"].agg(["mean", "std"])
        pa.columns = ["mean", "sd"]
        report.image(plots.ability_bars(pa, "Predictive ability r (mean ± sd over folds)"), width=420,
                     caption="Predictive ability per model: mean over folds, error bars ± 1 sd",
                     alt="Bar chart of the mean predictive ability of each model with ± sd error bars")
    report.end_grid()
    report.image(plots.observed_vs_predicted(predictions, "Observed phenotype vs out-of-fold prediction"),
                 alt="Scatter plots of the observed phenotype against the out-of-fold predicted breeding value",
                 caption="Each point is an individual predicted without its own phenotype (first repeat); "
                         "line: least-squares fit")
    models = list(dict.fromkeys(fm["model"]))
    if len(models) > 1 and "r" in fm:
        keys = ["repeat", "fold"] if fm["repeat"].nunique() > 1 else ["fold"]
        wide = fm.pivot_table(index=keys, columns="model", values=["r", "slope"], sort=False)
        wide = wide.reindex(columns=[(v, m) for v in ("r", "slope") for m in models])
        wide.columns = [f"{v} {m}" for v, m in wide.columns]
        n_test = fm.groupby(keys, sort=False)["n_test"].first()
        wide.insert(0, "n_test", n_test.reindex(wide.index).astype(int).to_numpy())
        report.table(wide, caption="Per fold: predictive ability r = cor(observed, predicted BV) and "
                                   "slope of observed on predicted (all metrics in cv_metrics.csv)")
    else:
        cols = [c for c in ("repeat", "fold", "n_train", "n_test", "r", "accuracy", "slope", "mse",
                            "spearman", "top_overlap", "sigma2_g", "h2") if c in fm]
        if fm["repeat"].nunique() <= 1:
            cols.remove("repeat")
        report.table(fm[cols], caption="Per-fold metrics (all in cv_metrics.csv)", index=False, max_rows=400)

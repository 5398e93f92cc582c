"""Cross-validation of multi-trait GBLUP: CV1 (new lines) and CV2 (trait-assisted).

For each fold (test lines F, training lines T, one record per line):

- **CV1**: every trait of F is masked. Σ_g, Σ_e are estimated by REML on T (complete
  records: the spectral path) and the GEBVs of F are their BLUPs as unphenotyped
  individuals of G.
- **CV2** (trait-assisted; Burgueño et al. 2012, Crop Sci. 52:707): only the ``target``
  trait of F is masked, the other traits of F stay observed. Σ_g, Σ_e are estimated by
  REML on T (the lines with every trait; the fold's secondary records do not enter the
  variance estimates), then the BLUP of the target trait of F given *all* observed
  records is computed exactly at those covariances by GLS on the observed part of the
  stacked data (:func:`conditional_blup`). The data are incomplete, so the rotation does
  not apply; the dense V of the observed records is factored once per fold.

Single-trait GBLUP (REML on T for that trait) runs on the same folds; the predictive
ability r(GEBV, y) on F is reported per trait for both, side by side.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.linalg as sla

from .._threads import blas_threads_for
from ..data.genotypes import Genotypes
from ..errors import BoundaryWarning, DataError, ModelError
from ..models._align import ID
from ..multitrait.fit import fit_traits
from ..relationships.container import as_relationship
from ..relationships.genomic import genomic_relationship

#: observed records above which the dense CV2 solve is refused (memory (n t)², time (n t)³)
DENSE_MAX = 12000


def conditional_blup(K: np.ndarray, codes: np.ndarray, Y: np.ndarray, Sg: np.ndarray, Se: np.ndarray):
    """BLUP of u (all N levels × t traits) from the observed entries of Y at known Σ_g, Σ_e.

    Parameters
    ----------
    K : (N, N) known covariance of the levels
    codes : (n,) level of each record (row of Y)
    Y : (n, t) records, NaN where a trait is not observed
    Sg, Se : (t, t)

    Returns
    -------
    U : (N, t)  û = Cov(u, y_o) V_oo⁻¹ (y_o − X_o b̂), X_o = trait intercepts
    b : (t,)    GLS b̂ = (X_o'V_oo⁻¹X_o)⁻¹ X_o'V_oo⁻¹ y_o

    Notes
    -----
    V_oo[a, b] = Σ_g[l_a, l_b] K[c_a, c_b] + Σ_e[l_a, l_b] [i_a = i_b] over observed
    entries a = (record i_a, trait l_a) (Henderson 1975; the standard BLUP with records
    missing at random).
    """
    n, t = Y.shape
    rec, tr = np.nonzero(~np.isnan(Y))
    if len(rec) > DENSE_MAX:
        raise ModelError(
            f"trait-assisted (CV2) prediction solves densely over the {len(rec)} observed records "
            f"(limit {DENSE_MAX}); CV2 on more records is not supported yet"
        )
    lev = codes[rec]
    y = Y[rec, tr]
    V = Sg[np.ix_(tr, tr)] * K[np.ix_(lev, lev)]
    V += Se[np.ix_(tr, tr)] * (rec[:, None] == rec[None, :])
    X = (tr[:, None] == np.arange(t)[None, :]).astype(float)
    keep = X.any(axis=0)
    X = X[:, keep]
    with blas_threads_for(len(rec)):  # small factorisations: one BLAS thread (see henderson._threads)
        cf = sla.cho_factor(V, lower=True, overwrite_a=True, check_finite=False)
        ViX = sla.cho_solve(cf, X, check_finite=False)
        Viy = sla.cho_solve(cf, y, check_finite=False)
    b = np.linalg.solve(X.T @ ViX, X.T @ Viy)
    alpha = Viy - ViX @ b  # V⁻¹(y − Xb̂)
    A = alpha[:, None] * Sg[:, tr].T  # row a: Σ_g[:, l_a] α_a
    U = K[:, lev] @ A
    bb = np.full(t, np.nan)
    bb[keep] = b
    return U, bb


@dataclass(frozen=True, eq=False)
class MultiTraitCVResult:
    """Per-trait predictive ability of multi-trait and single-trait GBLUP on the same folds.

    Attributes
    ----------
    predictions : DataFrame
        One row per (test line, trait predicted): ``id, repeat, fold, trait, observed,
        multi_trait, single_trait``.
    fold_metrics : DataFrame
        One row per (repeat, fold, trait): ``n_test, r_multi_trait, r_single_trait``
        and the fold's REML genetic correlations.
    summary : DataFrame
        Per trait: mean and SE over folds of both predictive abilities.
    design : str ("CV1" or "CV2"); settings : dict
    """

    predictions: pd.DataFrame
    fold_metrics: pd.DataFrame
    summary: pd.DataFrame
    design: str
    settings: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"MultiTraitCVResult({self.design}; predictive ability r(GEBV, y) per trait, mean over "
            f"folds (se)):\n{self.summary.to_string()}"
        )


def _corr(a, b) -> float:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _fold_predictions(split, test: pd.DataFrame, trait: str, multi, single) -> pd.DataFrame:
    """One fold's test lines for one trait: observed, multi-trait and single-trait predictions."""
    return pd.DataFrame(
        {
            "id": test.index,
            "repeat": split.repeat,
            "fold": split.fold,
            "trait": trait,
            "observed": test[trait].to_numpy(),
            "multi_trait": multi,
            "single_trait": single,
        }
    )


def cross_validate_traits(
    model,
    X,
    y: pd.DataFrame,
    *,
    design: str = "CV1",
    target=None,
    cv=5,
    repeats: int = 1,
    seed: int = 0,
    groups=None,
    progress=None,
) -> MultiTraitCVResult:
    """CV1 / CV2 for ``GBLUP(traits=[...])``, with single-trait GBLUP on the same folds.

    Parameters
    ----------
    model : GBLUP with ``traits`` set (its ``fixed`` must be None: trait intercepts)
    X : Genotypes or G (Relationship / DataFrame)
    y : DataFrame by id with the trait columns; every phenotyped line has every trait
    design : {"CV1", "CV2"}
    target : str or list, optional
        CV2: the trait(s) masked on the test lines, one at a time (default every trait).
        CV1: ignored (every trait is predicted).
    cv, repeats, seed, groups : as :func:`henderson.cross_validate` (folds of lines)
    """
    from .splits import make_splits, resolve_scheme

    t0 = time.perf_counter()
    design, traits, targets, phen = _checked_inputs(model, y, design, target)
    G = genomic_relationship(X, method=model.grm) if isinstance(X, Genotypes) else as_relationship(X, kind="G")
    pos = pd.Index(np.asarray(G.ids, dtype=str))
    codes_all = pos.get_indexer(phen.index)
    if (codes_all < 0).any():
        raise DataError(f"{int((codes_all < 0).sum())} phenotyped line(s) not in G")
    splits = make_splits(resolve_scheme(cv, groups), phen[traits[0]], repeats=repeats, seed=seed)
    Kd = G.dense()
    preds, metr, on_boundary = [], [], []
    for si, s in enumerate(splits):
        fold_preds, fold_metrics, boundary = _one_fold(s, phen, design, traits, targets, G, Kd, pos)
        preds += fold_preds
        metr += fold_metrics
        if boundary:
            on_boundary.append(s.fold)
        if progress is not None:
            progress(si + 1, len(splits), {"repeat": s.repeat, "fold": s.fold})
    fm = pd.DataFrame(metr)
    notes = []
    if on_boundary:
        notes.append(
            f"{len(on_boundary)} of {len(splits)} fold(s) estimated a genetic covariance matrix on the "
            "boundary (a genetic correlation of ±1) from their training lines"
        )
        warnings.warn(BoundaryWarning(notes[-1]), stacklevel=3)
    settings = {
        "notes": notes,
        "design": design,
        "traits": traits,
        "targets": targets if design == "CV2" else traits,
        "scheme": str(resolve_scheme(cv, groups).describe()),
        "repeats": repeats,
        "seed": seed,
        "variances": "REML on the training lines in every fold (multi-trait and single-trait)",
        "seconds": time.perf_counter() - t0,
    }
    return MultiTraitCVResult(pd.concat(preds, ignore_index=True), fm, _trait_summary(fm), design, settings)


def _one_fold(s, phen: pd.DataFrame, design: str, traits, targets, G, Kd: np.ndarray, pos: pd.Index):
    """One fold: (prediction tables, metric rows, whether Σ_g is on the boundary).

    Multi-trait GBLUP by REML on the training lines, and single-trait GBLUP of each scored
    trait beside it; CV2 predicts each target trait given the test lines' other traits.
    """
    from ..estimators import GBLUP

    train, test = phen.iloc[s.train_pos], phen.iloc[s.test_pos]
    mt, boundary = _fit_fold(train, traits, G)
    st = {
        k: GBLUP(pev=False).fit(G, train[k]).predict(list(test.index)).to_numpy()
        for k in _scored(design, traits, targets)
    }
    if design == "CV1":
        gebv = mt.gebv.loc[test.index]
        fold_preds = [_fold_predictions(s, test, k, gebv[k].to_numpy(), st[k]) for k in traits]
    else:
        Sg, Se = mt.covariances[ID].to_numpy(), mt.covariances["Residual"].to_numpy()
        both = pd.concat([train, test])
        codes = pos.get_indexer(both.index)
        fold_preds = []
        for k in targets:
            Yo = both.to_numpy(dtype=float).copy()
            Yo[len(train) :, traits.index(k)] = np.nan
            U, _ = conditional_blup(Kd, codes, Yo, Sg, Se)
            fold_preds.append(_fold_predictions(s, test, k, U[codes[len(train) :], traits.index(k)], st[k]))
    metrics = [_fold_metrics(s, row, len(train), len(test), mt.correlations[ID], traits) for row in fold_preds]
    return fold_preds, metrics, boundary


def _checked_inputs(model, y, design, target):
    """(design, traits, CV2 targets, the phenotyped lines' records), or errors naming what
    this path does not take (not GBLUP, fixed effects, repeated ids, missing traits)."""
    design = str(design).upper()
    if design not in ("CV1", "CV2"):
        raise ModelError(f"design must be 'CV1' (new lines) or 'CV2' (trait-assisted), not {design!r}")
    traits = [str(t) for t in model.traits]
    if type(model).__name__ != "GBLUP":
        raise ModelError(f"multi-trait cross-validation supports GBLUP(traits=...) so far, not {type(model).__name__}")
    if model.fixed is not None:
        raise ModelError("multi-trait cross-validation takes trait intercepts only (fixed=None) so far")
    if not isinstance(y, pd.DataFrame):
        raise DataError("multi-trait cross-validation needs y as a DataFrame by id with the trait columns")
    absent = [t for t in traits if t not in y.columns]
    if absent:
        raise DataError(f"trait column(s) {absent} not in y")
    Y = y[traits].copy()
    Y.index = Y.index.astype(str)
    if Y.index.has_duplicates:
        raise DataError("multi-trait cross-validation needs one record per line (y repeats ids)")
    Y = Y.apply(pd.to_numeric, errors="raise")
    phen = Y.dropna(how="all")
    if phen.isna().any().any():
        raise ModelError(
            "lines with some traits missing: multi-trait cross-validation needs every trait on "
            "every phenotyped line on this path (missing traits need the general engine)"
        )
    if target is None:
        return design, traits, traits, phen
    targets = [target] if isinstance(target, str) else list(target)
    bad = [t for t in targets if t not in traits]
    if bad:
        raise DataError(f"target trait(s) {bad} not among the model's traits {traits}")
    return design, traits, targets, phen


def _scored(design: str, traits: list, targets: list) -> list:
    """The traits a fold predicts: every trait (CV1) or the masked targets (CV2)."""
    return traits if design == "CV1" else targets


def _fit_fold(train: pd.DataFrame, traits: list, G):
    """Multi-trait REML on the fold's training lines; (fit, whether Σ_g is on the boundary).

    A BoundaryWarning is counted once for all folds by the caller, not repeated per fold;
    other warnings pass through.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BoundaryWarning)
        mt = fit_traits(train.reset_index(names=ID), traits, ID, G, pev=False)
    boundary = False
    for w in caught:
        if issubclass(w.category, BoundaryWarning):
            boundary = True
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return mt, boundary


def _fold_metrics(split, row: pd.DataFrame, n_train: int, n_test: int, rg: pd.DataFrame, traits: list) -> dict:
    """One fold's predictive abilities for one trait (multi- and single-trait) and its r_g."""
    k = row["trait"].iloc[0]
    return {
        "repeat": split.repeat,
        "fold": split.fold,
        "trait": k,
        "n_train": n_train,
        "n_test": n_test,
        "r_multi_trait": _corr(row["multi_trait"], row["observed"]),
        "r_single_trait": _corr(row["single_trait"], row["observed"]),
        **{f"rg_{k}_{o}": float(rg.loc[k, o]) for o in traits if o != k},
    }


def _trait_summary(fm: pd.DataFrame) -> pd.DataFrame:
    """Per trait: mean r of both models over folds with its SE, and the gain."""
    g = fm.groupby("trait", sort=False)
    summary = pd.DataFrame(
        {
            "r_multi_trait": g["r_multi_trait"].mean(),
            "se_multi_trait": g["r_multi_trait"].std() / np.sqrt(g.size()),
            "r_single_trait": g["r_single_trait"].mean(),
            "se_single_trait": g["r_single_trait"].std() / np.sqrt(g.size()),
            "folds": g.size(),
        }
    )
    summary["gain"] = summary["r_multi_trait"] - summary["r_single_trait"]
    return summary

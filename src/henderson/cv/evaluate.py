"""``cross_validate``: one call, every scheme, GBLUP / SNP-BLUP / pedigree BLUP.

How each model is cross-validated (fold F = validation ids, T = training ids):

- **GBLUP** and **pedigree BLUP**: the validation individuals stay in G (or the
  pedigree); their phenotypes are masked (NaN) and their GEBVs are taken from the fit
  on T. G is built once from all genotypes (all-individual allele frequencies).
- **SNP-BLUP**: fitted on the training genotypes only (allele frequencies p_T of the
  training set); marker effects are applied to the validation genotypes,
  ĝ_F = (X_F − 2p_T)β̂.

With the same variance components (σ²_β = σ²_g / 2Σp_a q_a, p_a the frequencies G was
built with) and an intercept in the model, the two give *identical* predicted
phenotypes, identical β̂, and breeding values that differ within a fold by the
constant 2(p_T − p_a)'β̂ (Strandén & Christensen 2011, GSE 43:25: allele coding only
moves the mean). GBLUP with G centred by p_T gives identical breeding values too.

Variance components are re-estimated by REML in every fold (``refit_variances=True``).
With ``refit_variances=False`` they are held at the full-data REML estimates (which saw
the validation phenotypes: ``CVResult.leakage_note`` says so) and GBLUP, and SNP-BLUP
without missing calls, use :mod:`henderson.cv.fast` (one factorisation for all folds).
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone

from ..data.genotypes import Genotypes
from ..errors import DataError, ModelError
from ..estimators import GBLUP, SNPBLUP, PedigreeBLUP
from ..models._align import ID, records_frame
from ..models.snpblup import centred_markers
from ..relationships.container import as_relationship
from ..relationships.genomic import genomic_relationship
from ..spec.model import build_spec
from .fast import FixedVarianceCV
from .metrics import fold_metrics as _fold_metrics
from .metrics import summarise
from .splits import Split, make_splits, resolve_scheme

LEAKAGE = ("LEAKAGE: variance components were held at their REML estimates from the FULL data set, "
           "which used the phenotypes of every validation fold. The predictions are therefore not "
           "fully out-of-sample (usually a small optimistic bias, larger for small training sets). "
           "Use refit_variances=True for an honest estimate.")


@dataclass(frozen=True, eq=False)
class CVResult:
    """Result of :func:`cross_validate`.

    Attributes
    ----------
    predictions : DataFrame
        One row per (repeat, validation id): ``id, repeat, fold, observed,
        predicted_bv, predicted_phenotype``.
    fold_metrics : DataFrame
        One row per repeat × fold: sizes, variance components used, h², method
        (``"fast"``, ``"refit"``, ``"fixed"``) and the metrics of
        :mod:`henderson.cv.metrics`.
    summary : DataFrame
        Per metric: ``mean``, ``sd``, ``n_folds`` over all folds, ``sd_over_repeats``.
    summary_by_repeat : DataFrame
        Fold means per repeat.
    settings : dict
        Scheme, seed, repeats, refit flag, path taken, model class and parameters,
        full-data variances (if used), versions, timings.
    leakage_note : str or None
        Set (loudly) when variances were held at full-data estimates.
    """

    predictions: pd.DataFrame
    fold_metrics: pd.DataFrame
    summary: pd.DataFrame
    summary_by_repeat: pd.DataFrame
    settings: dict = field(default_factory=dict)
    leakage_note: str | None = None

    def __repr__(self) -> str:
        s = self.settings
        head = (f"CVResult({s.get('model')}, {s.get('scheme')}, repeats={s.get('repeats')}, "
                f"refit_variances={s.get('refit_variances')}, path={s.get('path')})")
        body = self.summary[["mean", "sd", "n_folds"]].to_string(float_format=lambda v: f"{v:.4f}")
        note = f"\n{self.leakage_note}" if self.leakage_note else ""
        return f"{head}\n{body}{note}"


# --------------------------------------------------------------------------- helpers

def _versions() -> dict:
    import joblib
    import scipy
    import sklearn

    from .._version import __version__
    return {"henderson": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "pandas": pd.__version__, "scikit-learn": sklearn.__version__,
            "joblib": joblib.__version__, "python": platform.python_version()}


def _params(model) -> dict:
    out = {}
    for k, v in model.get_params(deep=False).items():
        out[k] = v if v is None or isinstance(v, (str, int, float, bool, tuple, list)) else repr(v)
    return out


def _clean_y(y) -> pd.Series:
    if not isinstance(y, pd.Series):
        raise DataError("y must be a pandas Series indexed by id (aligned by id, not position)")
    y = pd.to_numeric(pd.Series(y.to_numpy(), index=pd.Index(y.index.astype(str), name=ID), name=y.name),
                      errors="coerce")
    return y


def _masked(y: pd.Series, train) -> pd.Series:
    """y with every phenotype outside ``train`` set to NaN (those ids are predicted)."""
    out = y.copy()
    out[~out.index.isin(train)] = np.nan
    return out


class _FixedPart:
    """X_F b̂ for validation ids: intercept only, or the fixed formula on ``data``."""

    def __init__(self, model, y, data, known_ids):
        self.fixed = getattr(model, "fixed", None)
        if not self.fixed:
            self.design = None
            return
        frame, formula, *_ = records_frame(y.dropna(), known_ids, fixed=self.fixed, data=data, missing="drop")
        spec = build_spec(formula, frame)
        ids = frame.loc[spec.record_index, ID].to_numpy()
        self.design = pd.DataFrame(spec.X, index=pd.Index(ids, name=ID), columns=spec.x_names)

    def __call__(self, fitted, ids) -> np.ndarray:
        b = fitted.fixed_effects_["estimate"]
        if self.design is None:
            if list(b.index) != ["(Intercept)"]:
                raise ModelError(f"unexpected fixed effects {list(b.index)} without fixed=")
            return np.full(len(ids), float(b.iloc[0]))
        Xf = self.design.reindex(ids)
        known = Xf.columns.isin(b.index)
        out = Xf.loc[:, known].to_numpy() @ b.reindex(Xf.columns[known]).to_numpy()
        # a validation record in a level the training part never saw: not estimable
        unseen = (Xf.loc[:, ~known].to_numpy() != 0).any(axis=1) if (~known).any() else np.zeros(len(ids), bool)
        out[unseen] = np.nan
        return out


class FormulaModel(BaseEstimator):
    """A general :func:`henderson.fit` model for :func:`cross_validate`.

    ``fit(X, y)``: ``X`` is a DataFrame indexed by id with the covariates the formula
    uses (one row per id; the id is also available as column ``term``), ``y`` the
    phenotypes by id; the response of ``formula`` must be ``y.name``. Breeding values
    are the BLUPs of the random term ``term`` (levels are ids, e.g. with ``cov={"id": G}``
    or ``cov_inverse={"id": Ainv}``); predicted phenotypes are Xb̂ + Σₖ Zₖûₖ over all
    terms at the validation records (a level unseen in training contributes 0 for a
    random term and makes a fixed effect non-estimable → NaN).

    Parameters
    ----------
    formula : str, e.g. ``"y ~ x + (1|family) + (1|id)"``
    cov, cov_inverse : dict, optional (as :func:`henderson.fit`)
    term : str
        The random term whose BLUPs are the breeding values.
    method : {"reml", "ml"}
    sigma2 : array, optional
        Fixed variance components (terms in formula order, then residual).
    """

    def __init__(self, formula, cov=None, cov_inverse=None, term="id", method="reml", sigma2=None):
        self.formula = formula
        self.cov = cov
        self.cov_inverse = cov_inverse
        self.term = term
        self.method = method
        self.sigma2 = sigma2

    def _frame(self, X, y):
        X = pd.DataFrame(index=y.index) if X is None else X
        frame = X.copy()
        frame.index = pd.Index(frame.index.astype(str))
        frame = frame.reindex(y.index.astype(str))
        frame[self.term] = frame.index.to_numpy(dtype=object)
        frame[str(y.name)] = y.to_numpy()
        return frame.reset_index(drop=True)

    def fit(self, X, y, data=None):
        from ..api import fit as _fit
        if y.name is None or str(y.name) != self.formula.split("~")[0].strip():
            raise ModelError(f"the response of {self.formula!r} must be the name of y ({y.name!r})")
        frame = self._frame(X, y)
        frame = frame[frame[str(y.name)].notna()]  # masked / unphenotyped: predicted, not fitted
        self.result_ = res = _fit(self.formula, frame, cov=self.cov, cov_inverse=self.cov_inverse,
                                  method=self.method, sigma2=self.sigma2)
        if self.term not in res.blups:
            raise ModelError(f"term {self.term!r} is not a random term of {self.formula!r}")
        self.variance_components_ = res.variance_components
        self.fixed_effects_ = res.fixed_effects
        self.gebv_ = res.blups[self.term].rename(columns={"blup": "gebv"})
        self.h2_ = float(res.variance_components.loc[self.term, "ratio"])
        self.X_ = X
        return self

    def predict_records(self, y_full, ids) -> np.ndarray:
        """Xb̂ + Σₖ Zₖûₖ at the records of ``ids`` (phenotypes taken from ``y_full``)."""
        yy = y_full.loc[ids]
        spec = build_spec(self.formula, self._frame(self.X_, yy), cov=self.cov, cov_inverse=self.cov_inverse)
        b = self.fixed_effects_["estimate"]
        Xf = pd.DataFrame(spec.X, columns=spec.x_names)
        known = Xf.columns.isin(b.index)
        out = Xf.loc[:, known].to_numpy() @ b.reindex(Xf.columns[known]).to_numpy()
        if (~known).any():
            out[(Xf.loc[:, ~known].to_numpy() != 0).any(axis=1)] = np.nan
        for t in spec.terms:
            u = self.result_.blups[t.name]["blup"]
            out = out + u.reindex(t.levels[t.codes]).fillna(0.0).to_numpy()
        full = np.full(len(ids), np.nan)
        full[np.asarray(spec.record_index)] = out
        return full


@dataclass
class _Task:
    kind: str            # "gblup", "snpblup", "pblup"
    model: object
    X: object            # G Relationship / Genotypes / pedigree
    y: pd.Series
    data: object
    sigma2: object       # None → REML in the fold
    fixed_part: _FixedPart
    blas_threads: int

    def run(self, split: Split) -> tuple:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.blas_threads):
            m = clone(self.model)
            if self.sigma2 is not None:
                m.set_params(sigma2=self.sigma2)
            if "pev" in m.get_params():
                m.set_params(pev=False)
            test = split.test
            if self.kind == "snpblup":
                ytr = self.y.loc[split.train]
                m.fit(self.X.subset(ids=split.train), ytr, data=self.data)
                bv = m.predict(self.X.subset(ids=test)).loc[test].to_numpy()
            else:
                m.fit(self.X, _masked(self.y, split.train), data=self.data)
                bv = m.gebv_["gebv"].reindex(test).to_numpy()
            if self.kind == "formula":
                yhat = m.predict_records(self.y, test)
                vc = m.variance_components_["variance"]
                return bv, yhat, float(m.h2_), float(vc[m.term]), float(vc["Residual"])
            yhat = self.fixed_part(m, test) + bv
            vc = m.variance_components_["variance"]
            s_g = float(m.sigma2_g_) if self.kind == "snpblup" else float(vc[ID])
            return bv, yhat, float(m.h2_), s_g, float(vc["Residual"])


# --------------------------------------------------------------------------- main

def cross_validate(model, X, y, cv=5, repeats=1, refit_variances=True, n_jobs=1, seed=0,
                   groups=None, data=None, top=0.10, fast="auto") -> CVResult:
    """Cross-validate a genomic (or pedigree) prediction model.

    Parameters
    ----------
    model : GBLUP, SNPBLUP, PedigreeBLUP or :class:`FormulaModel` (unfitted; cloned per fold)
    X : Genotypes, a G Relationship/DataFrame (GBLUP), a pedigree (PedigreeBLUP), or a
        covariate DataFrame indexed by id (FormulaModel)
    y : Series indexed by id
        Phenotypes; NaN ids are never validated (for GBLUP / pedigree BLUP they stay in
        the model as unphenotyped individuals).
    cv : int, "loo", "logo", Series of folds by id, a scheme of
        :mod:`henderson.cv.splits` (``KFold``, ``LeaveOneOut``, ``GroupFolds``,
        ``ForwardInTime``, ``GivenFolds``) or a scikit-learn splitter
    repeats : int
        Repeats of a random scheme (re-drawn folds, seeded by ``(seed, repeat)``).
    refit_variances : bool
        Re-estimate variance components by REML in every fold (honest, default), or
        hold them at the full-data REML estimates (fast; sets ``leakage_note``).
    n_jobs : int
        Folds fitted in parallel by joblib; BLAS threads are capped at
        ``cpu_count // n_jobs`` per worker (threadpoolctl).
    seed : int
    groups : Series by id or column of ``data``
        For ``cv="logo"`` (leave-one-group-out), an int ``cv`` (groups dealt to folds),
        or a scikit-learn group splitter.
    data : DataFrame indexed by id, optional
        Covariates of the model's ``fixed=`` part.
    top : float
        Selected fraction for the top-k% overlap metric.
    fast : {"auto", True, False}
        At fixed variances (``refit_variances=False`` or the model's own ``sigma2``),
        ``"auto"`` uses :class:`~henderson.cv.fast.FixedVarianceCV` where it is exact
        (GBLUP; SNP-BLUP without missing calls and with an intercept; every fold trains
        on all other phenotyped ids). ``False`` forces one fit per fold; ``True`` raises
        if the fast path does not apply.

    Returns
    -------
    CVResult
    """
    t0 = time.perf_counter()
    kind = {GBLUP: "gblup", SNPBLUP: "snpblup", PedigreeBLUP: "pblup", FormulaModel: "formula"}.get(type(model))
    if kind is None:
        raise ModelError("cross_validate supports GBLUP, SNPBLUP, PedigreeBLUP and FormulaModel, "
                         f"not {type(model).__name__}")
    y = _clean_y(y)
    if kind == "snpblup" and not isinstance(X, Genotypes):
        raise DataError("SNPBLUP cross-validation needs Genotypes as X")
    if kind == "gblup":
        geno = X if isinstance(X, Genotypes) else None
        K = genomic_relationship(X, method=model.grm) if geno is not None else as_relationship(X, kind="G")
        Xfit, known = K, K.ids
    elif kind == "snpblup":
        geno, Xfit, known = X, X, X.ids
    elif kind == "formula":
        geno, Xfit, known = None, X, None
    else:
        geno, Xfit = None, X
        from ..data.pedigree import Pedigree
        known = X.ids if isinstance(X, Pedigree) else (pd.Index(X.iloc[:, 0].astype(str)) if isinstance(X, pd.DataFrame) else None)

    scheme = resolve_scheme(cv, groups)
    splits = make_splits(scheme, y, repeats=repeats, seed=seed, data=data)
    absent = pd.Index(y.dropna().index)[~pd.Index(y.dropna().index).isin(np.asarray(known, dtype=object))] \
        if known is not None else []
    if len(absent):
        from ..errors import AlignmentError, format_ids
        raise AlignmentError(f"{len(absent)} phenotyped id(s) are not in the model's X: " + format_ids(absent))
    fixed_part = _FixedPart(model, y, data, known) if kind != "formula" else None

    user_sigma2 = model.get_params().get("sigma2") is not None
    full = None
    sigma2 = None
    if user_sigma2:
        sigma2 = model.get_params()["sigma2"]
    elif not refit_variances:
        full = clone(model)
        if "pev" in full.get_params():
            full.set_params(pev=False)
        full.fit(Xfit, y.dropna(), data=data)
        sigma2 = tuple(float(v) for v in full.variance_components_["variance"])

    jobs = int(n_jobs) if n_jobs and n_jobs > 0 else (os.cpu_count() or 1)
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    rows, path = None, None
    if fast not in ("auto", True, False):
        raise DataError(f"fast must be 'auto', True or False, not {fast!r}")
    if sigma2 is not None and kind in ("gblup", "snpblup") and fast is not False:
        rows, path = _fast_rows(kind, model, K if kind == "gblup" else None, geno, y, data, sigma2, splits, full)
    if rows is None and fast is True:
        raise ModelError("fast=True: the fast fixed-variance path does not apply here (it needs fixed "
                         "variances, GBLUP or SNP-BLUP without missing calls and with an intercept, and "
                         "folds that train on all other phenotyped ids)")
    if rows is None:
        task = _Task(kind, model, Xfit, y, data, sigma2, fixed_part, threads)
        if jobs == 1:
            outs = [task.run(s) for s in splits]
        else:
            from joblib import Parallel, delayed
            outs = Parallel(n_jobs=jobs)(delayed(task.run)(s) for s in splits)
        rows = outs
        path = "refit" if sigma2 is None else "fixed"

    preds, metr = [], []
    for s, (bv, yhat, h2, s_g, s_e) in zip(splits, rows):
        obs = y.loc[s.test].to_numpy()
        preds.append(pd.DataFrame({"id": s.test, "repeat": s.repeat, "fold": s.fold, "observed": obs,
                                   "predicted_bv": bv, "predicted_phenotype": yhat}))
        ok = ~np.isnan(yhat)
        m = _fold_metrics(obs[ok], bv[ok], yhat[ok], h2, top)
        metr.append({"repeat": s.repeat, "fold": s.fold, "n_train": len(s.train), "n_test": len(s.test),
                     "sigma2_g": s_g, "sigma2_e": s_e, "h2": h2, "method": path, **m})
    predictions = pd.concat(preds, ignore_index=True)
    fm = pd.DataFrame(metr)
    summary, by_rep = summarise(fm)
    settings = {
        "model": type(model).__name__, "model_params": _params(model), "scheme": scheme.describe(),
        "seed": seed, "repeats": repeats, "refit_variances": bool(refit_variances and not user_sigma2),
        "variances_given_by_user": user_sigma2, "path": path, "n_jobs": jobs, "blas_threads_per_job": threads,
        "n_phenotyped": int(y.notna().sum()), "top": top,
        "full_data_variances": (None if full is None else
                                full.variance_components_["variance"].to_dict()),
        "versions": _versions(), "seconds": time.perf_counter() - t0,
    }
    leak = LEAKAGE if (not refit_variances and not user_sigma2) else None
    return CVResult(predictions, fm, summary, by_rep, settings, leak)


# --------------------------------------------------------------------------- fast path

def _records(model, K_ids, y, data):
    """y, X (fixed design) and record ids of the phenotyped records."""
    frame, formula, *_ = records_frame(y.dropna(), K_ids, fixed=model.fixed, data=data)
    spec = build_spec(formula, frame)
    ids = frame.loc[spec.record_index, ID].to_numpy(dtype=object)
    return spec.y, spec.X, ids, spec.x_names


def _fast_rows(kind, model, K, geno, y, data, sigma2, splits, full):
    """Rows (bv, ŷ, h², σ²_g, σ²_e) per split from one factorisation, or None (brute force)."""
    s_k, s_e = (float(v) for v in sigma2)
    if kind == "gblup":
        ids_all = K.ids
    else:
        if geno.n_missing > 0:
            return None, None  # W_T ≠ W_a + 1·2(p_a − p_T)' for mean-imputed calls
        ids_all = geno.ids
    yv, Xd, rec_ids, x_names = _records(model, ids_all, y, data)
    if "(Intercept)" not in x_names and kind == "snpblup":
        return None, None  # centring invariance needs an intercept
    pos = pd.Index(rec_ids)
    n = len(rec_ids)
    # every split must train on all other phenotyped records (else: brute force)
    for s in splits:
        if len(s.train) + len(s.test) != n:
            return None, None
    if kind == "gblup":
        kpos = K.index_of(rec_ids)
        Kr = K.dense()[np.ix_(kpos, kpos)]
        h2 = s_k / (s_k + s_e)
        s_g_report = s_k
    else:
        sub = geno.subset(ids=rec_ids)
        W, p_a = centred_markers(sub)
        Kr = W @ W.T
        c = 2.0 * np.sum(p_a * (1 - p_a))
        h2 = float(full.h2_) if full is not None else c * s_k / (c * s_k + s_e)
        s_g_report = c * s_k
        dos = sub.dosages.astype(np.float64)
    st = FixedVarianceCV.build(yv, Xd, Kr, s_k, s_e)
    loo = all(len(s.test) == 1 for s in splits) and n == len(splits)
    rows = []
    if loo and kind == "gblup":
        yhat, bv = st.leave_one_out(rec_ids)
        for s in splits:
            j = pos.get_loc(s.test[0])
            rows.append((bv[j:j + 1], yhat[j:j + 1], h2, s_g_report, s_e))
        return rows, "fast"
    if loo:  # SNP-BLUP LOO, vectorised over individuals
        yhat, bv_a = st.leave_one_out(rec_ids)
        B = s_k * (W.T @ st.loo_u())                          # β̂(−i) as columns (m, n)
        p_t = (dos.sum(0)[:, None] - dos.T) / (2.0 * (n - 1))  # training freqs (m, n)
        bv = bv_a + np.einsum("mi,mi->i", 2.0 * (p_a[:, None] - p_t), B)
        for s in splits:
            j = pos.get_loc(s.test[0])
            rows.append((bv[j:j + 1], yhat[j:j + 1], h2, s_g_report, s_e))
        return rows, "fast"
    for s in splits:
        t = pos.get_indexer(s.test)
        yhat, bv, u = st.fold(t, label=s.fold)
        if kind == "snpblup":
            beta = s_k * (W.T @ u)
            tr = np.setdiff1d(np.arange(n), t)
            p_t = dos[tr].mean(0) / 2.0
            bv = bv + 2.0 * (p_a - p_t) @ beta
        rows.append((bv, yhat, h2, s_g_report, s_e))
    return rows, "fast"

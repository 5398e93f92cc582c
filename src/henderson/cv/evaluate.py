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
without missing calls, use :mod:`henderson.cv.fast` (one factorisation for all folds;
:mod:`henderson.cv._fastpath`).

Everything is indexed by record position in y (:class:`~henderson.cv.splits.Split`
``train_pos``/``test_pos``): with one record per id that is the same as by id; with
repeated records (one per environment) a grouped scheme masks records, so a line can
train on its records in other environments while its held-out records are predicted.
SNP-BLUP folds fit on the SNPs informative in their training lines
(:mod:`henderson.cv._snps`). Metrics: :mod:`henderson.cv.metrics`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .multitrait import MultiTraitCVResult

import functools
import os
import platform
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from ..data.genotypes import Genotypes
from ..errors import AlignmentError, DataError, DataWarning, ModelError, format_ids
from ..estimators import GBLUP, SNPBLUP, PedigreeBLUP
from ..models._align import ID, genetic_spec, numeric_phenotypes, records_frame, trait_name
from ..relationships.container import as_relationship
from ..relationships.genomic import genomic_relationship
from ._fastpath import fast_rows
from ._snps import informative_snps, two_sum_pq
from .formula import FormulaModel
from .metrics import check_top, headline_basis, is_constant, pooled_metrics, summarise
from .metrics import fold_metrics as _fold_metrics
from .splits import Split, label_notes, make_splits, resolve_scheme

__all__ = ["cross_validate", "CVResult", "FormulaModel"]

LEAKAGE = (
    "LEAKAGE: variance components were held at their REML estimates from the FULL data set, "
    "which used the phenotypes of every validation fold. The predictions are therefore not "
    "fully out-of-sample (usually a small optimistic bias, larger for small training sets). "
    "Use refit_variances=True for an honest estimate."
)


@dataclass(frozen=True, eq=False)
class CVResult:
    """Result of :func:`cross_validate`.

    Attributes
    ----------
    predictions : DataFrame
        One row per (repeat, validation record): ``id, repeat, fold, observed,
        predicted_bv, predicted_phenotype`` (and ``record``, the position in y, when y
        has repeated records per id).
    fold_metrics : DataFrame
        One row per repeat × fold: sizes, variance components used, h², method
        (``"fast"``, ``"refit"``, ``"fixed"``), the metrics of
        :mod:`henderson.cv.metrics` (NaN where a fold is too small for them) and, for
        SNP-BLUP, ``n_snps_dropped`` (SNPs without calls or monomorphic in the fold's
        training set, left out of that fold's fit).
    summary : DataFrame
        Per metric: ``mean``, ``sd``, ``n_folds`` over all folds, ``sd_over_repeats``,
        ``pooled`` (mean over repeats of ``pooled_metrics``), ``pooled_sd_over_repeats``
        and ``headline`` (``pooled`` for leave-one-out and other tiny folds, else
        ``mean``; ``settings["headline"]`` says which).
    summary_by_repeat : DataFrame
        Fold means per repeat.
    settings : dict
        Scheme, seed, repeats, refit flag, path taken, model class and parameters,
        full-data variances (if used), versions, timings, notes.
    leakage_note : str or None
        Set (loudly) when variances were held at full-data estimates.
    pooled_metrics : DataFrame
        Per repeat, the metrics over all its out-of-fold predictions (the per-fold
        definitions; see :mod:`henderson.cv.metrics`), and ``n_folds``.
    """

    predictions: pd.DataFrame
    fold_metrics: pd.DataFrame
    summary: pd.DataFrame
    summary_by_repeat: pd.DataFrame
    settings: dict = field(default_factory=dict)
    leakage_note: str | None = None
    pooled_metrics: pd.DataFrame | None = None

    def __repr__(self) -> str:
        s = self.settings
        head = (
            f"CVResult({s.get('model')}, {s.get('scheme')}, repeats={s.get('repeats')}, "
            f"refit_variances={s.get('refit_variances')}, path={s.get('path')})"
        )
        cols = [c for c in ("headline", "mean", "sd", "n_folds", "pooled") if c in self.summary]
        body = self.summary[cols].to_string(float_format=lambda v: f"{v:.4f}")
        basis = f"\nheadline: {s['headline']}" if s.get("headline") else ""
        note = f"\n{self.leakage_note}" if self.leakage_note else ""
        return f"{head}\n{body}{basis}{note}"


# --------------------------------------------------------------------------- helpers


def _versions() -> dict:
    import joblib
    import scipy
    import sklearn

    from .._version import __version__

    return {
        "henderson": __version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
        "joblib": joblib.__version__,
        "python": platform.python_version(),
    }


def _params(model) -> dict:
    out = {}
    for k, v in model.get_params(deep=False).items():
        out[k] = v if v is None or isinstance(v, (str, int, float, bool, tuple, list)) else repr(v)
    return out


def _clean_y(y) -> pd.Series:
    """y with str ids and float values; text or inf is an error naming ids, as in every
    fit (:func:`~henderson.data.phenotypes.numeric_phenotypes`), never a silent NaN."""
    if not isinstance(y, pd.Series):
        raise DataError("y must be a pandas Series indexed by id (aligned by id, not position)")
    ids = pd.Index(y.index.astype(str), name=ID)
    return pd.Series(numeric_phenotypes(y, ids, trait_name(y)).to_numpy(), index=ids, name=y.name)


def _examples(ids, k: int = 3) -> str:
    ids = list(pd.unique(np.asarray(ids, dtype=object)))[:k]
    return ", ".join(repr(str(i)) for i in ids)


def _unknown_ids(model, y: pd.Series, known, notes: list) -> pd.Series:
    """Phenotyped ids absent from X: an error naming them, or (the model's
    ``missing="drop"``, the CLI's --drop-unknown) their phenotypes set to NaN and counted,
    as every fit does. No id in common is always an error showing ids of both sides."""
    if known is None:
        return y
    phen = pd.Index(pd.unique(y.dropna().index))
    known = pd.Index(np.asarray(known, dtype=object).astype(str))
    absent = phen[~phen.isin(known)]
    if not len(absent):
        return y
    if len(absent) == len(phen):
        raise AlignmentError(
            f"no phenotyped id is in the model's X: none of the {len(phen)} phenotyped ids matches one of "
            f"the {len(known)} ids of X (phenotype ids: {_examples(phen)}; ids of X: {_examples(known)}). "
            "Check the id column and the id format (leading zeros, prefixes)"
        )
    if model.get_params().get("missing", "error") != "drop":
        raise AlignmentError(
            f"{len(absent)} phenotyped id(s) are not in the model's X: "
            + format_ids(absent)
            + " (pass missing='drop' to drop them, counted)"
        )
    drop = y.index.isin(absent)
    msg = (
        f"{len(absent)} phenotyped id(s) are not in the model's X ({int(drop.sum())} record(s) left out of "
        f"every fold, {len(phen) - len(absent)} ids kept): {format_ids(absent)}"
    )
    import warnings

    warnings.warn(DataWarning(msg), stacklevel=3)
    notes.append(msg)
    y = y.copy()
    y[drop] = np.nan  # not phenotyped: never validated, never fitted (positions stay aligned with data)
    return y


def _fold_warnings(rows) -> list[str]:
    """Each kind of warning raised in the folds, said once with the number of folds."""
    import re
    import warnings

    seen: dict = {}
    for row in rows:
        for cat, msg in row.get("warnings") or []:
            first = msg.splitlines()[0] if msg else ""
            key = (cat, re.sub(r"[-+]?\d[\d.eE+-]*", "#", first))
            seen.setdefault(key, [first, 0])[1] += 1
    out = []
    for (cat, _), (first, count) in seen.items():
        text = f"{count} of {len(rows)} fold(s): {first}"
        warnings.warn(cat(text) if isinstance(cat, type) and issubclass(cat, Warning) else text, stacklevel=3)
        out.append(text)
    return out


def _masked(y: pd.Series, train_pos) -> pd.Series:
    """y with every record outside ``train_pos`` set to NaN (those are predicted)."""
    out = y.copy()
    keep = np.zeros(len(y), bool)
    keep[train_pos] = True
    out[~keep] = np.nan
    return out


class _FixedPart:
    """X_F b̂ at validation records (positions in y): intercept only, or the fixed
    formula on ``data`` (by id, or by record when y repeats ids)."""

    def __init__(self, model, y, data, known_ids):
        self.fixed = getattr(model, "fixed", None)
        if not self.fixed:
            self.design = None
            return
        frame, formula, *_ = records_frame(y, known_ids, fixed=self.fixed, data=data, missing="drop")
        spec = genetic_spec(frame, formula)
        kept = np.flatnonzero(y.notna().to_numpy() & y.index.isin(np.asarray(known_ids, dtype=object)))
        pos = kept[frame.index.get_indexer(spec.record_index)]
        self.design = pd.DataFrame(spec.X, index=pos, columns=spec.x_names)

    def __call__(self, fitted, test_pos) -> np.ndarray:
        b = fitted.fixed_effects_["estimate"]
        if self.design is None:
            if list(b.index) != ["(Intercept)"]:
                raise ModelError(f"unexpected fixed effects {list(b.index)} without fixed=")
            return np.full(len(test_pos), float(b.iloc[0]))
        Xf = self.design.reindex(test_pos)
        known = Xf.columns.isin(b.index)
        out = Xf.loc[:, known].to_numpy() @ b.reindex(Xf.columns[known]).to_numpy()
        # a validation record in a level the training part never saw: not estimable
        unseen = (Xf.loc[:, ~known].to_numpy() != 0).any(axis=1) if (~known).any() else np.zeros(len(test_pos), bool)
        out[unseen] = np.nan
        return out


def _cpu_count() -> int:
    return os.cpu_count() or 1


def _blas_threads_now() -> int:
    from threadpoolctl import threadpool_info

    return max([d["num_threads"] for d in threadpool_info() if d.get("user_api") == "blas"], default=0)


@dataclass
class _Task:
    kind: str  # "gblup", "snpblup", "pblup", "formula"
    model: Any
    X: Any  # G Relationship / Genotypes / pedigree / covariates
    y: pd.Series  # all records (str ids; NaN = not phenotyped)
    data: Any
    sigma2: Any  # None → REML in the fold
    fixed_part: _FixedPart
    blas_threads: int
    snp_scale: float = np.nan  # 2Σp_a q_a: σ²_g of SNP-BLUP at held variances
    probe_threads: bool = False  # report the BLAS threads in effect (parallel runs)

    def run(self, split: Split) -> dict:
        import warnings

        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.blas_threads), warnings.catch_warnings(record=True) as caught:
            # the fold's warnings are returned, to be said once for all folds (_fold_warnings)
            warnings.simplefilter("always")
            seen = _blas_threads_now() if self.probe_threads else None
            m = clone(self.model)
            if self.sigma2 is not None:
                m.set_params(sigma2=self.sigma2)
            if "pev" in m.get_params():
                m.set_params(pev=False)
            test_ids = self.y.index[split.test_pos]
            bv, dropped = self._fit_and_predict(m, split, test_ids)
            vc = m.variance_components_["variance"]
            yhat, h2, s_g = self._fold_figures(m, split.test_pos, test_ids, bv)
            return {
                "bv": bv,
                "yhat": yhat,
                "h2": h2,
                "sigma2_g": s_g,
                "sigma2_e": float(vc["Residual"]),
                "n_snps_dropped": dropped,
                "blas_threads": seen,
                "warnings": [(w.category, str(w.message)) for w in caught],
            }

    def _fit_and_predict(self, m, split: Split, test_ids) -> tuple[np.ndarray, int | None]:
        """Fit ``m`` to the training records; the test ids' breeding values and the SNPs dropped."""
        ym = _masked(self.y, split.train_pos)
        if self.kind != "snpblup":
            m.fit(self.X, ym, data=self.data)
            return m.gebv_["gebv"].reindex(test_ids).to_numpy(), None
        # marker effects from the training lines' genotypes only (frequencies p_T)
        sub = self.X.subset(ids=pd.unique(self.y.index[split.train_pos]))
        keep = informative_snps(sub)
        dropped = int(np.count_nonzero(~keep))
        if dropped:
            sub = sub.subset(snps=sub.snp_ids[keep])
        m.fit(sub, ym, data=self.data)
        return m.predict(self.X.subset(ids=pd.unique(test_ids))).reindex(test_ids).to_numpy(), dropped

    def _fold_figures(self, m, tp, test_ids, bv) -> tuple[np.ndarray, float, float]:
        """(predicted phenotypes of the test records, h², σ²_g) of the fold's fit."""
        vc = m.variance_components_["variance"]
        if self.kind == "formula":
            return m.predict_records(self.y, test_ids), float(m.h2_), float(vc[m.term])
        yhat = self.fixed_part(m, tp) + bv
        h2, s_g = float(m.h2_), float(vc[ID])
        if self.kind == "snpblup":
            s_g = float(m.sigma2_g_)
            if self.sigma2 is not None:  # held variances: the full-data scale, as the fast path
                s_g = self.snp_scale * float(self.sigma2[0])
                h2 = s_g / (s_g + float(self.sigma2[1]))
        return yhat, h2, s_g


def _run_indexed(task: _Task, i: int, split: Split):
    return i, task.run(split)


def _run_folds(task: _Task, splits, jobs: int, path: str, progress, scheduler=None) -> list[dict]:
    """One fit per split, in order; ``progress`` after each completed fold."""
    total = len(splits)
    if scheduler is not None:
        from ..distributed.cv import run_folds_on_cluster

        return run_folds_on_cluster(
            task,
            splits,
            scheduler,
            lambda done, i: progress(done, total, splits[i].progress_info(path)) if progress is not None else None,
        )
    if jobs == 1:
        outs = []
        for s in splits:
            outs.append(task.run(s))
            if progress is not None:
                progress(len(outs), total, s.progress_info(path))
        return outs
    from joblib import Parallel, delayed

    by_split: dict[int, dict] = {}
    gen = Parallel(n_jobs=jobs, return_as="generator_unordered")(
        delayed(_run_indexed)(task, i, s) for i, s in enumerate(splits)
    )
    for done, (i, out) in enumerate(gen, start=1):  # as each worker finishes
        by_split[i] = out
        if progress is not None:
            progress(done, total, splits[i].progress_info(path))
    return [by_split[i] for i in range(total)]


# --------------------------------------------------------------------------- main


def cross_validate(
    model,
    X,
    y,
    cv=5,
    repeats=1,
    refit_variances=True,
    n_jobs=1,
    seed=0,
    groups=None,
    data=None,
    top=0.10,
    fast="auto",
    progress=None,
    scheduler=None,
    design="CV1",
    target=None,
) -> CVResult | MultiTraitCVResult:
    """Cross-validate a genomic (or pedigree) prediction model.

    Parameters
    ----------
    model : GBLUP, SNPBLUP, PedigreeBLUP or :class:`FormulaModel` (unfitted; cloned per fold)
    X : Genotypes, a G Relationship/DataFrame (GBLUP), a pedigree (PedigreeBLUP), or a
        covariate DataFrame indexed by id (FormulaModel)
    y : Series indexed by id
        Phenotypes; NaN ids are never validated (for GBLUP / pedigree BLUP they stay in
        the model as unphenotyped individuals). Repeated ids are repeated records (e.g.
        one per environment): GBLUP, SNP-BLUP and pedigree BLUP then take a grouped
        scheme with one label per record (leave-environment-out:
        ``cv="logo", groups=env`` with ``env`` aligned with y record by record), train
        on the other records (lines may be shared) and predict the held-out records.
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
    groups : Series by id (by record for repeated records) or column of ``data``
        For ``cv="logo"`` (leave-one-group-out), an int ``cv`` (groups dealt to folds),
        or a scikit-learn group splitter.
    data : DataFrame indexed by id (one row per record for repeated records), optional
        Covariates of the model's ``fixed=`` part.
    top : float, 0 < top ≤ 1
        Selected fraction for the top-k% overlap metric.
    fast : {"auto", True, False}
        At fixed variances (``refit_variances=False`` or the model's own ``sigma2``),
        ``"auto"`` uses :class:`~henderson.cv.fast.FixedVarianceCV` where it is exact
        (GBLUP; SNP-BLUP without missing calls and with an intercept; every fold trains
        on all other phenotyped records). ``False`` forces one fit per fold; ``True``
        raises if the fast path does not apply.
    progress : callable, optional
        ``progress(done, total, info)`` after each fold (also from the parallel path, as
        workers finish); ``info`` is a dict ``repeat, fold, n_train, n_test, path``.
    scheduler : dask.distributed.Client or str, optional
        Run the folds as Dask tasks on that cluster (the model's inputs are sent to the
        workers once), and build G from genotypes there too; ``n_jobs`` is then unused.
        Default: in-process (docs/scaling.md).
    design, target : multi-trait models only (``GBLUP(traits=[...])``, y a DataFrame)
        ``"CV1"`` (new lines: every trait masked) or ``"CV2"`` (trait-assisted: the
        ``target`` trait masked on the test lines, the others kept); returns a
        :class:`~henderson.cv.multitrait.MultiTraitCVResult` with single-trait GBLUP
        on the same folds side by side (:mod:`henderson.cv.multitrait`).

    Returns
    -------
    CVResult
    """
    t0 = time.perf_counter()
    if getattr(model, "traits", None) is not None:
        from .multitrait import cross_validate_traits

        return cross_validate_traits(
            model,
            X,
            y,
            design=design,
            target=target,
            cv=cv,
            repeats=repeats,
            seed=seed,
            groups=groups,
            progress=progress,
        )
    kind = _cv_kind(model)
    top = check_top(top)
    _check_options(fast, progress)
    model, scheduler = _without_scheduler(model, scheduler)
    y = _clean_y(y)
    by_record = y.index.has_duplicates
    if by_record and kind == "formula":
        raise DataError(
            "FormulaModel cross-validation needs one phenotype per id; y repeats ids. Use GBLUP, "
            "SNPBLUP or PedigreeBLUP (records by id), or average the records per id first"
        )
    Xfit, known, K, geno = _cv_inputs(model, X, scheduler)

    notes: list[str] = []
    y = _unknown_ids(model, y, known, notes)
    scheme = resolve_scheme(cv, groups)
    notes += label_notes(scheme, y, data)
    splits = make_splits(scheme, y, repeats=repeats, seed=seed, data=data)
    fixed_part = _FixedPart(model, y, data, known) if kind != "formula" else None
    user_sigma2 = model.get_params().get("sigma2") is not None
    sigma2, full = _fold_variances(model, refit_variances, Xfit, y, data)

    jobs = int(n_jobs) if n_jobs and n_jobs > 0 else _cpu_count()
    threads = max(1, _cpu_count() // max(1, jobs))
    rows, path = _predict_folds(
        kind, model, (Xfit, K, geno), y, data, sigma2, splits, fixed_part, fast, jobs, progress, scheduler
    )

    predictions, fm = _fold_tables(splits, rows, y, by_record, path, top, kind == "snpblup")
    pooled = pooled_metrics(predictions, fm, top)
    summary, by_rep = summarise(fm, pooled)
    notes += _fold_warnings(rows)
    notes += _constant_fold_note(splits, rows, y)
    notes += _snp_dropped_note(kind, fm, geno)
    settings = {
        "model": type(model).__name__,
        "model_params": _params(model),
        "scheme": scheme.describe(),
        "seed": seed,
        "repeats": repeats,
        "refit_variances": bool(refit_variances and not user_sigma2),
        "variances_given_by_user": user_sigma2,
        "path": path,
        "n_jobs": jobs,
        "blas_threads_per_job": threads,
        "blas_threads_seen_in_workers": sorted({r["blas_threads"] for r in rows if r.get("blas_threads") is not None})
        or None,
        "scheduler": _scheduler_name(scheduler),
        "n_phenotyped": int(y.notna().sum()),
        "records_by_id": by_record,
        "top": top,
        "headline": _headline(fm),
        "full_data_variances": (None if full is None else full.variance_components_["variance"].to_dict()),
        "notes": notes,
        "versions": _versions(),
        "seconds": time.perf_counter() - t0,
    }
    leak = LEAKAGE if (not refit_variances and not user_sigma2) else None
    return CVResult(predictions, fm, summary, by_rep, settings, leak, pooled)


def _predict_folds(kind, model, inputs, y, data, sigma2, splits, fixed_part, fast, jobs, progress, scheduler):
    """(one row per fold and test record set, the path taken): the exact fixed-variance fast
    path when it applies (:func:`~henderson.cv._fastpath.fast_rows`), else one fit per fold
    ("refit" re-estimates the variances, "fixed" holds ``sigma2``), in parallel or on Dask."""
    Xfit, K, geno = inputs
    threads = max(1, _cpu_count() // max(1, jobs))
    rows, path = None, None
    if sigma2 is not None and kind in ("gblup", "snpblup") and fast is not False:
        rows = fast_rows(kind, model, K, geno, y, data, sigma2, splits, progress, strict=fast is True)
        path = "fast" if rows is not None else None
    if rows is None and fast is True:
        raise ModelError(
            "fast=True: the fast fixed-variance path does not apply here (it needs fixed "
            "variances, GBLUP or SNP-BLUP without missing calls and with an intercept, and "
            "folds that train on all other phenotyped records)"
        )
    if rows is None:
        path = "refit" if sigma2 is None else "fixed"
        task = _Task(
            kind,
            model,
            Xfit,
            y,
            data,
            sigma2,
            fixed_part,
            threads,
            snp_scale=two_sum_pq(geno) if kind == "snpblup" else np.nan,
            probe_threads=jobs > 1,
        )
        rows = _run_folds(task, splits, jobs, path, progress, scheduler)
    return rows, path


def _check_options(fast, progress) -> None:
    """``fast`` is "auto", True or False; ``progress`` a callable or None."""
    if fast not in ("auto", True, False):
        raise DataError(f"fast must be 'auto', True or False, not {fast!r}")
    if progress is not None and not callable(progress):
        raise DataError(f"progress must be a callable progress(done, total, info), not {type(progress).__name__}")


def _without_scheduler(model, scheduler):
    """(the model without its own scheduler, the scheduler to use): a Client is not cloned
    per fold, so the model's ``scheduler`` (when the call gives none) is taken out of it."""
    if scheduler is None and model.get_params().get("scheduler") is not None:
        scheduler = model.get_params()["scheduler"]
    if "scheduler" in model.get_params():
        params = model.get_params(deep=False)
        params["scheduler"] = None
        model = type(model)(**params)
    return model, scheduler


def _fold_variances(model, refit_variances: bool, Xfit, y, data):
    """(σ² held in every fold or None to re-estimate them per fold, the full-data fit or None).

    The model's own ``sigma2`` wins; ``refit_variances=False`` holds the full-data REML
    estimates (which sees the test records: the leakage the result notes).
    """
    if model.get_params().get("sigma2") is not None:
        return model.get_params()["sigma2"], None
    if refit_variances:
        return None, None
    full = clone(model)
    if "pev" in full.get_params():
        full.set_params(pev=False)
    full.fit(Xfit, y, data=data)  # NaN records are dropped by the fit (and keep record data aligned)
    return tuple(float(v) for v in full.variance_components_["variance"]), full


def _snp_dropped_note(kind: str, fm: pd.DataFrame, geno) -> list[str]:
    """SNP-BLUP: a note when folds left out SNPs without calls or monomorphic in training."""
    if kind != "snpblup" or fm["n_snps_dropped"].max() <= 0:
        return []
    return [
        f"SNP-BLUP: {int((fm['n_snps_dropped'] > 0).sum())} fold(s) left out SNPs without calls or "
        f"monomorphic in their training set (up to {int(fm['n_snps_dropped'].max())} of {geno.p}; "
        "column n_snps_dropped); such SNPs carry no information in that fold"
    ]


def _scheduler_name(scheduler) -> str | None:
    """The Dask scheduler's address (or what was given), for the settings."""
    if scheduler is None:
        return None
    return str(getattr(getattr(scheduler, "scheduler", None), "address", scheduler))


def _headline(fm: pd.DataFrame) -> str:
    """What the summary's headline is: pooled (tiny folds) or the mean over folds."""
    if headline_basis(fm) == "pooled":
        return "pooled over the folds of each repeat (median fold too small for per-fold correlations)"
    return "mean over folds"


@functools.singledispatch
def _cv_kind(model) -> str:
    """Which cross-validation path an estimator takes (dispatch on its type)."""
    raise ModelError(
        f"cross_validate supports GBLUP, SNPBLUP, PedigreeBLUP and FormulaModel, not {type(model).__name__}"
    )


_cv_kind.register(GBLUP, lambda model: "gblup")
_cv_kind.register(SNPBLUP, lambda model: "snpblup")
_cv_kind.register(PedigreeBLUP, lambda model: "pblup")
_cv_kind.register(FormulaModel, lambda model: "formula")


@functools.singledispatch
def _cv_inputs(model, X, scheduler) -> tuple:
    """(what the folds fit on, ids the model knows or None, G or None, Genotypes or None)."""
    raise ModelError(f"cross_validate does not support {type(model).__name__}")


@_cv_inputs.register(GBLUP)
def _(model, X, scheduler):
    # G is built once for all folds
    geno = X if isinstance(X, Genotypes) else None
    if geno is not None:
        K = genomic_relationship(X, method=model.grm, scheduler=scheduler)
    else:
        K = as_relationship(X, kind="G")
    return K, K.ids, K, geno


@_cv_inputs.register(SNPBLUP)
def _(model, X, scheduler):
    if not isinstance(X, Genotypes):
        raise DataError("SNPBLUP cross-validation needs Genotypes as X")
    return X, X.ids, None, X


@_cv_inputs.register(FormulaModel)
def _(model, X, scheduler):
    return X, None, None, None


@_cv_inputs.register(PedigreeBLUP)
def _(model, X, scheduler):
    from ..data.pedigree import Pedigree

    if isinstance(X, Pedigree):
        known = X.ids
    else:
        known = pd.Index(X.iloc[:, 0].astype(str)) if isinstance(X, pd.DataFrame) else None
    return X, known, None, None


def _fold_tables(splits, rows, y, by_record: bool, path, top, snps: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(predictions, fold metrics): one row per validation record, one per fold."""
    preds, metr = [], []
    for s, row in zip(splits, rows):
        obs = y.iloc[s.test_pos].to_numpy()
        bv, yhat = np.asarray(row["bv"], float), np.asarray(row["yhat"], float)
        p = {
            "id": s.test,
            "repeat": s.repeat,
            "fold": s.fold,
            "observed": obs,
            "predicted_bv": bv,
            "predicted_phenotype": yhat,
        }
        if by_record:
            p["record"] = s.test_pos
        preds.append(pd.DataFrame(p))
        m = _fold_metrics(obs, bv, yhat, row["h2"], top)
        extra = {"n_snps_dropped": row["n_snps_dropped"]} if snps else {}
        metr.append(
            {
                "repeat": s.repeat,
                "fold": s.fold,
                "n_train": len(s.train_pos),
                "n_test": len(s.test_pos),
                "sigma2_g": row["sigma2_g"],
                "sigma2_e": row["sigma2_e"],
                "h2": row["h2"],
                "method": path,
                **m,
                **extra,
            }
        )
    return pd.concat(preds, ignore_index=True), pd.DataFrame(metr)


def _constant_fold_note(splits, rows, y) -> list[str]:
    """Folds whose breeding values are all equal (h² at 0): their correlations are NaN; warned."""
    n_const = int(
        sum(
            is_constant(
                np.asarray(r["bv"], float)[np.isfinite(np.asarray(r["bv"], float))],
                y.iloc[s.test_pos].dropna().to_numpy(),
            )
            for s, r in zip(splits, rows)
        )
    )
    if not n_const:
        return []
    msg = (
        f"{n_const} of {len(rows)} fold(s) predict the same breeding value for every validation "
        "individual (h² estimated at 0): their r, accuracy, slope, intercept, Spearman and top "
        "overlap are undefined (NaN), not zero"
    )
    import warnings

    warnings.warn(DataWarning(msg), stacklevel=3)
    return [msg]

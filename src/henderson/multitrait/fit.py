"""Multi-trait fits: records frame + traits + one known K → :class:`MultiTraitResult`.

``fit_traits`` checks the traits (numeric, recorded, not constant, not copies of each
other), builds one design per trait, runs the spectral AI-REML and assembles the
result. Records missing some traits, or a sparse K⁻¹ (pedigree), go to the general
multi-trait MME (:mod:`henderson.multitrait.general`): a record keeps the traits it
has, nothing is dropped or imputed (imputing a missing trait and maximising is not
REML of the observed data). ``result.solver`` says which ran.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd

from .._version import __version__
from ..data.phenotypes import numeric_phenotypes
from ..errors import AlignmentError, DataError, ModelError, format_ids
from ..relationships.container import as_relationship
from ..results import stage_timings
from ..spec.model import _fixed_matrix, _fixed_variables
from .reml import boundary_of, optimise, warn_boundary
from .results import MultiTraitResult, correlation_tables, heritability_table
from .spectral import MultiTraitTridiagonal, vech, vech_index

MISSING_TRAITS = (
    "the fast spectral path needs every trait on every record; fit through "
    "henderson.fit / fit_traits, which send missing traits to the general multi-trait MME"
)


def check_traits(frame: pd.DataFrame, traits, group: str, allow_missing: bool = False) -> tuple[pd.DataFrame, list]:
    """Numeric, recorded, non-constant traits; rows with no trait are dropped and counted.

    With ``allow_missing=False`` a record missing some (not all) traits is an error
    naming them (the spectral path needs complete records).

    Returns (kept rows with traits as float, NaN where missing; notes).
    """
    traits = list(traits)
    if len(traits) < 1:
        raise ModelError("a multi-trait model needs at least one trait")
    dup = sorted({t for t in traits if traits.count(t) > 1})
    if dup:
        raise ModelError(f"trait(s) given twice: {dup}")
    absent = [t for t in traits if t not in frame.columns]
    if absent:
        raise DataError(f"trait column(s) not in the data: {absent}; columns: {list(frame.columns)}")
    ids = pd.Index(frame[group].astype(str)) if group in frame.columns else pd.Index(frame.index.astype(str))
    Y = pd.DataFrame({t: numeric_phenotypes(frame[t], ids, t).to_numpy() for t in traits}, index=frame.index)
    for t in traits:
        if Y[t].isna().all():
            raise DataError(f"trait {t!r} has no records (every value is missing)")
    none = Y.isna().all(axis=1)
    notes = []
    if none.any():
        notes.append(
            f"{int(none.sum())} of {len(Y)} rows have none of the traits: those individuals are predicted, not fitted"
        )
    some = Y.isna().any(axis=1) & ~none
    if some.any() and not allow_missing:
        per = {t: int((Y[t].isna() & ~none).sum()) for t in traits if (Y[t].isna() & ~none).any()}
        detail = ", ".join(f"{t}: {k}" for t, k in per.items())
        raise ModelError(
            f"{int(some.sum())} record(s) miss some traits ({detail}; e.g. {group} "
            f"{format_ids(ids[some.to_numpy()][:5])}): " + MISSING_TRAITS
        )
    kept = frame.loc[~none.to_numpy()].copy()
    for t in traits:
        kept[t] = Y.loc[~none, t].to_numpy()
        if kept[t].nunique(dropna=True) < 2:
            raise DataError(f"trait {t!r} is constant over the records: nothing to fit")
    return kept, notes


def _general_theta(x):
    """(Σ_g, Σ_e) → the general engine's {"Sigma": [Σ_g], "Residual": Σ_e} (a dict as is)."""
    if x is None or isinstance(x, dict):
        return x
    return {"Sigma": [x[0]], "Residual": x[1]}


def check_not_copies(R: np.ndarray, traits) -> None:
    """Residuals (after each trait's fixed effects) must not be linearly dependent.

    Two traits that are copies (or a trait that is an exact linear function of others)
    make Σ_e singular: REML has no finite optimum. The culprits are named.
    """
    sd = R.std(axis=0)
    C = np.corrcoef(R, rowvar=False) if R.shape[1] > 1 else np.ones((1, 1))
    t = len(traits)
    for k in range(t):
        for l in range(k):
            if abs(C[k, l]) > 1 - 1e-9:
                raise DataError(
                    f"traits {traits[l]!r} and {traits[k]!r} are copies of each other up to scale "
                    f"and fixed effects (residual correlation {C[k, l]:+.10f}): their residual "
                    "covariance matrix would be singular; fit one of them"
                )
    if t > 2:
        w, v = np.linalg.eigh(C)
        if w[0] < 1e-10:
            who = [traits[i] for i in np.argsort(-np.abs(v[:, 0]))[:3] if abs(v[i, 0]) > 0.1]
            raise DataError(
                f"traits {who} are linearly dependent (a trait is an exact combination of the "
                "others after fixed effects): the residual covariance would be singular"
            )
    if np.any(sd == 0):
        raise DataError(
            f"trait(s) {[traits[i] for i in np.flatnonzero(sd == 0)]} are explained exactly by the fixed effects"
        )


def trait_designs(kept: pd.DataFrame, traits, fixed) -> tuple[list, list, list, dict]:
    """One full-rank design per trait: ``fixed`` a formula part for all, or a dict by trait."""
    if fixed is None or isinstance(fixed, str):
        fixed = {t: (fixed or "1") for t in traits}
    elif isinstance(fixed, dict):
        unknown = [k for k in fixed if k not in traits]
        if unknown:
            raise ModelError(f"fixed= names trait(s) not in the model: {unknown}; traits: {list(traits)}")
        fixed = {t: fixed.get(t, "1") for t in traits}
    else:
        raise ModelError("fixed must be a formula part such as '1 + x' or a dict {trait: formula part}")
    Xs, names, notes = [], [], []
    for t in traits:
        cols = _fixed_variables(fixed[t], kept)
        miss = [c for c in cols if c not in kept.columns]
        if miss:
            raise DataError(f"fixed effects of trait {t!r} use column(s) not in the data: {miss}")
        if cols and kept[cols].isna().any().any():
            bad = [c for c in cols if kept[c].isna().any()]
            raise DataError(
                f"covariate column(s) {bad} of trait {t!r} have missing values on records with "
                "the traits: give them values or drop those records yourself (and say so)"
            )
        X, xn, aliased = _fixed_matrix(fixed[t], kept)
        if aliased:
            notes.append(f"trait {t}: fixed-effect columns aliased with others and dropped: {', '.join(aliased)}")
        Xs.append(X)
        names.append(xn)
    return Xs, names, notes, fixed


def fit_traits(
    frame: pd.DataFrame,
    traits,
    group: str,
    K,
    *,
    fixed=None,
    start=None,
    max_iter: int = 500,
    sigma=None,
    pev: bool | str = "auto",
    formula: str | None = None,
    notes=(),
) -> MultiTraitResult:
    """Fit the multi-trait model with one known K by the spectral AI-REML.

    Parameters
    ----------
    frame : DataFrame
        One row per record: the trait columns, the grouping column ``group`` (ids of K)
        and any covariates.
    traits : list of str
    group : str
        Column of level ids (the genetic term's name, e.g. ``"id"``).
    K : Relationship or DataFrame (N × N)
        Known covariance of the levels (G, or a dense A); levels without records get BLUPs.
    fixed : str or dict, optional
        Fixed part for every trait (``"1 + x"``), or per trait ``{"y1": "1 + x", "y2": "1"}``
        (traits not named get an intercept).
    start : (Σ_g, Σ_e), optional
    sigma : (Σ_g, Σ_e), optional
        Known covariance matrices: no estimation, BLUP at these values.
    pev : bool or "auto"
        PEV and reliabilities. REML runs on the tridiagonal reduction of K_r alone (as
        single-trait GBLUP); PEV then forms K_r's eigenvectors once (MRRR on T and the
        reflectors applied in BLAS 3: 2n³ flops, plus N n² with levels without records).
        "auto": PEV up to 6,000 records (as single-trait GBLUP) while the N × n
        cross-product with unphenotyped levels stays below 10¹¹.

    Returns
    -------
    MultiTraitResult
    """
    t0 = time.perf_counter()
    K = as_relationship(K, inverse=bool(getattr(K, "inverse", False)), kind="K")
    traits = [str(t) for t in traits]
    if group not in frame.columns:
        raise DataError(f"column {group!r} (the ids of the relationship matrix) is not in the data")
    kept, notes0 = check_traits(frame, traits, group, allow_missing=True)
    if K.is_sparse or kept[traits].isna().any().any():
        # missing traits or a sparse (inverse) K: the general MME
        from .general import fit_general_traits

        if K.is_sparse and not K.inverse:
            raise ModelError(f"a sparse K for {group!r} must be an inverse (e.g. pedigree A⁻¹): pass it as such")
        cov_d, inv_d = ({}, {group: K}) if K.inverse else ({group: K}, {})
        return fit_general_traits(
            kept,
            traits,
            [(group, False)],
            cov=cov_d,
            cov_inverse=inv_d,
            fixed=fixed,
            start=_general_theta(start),
            sigma=_general_theta(sigma),
            max_iter=max_iter,
            formula=formula
            or f"cbind({', '.join(traits)}) ~ " + (fixed if isinstance(fixed, str) else "1") + f" + (1|{group})",
            notes=list(notes) + notes0,
            pev=pev,
        )
    ids = kept[group].astype(str).to_numpy()
    known = pd.Index(np.asarray(K.ids, dtype=str))
    codes = known.get_indexer(ids)
    if (codes < 0).any():
        bad = pd.unique(ids[codes < 0])
        raise AlignmentError(f"{len(bad)} id(s) with records are not in the relationship matrix: {format_ids(bad)}")
    Xs, x_names, notes1, fixed_d = trait_designs(kept, traits, fixed)
    Y = kept[traits].to_numpy(dtype=float)
    R = np.column_stack([Y[:, k] - x @ np.linalg.lstsq(x, Y[:, k], rcond=None)[0] for k, x in enumerate(Xs)])
    check_not_copies(R, traits)
    n, t = Y.shape
    t1 = time.perf_counter()
    N = K.n
    want_pev = (state_pev_default(n, N, codes)) if pev == "auto" else bool(pev)
    state = MultiTraitTridiagonal(Y, Xs, K.dense(), codes)
    t2 = time.perf_counter()
    if sigma is not None:
        Sg, Se = (np.asarray(s, dtype=float) for s in sigma)
        if Sg.shape != (t, t) or Se.shape != (t, t):
            raise ModelError(f"sigma needs two {t} x {t} matrices (genetic, residual)")
        m2ll = state.m2ll(Sg, Se)
        iterations, converged, log, boundary = 0, True, pd.DataFrame(), boundary_of(Sg, Se, vech_index(t))
    else:
        opt = optimise(state, start=start, max_iter=max_iter, term=group, traits=traits)
        Sg, Se, m2ll = opt.Sg, opt.Se, opt.m2ll
        iterations, converged, log, boundary = opt.iterations, opt.converged, opt.log, opt.boundary
    t3 = time.perf_counter()
    res = assemble(
        state,
        Sg,
        Se,
        m2ll,
        traits,
        group,
        K,
        kept,
        x_names,
        codes,
        fixed_sigma=sigma is not None,
        pev=want_pev,
        iterations=iterations,
        converged=converged,
        log=log,
        boundary=boundary,
        notes=list(notes) + notes0 + notes1,
        formula=formula
        or f"cbind({', '.join(traits)}) ~ " + (fixed if isinstance(fixed, str) else "1") + f" + (1|{group})",
        fixed=fixed_d,
    )
    return dataclasses.replace(res, timings=stage_timings(t0, checks=t1, prepare=t2, optimise=t3))


#: records up to which pev="auto" computes PEV (as the single-trait spectral solver)
PEV_AUTO_MAX = 6000


def state_pev_default(n: int, N: int, codes) -> bool:
    """pev="auto": PEV up to PEV_AUTO_MAX records and while the N × n cross-product stays cheap."""
    return n <= PEV_AUTO_MAX and (N - n) * n * n < 1e11


def theta_names(term, traits) -> list[str]:
    return [f"{term}:{traits[k]}:{traits[l]}" for k, l in vech_index(len(traits))] + [
        f"Residual:{traits[k]}:{traits[l]}" for k, l in vech_index(len(traits))
    ]


def assemble(
    state,
    Sg,
    Se,
    m2ll,
    traits,
    term,
    K,
    kept,
    x_names,
    codes,
    *,
    fixed_sigma,
    pev,
    iterations,
    converged,
    log,
    boundary,
    notes,
    formula,
    fixed,
) -> MultiTraitResult:
    t, n = len(traits), state.n
    m = t * (t + 1) // 2
    names = theta_names(term, traits)
    theta = np.concatenate([vech(Sg), vech(Se)])
    cov = None
    if not fixed_sigma:
        ai = state.average_information(Sg, Se)
        try:
            cov = np.linalg.inv(ai)
        except np.linalg.LinAlgError:
            cov = np.full_like(ai, np.nan)
            notes.append("the average-information matrix is singular: no standard errors")
        for which, sl in (("genetic", slice(0, m)), ("Residual", slice(m, 2 * m))):
            if which in boundary:  # asymptotic SEs do not hold on the boundary
                cov[sl, :] = np.nan
                cov[:, sl] = np.nan
    se = np.sqrt(np.maximum(np.diag(cov), 0.0)) if cov is not None else np.full(2 * m, np.nan)
    if cov is not None:
        se[~np.isfinite(np.diag(cov))] = np.nan
    vc = pd.DataFrame({"estimate": theta, "se": se}, index=pd.Index(names, name="parameter"))
    tr_idx = pd.Index(traits, name="trait")

    def mat(v):
        S = np.zeros((t, t))
        for x, (k, l) in zip(v, vech_index(t)):
            S[k, l] = S[l, k] = x
        return pd.DataFrame(S, index=tr_idx, columns=list(traits))

    covariances = {term: mat(theta[:m]), "Residual": mat(theta[m:])}
    covariance_se = {term: mat(se[:m]), "Residual": mat(se[m:])}
    cg = cov[:m, :m] if cov is not None else None
    ce = cov[m:, m:] if cov is not None else None
    rg = correlation_tables(Sg, cg, traits)
    re_ = correlation_tables(Se, ce, traits)
    correlations = {term: rg[0], "Residual": re_[0]}
    correlation_se = {term: rg[1], "Residual": re_[1]}
    for d in (covariances, covariance_se, correlations, correlation_se):
        if term != "genetic":
            d["genetic"] = d[term]
    h2 = heritability_table(Sg, Se, cov, traits)
    sol = state.solve(Sg, Se, pev=pev)
    b, b_se = sol["b"], np.sqrt(np.diag(sol["cov_b"]))
    fe_idx = pd.MultiIndex.from_tuples(
        [(tr, c) for tr, xn in zip(traits, x_names) for c in xn], names=["trait", "coefficient"]
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        fe = pd.DataFrame({"estimate": b, "se": b_se, "t": b / b_se}, index=fe_idx)
    levels = np.asarray(K.ids, dtype=str)
    N = len(levels)
    nrec = np.bincount(codes, minlength=N)
    U_hat = sol["U_hat"]
    if pev and "pev" in sol:
        pev_v = sol["pev"]
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = 1.0 - pev_v / (sol["k_diag"][:, None] * np.diag(Sg)[None, :])
        rel = np.where(np.diag(Sg)[None, :] > 0, rel, 0.0)
    else:
        pev_v = rel = np.full((N, t), np.nan)
        notes.append("PEV and reliabilities not computed (pev=False, or many levels without records)")
    bl_idx = pd.MultiIndex.from_product([levels, traits], names=[term, "trait"])
    blups = {
        term: pd.DataFrame(
            {"blup": U_hat.ravel(), "pev": pev_v.ravel(), "reliability": rel.ravel(), "n_records": np.repeat(nrec, t)},
            index=bl_idx,
        )
    }
    resid = sol["Py"] @ Se  # ê = (Σ_e ⊗ I) P y
    rec_idx = kept.index
    residuals = pd.DataFrame(resid, index=rec_idx, columns=list(traits))
    fitted = pd.DataFrame(state.Y - resid, index=rec_idx, columns=list(traits))
    loglik = -0.5 * m2ll
    df = state.p + (0 if fixed_sigma else 2 * m)
    n_records = pd.Series([n] * t, index=tr_idx, name="records")
    if boundary and not fixed_sigma:
        msg = warn_boundary(boundary, correlations, term)
        if msg:
            notes.append(msg)
    settings = {
        "formula": formula,
        "method": "reml",
        "traits": list(traits),
        "term": term,
        "fixed": fixed,
        "version": __version__,
        "solver": state.name,
    }
    return MultiTraitResult(
        traits=list(traits),
        term=term,
        covariances=covariances,
        covariance_se=covariance_se,
        correlations=correlations,
        correlation_se=correlation_se,
        heritability=h2,
        variance_components=vc,
        vcov=cov,
        fixed_effects=fe,
        blups=blups,
        loglik=float(loglik),
        aic=float(-2 * loglik + 2 * df),
        bic=float(-2 * loglik + df * np.log(n * t)),
        n_obs=n,
        n_records=n_records,
        method="reml",
        solver=state.name,
        iterations=int(iterations),
        converged=bool(converged),
        log=log,
        fitted=fitted,
        residuals=residuals,
        boundary=tuple(boundary),
        notes=tuple(notes),
        settings=settings,
        record_levels={term: levels[codes]},
    )

"""``henderson.fit``: formula + data (+ covariances) → :class:`FitResult`.

A thin face over the tiers: :func:`~henderson.spec.model.build_spec` (formula and
data to arrays with ids), a solver prepared once (:class:`DenseMME`), the AI-REML
optimiser, and the result tables. No modelling logic lives here.
"""

from __future__ import annotations

import platform
import time
import warnings

import numpy as np
import pandas as pd
import scipy

from ._version import __version__
from .errors import BoundaryWarning, ModelError
from .reml.optimize import optimise
from .results import FitResult, ratio_table
from .solvers.dense import DenseMME
from .spec.model import ModelSpec, build_spec


def prepare(formula: str, data: pd.DataFrame, cov: dict | None = None,
            cov_inverse: dict | None = None) -> DenseMME:
    """Build the spec and the solver state without optimising.

    The returned state's ``evaluate(sigma2, method="reml").m2ll`` is −2 log L at any
    variance components: useful for profiling, likelihood-ratio tests and checks.
    """
    return DenseMME(build_spec(formula, data, cov=cov, cov_inverse=cov_inverse))


def fit(formula: str, data: pd.DataFrame, cov: dict | None = None, method: str = "reml",
        *, cov_inverse: dict | None = None, start=None, max_iter: int = 200,
        sigma2=None) -> FitResult:
    """Fit a linear mixed model y = Xb + Σₖ Zₖuₖ + e by REML (or ML).

    Parameters
    ----------
    formula : str
        lme4-style: ``"Yield ~ Env + (1|Name)"``; crossed ``(1|plate) + (1|sample)``;
        nested ``(1|batch/cask)`` or ``(1|batch:cask)``; ``0 +`` drops the intercept.
    data : DataFrame
        One row per record.
    cov : dict, optional
        ``{group: K}`` known covariance of a grouping factor's effects, K a DataFrame
        indexed by level ids or a :class:`~henderson.Relationship`. Levels in K with no
        records still get BLUPs.
    method : {"reml", "ml"}
    cov_inverse : dict, optional
        ``{group: Kinv}`` the inverse covariance, e.g. a sparse pedigree A⁻¹.
    start : array, optional
        Starting variance components (terms in formula order, then residual).
    max_iter : int
    sigma2 : array, optional
        Fixed variance components: skip estimation and solve the MME at these values
        (BLUP with known variances, as in Mrode's textbook examples).

    Returns
    -------
    FitResult

    Examples
    --------
    >>> from henderson.datasets import load_potato
    >>> res = fit("Yield ~ Env + (1|Name)", load_potato())
    >>> round(res.sigma2["Name"], 4)
    4.8559
    """
    method = method.lower()
    if method not in ("reml", "ml"):
        raise ModelError(f"method must be 'reml' or 'ml', not {method!r}")
    t0 = time.perf_counter()
    spec = build_spec(formula, data, cov=cov, cov_inverse=cov_inverse)
    if not spec.terms:
        raise ModelError("the formula has no random term such as (1|group); use ordinary least squares")
    t1 = time.perf_counter()
    state = DenseMME(spec)
    t2 = time.perf_counter()
    if sigma2 is not None:
        s = np.asarray(sigma2, dtype=float)
        if s.shape != (len(spec.terms) + 1,):
            raise ModelError(f"sigma2 needs {len(spec.terms) + 1} values (terms, then residual)")
        ev = state.evaluate(s, derivatives=True, method=method)
        iterations, converged, log, boundary = 0, True, pd.DataFrame(), []
    else:
        opt = optimise(state, method=method, start=start, max_iter=max_iter)
        ev, iterations, converged, log, boundary = (opt.evaluation, opt.iterations,
                                                   opt.converged, opt.log, opt.boundary)
    t3 = time.perf_counter()
    result = _result(spec, state, ev, method, iterations, converged, log, boundary,
                     fixed_sigma2=sigma2 is not None)
    timings = {"spec": t1 - t0, "prepare": t2 - t1, "optimise": t3 - t2,
               "results": time.perf_counter() - t3, "total": time.perf_counter() - t0}
    object.__setattr__(result, "timings", timings)
    return result


def _result(spec: ModelSpec, state: DenseMME, ev, method, iterations, converged, log,
            boundary, fixed_sigma2: bool) -> FitResult:
    K = len(spec.terms)
    s = ev.sigma2
    se_e = s[-1]
    names = [t.name for t in spec.terms] + ["Residual"]
    notes = list(spec.notes)
    # sampling covariance of σ² from the inverse AI matrix (free components only)
    cov = None
    if not fixed_sigma2:
        free = np.concatenate([np.flatnonzero(ev.active), [K]])
        cov = np.full((K + 1, K + 1), np.nan)
        try:
            cov[np.ix_(free, free)] = np.linalg.inv(ev.ai[np.ix_(free, free)])
        except np.linalg.LinAlgError:
            notes.append("average-information matrix singular: no standard errors")
    ratio, ratio_se = ratio_table(names, s, cov)
    var_se = np.sqrt(np.diag(cov)) if cov is not None else np.full(K + 1, np.nan)
    vc = pd.DataFrame({
        "variance": s, "se": var_se, "ratio": ratio, "ratio_se": ratio_se,
        "boundary": [bool(k in boundary) for k in range(K)] + [False],
        "levels": [t.q for t in spec.terms] + [np.nan],
    }, index=pd.Index(names, name="term"))
    for k in boundary:
        msg = (f"variance of {names[k]!r} estimated at the boundary (0): the data show no "
               "variation between its levels beyond the residual")
        notes.append(msg)
        warnings.warn(msg, BoundaryWarning, stacklevel=3)

    p = spec.p
    nz = len(ev.index) - p
    b = ev.solution[nz:]
    cinv = ev.cinv
    b_se = np.sqrt(np.maximum(np.diag(cinv)[nz:], 0) * se_e)
    with np.errstate(divide="ignore", invalid="ignore"):
        fe = pd.DataFrame({"estimate": b, "se": b_se, "t": b / b_se},
                          index=pd.Index(spec.x_names, name="coefficient"))

    blups, pos = {}, 0
    for k, t in enumerate(spec.terms):
        if ev.active[k]:
            r = t.rank
            v = ev.solution[pos:pos + r]
            blk = cinv[pos:pos + r, pos:pos + r] * se_e
            if t.kind == "factor":
                u = t.factor @ v
                pev = np.einsum("ij,ij->i", t.factor @ blk, t.factor)
            else:
                u, pev = v, np.diag(blk).copy()
            pos += r
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = 1.0 - pev / (s[k] * t.k_diag)
        else:
            u, pev, rel = np.zeros(t.q), np.zeros(t.q), np.zeros(t.q)
        blups[t.name] = pd.DataFrame(
            {"blup": u, "pev": pev, "reliability": rel, "n_records": t.n_records},
            index=pd.Index(t.levels, name=t.name))

    y = spec.y
    fitted = pd.Series(y - ev.residuals, index=spec.record_index, name="fitted")
    resid = pd.Series(ev.residuals, index=spec.record_index, name="residual")
    loglik = -0.5 * ev.m2ll
    df = p + (K + 1 if not fixed_sigma2 else 0)
    settings = {
        "formula": spec.formula.text, "method": method, "version": __version__,
        "numpy": np.__version__, "scipy": scipy.__version__, "pandas": pd.__version__,
        "python": platform.python_version(),
        "fixed_sigma2": bool(fixed_sigma2),
        "covariances": {t.name: t.source for t in spec.terms},
    }
    return FitResult(
        variance_components=vc, fixed_effects=fe, blups=blups, loglik=float(loglik),
        aic=float(-2 * loglik + 2 * df), bic=float(-2 * loglik + df * np.log(spec.n)),
        n_obs=spec.n, n_dropped=spec.n_dropped, method=method, solver=state.name,
        iterations=iterations, converged=converged, log=log, fitted=fitted, residuals=resid,
        notes=tuple(notes), settings=settings)

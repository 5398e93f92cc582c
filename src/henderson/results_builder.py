"""One result builder: the parts every solver's FitResult shares.

Each solver path (dense, sparse, spectral, PCG in ``assemble*.py``; the general engine in
``assemble_general.py``) computes what only it can (variance table, PEV) and hands the
rest here: the fixed-effects table (estimate, se, t), one BLUP table per term, and the
FitResult itself with logLik, AIC and BIC (lme4's convention: df = fixed effects +
estimated covariance parameters), fitted values and residuals indexed like the records.
A FitResult is frozen; later changes go through ``dataclasses.replace``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .results import FitResult


def fixed_effects_table(b: np.ndarray, se: np.ndarray, names) -> pd.DataFrame:
    """Fixed effects: ``estimate``, ``se`` and ``t`` = estimate/se, indexed by coefficient.

    Parameters
    ----------
    b, se : ndarray, shape (p,)
    names : sequence of str, length p
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return pd.DataFrame({"estimate": b, "se": se, "t": b / se}, index=pd.Index(names, name="coefficient"))


def blup_table(u, pev, rel, n_records, levels, name: str) -> pd.DataFrame:
    """One term's BLUPs: ``blup``, ``pev``, ``reliability``, ``n_records``, indexed by level id (q rows)."""
    return pd.DataFrame(
        {"blup": u, "pev": pev, "reliability": rel, "n_records": n_records}, index=pd.Index(levels, name=name)
    )


def build_fit_result(
    spec,
    *,
    m2ll: float,
    n_theta: int,
    residuals: np.ndarray,
    fitted: np.ndarray | None = None,
    record_levels: dict | None = None,
    notes=(),
    **fields,
) -> FitResult:
    """The FitResult of any solver.

    Parameters
    ----------
    spec : ModelSpec or GeneralSpec
        For n, the dropped count, y, the record index and the terms' record levels.
    m2ll : float
        −2 log L at the estimate (NaN when the solver does not compute it: PCG).
    n_theta : int
        Estimated covariance parameters (0 with known variances): df = p + n_theta.
    residuals : ndarray, shape (n,)
        ê = y − fitted.
    fitted : ndarray, shape (n,), optional
        Xb̂ + Zû; default y − ê.
    record_levels : dict, optional
        Per term, the level of every record; default ``t.levels[t.codes]``.
    notes : sequence of str
    **fields
        The remaining FitResult fields (variance_components, fixed_effects, blups, method,
        solver, iterations, converged, log, settings, vcov, and the structured ones).
    """
    resid = np.asarray(residuals, dtype=float)
    fit = spec.y - resid if fitted is None else np.asarray(fitted, dtype=float)
    loglik = -0.5 * float(m2ll)
    df = spec.p + n_theta
    if record_levels is None:
        record_levels = {t.name: t.levels[t.codes] for t in spec.terms}
    return FitResult(
        loglik=float(loglik),
        aic=float(-2 * loglik + 2 * df),
        bic=float(-2 * loglik + df * np.log(spec.n)),
        n_obs=spec.n,
        n_dropped=spec.n_dropped,
        fitted=pd.Series(fit, index=spec.record_index, name="fitted"),
        residuals=pd.Series(resid, index=spec.record_index, name="residual"),
        notes=tuple(notes),
        record_levels=record_levels,
        **fields,
    )

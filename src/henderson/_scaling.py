"""Fit on a centred and scaled response, report on the user's scale.

A trait with mean 1e5 and SD 1 makes y'y ~ 1e10·n, so ℓ² = y'y − ŝ'r (the profiled
residual sum of squares) is the difference of two nearly equal huge numbers and loses
every digit; a trait in units of 1e160 overflows y'y. Both are avoided by fitting

    y_w = (y − X b₀) / s,   b₀ = OLS estimate (lstsq),  s = OLS residual SD,

which the mixed model maps back exactly, because y ↦ (y − Xb₀)/s only moves β and
scales everything else (V(y) = s² V(y_w)):

* σ² = s² σ²_w, their sampling covariance s⁴ vcov_w, PEV s² PEV_w;
* β = s β_w + b₀ (SE s·SE_w), BLUPs û = s û_w, residuals s ê_w;
* shares of variance, reliabilities, t values unchanged;
* −2 log L = −2 log L_w + 2·d·log s, with d = n − p for REML (log|V| gains n log s²,
  log|X'V⁻¹X| loses p log s², y'Py is invariant) and d = n for ML.

Centring on X b₀ rather than on the mean keeps models without an intercept exact
(y − Xb₀ is orthogonal to X whatever X is). ``tests/test_scaling.py`` checks the
equivariance: the fit of c·y + a equals the fit of y mapped by the rules above.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import pandas as pd

from .errors import ModelError


class Scaling(NamedTuple):
    """y = s · y_w + X b0 (``b0`` shape (p,))."""

    s: float
    b0: np.ndarray


def standardise(spec) -> tuple[object, Scaling]:
    """(spec with y_w, Scaling); the identity when y is already centred and scaled or degenerate."""
    y, X = spec.y, spec.X
    if X.shape[1]:
        b0, *_ = np.linalg.lstsq(X, y, rcond=None)
        r = y - X @ b0
    else:
        b0, r = np.zeros(0), y.astype(float)
    big = float(np.max(np.abs(r))) if len(r) else 0.0
    if not (np.isfinite(big) and big > 0):
        return spec, Scaling(1.0, np.zeros(X.shape[1]))  # constant or empty: the solvers say so
    # the SD computed on r/big, so that squares of values near 1e160 never overflow
    s = big * float(np.sqrt(np.mean((r / big) ** 2) * len(r) / max(spec.n - spec.p, 1)))
    if not (np.isfinite(s) and s > 0):
        return spec, Scaling(1.0, np.zeros(X.shape[1]))
    return dataclasses.replace(spec, y=r / s), Scaling(s, b0)


def to_working(values, scaling: Scaling):
    """User-scale variance components (σ²) → working scale (σ²/s²); None passes."""
    if values is None:
        return None
    return np.asarray(values, dtype=float) / scaling.s**2


def to_user(result, spec, scaling: Scaling, method: str):
    """The :class:`FitResult` of the working fit, on the user's scale (see the module notes)."""
    s, b0 = scaling.s, scaling.b0
    if s == 1.0 and not np.any(b0):
        return result
    s2 = s * s
    d = spec.n - spec.p if method == "reml" else spec.n
    shift = d * np.log(s)  # log L = log L_w − d log s
    resid = result.residuals * s
    fitted = pd.Series(spec.y - resid.to_numpy(), index=result.fitted.index, name=result.fitted.name)
    settings = dict(result.settings)
    settings["y_standardised"] = {"scale": s, "centre": "X b_ols"}
    with np.errstate(over="ignore"):  # s⁴ beyond 1.8e308 (s > 1e77): the covariance is inf there
        vcov = None if result.vcov is None else result.vcov * s2 * s2
    return dataclasses.replace(
        result,
        variance_components=_user_variances(result.variance_components, s),
        fixed_effects=_user_fixed_effects(result.fixed_effects, s, b0),
        blups=_user_blups(result.blups, s),
        loglik=float(result.loglik - shift),
        aic=float(result.aic + 2 * shift),
        bic=float(result.bic + 2 * shift),
        log=_user_log(result.log, s, shift),
        fitted=fitted,
        residuals=resid,
        settings=settings,
        vcov=vcov,
    )


def _user_variances(vc: pd.DataFrame, s: float) -> pd.DataFrame:
    """Variance components (and their SEs) times s²; an error when they overflow."""
    s2 = s * s
    vc = vc.copy()
    vc["variance"] = vc["variance"] * s2
    vc["se"] = vc["se"] * s2
    if "mc_se" in vc:  # stochastic REML's Monte Carlo SE
        vc["mc_se"] = vc["mc_se"] * s2
    if not np.all(np.isfinite(vc["variance"].to_numpy())):
        raise ModelError(
            f"the trait varies on a scale of about {s:.3g}: its variance components (~{s:.3g}² times the "
            "variance of the standardised trait) exceed the largest floating-point number (1.8e308). "
            "Express the trait in other units (e.g. divide it by a power of 10)"
        )
    return vc


def _user_fixed_effects(fe: pd.DataFrame, s: float, b0) -> pd.DataFrame:
    """β = s β_w + b0 (b0: the OLS coefficients taken out), SEs times s, t again."""
    fe = fe.copy()
    fe["estimate"] = fe["estimate"] * s + b0
    fe["se"] = fe["se"] * s
    with np.errstate(divide="ignore", invalid="ignore"):
        fe["t"] = fe["estimate"] / fe["se"]
    return fe


def _user_blups(blups: dict, s: float) -> dict:
    """Each term's BLUPs times s, PEVs (and their Monte Carlo SEs) times s²."""
    s2 = s * s
    out = {}
    for name, tab in blups.items():
        tab = tab.copy()
        tab["blup"] = tab["blup"] * s
        tab["pev"] = tab["pev"] * s2
        if "pev_se" in tab:  # sampled PEV's SE
            tab["pev_se"] = tab["pev_se"] * s2
        out[name] = tab
    return out


def _user_log(log, s: float, shift: float):
    """The optimisation log's variances times s² and its −2 log L shifted by 2·shift."""
    if isinstance(log, pd.DataFrame) and len(log):
        log = log.copy()
        for c in log.columns:
            if str(c).startswith("sigma2_"):
                log[c] = log[c] * (s * s)
        if "m2ll" in log:
            log["m2ll"] = log["m2ll"] + 2 * shift
    return log

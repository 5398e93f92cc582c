"""Likelihood-ratio tests between nested fits, with the boundary-corrected p-value."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .errors import ModelError


@dataclass(frozen=True)
class LRTResult:
    """Outcome of :func:`lrt`.

    Attributes
    ----------
    statistic : float
        2 (logL_big − logL_small), floored at 0.
    df : int
        Extra covariance parameters in the bigger model.
    p_value : float
        Boundary-corrected when the extra parameters are one variance tested at 0 (with
        its covariances): a 50:50 mixture of χ²_{df−1} and χ²_df (Self & Liang 1987;
        Stram & Lee 1994; χ²₀ is a point mass at 0); otherwise χ²_df.
    p_value_naive : float
        P(χ²_df > statistic), for comparison (conservative on the boundary).
    reference : str
        The null distribution used.
    table : DataFrame
        Per model: parameters, logLik, AIC, BIC.
    """

    statistic: float
    df: int
    p_value: float
    p_value_naive: float
    reference: str
    table: pd.DataFrame

    def __str__(self) -> str:
        return (
            self.table.to_string(float_format=lambda v: f"{v:.4f}")
            + f"\nLRT statistic {self.statistic:.4f} on {self.df} df, p = {self.p_value:.4g} "
            + f"({self.reference}; naive chi2_{self.df}: {self.p_value_naive:.4g})"
        )


def _key(name: str) -> str:
    """A one-component term's variance has the same key in every fit: ``Subject`` and
    ``Subject:(Intercept):(Intercept)`` are the same parameter."""
    parts = name.split(":")
    if len(parts) == 3 and parts[1] == parts[2] == "(Intercept)":
        return parts[0]
    return name


def _extra(small, big) -> pd.DataFrame:
    vs, vb = small.variance_components, big.variance_components
    have = {_key(i) for i in vs.index}
    return vb.loc[[i for i in vb.index if _key(i) not in have]]


def _is_variance(vc: pd.DataFrame) -> np.ndarray:
    if "type" in vc:
        return (vc["type"] == "variance").to_numpy()
    return np.ones(len(vc), dtype=bool)  # one-variance fits: every row is a variance


def lrt(small, big) -> LRTResult:
    """Likelihood-ratio test of a smaller model nested in a bigger one.

    Parameters
    ----------
    small, big : FitResult
        Fits of the same records by the same method; under REML the fixed effects must
        be the same (REML likelihoods with different X are not comparable).

    Returns
    -------
    LRTResult

    Notes
    -----
    A variance tested at 0 lies on the boundary of the parameter space, where the
    statistic is not χ²: adding one variance (with its covariances with k existing
    components, df = k + 1) gives the mixture ½χ²_k + ½χ²_{k+1} (Stram & Lee 1994,
    Biometrics 50:1171); for df = 1 that halves the naive p-value. AIC and BIC are
    lme4's (−2 logL + 2 df, + df log n, df = fixed effects + covariance parameters).

    Examples
    --------
    >>> from henderson.datasets import load_lme4
    >>> import henderson as h
    >>> d = load_lme4("sleepstudy")
    >>> t = h.lrt(h.fit("Reaction ~ Days + (1|Subject)", d), h.fit("Reaction ~ Days + (Days|Subject)", d))
    >>> t.df
    2
    """
    if small.method != big.method:
        raise ModelError(f"both fits need the same method (got {small.method} and {big.method})")
    if small.n_obs != big.n_obs:
        raise ModelError(f"the fits use different records ({small.n_obs} and {big.n_obs}): not nested")
    if small.method == "reml" and list(small.fixed_effects.index) != list(big.fixed_effects.index):
        raise ModelError(
            "REML likelihoods of models with different fixed effects are not comparable; refit both with method='ml'"
        )
    df = big.n_params - small.n_params
    if df <= 0:
        raise ModelError(
            f"the bigger model has {big.n_params} covariance parameters, not more than the "
            f"smaller one's {small.n_params}: pass (small, big)"
        )
    stat = 2.0 * (big.loglik - small.loglik)
    if stat < -1e-6 * max(1.0, abs(big.loglik)):
        warnings.warn(
            f"the bigger model has the lower log-likelihood ({big.loglik:.6f} < "
            f"{small.loglik:.6f}): the models are not nested or a fit did not converge",
            stacklevel=2,
        )
    stat = max(stat, 0.0)
    naive = float(stats.chi2.sf(stat, df))
    extra = _extra(small, big)
    nvar = int(_is_variance(extra).sum()) if len(extra) == df else -1
    if nvar == 1:
        k = df - 1
        tail_k = float(stats.chi2.sf(stat, k)) if k > 0 else (1.0 if stat <= 0 else 0.0)
        p = 0.5 * tail_k + 0.5 * naive
        ref = f"50:50 mixture of chi2_{k} and chi2_{df}"
    else:
        p, ref = naive, f"chi2_{df}"
    table = pd.DataFrame(
        {
            "parameters": [small.n_params, big.n_params],
            "logLik": [small.loglik, big.loglik],
            "AIC": [small.aic, big.aic],
            "BIC": [small.bic, big.bic],
        },
        index=pd.Index([small.settings.get("formula", "small"), big.settings.get("formula", "big")], name="model"),
    )
    return LRTResult(float(stat), int(df), float(p), naive, ref, table)

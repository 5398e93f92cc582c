"""The frozen result of a mixed-model fit, its tables and its summary text."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._tables import finite_or_blank, fit_header, notes_lines, records_line, table_lines


@dataclass(frozen=True, eq=False)
class FitResult:
    """A fitted linear mixed model.

    Attributes
    ----------
    variance_components : DataFrame
        One row per random term plus ``Residual``: ``variance``, ``se`` (from the
        inverse average-information matrix), ``ratio`` (share of the total variance)
        and ``ratio_se`` (delta method), ``boundary`` (True when estimated at zero).
        On the boundary the SE of that variance and of every share is NaN (not
        available: asymptotic SEs do not hold there), in every solver.
    fixed_effects : DataFrame
        Indexed by coefficient name: ``estimate``, ``se``, ``t``.
    blups : dict[str, DataFrame]
        Per random term, indexed by level id: ``blup``, ``pev`` (prediction error
        variance), ``reliability`` (1 − PEV/(σ²ₖKᵢᵢ); 0 when σ²ₖ is estimated at 0),
        ``n_records``. Levels are in the order of the covariance's ids when one is
        given, else in natural order (numeric when every id is an integer).
    loglik : float
        Log-likelihood in lme4's convention (full REML or ML log-likelihood).
    aic, bic : float
        −2 loglik + 2 df and −2 loglik + df log n, df = fixed effects + variances (lme4).
    n_obs, n_dropped : int
        Records used, and records dropped for missing values.
    method, solver : str
    iterations : int
        AI-REML iterations (dense, sparse), or Brent iterations plus Newton steps
        (spectral); 0 with known variances.
    converged : bool
    log : DataFrame
        The optimisation log: ``iteration``, ``step`` (dense/sparse: ``ai``, ``em``,
        ...; spectral: ``grid``, ``brent``, ``newton``, ``boundary``, one row per
        evaluation), ``m2ll`` and one ``sigma2_<term>`` column per component.
    fitted, residuals : Series
        Xb̂ + Zû and y − fitted, indexed like the data rows used.
    timings : dict
        Seconds per stage (see `stage_timings`).
    notes : list of str
        Everything the fit changed or noticed (dropped rows, aliased columns, boundary).
    settings : dict
        Formula, method, versions: enough to reproduce the fit.
    vcov : ndarray, shape (K + 1, K + 1) or None
        Sampling covariance of the variance components (inverse AI; NaN for
        components on the boundary), in the order of ``variance_components``.
    record_levels : dict[str, ndarray]
        Per random term, the level id of every record used (aligned with
        ``residuals``): what links records to BLUPs by id.
    covariances, correlations : dict[str, DataFrame]
        Structured models (the general engine): per term the S × S covariance Σ and its
        correlations, named by component; ``"Residual"`` is diagonal across residual
        groups. ``variance_components`` then has one row per parameter θ (``term``,
        ``component_i``, ``component_j``, ``type``, ``estimate``, ``se``, ``boundary``).
        Empty for one-variance models.
    derived : DataFrame or None
        Correlations and variance ratios (h² when the term has a known K) with
        delta-method SEs (structured models).
    factor_analytic : dict
        Per ``fa`` term: ``loadings`` (S × d), ``specific`` variances and the
        ``variance_explained`` (% of tr Σ) by each factor.
    """

    variance_components: pd.DataFrame
    fixed_effects: pd.DataFrame
    blups: dict
    loglik: float
    aic: float
    bic: float
    n_obs: int
    n_dropped: int
    method: str
    solver: str
    iterations: int
    converged: bool
    log: pd.DataFrame
    fitted: pd.Series
    residuals: pd.Series
    timings: dict = field(default_factory=dict)
    notes: tuple = ()
    settings: dict = field(default_factory=dict)
    vcov: np.ndarray | None = None
    record_levels: dict = field(default_factory=dict)
    covariances: dict = field(default_factory=dict)
    correlations: dict = field(default_factory=dict)
    derived: pd.DataFrame | None = None
    factor_analytic: dict = field(default_factory=dict)

    @property
    def sigma2(self) -> pd.Series:
        """Variance components as a Series (term → σ²; θ name → estimate when structured)."""
        vc = self.variance_components
        return vc["variance"] if "variance" in vc else vc["estimate"]

    @property
    def n_params(self) -> int:
        """Number of estimated covariance parameters (for likelihood-ratio tests)."""
        return len(self.variance_components)

    def summary(self) -> str:
        """A readable summary in the spirit of lme4's and sommer's."""
        if self.covariances:
            from .summary_general import structured_summary

            return structured_summary(self)
        crit = "REML" if self.method == "reml" else "ML"
        lines = fit_header(self, "Linear mixed model", records_line(self), crit) + ["", "Variance components:"]
        vc = self.variance_components
        cols = {
            "variance": ("variance", ".6g"),
            "se": ("se", finite_or_blank(".4g")),
            "share": ("ratio", ".3f"),
            "share se": ("ratio_se", finite_or_blank(".3f")),
        }
        if "levels" in vc:
            cols["levels"] = ("levels", lambda v: "" if pd.isna(v) else f"{int(v)}")
        lines += table_lines(vc, cols)
        lines += ["", "Fixed effects:"]
        lines += table_lines(
            self.fixed_effects, {"estimate": ("estimate", ".6f"), "se": ("se", ".6f"), "t": ("t", ".2f")}
        )
        for name, tab in self.blups.items():
            top = tab.sort_values("blup", ascending=False).head(5)
            lines += ["", f"BLUPs of {name}: {len(tab)} levels; top 5:"]
            lines += table_lines(
                top, {"blup": ("blup", ".4f"), "pev": ("pev", ".4f"), "reliability": ("reliability", ".3f")}
            )
        lines += notes_lines(self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict:
        """Plain-data form for JSON (variance components, fixed effects, fit statistics)."""
        return {
            "settings": self.settings,
            "loglik": self.loglik,
            "aic": self.aic,
            "bic": self.bic,
            "n_obs": self.n_obs,
            "n_dropped": self.n_dropped,
            "method": self.method,
            "solver": self.solver,
            "iterations": self.iterations,
            "converged": self.converged,
            "variance_components": json.loads(self.variance_components.to_json(orient="index")),
            "fixed_effects": json.loads(self.fixed_effects.to_json(orient="index")),
            "timings": self.timings,
            "notes": list(self.notes),
        }


def stage_timings(t0: float, **ends: float) -> dict[str, float]:
    """Seconds per stage of a fit, the ``timings`` of its result.

    Parameters
    ----------
    t0 : float
        ``time.perf_counter()`` when the fit began.
    **ends : float
        Each stage in order, named by the ``time.perf_counter()`` reading at its end
        (``spec=t1, prepare=t2, optimise=t3``); a stage lasts from the previous end.

    Returns
    -------
    dict
        The named stages, then ``results`` (from the last end until now) and ``total``
        (from ``t0`` until now).
    """
    now = time.perf_counter()
    timings, start = {}, t0
    for stage, end in ends.items():
        timings[stage], start = end - start, end
    timings["results"] = now - start
    timings["total"] = now - t0
    return timings


def ratio_table(names, sigma2: np.ndarray, cov: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Shares σ²ₖ/Σσ² and their delta-method standard errors.

    With S = Σⱼσ²ⱼ, ∂(σ²ₖ/S)/∂σ²ⱼ = (δⱼₖS − σ²ₖ)/S²; var = gᵀ·cov·g. Every share
    depends on every component, so when any component has no variance in ``cov``
    (NaN: on the boundary, or no SEs at all) every share's SE is NaN rather than a
    number computed as if that component were known exactly.
    """
    S = sigma2.sum()
    ratio = sigma2 / S
    k = len(sigma2)
    if cov is None or not np.all(np.isfinite(np.diag(cov))):
        return ratio, np.full(k, np.nan)
    G = (np.eye(k) * S - sigma2[:, None]) / S**2  # row k: gradient of share k
    var = np.einsum("ij,jl,il->i", G, cov, G)
    return ratio, np.sqrt(np.maximum(var, 0.0))

"""The one result builder of single-trait fits: :func:`fit_result` makes the
:class:`FitResult` of every engine (dense MME, sparse MME, spectral, the structured
Σ ⊗ K engines — dense C-form, sparse, V-form — and PCG, direct or on the general
engines' models) from the engine's final protocol
:class:`~henderson.solvers.protocol.Evaluation` and a :class:`Run`.

What differs between engines is data, not code paths:

- the model: a :class:`~henderson.spec.model.ModelSpec` (one variance per term) gives the
  variance table of :func:`variance_table`; a ``GeneralSpec`` (structured terms) one row
  per θ, Σ and its correlations per term, FA loadings and derived quantities
  (:mod:`henderson.assemble_general`);
- the Evaluation: ``m2ll`` NaN (PCG: no log|C|), ``pev`` None (not computed: NaN in the
  tables) or NaN arrays, ``pev_se`` (sampled PEV), ``fixed_var`` None (no SE(b̂)),
  ``fitted`` (PCG's T x);
- the :class:`Run`: solver, method, iterations, log, boundary, whether θ was estimated,
  and the engine's own notes and settings.

Shared rules (every solver): reliability = 1 − PEV/(σ²ₖKᵢᵢ), 0 when σ²ₖ = 0;
on the boundary the SEs of that variance and of all shares are NaN (:func:`variance_table`).
"""

from __future__ import annotations

import platform
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy

from . import assemble_general
from ._version import __version__
from .errors import BoundaryWarning
from .results import FitResult, ratio_table
from .results_builder import blup_table, build_fit_result, fixed_effects_table
from .spec.model import ModelSpec


def settings_of(spec, method: str, fixed_sigma2: bool, solver: str) -> dict:
    """Formula, method, solver and versions: what it takes to reproduce a fit. A
    structured model (GeneralSpec) names each term's structure and its K, and the
    residual groups' column and whether there are weights."""
    if hasattr(spec, "theta_names"):
        r = spec.residual
        covariances = {t.name: f"{t.structure.kind} x {t.level.source}" for t in spec.terms}
        extra = {"residual": r.column, "weights": r.weights is not None}
    else:
        covariances, extra = {t.name: t.source for t in spec.terms}, {}
    return {
        "formula": spec.formula.text,
        "method": method,
        "solver": solver,
        "version": __version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
        "python": platform.python_version(),
        "fixed_sigma2": bool(fixed_sigma2),
        "covariances": covariances,
    } | extra


def variance_table(spec: ModelSpec, s: np.ndarray, cov, boundary, notes: list) -> pd.DataFrame:
    """Variance components with SEs, shares of the total and their delta-method SEs.

    On the boundary (σ²ₖ = 0) the usual asymptotics do not hold (the estimator's
    distribution is a mixture with a point mass at 0), so σ²ₖ's SE and every share's
    SE are NaN, in every solver; the BoundaryWarning says why. The other variances
    keep their SEs from the inverse AI of the free components.
    """
    K = len(spec.terms)
    names = [t.name for t in spec.terms] + ["Residual"]
    if cov is not None and boundary:
        cov = cov.copy()
        cov[boundary, :] = np.nan
        cov[:, boundary] = np.nan
    ratio, ratio_se = ratio_table(names, s, cov)
    var_se = np.sqrt(np.diag(cov)) if cov is not None else np.full(K + 1, np.nan)
    for k in boundary:
        msg = (
            f"variance of {names[k]!r} estimated at the boundary (0): the data show no "
            "variation between its levels beyond the residual; its BLUPs are 0 with "
            "reliability 0, and the standard errors of this variance and of the shares "
            "are not available (NaN): asymptotic SEs do not hold at the boundary"
        )
        notes.append(msg)
        warnings.warn(msg, BoundaryWarning, stacklevel=5)  # one frame deeper than before fit_result
    return pd.DataFrame(
        {
            "variance": s,
            "se": var_se,
            "ratio": ratio,
            "ratio_se": ratio_se,
            "boundary": [bool(k in boundary) for k in range(K)] + [False],
            "levels": [t.q for t in spec.terms] + [np.nan],
        },
        index=pd.Index(names, name="term"),
    )


def reliability(pev: np.ndarray, sigma2_k: float, k_diag: np.ndarray) -> np.ndarray:
    """1 − PEV/(σ²ₖKᵢᵢ); 0 when σ²ₖ = 0 (the BLUPs are all 0 and carry no information).

    Shape (q,). A level with Kᵢᵢ = 0 (a degenerate K) gets NaN rather than a number.
    """
    if sigma2_k == 0.0:
        return np.zeros(len(k_diag))
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 - pev / (sigma2_k * k_diag)


def sigma2_vcov(ai: np.ndarray, active, notes: list) -> np.ndarray | None:
    """Sampling covariance of σ² (terms, then residual): the inverse AI over the free
    components; NaN rows for terms at the boundary, None (with a note) if AI is singular."""
    K = len(active)
    free = np.concatenate([np.flatnonzero(active), [K]])
    cov = np.full((K + 1, K + 1), np.nan)
    try:
        cov[np.ix_(free, free)] = np.linalg.inv(ai[np.ix_(free, free)])
    except np.linalg.LinAlgError:
        notes.append("average-information matrix singular: no standard errors")
    return cov


@dataclass(frozen=True)
class Run:
    """How a fit reached its final Evaluation, and what its engine adds to the result.

    Attributes
    ----------
    solver : str
        The engine's name (``FitResult.solver``).
    method : {"reml", "ml"}
    iterations : int
    converged : bool
    log : DataFrame
    boundary : list
        Terms on the boundary: indices (ModelSpec) or names (GeneralSpec, ``"Residual"`` included).
    estimated : bool
        False when the variances were given (no SEs, df without them, ``fixed_sigma2``).
    notes : tuple of str
        The engine's notes, after the model's and the variance table's.
    settings : dict
        The engine's settings beyond the common ones (``pcg``, ``pev_method`` ...).
    """

    solver: str
    method: str
    iterations: int = 0
    converged: bool = True
    log: pd.DataFrame = field(default_factory=pd.DataFrame)
    boundary: list = field(default_factory=list)
    estimated: bool = True
    notes: tuple = ()
    settings: dict = field(default_factory=dict)


def fit_result(spec, ev, run: Run) -> FitResult:
    """The FitResult of any single-trait engine at its final Evaluation (see the module notes).

    Parameters
    ----------
    spec : ModelSpec or GeneralSpec
    ev : :class:`~henderson.solvers.protocol.Evaluation`
        With ``blups``, ``fixed`` and ``residuals``; ``ai`` when ``run.estimated``; ``pev``
        (None: PEV and reliabilities NaN); ``fixed_var`` (None: SE(b̂) NaN).
    run : Run
    """
    structured = hasattr(spec, "theta_names")
    notes = list(spec.notes)
    if structured:
        tables = assemble_general.structured_tables(spec, ev, run, notes)
        blups = assemble_general.blup_tables(spec, ev)
        n_theta = spec.n_theta
        record_levels = {t.name: t.levels[t.codes[:, 0]] for t in spec.terms}
    else:
        tables = _variance_tables(spec, ev, run, notes)
        blups = _blup_tables(spec, ev)
        n_theta = len(spec.terms) + 1
        record_levels = None
    notes.extend(run.notes)
    p = len(spec.x_names)
    b_se = np.sqrt(ev.fixed_var) if ev.fixed_var is not None else np.full(p, np.nan)
    settings = settings_of(spec, run.method, not run.estimated, run.solver) | run.settings
    return build_fit_result(
        spec,
        m2ll=ev.m2ll,
        n_theta=n_theta if run.estimated else 0,
        residuals=ev.residuals,
        fitted=ev.fitted,
        record_levels=record_levels,
        notes=notes,
        fixed_effects=fixed_effects_table(ev.fixed, b_se, spec.x_names),
        blups=blups,
        method=run.method,
        solver=run.solver,
        iterations=run.iterations,
        converged=run.converged,
        log=run.log,
        settings=settings,
        **tables,
    )


def _variance_tables(spec: ModelSpec, ev, run: Run, notes: list) -> dict:
    """One variance per term: the table and the inverse AI over the free components."""
    s = ev.theta
    cov = sigma2_vcov(ev.ai, s[:-1] > 0, notes) if run.estimated else None
    return {"variance_components": variance_table(spec, s, cov, run.boundary, notes), "vcov": cov}


def _blup_tables(spec: ModelSpec, ev) -> dict:
    """Per term: BLUP, PEV (NaN when ``ev.pev`` is None), ``pev_se`` after it when sampled,
    reliability (0 for a term at σ²ₖ = 0) and the number of records."""
    s = ev.theta
    blups = {}
    for k, t in enumerate(spec.terms):
        if ev.pev is not None:
            pev_k = ev.pev[t.name]
            rel = reliability(pev_k, s[k], t.k_diag) if s[k] > 0 else np.zeros(t.q)
        else:
            pev_k = rel = np.full(t.q, np.nan)
        tab = blup_table(ev.blups[t.name], pev_k, rel, t.n_records, t.levels, t.name)
        if ev.pev_se is not None:
            tab.insert(tab.columns.get_loc("pev") + 1, "pev_se", np.ravel(ev.pev_se[t.name]))
        blups[t.name] = tab
    return blups

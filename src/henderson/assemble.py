"""Assemble a :class:`FitResult` from a solver's final state (dense MME, sparse MME or spectral):
one builder, :func:`mme_result`, on the solver protocol's Evaluation.

Shared rules (every solver): reliability = 1 − PEV/(σ²ₖKᵢᵢ), 0 when σ²ₖ = 0;
on the boundary the SEs of that variance and of all shares are NaN (:func:`variance_table`).
"""

from __future__ import annotations

import platform
import warnings

import numpy as np
import pandas as pd
import scipy

from ._version import __version__
from .errors import BoundaryWarning
from .results import FitResult, ratio_table
from .results_builder import blup_table, build_fit_result, fixed_effects_table
from .spec.model import ModelSpec


def settings_of(spec: ModelSpec, method: str, fixed_sigma2: bool, solver: str) -> dict:
    """Formula, method, solver and versions: what it takes to reproduce a fit."""
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
        "covariances": {t.name: t.source for t in spec.terms},
    }


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
        warnings.warn(msg, BoundaryWarning, stacklevel=4)
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


def mme_result(
    spec: ModelSpec, prepared, ev, method, iterations, converged, log, boundary, fixed_sigma2: bool, pev: bool = True
) -> FitResult:
    """FitResult of the dense MME, the sparse MME or the spectral solver from a protocol
    :class:`~henderson.solvers.protocol.Evaluation`.

    ``prepared`` is the :class:`~henderson.solvers.protocol.Prepared` that made ``ev``
    (with derivatives unless ``fixed_sigma2``). b̂ and the BLUPs come from ``ev``; the PEVs
    (σ²ₑ times the diagonal of C⁻¹: the dense block factor's blocks, F C^{vv} F' for a
    factored K, the sparse selected inverse; the spectral solver's V-form PEV) and the
    fixed effects' sampling variances from :meth:`~henderson.solvers.protocol.Prepared.with_pev`
    on the same factor. ``pev=False`` (the spectral solver on many records: O(n²N)) leaves
    PEV and reliabilities NaN, with a note.
    """
    K = len(spec.terms)
    if pev:
        ev = prepared.with_pev(ev)
    s = ev.theta
    notes = list(spec.notes)
    active = prepared.active(ev)
    cov = None if fixed_sigma2 else sigma2_vcov(ev.ai, active, notes)
    vc = variance_table(spec, s, cov, boundary, notes)
    if not pev:
        notes.append("PEV and reliabilities not computed (pev=False)")
    fe = fixed_effects_table(ev.fixed, np.sqrt(ev.fixed_var), spec.x_names)
    blups = {}
    for k, t in enumerate(spec.terms):
        u = ev.blups[t.name]
        if pev:
            pev_k = ev.pev[t.name]
            rel = reliability(pev_k, s[k], t.k_diag) if active[k] else np.zeros(t.q)
        else:
            pev_k = rel = np.full(t.q, np.nan)
        blups[t.name] = blup_table(u, pev_k, rel, t.n_records, t.levels, t.name)
    name = prepared.state.name
    return build_fit_result(
        spec,
        m2ll=ev.m2ll,
        n_theta=0 if fixed_sigma2 else K + 1,
        residuals=ev.residuals,
        notes=notes,
        variance_components=vc,
        fixed_effects=fe,
        blups=blups,
        method=method,
        solver=name,
        iterations=iterations,
        converged=converged,
        log=log,
        settings=settings_of(spec, method, fixed_sigma2, name),
        vcov=cov,
    )

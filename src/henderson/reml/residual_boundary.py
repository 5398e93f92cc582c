"""A residual variance estimated at ~0 (h² = 1): a boundary estimate, said once.

When one random effect with a dense kernel (GBLUP) explains all the variation, the
REML optimum lies on the boundary σ²_e = 0 of the parameter space. The spectral
optimiser then either stops at the upper end of its log(σ²_g/σ²_e) search range or
reaches σ²_e ~ 1e-11 where Newton's relative steps cannot settle; neither is a failure
to converge, and neither is an interior optimum. :func:`optimise_spectral` reports it
as what it is: σ²_e at (or within 1e-6 of the total variance of) zero, one
:class:`~henderson.BoundaryWarning`, ``info["residual_boundary"] = True`` and
``converged = False`` (the estimate is a limit on the boundary, not a stationary
point: the usual asymptotic SEs of σ²_e and of the shares do not hold).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import BoundaryWarning, ConvergenceWarning, ModelError

#: σ²_e below this share of the total variance (σ²_g·mean(diag K) + σ²_e) is "zero"
RESIDUAL_ZERO_SHARE = 1e-6

MESSAGE = (
    "residual variance estimated at the boundary (σ²_e ≈ 0, h² = 1): {who} "
    "{verb} all the variation in these records (e.g. means of many replicates, or a trait "
    "computed from the genotypes). This is a boundary estimate, not a converged interior "
    "optimum; the standard errors of the residual variance and of the shares are not available"
)


def boundary_message(terms) -> str:
    """:data:`MESSAGE` naming the random term(s) that absorbed all the variation."""
    terms = list(terms)
    if len(terms) == 1:
        return MESSAGE.format(who=f"the random effect {terms[0]!r}", verb="explains")
    return MESSAGE.format(who="the random effects " + ", ".join(map(repr, terms)), verb="explain")


def residual_near_zero(sigma2, k_means) -> bool:
    """True when σ²_e is below :data:`RESIDUAL_ZERO_SHARE` of the total variance
    Σ_k σ²_k·mean(diag K_k) + σ²_e (``sigma2``: terms then residual)."""
    s = np.asarray(sigma2, dtype=float)
    total = float(np.dot(s[:-1], k_means)) + s[-1]
    return bool(total > 0 and s[-1] <= RESIDUAL_ZERO_SHARE * total)


def optimise_spectral(prepared, method: str, *, max_iter: int, start=None, k_mean: float = 1.0):
    """:func:`~henderson.reml.spectral_search.search` with the residual boundary recognised
    (see the module notes). ``prepared``: the spectral solver's
    :class:`~henderson.solvers.protocol.Prepared`.

    Returns ``(sg, se, info)`` as :func:`~henderson.reml.spectral_search.search`; other warnings
    pass through.
    """
    from ..solvers.spectral import LOG_H_BOUNDS
    from .spectral_search import search

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            sg, se, info = search(prepared, method, max_iter=max_iter, start=start)
            at_bound = False
        except ModelError as err:
            if not getattr(err, "residual_at_zero", False):
                raise
            # the search ended at the largest σ²_g/σ²_e it considers: the boundary estimate
            log_h = LOG_H_BOUNDS[1]
            _, se = prepared.profiled(log_h, method)
            sg = float(np.exp(log_h) * se)
            info = {"iterations": 0, "evaluations": 0, "boundary": False, "log": None, "message": ""}
            at_bound = True
    near = at_bound or (sg > 0 and se <= RESIDUAL_ZERO_SHARE * (sg * k_mean + se))
    for w in caught:
        if near and issubclass(w.category, ConvergenceWarning):
            continue  # "did not converge" is the wrong diagnosis on the boundary
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if near:
        info = dict(info)
        info["converged"] = False
        info["residual_boundary"] = True
        info["message"] = boundary_message([prepared.state.term])
        if info.get("log") is None:
            import pandas as pd

            info["log"] = pd.DataFrame()
        warnings.warn(BoundaryWarning(info["message"]), stacklevel=4)
    return sg, se, info


def mark_residual_boundary(result, message: str):
    """The result with the Residual row flagged as a boundary estimate (SEs NaN) and a note."""
    import dataclasses

    vc = result.variance_components.copy()
    vc.loc["Residual", "boundary"] = True
    vc.loc["Residual", "se"] = np.nan
    vc["ratio_se"] = np.nan
    vcov = None if result.vcov is None else np.full_like(result.vcov, np.nan)
    return dataclasses.replace(
        result, variance_components=vc, converged=False, vcov=vcov, notes=tuple(result.notes) + (message,)
    )

"""AI-REML with step control, EM fallback and boundary handling.

The optimiser works on the variance components σ² = (σ²₁ … σ²_K, σ²ₑ):

1. Newton-type step with the average-information matrix: δ = AI⁻¹ · score
   (Gilmour, Thompson & Cullis 1995, Biometrics 51:1440).
2. Step control: a step that would make a component negative is cut where the
   first component reaches zero; that component then sits on the boundary
   (its term leaves the MME). A step that does not improve the objective is halved.
3. Fallback: if halving fails (or AI is not positive definite), an EM-REML step,
   which never leaves the parameter space and never lowers the likelihood.
4. Boundary check: at convergence, a component held at zero re-enters when the
   score at zero is positive (the likelihood increases away from the boundary).
5. Residual at the boundary: once σ²ₑ falls below 1e-6 of the total variance it is
   held there and only the terms move; the result is a boundary estimate with one
   BoundaryWarning (:mod:`henderson.reml.residual_boundary`), not an error.

Every iteration is logged (σ², −2 log L, step type), and the log travels with the
result and any ConvergenceWarning.

The optimiser sees the solver only through the protocol (:mod:`henderson.solvers.protocol`):
``Prepared.evaluate`` → ``Evaluation``, and ``em_step``, ``boundary_score``, ``active``,
``release`` / ``restore`` for the fallbacks and memory; a dense or sparse MME object is
wrapped by ``Prepared.of``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .._progress import report
from ..errors import BoundaryWarning, ConvergenceWarning, ModelError, NotPositiveDefiniteError
from ..solvers.protocol import Prepared
from .residual_boundary import boundary_message, residual_near_zero

#: what an evaluation raises when a trial σ² leaves the region where the MME are
#: positive definite (numerically): the only errors a line search may absorb
_LEFT_FEASIBLE_REGION = (np.linalg.LinAlgError, NotPositiveDefiniteError, FloatingPointError, ZeroDivisionError)


@dataclass
class OptimResult:
    """Outcome of the optimisation: final evaluation with derivatives, log, status."""

    evaluation: Any  # the protocol Evaluation at the optimum (solver-native one in .detail)
    iterations: int
    converged: bool
    log: pd.DataFrame
    boundary: list[int] = field(default_factory=list)
    #: σ²ₑ reached ~0 (reml/residual_boundary.py): a boundary estimate, ``converged`` False
    residual_boundary: bool = False


def starting_values(spec) -> np.ndarray:
    """Split the OLS residual variance equally among the K + 1 components.

    A term's share is divided by the mean diagonal of its covariance, so that it
    contributes its share to var(y) whatever the scale of K (e.g. K = WW' in SNP-BLUP,
    whose diagonal is ~2Σpq, not ~1).
    """
    X, y = spec.X, spec.y
    if X.shape[1]:
        beta, *_ = np.linalg.lstsq(X, y, rcond=None)
        resid = y - X @ beta
    else:
        resid = y
    v = float(resid @ resid) / max(spec.n - spec.p, 1)
    K = len(spec.terms)
    start = np.full(K + 1, v / (K + 1))
    for k, t in enumerate(spec.terms):
        scale = float(np.nanmean(t.k_diag))
        if np.isfinite(scale) and scale > 0:
            start[k] /= scale
    return start


def optimise(state, *, method: str = "reml", start=None, max_iter: int = 200, tol: float = 1e-10) -> OptimResult:
    """Maximise the (RE)ML likelihood over σ² by AI-REML with fallbacks.

    Parameters
    ----------
    state : Prepared
        A prepared dense or sparse MME (``prepare(spec, "dense" | "sparse")``); a
        ``DenseMME`` or ``SparseMME`` object is wrapped (``Prepared.of``).
    method : {"reml", "ml"}
    start : array, shape (K + 1,), optional
    max_iter : int
    tol : float
        Convergence when the largest relative change of σ² is below 1e-8
        and −2 log L changes by less than ``tol · max(1, |−2 log L|)``.
    """
    state = state if isinstance(state, Prepared) else Prepared.of(state)
    s = np.asarray(start if start is not None else starting_values(state.spec), dtype=float)
    K = len(s) - 1
    # a solver with a numerical score (sparse) cannot resolve σ² beyond ~1e-7
    par_tol = state.par_tol
    ev = state.evaluate(s, derivatives=True, method=method)
    rows = [dict(iteration=0, step="start", m2ll=ev.m2ll, **_named(state, s))]
    # pinned: σ²ₑ fell below RESIDUAL_ZERO_SHARE of the total; it is then held there and
    # only the terms move (AI steps shrinking σ²ₑ toward 0 stall the other components)
    converged = at_zero = pinned = False
    may_pin = True
    k_means = [float(np.nanmean(t.k_diag)) for t in state.spec.terms]
    it = 0
    for it in range(1, max_iter + 1):
        # the AI step needs only the current point's σ², score, AI and objective: its
        # factor and selected inverse are released before the trial evaluations, so at
        # most one factor + selected inverse is alive (issue 13: memory bounded by the factor)
        ev = state.release(ev)
        ev_new, kind = _ai_step(state, ev, method, pin_residual=pinned)
        if ev_new is None:
            ev = state.restore(ev)  # EM needs the traces of the current point
            try:
                s_new, kind = state.em_step(ev), "em"
            except ModelError as err:
                if not getattr(err, "residual_at_zero", False):
                    raise
                at_zero = True  # EM would set σ²ₑ to 0: the last σ² is the boundary estimate
                break
            if pinned:
                s_new[-1] = ev.theta[-1]
            ev_new = state.evaluate(s_new, derivatives=True, method=method)
        s_new = ev_new.theta
        rel = np.abs(s_new - ev.theta) / np.maximum(np.abs(ev_new.theta), 1e-12 * s_new[-1])
        change = np.max(rel)
        dm = abs(ev.m2ll - ev_new.m2ll)
        ev, ev_new = ev_new, None  # no second reference keeps its factor alive
        rows.append(dict(iteration=it, step=kind, m2ll=ev.m2ll, **_named(state, ev.theta)))
        report(it)
        if not pinned and may_pin and residual_near_zero(ev.theta, k_means):
            pinned = True
            continue
        if change < par_tol and dm < tol * max(1.0, abs(ev.m2ll)):
            if pinned and ev.score[-1] > 1e-8 * max(1.0, abs(ev.m2ll)):
                pinned = may_pin = False  # the likelihood rises with σ²ₑ: an interior optimum
                continue
            released = _release_boundary(state, ev, method)
            if released is None:
                converged, at_zero = not pinned, pinned
                break
            ev = state.evaluate(released, derivatives=True, method=method)
            rows.append(dict(iteration=it, step="release", m2ll=ev.m2ll, **_named(state, ev.theta)))
    ev = state.restore(ev)
    log = pd.DataFrame(rows)
    active = state.active(ev)
    boundary = [k for k in range(K) if not active[k]]
    if at_zero:
        # σ²ₑ → 0 is a boundary optimum, not a failure to converge: one BoundaryWarning
        # (out of iterations with σ²ₑ held, the terms did not converge: the warning below)
        terms = [t.name for k, t in enumerate(state.spec.terms) if active[k]]
        warnings.warn(BoundaryWarning(boundary_message(terms)), stacklevel=3)
        return OptimResult(ev, it, False, log, boundary, residual_boundary=True)
    if not converged:
        warnings.warn(
            ConvergenceWarning(
                f"REML did not converge in {max_iter} iterations (last -2logL {ev.m2ll:.8f}); "
                f"last iterations:\n{log.tail(5).to_string(index=False)}",
                log,
            ),
            stacklevel=3,
        )
    return OptimResult(ev, it, converged, log, boundary)


def _named(state: Prepared, s) -> dict:
    return dict(zip(state.names, map(float, s)))


def _ai_step(state, ev, method: str, pin_residual: bool = False):
    """One AI step with cut-at-boundary and halving (σ²ₑ held with ``pin_residual``).

    Returns the accepted evaluation (with derivatives, so the next iteration reuses
    it) and the step kind, or (None, None) when no step improves the objective.
    """
    K = len(ev.theta) - 1
    active = state.active(ev)
    free = np.flatnonzero(active) if pin_residual else np.concatenate([np.flatnonzero(active), [K]])
    g = ev.score[free]
    H = ev.ai[np.ix_(free, free)]
    try:
        # AI is positive definite at any σ² with σ²ₑ > 0; solve via Cholesky
        c = np.linalg.cholesky(H)
        delta = np.linalg.solve(c.T, np.linalg.solve(c, g))
    except np.linalg.LinAlgError:
        return None, None
    s0 = ev.theta
    full = np.zeros_like(s0)
    full[free] = delta
    # largest t in (0, 1] keeping every free component >= 0
    neg = (full < 0) & (s0 > 0)
    t_max = min(1.0, float(np.min(-s0[neg] / full[neg]))) if neg.any() else 1.0
    t = t_max
    for _ in range(12):
        cand = s0 + t * full
        if t == t_max and t_max < 1.0:
            cand[neg & np.isclose(-s0 / np.where(full == 0, 1, full), t_max)] = 0.0
        cand = np.maximum(cand, 0.0)
        if cand[-1] <= 0:
            t /= 2
            continue
        try:
            trial = state.evaluate(cand, derivatives=True, method=method)
        except _LEFT_FEASIBLE_REGION:
            # the step reached σ² where C or V is not positive definite: shorten it.
            # Anything else (a bug, bad input) propagates instead of being halved away.
            t /= 2
            continue
        if trial.m2ll <= ev.m2ll + 1e-12 * max(1.0, abs(ev.m2ll)):
            kind = "ai" if t == 1.0 else ("ai-boundary" if t == t_max < 1.0 else f"ai-halved({t:.3g})")
            return trial, kind
        trial = None  # a rejected trial's factor is freed before the next one is made
        t /= 2
    return None, None


def _release_boundary(state, ev, method: str):
    """σ² with a boundary component restarted if its score at zero is positive."""
    K = len(ev.theta) - 1
    active = state.active(ev)
    for k in range(K):
        if active[k]:
            continue
        score, ai = state.boundary_score(ev, k)
        # a positive score, larger than rounding noise, means the optimum is interior
        if score > 1e-8 * max(1.0, abs(ev.m2ll)) and ai > 0:
            s = ev.theta.copy()
            s[k] = score / ai
            return s
    return None

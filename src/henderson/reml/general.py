"""AI-REML over structured covariance parameters θ, with EM fallback keeping Σ PSD.

Each iteration (Gilmour, Thompson & Cullis 1995; Meyer 1997 for general Σ):

1. AI step δ = AI⁻¹ · score. A trial θ + tδ whose Σₖ (or residual variance) is not
   positive definite is moved to the nearest Σ with eigenvalues ≥ a floor
   (``Structure.project``, 1e-8 of Σ's largest variance): Σ stays PSD and a
   variance can reach the boundary in one step instead of creeping there.
2. The trial is accepted when −2 log L does not increase; otherwise t is halved.
3. When no halving helps (or AI is singular), an EM-REML step: Σₖ ← (Qₖ + Tₖ)/rₖ
   projected on the structure (``Structure.em``), σ²_g ← (ê'D_gê + tr(C⁻¹M_g))/n_g.
   (Q + T)/r is a covariance matrix (PSD), so EM never leaves the parameter space
   and never lowers the likelihood.

Converged when the largest scaled change |Δθⱼ|/scaleⱼ is below 1e-8 and −2 log L
changes by less than 1e-10 (relative), or the largest scaled score |∂ℓ/∂θⱼ|·scaleⱼ is
below 1e-7 (scaleⱼ: Σᵢᵢ for a variance, √(ΣᵢᵢΣⱼⱼ) for a covariance).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._progress import report
from ..errors import ConvergenceWarning, NotPositiveDefiniteError

_INFEASIBLE = (np.linalg.LinAlgError, NotPositiveDefiniteError, FloatingPointError, ZeroDivisionError)

#: eigenvalue floor of a projected Σ, relative to its largest variance
FLOOR = 1e-8


@dataclass
class GeneralOptim:
    evaluation: object
    iterations: int
    converged: bool
    log: pd.DataFrame
    boundary: list = field(default_factory=list)


def _structures(state):
    return state.spec.structures


def _scale(state, theta) -> np.ndarray:
    out = np.empty(len(theta))
    for s, sl in zip(_structures(state), state.slices):
        out[sl] = s.theta_scale(theta[sl])
    return np.maximum(out, 1e-300)


def feasible(state, theta) -> np.ndarray:
    """θ with every Σ PSD (eigenvalues ≥ FLOOR × its largest variance)."""
    theta = np.array(theta, dtype=float)
    for s, sl in zip(_structures(state), state.slices):
        th = theta[sl]
        top = float(np.max(np.abs(np.diag(s.sigma(th))))) if s.size else 0.0
        floor = FLOOR * max(top, 1e-300)
        S = s.sigma(th)
        if np.linalg.eigvalsh(S).min() < floor or np.any(th[s.is_variance()] < floor):
            theta[sl] = s.project(th, floor)
    return theta


def em_theta(state, ev) -> np.ndarray:
    """The EM-REML update of θ (see module docstring)."""
    theta = ev.theta.copy()
    for k, t in enumerate(state.spec.terms):
        sl = state.slices[k]
        theta[sl] = t.structure.em(ev.em["terms"][k], theta[sl])
    theta[state.slices[-1]] = ev.em["residual"]
    return theta


def _ai_step(state, ev, method):
    try:
        c = np.linalg.cholesky(ev.ai)
        delta = np.linalg.solve(c.T, np.linalg.solve(c, ev.score))
    except np.linalg.LinAlgError:
        return None, None
    t = 1.0
    for _ in range(10):
        raw = ev.theta + t * delta
        cand = feasible(state, raw)
        projected = not np.allclose(cand, raw, rtol=0, atol=0)
        try:
            trial = state.evaluate(cand, derivatives=True, method=method)
        except _INFEASIBLE:
            t /= 2
            continue
        if trial.m2ll <= ev.m2ll + 1e-12 * max(1.0, abs(ev.m2ll)):
            kind = "ai" if t == 1.0 else f"ai-halved({t:.3g})"
            return trial, kind + ("-projected" if projected else "")
        t /= 2
    return None, None


def _row(state, it, kind, ev) -> dict:
    return dict(iteration=it, step=kind, m2ll=ev.m2ll, **dict(zip(state.spec.theta_names, map(float, ev.theta))))


def optimise_general(state, *, method: str = "reml", start=None, max_iter: int = 200) -> GeneralOptim:
    """Maximise the (RE)ML likelihood of a :class:`~henderson.solvers.general.GeneralMME` over θ.

    A run that reaches ``max_iter`` warns with a :class:`~henderson.ConvergenceWarning`
    carrying the log (also on the result).
    """
    theta = feasible(state, np.asarray(start if start is not None else state.start(), dtype=float))
    ev = state.evaluate(theta, derivatives=True, method=method)
    rows = [_row(state, 0, "start", ev)]
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        new, kind = _ai_step(state, ev, method)
        if new is None:
            new = state.evaluate(feasible(state, em_theta(state, ev)), derivatives=True, method=method)
            kind = "em"
        scale = _scale(state, new.theta)
        change = float(np.max(np.abs(new.theta - ev.theta) / scale))
        dm = abs(ev.m2ll - new.m2ll)
        ev = new
        rows.append(_row(state, it, kind, ev))
        report(it)
        grad = float(np.max(np.abs(ev.score) * scale))
        if (change < 1e-8 and dm < 1e-10 * max(1.0, abs(ev.m2ll))) or grad < 1e-7:
            converged = True
            break
    log = pd.DataFrame(rows)
    if not converged:
        warnings.warn(ConvergenceWarning(
            f"REML did not converge in {max_iter} iterations (last -2logL {ev.m2ll:.8f}); "
            f"last iterations:\n{log.tail(5).to_string(index=False)}", log), stacklevel=3)
    return GeneralOptim(ev, it, converged, log, boundary_of(state, ev.theta))


def boundary_of(state, theta, rel: float = 1e-6) -> list:
    """Names of the structures on the boundary: a variance ≤ rel × the largest of its Σ,
    or a Σ whose smallest eigenvalue is ≤ rel × its largest (rank-deficient)."""
    out = []
    names = [t.name for t in state.spec.terms] + ["Residual"]
    for name, s, sl in zip(names, _structures(state), state.slices):
        S = s.sigma(theta[sl])
        w = np.linalg.eigvalsh(S)
        if w.max() <= 0 or w.min() <= rel * w.max():
            out.append(name)
    return out

"""AI-REML for structured covariances, on parameters that keep every Σ PSD.

The likelihood, score and average information are computed in θ (the elements of
each Σ, ``solvers/general.py``). The optimiser moves in unconstrained parameters φ
with θ = θ(φ) — squares for variances, a Cholesky factor for an unstructured Σ,
square roots of the two eigenvalues for CS, squared specific variances for FA
(``Structure.from_phi``) — so every trial Σ is PSD by construction and a variance
reaches 0 (a Σ becomes rank-deficient) by its φ reaching 0, as in lme4's Λ(θ).

Newton-type step in φ (Gilmour, Thompson & Cullis 1995 for AI; chain rule for φ):

    s_φ = J' s_θ,   H_φ = J' AI J − Σⱼ s_θⱼ ∂²θⱼ/∂φ∂φ',   δ = H_φ⁻¹ s_φ,

J = ∂θ/∂φ. The second term is the curvature of the map θ(φ) (exact: θ(φ) is quadratic),
without which a variance heading for 0 would take ever larger steps (its J column
vanishes); with it, a variance whose score at 0 is negative is driven to 0 in one step.
When H_φ is not positive definite it is damped, H_φ + μI (Levenberg–Marquardt), μ from
10⁻⁶ of J'AIJ's mean diagonal up by tens until it is. Damping J'AIJ instead (dropping the
curvature term) made the step of a Cholesky pivot heading for 0 ~10⁴ times too long on a
genomic MET: every halving failed and EM crawled for 200 iterations, 31 units of −2 log L
short of the optimum (tests/reml/test_general_newton_damping.py).
A step that does not lower −2 log L is halved (12 times at most); then an EM-REML
step (Σₖ ← (Qₖ + Tₖ)/rₖ projected on the structure, σ²_g ← (ê'D_gê + tr(C⁻¹M_g))/n_g),
which keeps Σ PSD and never lowers the likelihood. A trial where a Σ is numerically
singular (the MME need Σ⁻¹), or that the C-form refuses as numerically unreliable
(:class:`~henderson.errors.UnreliableEvaluationError`, σ²ₑ → 0), counts as a failed step
and is halved. When every trial fails and some structures are on the boundary
(:func:`boundary_of`), the AI step of the other parameters with theirs held is tried
before EM ("ai-held"): near σ²ₑ = 0 the full step always pushes σ²ₑ below what the
C-form resolves, which would otherwise leave only EM's slow steps.
An EM step that raises −2 log L (impossible in exact arithmetic: the evaluation has lost
its accuracy near a singular Σ) ends the run: as converged ("em-flat") when the point is on
the boundary and the rise is within 1e-6 relative (the accuracy limit there), otherwise as
"stuck" (not converged), rather than wandering. The multi-trait engines run here too (``multitrait/protocol.py``).

Stopping rule (:func:`newton_check`, a criterion on the AI-scaled score with the dense
optimiser's tolerances, ``reml/optimize.py``): at each accepted point the AI step
δ = H_φ⁻¹ s_φ is formed anyway for the next iteration; it maps to Δθ = θ(φ + δ) − θ, the
quasi-Newton estimate of the distance to the optimum, and its Newton decrement λ² = s_φ'δ
is the decrease of −2 log L it predicts. When the largest scaled step |Δθⱼ|/scaleⱼ is below
1e-8 and λ² below 1e-10 · max(1, |−2 log L|) (scaleⱼ: Σᵢᵢ for a variance, √(ΣᵢᵢΣⱼⱼ) for a
covariance), the current point is the optimum and the step is not taken. The dense
optimiser's 1e-8 is on the last step taken; here it is on the estimated remaining
distance, one evaluation earlier (measured: σ² within 1.2e-9 relative of the dense
optimum on potato, Penicillin, gryphon and wheat). On the boundary only
(:func:`boundary_of` not empty: a variance at 0 or a rank-deficient Σ, where the score is
not 0 and the MME carry a near-singular Σ⁻¹, so θ jitters at ~1e-9 relative in −2 log L),
three accepted steps in a row that change −2 log L by less than 1e-9 relative also end
the run. ``iterations`` counts the accepted steps.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .._progress import report
from ..errors import ConvergenceWarning, NotPositiveDefiniteError, UnreliableEvaluationError
from ..solvers.protocol import Prepared

#: a point the engine cannot evaluate: a Σ or C not positive definite, or (the C-form's
#: :class:`UnreliableEvaluationError`) too ill-conditioned to trust −2 log L; both halve the step
_INFEASIBLE = (
    np.linalg.LinAlgError,
    NotPositiveDefiniteError,
    UnreliableEvaluationError,
    FloatingPointError,
    ZeroDivisionError,
)


@dataclass
class GeneralOptim:
    evaluation: Any
    iterations: int
    converged: bool
    log: pd.DataFrame
    boundary: list = field(default_factory=list)


def _structures(state):
    return state.spec.structures


def _slices(state):
    return state.spec.slices


def _scale(state, theta) -> np.ndarray:
    return theta_scale(state.spec, theta)


def theta_scale(spec, theta) -> np.ndarray:
    """Each θ's natural scale (its structure's ``theta_scale``), at least 1e-300."""
    out = np.empty(len(theta))
    for s, sl in zip(spec.structures, spec.slices):
        out[sl] = s.theta_scale(theta[sl])
    return np.maximum(out, 1e-300)


def to_phi(state, theta) -> np.ndarray:
    phi = np.empty(len(theta))
    for s, sl in zip(_structures(state), _slices(state)):
        phi[sl] = s.to_phi(theta[sl])
    return phi


def from_phi(state, phi) -> np.ndarray:
    theta = np.empty(len(phi))
    for s, sl in zip(_structures(state), _slices(state)):
        theta[sl] = s.from_phi(phi[sl])
    return theta


def _second_derivatives(state) -> tuple[np.ndarray, np.ndarray]:
    """∂²θⱼ/∂φ∂φ' (n × n × n), block-diagonal by structure, cached on the state.

    Every θ(φ) here is a polynomial of degree 2 in φ (squares, LL', and FA loadings
    entering linearly), so the second derivatives are constant and
    J(φ) = ∂θ/∂φ = J0 + D2 · φ, J0 the linear part. Central differences of a
    quadratic are exact for any step; step 1. Returns (J0, D2)."""
    cached = getattr(state, "_phi_d2", None)
    if cached is not None:
        return cached
    n = state.spec.n_theta
    D2 = np.zeros((n, n, n))
    J0 = np.zeros((n, n))
    for s, sl in zip(_structures(state), _slices(state)):
        m = sl.stop - sl.start
        E = np.eye(m)
        f, z = s.from_phi, np.zeros(m)
        for i in range(m):
            J0[sl, sl.start + i] = (f(z + E[i]) - f(z - E[i])) / 2  # linear part (FA loadings)
            for k in range(i, m):
                d2 = (f(z + E[i] + E[k]) - f(z + E[i] - E[k]) - f(z - E[i] + E[k]) + f(z - E[i] - E[k])) / 4
                D2[sl, sl.start + i, sl.start + k] = d2
                D2[sl, sl.start + k, sl.start + i] = d2
    state._phi_d2 = (J0, D2)
    return J0, D2


def _jacobians(state, phi) -> tuple[np.ndarray, np.ndarray]:
    """J = ∂θ/∂φ = J0 + D2 · φ and D2 = ∂²θ/∂φ∂φ' (see :func:`_second_derivatives`)."""
    J0, D2 = _second_derivatives(state)
    return J0 + D2 @ phi, D2


def _newton_direction(state, ev, held=None) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(φ, δ, λ²): the point in φ, the AI step δ = H_φ⁻¹ s_φ and its Newton decrement
    λ² = s_φ'δ (the decrease of −2 log L a full step predicts: ℓ gains ½ s_φ'H_φ⁻¹s_φ).
    ``held`` (boolean mask over φ): those entries stay where they are (δ = 0 there; the
    Newton step of the others given them)."""
    phi = to_phi(state, ev.theta)
    J, D2 = _jacobians(state, phi)
    g = J.T @ ev.score
    H = J.T @ ev.ai @ J - np.einsum("j,jab->ab", ev.score, D2)
    if held is not None and np.any(held):
        free = ~held
        sub = _newton_solve(state, g[free], H[np.ix_(free, free)], (J.T @ ev.ai @ J)[np.ix_(free, free)])
        if sub is None:
            return None
        delta = np.zeros(len(phi))
        delta[free] = sub
        return phi, delta, float(g @ delta)
    full = _newton_solve(state, g, H, J.T @ ev.ai @ J)
    if full is None:
        return None
    return phi, full, float(g @ full)


def _newton_solve(state, g, H, H_ai) -> np.ndarray | None:
    """δ = H⁻¹g, with H damped to H + μI when it is not positive definite (Levenberg–
    Marquardt; μ scaled by ``H_ai`` = J'AIJ, whose curvature term H keeps); None when no μ
    makes it so."""
    if len(g) == 0:
        return None
    try:
        c = np.linalg.cholesky(H)
    except np.linalg.LinAlgError:
        mu = 1e-6 * max(float(np.trace(H_ai)) / len(H), 1e-300)
        for _ in range(20):
            try:
                c = np.linalg.cholesky(H + mu * np.eye(len(H)))
                break
            except np.linalg.LinAlgError:
                mu *= 10
        else:
            return None
    return np.linalg.solve(c.T, np.linalg.solve(c, g))


#: the dense optimiser's tolerances (reml/optimize.py: ``par_tol`` and ``tol``)
STEP_TOL = 1e-8
DECREMENT_TOL = 1e-10


def newton_check(state, ev, direction) -> bool:
    """Whether the AI step at ``ev`` is below the stopping tolerances (module notes):
    max |Δθⱼ|/scaleⱼ < :data:`STEP_TOL` and λ² < :data:`DECREMENT_TOL` · max(1, |−2 log L|)."""
    if direction is None:
        return False
    phi, delta, decrement = direction
    step = from_phi(state, phi + delta) - ev.theta
    size = float(np.max(np.abs(step) / _scale(state, ev.theta)))
    return size < STEP_TOL and abs(decrement) < DECREMENT_TOL * max(1.0, abs(ev.m2ll))


def _ai_step(state, ev, method, direction):
    if direction is None:
        return None, None
    phi, delta, _ = direction
    t = 1.0
    for _ in range(12):
        cand = from_phi(state, phi + t * delta)
        try:
            # −2 log L alone decides a trial: the derivatives (C⁻¹, score, AI: most of an
            # evaluation's cost) are computed only for the accepted point
            trial = state.evaluate(cand, derivatives=False, method=method)
        except _INFEASIBLE:
            t /= 2
            continue
        if trial.m2ll <= ev.m2ll + 1e-12 * max(1.0, abs(ev.m2ll)):
            try:
                trial = state.complete(trial)
            except _INFEASIBLE:
                t /= 2
                continue
            return trial, "ai" if t == 1.0 else f"ai-halved({t:.3g})"
        trial = None  # a rejected trial's factor is freed before the next one is made
        t /= 2
    return None, None


def _row(state, it, kind, ev) -> dict:
    return dict(iteration=it, step=kind, m2ll=ev.m2ll, **dict(zip(state.names, map(float, ev.theta))))


def optimise_general(state, *, method: str = "reml", start=None, max_iter: int = 200) -> GeneralOptim:
    """Maximise the (RE)ML likelihood of a general engine over θ.

    ``state`` is a :class:`~henderson.solvers.protocol.Prepared` general engine
    (``prepare(spec, "general" | "general_sparse")``; a ``GeneralMME`` or
    ``GeneralSparseMME`` object is wrapped by ``Prepared.of``): the optimiser uses
    ``evaluate``, ``complete``, ``em_step`` and ``start`` only. The result's
    ``evaluation`` is the protocol ``Evaluation`` (the engine's own in ``.detail``).
    A run that reaches ``max_iter`` warns with a :class:`~henderson.ConvergenceWarning`
    carrying the log (also on the result).
    """
    state = state if isinstance(state, Prepared) else Prepared.of(state)
    theta = np.asarray(start if start is not None else state.start(), dtype=float)
    theta = from_phi(state, to_phi(state, theta))  # a PSD start
    ev = state.evaluate(theta, derivatives=True, method=method)
    rows = [_row(state, 0, "start", ev)]
    converged = False
    it = flat = 0
    steps = 0
    for it in range(1, max_iter + 1):
        direction = _newton_direction(state, ev)
        if newton_check(state, ev, direction):
            converged = True  # the AI step from here is below the tolerances: ev is the optimum
            break
        # the step needs θ, score, AI, −2 log L and the EM targets of the current point,
        # not its factor: a sparse evaluation's selected inverse (L's size) is released
        # before the trials, so one such array is alive at a time (issue 13)
        ev = state.release(ev)
        new, kind = _ai_step(state, ev, method, direction)
        if new is None and boundary_of(state, ev.theta):
            # every trial of the full step failed (a point the engine cannot evaluate: the
            # C-form refuses σ²ₑ below what it resolves): the AI step of the other
            # parameters with those of the structures on the boundary held
            held = _held_mask(state, boundary_of(state, ev.theta))
            if not held.all():
                new, kind = _ai_step(state, ev, method, _newton_direction(state, ev, held))
                kind = None if new is None else f"{kind}-held"
        if new is None:
            try:
                new = state.evaluate(state.em_step(ev), derivatives=True, method=method)
                kind = "em"
                # EM never lowers the likelihood in exact arithmetic: a rise is an evaluation
                # that has lost its accuracy (a nearly singular Σ). On the boundary a rise
                # within 1e-6 relative is that accuracy limit (the C-form near σ²ₑ = 0, a
                # rank-deficient Σ): no further progress is possible, the point is the
                # optimum ("em-flat"); a larger rise stops the run rather than wandering
                rise = new.m2ll - ev.m2ll
                if rise > 1e-9 * max(1.0, abs(ev.m2ll)):
                    tiny = rise <= 1e-6 * max(1.0, abs(ev.m2ll))
                    new, kind = ev, "em-flat" if tiny and boundary_of(state, ev.theta) else "stuck"
            except _INFEASIBLE:
                new, kind = ev, "stuck"
        dm = abs(ev.m2ll - new.m2ll)
        ev, new = new, None  # no second reference keeps its selected inverse alive
        rows.append(_row(state, it, kind, ev))
        report(it)
        steps = it
        flat = flat + 1 if dm < 1e-9 * max(1.0, abs(ev.m2ll)) else 0
        # flat, on the boundary only: near a rank-deficient Σ the MME carry Σ⁻¹ and
        # −2 log L is only accurate to ~1e-9 relative, so θ keeps jittering below that
        if kind in ("stuck", "em-flat") or (flat >= 3 and boundary_of(state, ev.theta)):
            converged = kind != "stuck"
            break
    log = pd.DataFrame(rows)
    if not converged:
        warnings.warn(
            ConvergenceWarning(
                f"REML did not converge in {steps} iterations (last -2logL {ev.m2ll:.8f}); "
                f"last iterations:\n{log.tail(5).to_string(index=False)}",
                log,
            ),
            stacklevel=3,
        )
    return GeneralOptim(ev, steps, converged, log, boundary_of(state, ev.theta))


def _held_mask(state, names) -> np.ndarray:
    """Boolean mask over φ: the entries of the structures named (terms, "Residual")."""
    all_names = [t.name for t in state.spec.terms] + ["Residual"]
    mask = np.zeros(state.spec.n_theta, dtype=bool)
    for name, sl in zip(all_names, _slices(state)):
        if name in names:
            mask[sl] = True
    return mask


def boundary_of(state, theta, rel: float = 1e-6) -> list:
    """Names of the structures on the boundary: a Σ whose smallest eigenvalue is
    ≤ rel × its largest (a variance at 0, a rank-deficient Σ), or a variance parameter
    ≤ rel × the largest variance of its Σ (an FA specific variance at 0, a Heywood case).
    A residual variance is compared with the largest variance of the whole model as well:
    a scalar residual is its own largest variance, so σ²ₑ → 0 would never count otherwise;
    so is a whole Σ (every variance of a term ≤ rel × the model's largest: a diagonal
    multi-trait term with all its variances at 0 is otherwise its own yardstick)."""
    out = []
    names = [t.name for t in state.spec.terms] + ["Residual"]
    pairs = list(zip(names, _structures(state), _slices(state)))
    overall = max(float(np.max(np.diag(s.sigma(theta[sl])))) for _, s, sl in pairs)
    for name, s, sl in pairs:
        S = s.sigma(theta[sl])
        w = np.linalg.eigvalsh(S)
        top = overall if name == "Residual" else float(np.max(np.diag(S)))
        whole = float(np.max(np.diag(S))) <= rel * overall  # the whole Σ at 0 (every variance)
        if w.max() <= 0 or whole or w.min() <= rel * w.max() or np.any(theta[sl][s.is_variance()] <= rel * top):
            out.append(name)
    return out

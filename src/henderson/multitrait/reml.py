"""AI-REML with an EM fallback for (Σ_g, Σ_e) of the multi-trait spectral model.

Each iteration tries, in order, and takes the first step that keeps Σ_g PSD, Σ_e
positive definite and does not increase −2 log L:

1. an average-information (Newton-type) step on θ = (vech Σ_g, vech Σ_e), halved up
   to four times;
2. the same step in the Cholesky parametrisation Σ = LL' (θ = vech(LL'); score and AI
   by the chain rule, AI_L = J'AI J), which cannot leave the PSD cone and moves along
   the boundary when a genetic correlation heads to ±1;
3. an EM-REML step (:meth:`MultiTraitSpectral.em_update`), which always stays PSD and
   never decreases the likelihood.

All steps are solved in units where every trait has unit phenotypic scale (θ_kl divided
by s_k s_l): the AI of Yield (variance ~10³) and a colour score (~10⁻³) is otherwise
too badly scaled to solve accurately.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._progress import report
from ..errors import BoundaryWarning, ConvergenceWarning, NotPositiveDefiniteError
from .spectral import MultiTraitSpectral, unvech, vech, vech_index

#: scaled step size (trait scale 1) below which the fit is converged
STEP_TOL = 1e-9
#: smallest eigenvalue of a correlation matrix treated as singular (boundary)
BOUNDARY_TOL = 1e-6


@dataclass
class Optimum:
    Sg: np.ndarray
    Se: np.ndarray
    m2ll: float
    iterations: int
    converged: bool
    boundary: list
    log: pd.DataFrame
    message: str = ""


def _psd(S, strict=False) -> bool:
    if not np.all(np.isfinite(S)):
        return False
    sc = np.sqrt(np.maximum(np.diag(S), 1e-300))
    w = np.linalg.eigvalsh(S / np.outer(sc, sc))
    return bool(w[0] > (1e-10 if strict else -1e-12)) and bool(np.all(np.diag(S) >= 0))


def _cholesky_jacobian(L):
    """J = ∂ vech(LL') / ∂ vech(L) for lower-triangular L (t(t+1)/2 square)."""
    t = L.shape[0]
    idx = vech_index(t)
    J = np.zeros((len(idx), len(idx)))
    for b, (a1, a2) in enumerate(idx):  # L[a1, a2] varies
        dL = np.zeros((t, t))
        dL[a1, a2] = 1.0
        dS = dL @ L.T + L @ dL.T
        J[:, b] = vech(dS)
    return J


def _chol(S):
    """Lower Cholesky factor of a PSD S (pivot-free, with a tiny ridge if singular)."""
    try:
        return np.linalg.cholesky(S)
    except np.linalg.LinAlgError:
        t = S.shape[0]
        eps = 1e-12 * max(float(np.trace(S)) / t, 1e-300)
        return np.linalg.cholesky(S + eps * np.eye(t))


def start_values(Y, Xs):
    """Σ_g = Σ_e = ½ × the covariance of the per-trait OLS residuals."""
    R = np.column_stack([Y[:, k] - x @ np.linalg.lstsq(x, Y[:, k], rcond=None)[0] for k, x in enumerate(Xs)])
    Sp = R.T @ R / max(Y.shape[0] - max(x.shape[1] for x in Xs), 1)
    return 0.5 * Sp, 0.5 * Sp, Sp


def optimise(state: MultiTraitSpectral, *, start=None, max_iter: int = 500) -> Optimum:
    """Maximise the REML likelihood over (Σ_g, Σ_e); see the module docstring."""
    t = state.t
    Sg0, Se0, Sp = start_values(state.Y, state.Xs)
    if start is not None:
        Sg0, Se0 = (np.asarray(s, dtype=float) for s in start)
    s = np.sqrt(np.diag(Sp))
    idx = vech_index(t)
    unit = np.array([s[k] * s[l] for k, l in idx])
    unit = np.concatenate([unit, unit])  # θ_scaled = θ / unit
    m = len(idx)
    Sg, Se = Sg0.copy(), Se0.copy()
    pc = state.pieces(Sg, Se)
    val = pc["m2ll"]
    rows = [_row(0, "start", val, Sg, Se)]
    converged, small_gain = False, 0
    message = ""
    it = 0
    for it in range(1, max_iter + 1):
        score, pc = state.score(Sg, Se, pc)
        ai = state.average_information(Sg, Se, pc)
        sc, ais = score * unit, ai * np.outer(unit, unit)
        theta = np.concatenate([vech(Sg), vech(Se)])
        try:
            step = np.linalg.solve(ais, sc) * unit
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(ais, sc, rcond=None)[0] * unit
        if np.max(np.abs(step / unit)) < STEP_TOL:
            converged = True
            break
        accepted = None
        for kind, cand in _candidates(theta, step, Sg, Se, score, ai, unit, m, t):
            nSg, nSe = cand
            if not (_psd(nSg) and _psd(nSe, strict=True)):
                continue
            try:
                npc = state.pieces(nSg, nSe)
            except NotPositiveDefiniteError:
                continue
            if npc["m2ll"] <= val + 1e-12 * max(1.0, abs(val)):
                accepted = (kind, nSg, nSe, npc)
                break
        if accepted is None:
            nSg, nSe = state.em_update(Sg, Se, pc)
            npc = state.pieces(nSg, nSe)
            accepted = ("em", nSg, nSe, npc)
        kind, nSg, nSe, npc = accepted
        gain = val - npc["m2ll"]
        moved = np.max(np.abs((np.concatenate([vech(nSg), vech(nSe)]) - theta) / unit))
        Sg, Se, pc, val = nSg, nSe, npc, npc["m2ll"]
        rows.append(_row(it, kind, val, Sg, Se))
        report(it)
        # a likelihood flat to rounding for 10 iterations (θ poorly determined, e.g. a
        # tiny genetic variance on the boundary) is converged too
        small_gain = small_gain + 1 if gain < 1e-11 * max(1.0, abs(val)) else 0
        if small_gain >= 10 or (kind in ("ai", "ai-rank") and moved < STEP_TOL):
            converged = True
            break
    else:
        message = f"no convergence after {max_iter} iterations"
    log = pd.DataFrame(rows)
    boundary = boundary_of(Sg, Se, idx)
    if not converged:
        warnings.warn(
            ConvergenceWarning(
                f"multi-trait REML did not converge: {message} (last -2logL {val:.8f}); last iterations:\n"
                f"{log.tail(5).to_string(index=False)}",
                log,
            ),
            stacklevel=3,
        )
    return Optimum(
        Sg=Sg, Se=Se, m2ll=float(val), iterations=it, converged=converged, boundary=boundary, log=log, message=message
    )


def boundary_of(Sg, Se, idx) -> list:
    """Names of the matrices estimated on the boundary (rank-deficient Σ_g or Σ_e)."""
    out = []
    for name, S in (("genetic", Sg), ("Residual", Se)):
        d = np.diag(S)
        if np.any(d <= 0):
            out.append(name)
            continue
        sc = np.sqrt(d)
        if np.linalg.eigvalsh(S / np.outer(sc, sc))[0] < BOUNDARY_TOL:
            out.append(name)
    return out


def _candidates(theta, step, Sg, Se, score, ai, unit, m, t):
    """AI steps (halved), then Cholesky-parametrised AI steps with a Levenberg-Marquardt damping.

    The Cholesky step works on the trait-scaled matrices D⁻¹ΣD⁻¹ (D = diag of phenotypic
    SDs, read from ``unit``): Σ = D LL' D stays PSD for any L.
    """
    for k in range(10):
        th = theta + 0.5**k * step
        yield "ai", (unvech(th[:m], t), unvech(th[m:], t))
    s = np.sqrt(unit[[k * (k + 1) // 2 + k for k in range(t)]])  # phenotypic SDs
    D = np.outer(s, s)
    Lg, Le = _chol(Sg / D), _chol(Se / D)
    J = np.zeros((2 * m, 2 * m))
    J[:m, :m] = _cholesky_jacobian(Lg)
    J[m:, m:] = _cholesky_jacobian(Le)
    sl = J.T @ (score * unit)
    ail = J.T @ (ai * np.outer(unit, unit)) @ J
    lg, le = vech(Lg), vech(Le)
    # on the boundary (a pivot of L near 0 and the likelihood falling in that null
    # direction) Gauss-Newton in L crawls: drop the null columns of L and take AI steps
    # on the reduced-rank manifold, where the model is regular
    keep = _active_columns(Lg, Le, score, unit, D, m, t)
    if keep is not None:
        sub = np.ix_(keep, keep)
        try:
            dk = np.linalg.solve(ail[sub], sl[keep])
        except np.linalg.LinAlgError:
            dk = np.linalg.lstsq(ail[sub], sl[keep], rcond=1e-13)[0]
        full = np.concatenate([lg, le])
        drop = np.setdiff1d(np.arange(2 * m), keep)
        for h in (1.0, 0.5, 0.25, 0.125):
            v = full.copy()
            v[drop] = 0.0
            v[keep] += h * dk
            nLg, nLe = np.tril(unvech(v[:m], t)), np.tril(unvech(v[m:], t))
            yield "ai-rank", (D * (nLg @ nLg.T), D * (nLe @ nLe.T))
    size = max(float(np.trace(ail)) / (2 * m), 1e-300)
    # on the boundary AI_L is singular along directions that do not change Σ; the damping
    # μ turns the step towards the gradient until it improves the likelihood
    for mu in (0.0, 1e-8, 1e-6, 1e-4, 1e-2, 1.0, 1e2):
        A = ail + mu * size * np.eye(2 * m)
        dl = np.linalg.lstsq(A, sl, rcond=1e-13)[0]
        if not np.all(np.isfinite(dl)):
            continue
        for h in (1.0, 0.5, 0.25):
            nLg = np.tril(unvech(lg + h * dl[:m], t))
            nLe = np.tril(unvech(le + h * dl[m:], t))
            yield "ai-chol", (D * (nLg @ nLg.T), D * (nLe @ nLe.T))


def _active_columns(Lg, Le, score, unit, D, m, t, pivot_tol=1e-3):
    """Parameters of vech(L_g), vech(L_e) kept on the boundary, or None if no bound is active.

    A column j of L whose pivot L[j, j]² is below ``pivot_tol`` (trait-scaled units) is
    dropped when the REML likelihood decreases along the matching null direction
    (½ (Dv)'W(Dv) ≤ 0 with W = ∂ℓ/∂Σ): the optimum is then on the boundary.
    """
    idx = vech_index(t)
    drop = []
    for off, L in ((0, Lg), (m, Le)):
        W = np.zeros((t, t))
        for x, (k, l) in zip(score[off : off + m], idx):
            W[k, l] = W[l, k] = (2.0 * x) if k == l else x
        Wd = W * D  # gradient in trait-scaled units
        S = L @ L.T
        w, V = np.linalg.eigh(S)
        for j in range(t):
            if L[j, j] ** 2 < pivot_tol:
                v = V[:, 0]
                if float(v @ Wd @ v) <= 1e-6 * max(1.0, float(np.abs(Wd).max())):
                    drop += [off + i for i, (k, l) in enumerate(idx) if l == j]
    if not drop:
        return None
    return np.setdiff1d(np.arange(2 * m), drop)


def _row(it, step, val, Sg, Se) -> dict:
    r = {"iteration": it, "step": step, "m2ll": float(val)}
    for k, l in vech_index(Sg.shape[0]):
        r[f"genetic:{k}:{l}"] = float(Sg[k, l])
    for k, l in vech_index(Se.shape[0]):
        r[f"Residual:{k}:{l}"] = float(Se[k, l])
    return r


def warn_boundary(boundary, correlations) -> str | None:
    """A BoundaryWarning text (and the warning) when a Σ is rank-deficient."""
    if not boundary:
        return None
    parts = []
    for name in boundary:
        R = correlations.get(name)
        if R is not None:
            t = R.shape[0]
            pairs = [
                f"{R.index[k]}/{R.columns[l]} r = {R.iloc[k, l]:+.6f}"
                for k in range(t)
                for l in range(k)
                if abs(R.iloc[k, l]) > 1 - 1e-4
            ]
            extra = ("; " + ", ".join(pairs)) if pairs else ""
        else:
            extra = ""
        parts.append(f"{name} covariance matrix is singular (on the boundary of the parameter space{extra})")
    msg = (
        "; ".join(parts) + ": standard errors of the (co)variances are not reliable there "
        "(asymptotic theory does not hold on the boundary)"
    )
    warnings.warn(BoundaryWarning(msg), stacklevel=4)
    return msg

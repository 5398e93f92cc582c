"""REML for (Σ_g, Σ_e) of the multi-trait spectral model, on the shared optimiser.

:func:`optimise` runs :func:`henderson.reml.general.optimise_general` (the structured
single-trait engines' optimiser) on :class:`~henderson.multitrait.protocol.SpectralEngine`:
AI steps in the Cholesky factors of Σ_g and Σ_e (every trial PSD; a Σ becomes
rank-deficient by a pivot reaching 0), halving, an EM-REML fallback
(:meth:`MultiTraitSpectral.em_update`, PSD), and its stopping rule: the AI step from the
current point below 1e-8 (scaled by √(ΣₖₖΣₗₗ)) with a Newton decrement below 1e-10
relative, or, on the boundary only, three steps in a row that change −2 log L by less
than 1e-9 relative. The MME and V-form engines run on the same optimiser
(:func:`henderson.multitrait.general.optimise_general`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import BoundaryWarning
from .spectral import MultiTraitSpectral

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


def start_values(Y, Xs):
    """Σ_g = Σ_e = ½ × the covariance of the per-trait OLS residuals."""
    R = np.column_stack([Y[:, k] - x @ np.linalg.lstsq(x, Y[:, k], rcond=None)[0] for k, x in enumerate(Xs)])
    Sp = R.T @ R / max(Y.shape[0] - max(x.shape[1] for x in Xs), 1)
    return 0.5 * Sp, 0.5 * Sp, Sp


def optimise(
    state: MultiTraitSpectral, *, start=None, max_iter: int = 500, term: str = "genetic", traits=None
) -> Optimum:
    """Maximise the REML likelihood over (Σ_g, Σ_e); see the module docstring.

    A run that reaches ``max_iter`` warns with a :class:`~henderson.ConvergenceWarning`.
    """
    from .protocol import MultiTraitPrepared, SpectralEngine, optimise_traits
    from .spectral import vech, vech_index

    t = state.t
    Sg0, Se0, _ = start_values(state.Y, state.Xs)
    if start is not None:
        Sg0, Se0 = (np.asarray(s, dtype=float) for s in start)
    engine = SpectralEngine(state, term, (Sg0, Se0))
    names = list(traits) if traits is not None else [str(k) for k in range(t)]
    prepared = MultiTraitPrepared(engine, names)
    opt = optimise_traits(prepared, start=np.concatenate([vech(Sg0), vech(Se0)]), max_iter=max_iter)
    ev = opt.evaluation
    (Sg,), Se = engine.unpack(prepared.full(ev.theta))
    message = "" if opt.converged else f"no convergence after {opt.iterations} iterations"
    return Optimum(
        Sg=Sg,
        Se=Se,
        m2ll=float(ev.m2ll),
        iterations=int(opt.iterations),
        converged=bool(opt.converged),
        boundary=boundary_of(Sg, Se, vech_index(t)),
        log=opt.log,
        message=message,
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


def warn_boundary(boundary, correlations, term: str | None = None) -> str | None:
    """A BoundaryWarning text (and the warning) when a Σ is rank-deficient.

    The text names the matrix (``term``: the genetic term's name) and the trait pairs
    whose correlation is ±1 (|r| > 1 − 10⁻⁴), or says that Σ is rank-deficient when no
    single pair is (three or more traits linearly dependent, or a variance at 0).
    """
    if not boundary:
        return None
    parts = []
    for name in boundary:
        label = f"genetic covariance Σ of term {term!r}" if (name == "genetic" and term) else f"{name} covariance Σ"
        R = correlations.get(name)
        pairs = []
        if R is not None:
            t = R.shape[0]
            pairs = [
                f"{R.index[k]}/{R.columns[l]} r = {R.iloc[k, l]:+.6f}"
                for k in range(t)
                for l in range(k)
                if np.isfinite(R.iloc[k, l]) and abs(R.iloc[k, l]) > 1 - 1e-4
            ]
        what = (
            ("correlation ±1: " + ", ".join(pairs))
            if pairs
            else "rank-deficient: a variance at 0 or traits linearly dependent"
        )
        parts.append(f"{label} is singular, on the boundary of the parameter space ({what})")
    msg = (
        "; ".join(parts) + ": standard errors of the (co)variances are not reliable there "
        "(asymptotic theory does not hold on the boundary)"
    )
    warnings.warn(BoundaryWarning(msg), stacklevel=4)
    return msg

"""``henderson.fit``: formula + data (+ covariances) → :class:`FitResult`.

A thin face over the tiers: :func:`~henderson.spec.model.build_spec` (formula and
data to arrays with ids), a solver prepared once (:class:`DenseMME`), the AI-REML
optimiser, and the result tables. No modelling logic lives here.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from .assemble import dense_result, sparse_result, spectral_result
from .errors import ModelError
from .reml import identifiability
from .reml.optimize import optimise
from .results import FitResult
from .solvers.dense import DenseMME
from .solvers.sparse import SparseMME
from .solvers.spectral import SpectralSolver
from .spec.model import build_spec


def prepare(formula: str, data: pd.DataFrame, cov: dict | None = None,
            cov_inverse: dict | None = None) -> DenseMME:
    """Build the spec and the solver state without optimising.

    The returned state's ``evaluate(sigma2, method="reml").m2ll`` is −2 log L at any
    variance components: useful for profiling, likelihood-ratio tests and checks.
    """
    return DenseMME(build_spec(formula, data, cov=cov, cov_inverse=cov_inverse))


def fit(formula: str, data: pd.DataFrame, cov: dict | None = None, method: str = "reml",
        *, cov_inverse: dict | None = None, start=None, max_iter: int = 200,
        sigma2=None, solver: str = "auto", pev: bool | str = "auto") -> FitResult:
    """Fit a linear mixed model y = Xb + Σₖ Zₖuₖ + e by REML (or ML).

    Parameters
    ----------
    formula : str
        lme4-style: ``"Yield ~ Env + (1|Name)"``; crossed ``(1|plate) + (1|sample)``;
        nested ``(1|batch/cask)`` or ``(1|batch:cask)``; ``0 +`` drops the intercept.
    data : DataFrame
        One row per record.
    cov : dict, optional
        ``{group: K}`` known covariance of a grouping factor's effects, K a DataFrame
        indexed by level ids or a :class:`~henderson.Relationship`. Levels in K with no
        records still get BLUPs.
    method : {"reml", "ml"}
    cov_inverse : dict, optional
        ``{group: Kinv}`` the inverse covariance, e.g. a sparse pedigree A⁻¹.
    start : array, optional
        Starting variance components (terms in formula order, then residual). The
        spectral solver, whose search is one-dimensional in σ²_g/σ²ₑ, centres its
        initial grid on their ratio.
    max_iter : int
        AI-REML iterations (dense, sparse) or Brent iterations (spectral); reaching it
        is a :class:`~henderson.ConvergenceWarning` carrying the log.
    sigma2 : array, optional
        Fixed variance components: skip estimation and solve the MME at these values
        (BLUP with known variances, as in Mrode's textbook examples).
    solver : {"auto", "dense", "spectral", "sparse"}
        ``"auto"`` chooses, and ``result.solver`` reports the choice:

        - ``"spectral"`` when the model has one random term with a dense known
          covariance (GBLUP): ZKZ' is reduced to tridiagonal form once and each REML
          evaluation is O(n);
        - ``"sparse"`` (sparse MME, SuperLU) when there is no dense covariance and more
          than ``SPARSE_THRESHOLD`` random-effect equations remain after the largest
          iid term is eliminated — large animal models with A⁻¹, big crossed factors;
        - ``"dense"`` otherwise: the dense MME with the largest iid term's diagonal
          block eliminated first (exact AI-REML score, exact PEV).
    pev : bool or "auto"
        Compute prediction error variances (always for the dense solver; for the
        spectral solver it costs O(n²N), so ``"auto"`` computes it up to 6,000 records).

    Multi-trait models: ``"cbind(y1, y2) ~ 1 + (1|id)"`` with ``cov={"id": G}`` fits
    Var(u) = Σ_g ⊗ G, Var(e) = Σ_e ⊗ I on complete records by the multi-trait spectral
    solver (:mod:`henderson.multitrait`) and returns a
    :class:`~henderson.multitrait.MultiTraitResult`; ``sigma2`` is then a pair of
    t × t matrices (Σ_g, Σ_e). Other multi-trait shapes are refused with what is missing.

    Returns
    -------
    FitResult

    Examples
    --------
    >>> from henderson.datasets import load_potato
    >>> res = fit("Yield ~ Env + (1|Name)", load_potato())
    >>> round(res.sigma2["Name"], 4)
    4.8559
    """
    t0 = time.perf_counter()
    from .multitrait.formula import is_multitrait
    if is_multitrait(formula):  # cbind(y1, y2, ...): henderson.multitrait (result: MultiTraitResult)
        from .multitrait.formula import fit_formula
        return fit_formula(formula, data, cov=cov, cov_inverse=cov_inverse, method=method, solver=solver,
                           sigma=sigma2, start=start, max_iter=max(max_iter, 500), pev=pev)
    spec = build_spec(formula, data, cov=cov, cov_inverse=cov_inverse)
    return fit_spec(spec, method=method, start=start, max_iter=max_iter, sigma2=sigma2,
                    solver=solver, pev=pev, t0=t0)


def fit_spec(spec, *, method: str = "reml", start=None, max_iter: int = 200, sigma2=None,
             solver: str = "auto", pev="auto", t0: float | None = None) -> FitResult:
    """Fit a prepared :class:`~henderson.spec.model.ModelSpec` (see :func:`fit`)."""
    t0 = time.perf_counter() if t0 is None else t0
    method = method.lower()
    if method not in ("reml", "ml"):
        raise ModelError(f"method must be 'reml' or 'ml', not {method!r}")
    if not spec.terms:
        raise ModelError("the formula has no random term such as (1|group); use ordinary least squares")
    t1 = time.perf_counter()
    one_kernel = (len(spec.terms) == 1 and spec.terms[0].kind == "factor"
                  and spec.terms[0].kernel is not None)
    if solver not in ("auto", "dense", "spectral", "sparse"):
        raise ModelError(f"solver must be 'auto', 'dense', 'spectral' or 'sparse', not {solver!r}")
    if solver == "spectral" and not one_kernel:
        raise ModelError("the spectral solver needs exactly one random term with a dense covariance (cov=)")
    if one_kernel and solver in ("auto", "spectral"):
        return _fit_spectral(spec, method, sigma2, pev, t0, t1, start=start, max_iter=max_iter)
    if solver == "sparse" or (solver == "auto" and _prefers_sparse(spec)):
        state = SparseMME(spec)
        assemble = sparse_result
    else:
        state = DenseMME(spec)
        assemble = dense_result
    t2 = time.perf_counter()
    if sigma2 is not None:
        s = np.asarray(sigma2, dtype=float)
        if s.shape != (len(spec.terms) + 1,):
            raise ModelError(f"sigma2 needs {len(spec.terms) + 1} values (terms, then residual)")
        ev = state.evaluate(s, derivatives=True, method=method)
        iterations, converged, log, boundary = 0, True, pd.DataFrame(), []
    else:
        # variance components that cannot be told apart are an error, not an arbitrary split
        if isinstance(state, DenseMME):
            identifiability.check_dense(state)
        else:
            identifiability.simple_confounding(spec)
        opt = optimise(state, method=method, start=start, max_iter=max_iter)
        ev, iterations, converged, log, boundary = (opt.evaluation, opt.iterations,
                                                   opt.converged, opt.log, opt.boundary)
    t3 = time.perf_counter()
    result = assemble(spec, state, ev, method, iterations, converged, log, boundary,
                      fixed_sigma2=sigma2 is not None)
    timings = {"spec": t1 - t0, "prepare": t2 - t1, "optimise": t3 - t2,
               "results": time.perf_counter() - t3, "total": time.perf_counter() - t0}
    object.__setattr__(result, "timings", timings)
    return result


#: random-effect equations left after eliminating the largest iid term, above which
#: "auto" takes the sparse solver (a dense Cholesky of 4,000 costs ~0.2 s here).
SPARSE_THRESHOLD = 4000


def _prefers_sparse(spec) -> bool:
    if any(t.kind == "factor" for t in spec.terms):
        return False
    sizes = sorted((t.q for t in spec.terms if t.kind == "iid"), reverse=True)
    eliminated = sizes[0] if sizes else 0
    rest = sum(t.q for t in spec.terms) - eliminated
    return rest > SPARSE_THRESHOLD


def _fit_spectral(spec, method, sigma2, pev, t0, t1, *, start=None, max_iter=200) -> FitResult:
    term = spec.terms[0]
    solver = SpectralSolver(spec.y, spec.X, term.kernel, term.codes, term=term.name, ids=term.levels)
    t2 = time.perf_counter()
    if sigma2 is not None:
        s = np.asarray(sigma2, dtype=float)
        if s.shape != (2,):
            raise ModelError("sigma2 needs 2 values (the term, then the residual)")
        sg, se = float(s[0]), float(s[1])
        info = {"iterations": 0, "converged": True, "log": pd.DataFrame()}
    else:
        sg, se, info = solver.optimise(method, max_iter=max_iter, start=start)
    t3 = time.perf_counter()
    want_pev = (spec.n <= 6000) if pev == "auto" else bool(pev)
    result = spectral_result(spec, solver, sg, se, method, info, sigma2 is not None, want_pev)
    timings = {"spec": t1 - t0, "prepare": t2 - t1, "optimise": t3 - t2,
               "results": time.perf_counter() - t3, "total": time.perf_counter() - t0}
    object.__setattr__(result, "timings", timings)
    return result

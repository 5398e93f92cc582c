"""``fit(..., solver="pcg")``: BLUP at given variance components by matrix-free PCG.

A thin face over :class:`~henderson.solvers.pcg.PCGMME`, the sampled PEV
(:mod:`henderson.solvers.pev_sampling`) and :func:`~henderson.assemble_pcg.pcg_result`.
"""

from __future__ import annotations

import time

import numpy as np

from .assemble_pcg import pcg_result
from .errors import ModelError
from .solvers.pcg import PCGMME
from .solvers.pev_sampling import fixed_effect_cov, sampled_pev

#: MME equations above which ``solver="auto"`` with given ``sigma2`` takes PCG. Below it
#: the direct solvers are as fast and give exact PEV and the log-likelihood; above it
#: the sparse LU's fill and time grow faster than PCG's rounds (benchmarks/README.md).
PCG_THRESHOLD = 100_000


def equations(spec) -> int:
    """Number of MME equations (levels of every term plus fixed effects)."""
    return int(sum(t.q for t in spec.terms) + spec.p)


def prefers_pcg(spec) -> bool:
    return equations(spec) > PCG_THRESHOLD


def fit_pcg(spec, sigma2, *, method="reml", pev="auto", x0=None, tol=1e-10, n_samples=200,
            seed=0, t0=None, t1=None, auto=False, preconditioner="block", max_rounds=None):
    """Solve the MME at ``sigma2`` by PCG and assemble a FitResult (see :func:`henderson.fit`)."""
    t0 = time.perf_counter() if t0 is None else t0
    t1 = time.perf_counter() if t1 is None else t1
    if sigma2 is None:
        raise ModelError("solver='pcg' solves the MME at given variance components: pass sigma2=[...] "
                         "(stochastic REML by PCG is not implemented yet; estimate the variances on a "
                         "subset with solver='sparse')")
    if pev not in ("auto", True, False, "sample"):
        raise ModelError(f"pev must be 'auto', True, False or 'sample', not {pev!r}")
    state = PCGMME(spec, sigma2, preconditioner=preconditioner)
    notes = []
    if auto:
        notes.append(f"solver 'auto' chose PCG: {state.m} MME equations > PCG_THRESHOLD "
                     f"({PCG_THRESHOLD}) with given variances")
    start = state.start_from(x0) if x0 is not None else None
    t2 = time.perf_counter()
    x, info = state.solve(x0=start, tol=tol, max_rounds=max_rounds)
    t3 = time.perf_counter()
    sampled = fixed_cov = None
    if pev in (True, "sample"):
        sampled = sampled_pev(state, n_samples=n_samples, seed=seed)
        fixed_cov = fixed_effect_cov(state, tol=tol)
    result = pcg_result(spec, state, x, info, method, sampled, fixed_cov, notes)
    timings = {"spec": t1 - t0, "prepare": t2 - t1, "optimise": t3 - t2,
               "results": time.perf_counter() - t3, "total": time.perf_counter() - t0}
    object.__setattr__(result, "timings", timings)
    return result

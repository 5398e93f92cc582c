"""``fit(..., solver="pcg")``: BLUP at given variance components by matrix-free PCG.

A thin face over :class:`~henderson.solvers.pcg.PCGMME`, the sampled PEV
(:mod:`henderson.solvers.pev_sampling`) and :func:`~henderson.assemble_pcg.pcg_result`.
"""

from __future__ import annotations

import dataclasses
import time

from .assemble_pcg import pcg_result
from .errors import ModelError
from .results import stage_timings
from .solvers.pcg import PCGMME
from .solvers.pev_sampling import fixed_effect_cov, sampled_pev
from .spec.levels import Identity

#: MME equations (beyond the largest iid term, which the dense solver eliminates for
#: free) above which ``solver="auto"`` with given ``sigma2`` takes PCG. PCG is faster at
#: every size measured, but below it the direct solvers' cost is acceptable and they give
#: exact PEV and the log-likelihood; above it the sparse LU's fill makes it impractical
#: (animal model: SuperLU 1.2 s at 10,000 animals, 62 s at 100,000, unfinished after 6 min
#: at 300,000; PCG 0.05, 0.41, 1.65 s — benchmarks/README.md).
PCG_THRESHOLD = 100_000


def equations(spec) -> int:
    """Number of MME equations (levels of every term plus fixed effects)."""
    return int(sum(t.q for t in spec.terms) + spec.p)


def prefers_pcg(spec) -> bool:
    """More than PCG_THRESHOLD equations left once the largest iid term is eliminated
    (the dense solver eliminates a diagonal block at no cost, as ``api._prefers_sparse``)."""
    iid = [t.q for t in spec.terms if isinstance(t.covariance, Identity)]
    return equations(spec) - (max(iid) if iid else 0) > PCG_THRESHOLD


def fit_pcg(
    spec,
    sigma2,
    *,
    method="reml",
    pev="auto",
    x0=None,
    tol=1e-10,
    n_samples=200,
    seed=0,
    t0=None,
    t1=None,
    auto=False,
    preconditioner="block",
    max_rounds=None,
    start=None,
    reml_samples: int = 20,
    chains: int = 4,
    max_iter: int = 200,
):
    """Solve the MME at ``sigma2`` by PCG and assemble a FitResult (see :func:`henderson.fit`).

    Without ``sigma2``, the variance components are first estimated by stochastic REML
    (:func:`henderson.reml.stochastic.stochastic_reml`: ``reml_samples`` simulated data
    sets per round, ``chains`` independent chains seeded from ``seed``); the result's
    ``variance_components`` then has an ``mc_se`` column (Monte Carlo SE).
    """
    t0 = time.perf_counter() if t0 is None else t0
    t1 = time.perf_counter() if t1 is None else t1
    if pev not in ("auto", True, False, "sample"):
        raise ModelError(f"pev must be 'auto', True, False or 'sample', not {pev!r}")
    notes, sreml = [], None
    if sigma2 is None:
        if method != "reml":
            raise ModelError("the PCG solver estimates variance components by (stochastic) REML only")
        sreml = _stochastic_variances(spec, start, reml_samples, chains, seed, max_iter)
        sigma2 = sreml["sigma2"]
        notes.append(
            f"variance components by stochastic REML (Monte Carlo AI-REML, Matilainen et al. "
            f"2013): {reml_samples} simulated data sets per round, {chains} chains (seed {seed}); "
            "mc_se is the Monte Carlo SE (SD of the chains / √chains); sampling SEs not computed"
        )
    state = PCGMME(spec, sigma2, preconditioner=preconditioner)
    if auto:
        notes.append(
            f"solver 'auto' chose PCG: {state.m} MME equations > PCG_THRESHOLD ({PCG_THRESHOLD}) with given variances"
        )
    start = state.start_from(x0) if x0 is not None else None
    t2 = time.perf_counter()
    x, info = state.solve(x0=start, tol=tol, max_rounds=max_rounds)
    t3 = time.perf_counter()
    sampled = fixed_cov = None
    if pev in (True, "sample"):
        sampled = sampled_pev(state, n_samples=n_samples, seed=seed)
        fixed_cov = fixed_effect_cov(state, tol=tol)
    result = pcg_result(spec, state, x, info, method, sampled, fixed_cov, notes)
    if sreml is not None:
        result = _with_stochastic_reml(result, sreml, info, reml_samples, chains, seed)
    return dataclasses.replace(result, timings=stage_timings(t0, spec=t1, prepare=t2, optimise=t3))


def _stochastic_variances(spec, start, reml_samples: int, chains: int, seed: int, max_iter: int) -> dict:
    """Stochastic REML (:func:`henderson.reml.stochastic.stochastic_reml`); a
    ConvergenceWarning when not every chain converged."""
    from .reml.stochastic import stochastic_reml

    sreml = stochastic_reml(spec, start=start, n_samples=reml_samples, chains=chains, seed=seed, max_iter=max_iter)
    if not sreml["converged"]:
        import warnings

        from .errors import ConvergenceWarning

        warnings.warn(
            ConvergenceWarning(f"stochastic REML: not every chain converged in {max_iter} rounds", log=sreml["log"]),
            stacklevel=4,
        )
    return sreml


def _with_stochastic_reml(result, sreml: dict, info, reml_samples: int, chains: int, seed: int):
    """The PCG result with the stochastic REML's Monte Carlo SEs, log, iterations and settings."""
    vc = result.variance_components.copy()
    vc["mc_se"] = sreml["mc_se"]
    settings = dict(result.settings)
    settings["fixed_sigma2"] = False
    settings["stochastic_reml"] = {
        "samples": reml_samples,
        "chains": chains,
        "seed": seed,
        "iterations": sreml["iterations"],
        "chain_estimates": sreml["chains"].tolist(),
    }
    return dataclasses.replace(
        result,
        variance_components=vc,
        log=sreml["log"],
        converged=bool(sreml["converged"] and info.converged),
        iterations=int(max(sreml["iterations"])),
        settings=settings,
    )

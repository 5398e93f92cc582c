"""``fit(..., solver="pcg")``: BLUP at given variance components by matrix-free PCG.

A thin face over :class:`~henderson.solvers.pcg.PCGMME`, the sampled PEV
(:mod:`henderson.solvers.pev_sampling`) and the one result builder
(:func:`~henderson.assemble.fit_result`), fed by :func:`pcg_evaluation` and :func:`pcg_run`.
What differs from the direct solvers' results (each said in ``notes``):

- ``iterations`` is the number of PCG rounds and ``log`` the relative residual
  ‖r − Cx‖/‖r‖ of every round; ``settings["pcg"]`` holds the tolerance, the
  preconditioner, the final residual and the seconds.
- log-likelihood, AIC and BIC are NaN: log|C| is not available without a factor.
- PEV and reliabilities: exact ones need diag(C⁻¹), which iteration cannot give; with
  ``pev="sample"`` (or True) they are estimated by sampling
  (:mod:`henderson.solvers.pev_sampling`, the method named in the notes and in
  ``settings["pev_method"]``, with a ``pev_se`` column), otherwise NaN. Fixed-effect
  SEs then come from p extra solves C xⱼ = eⱼ.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from . import assemble
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
    ev = pcg_evaluation(spec, state, x, method, sampled, fixed_cov)
    result = assemble.fit_result(spec, ev, pcg_run(state, info, method, sampled, notes))
    if sreml is not None:
        result = _with_stochastic_reml(result, sreml, info, reml_samples, chains, seed)
    return dataclasses.replace(result, timings=stage_timings(t0, spec=t1, prepare=t2, optimise=t3))


def solve_note(info) -> str:
    """The note of a PCG solve: rounds, final relative residual, tolerance, preconditioner."""
    return (
        f"PCG: {info.rounds} rounds to ‖r − Cx‖/‖r‖ = {info.rel_residual:.3g} "
        f"(tolerance {info.tol:g}, {info.preconditioner} preconditioner)"
    )


def pcg_settings(info) -> dict:
    """``settings["pcg"]``: tolerance, rounds, final residual, preconditioner, seconds."""
    return {
        "tol": info.tol,
        "rounds": info.rounds,
        "rel_residual": info.rel_residual,
        "preconditioner": info.preconditioner,
        "seconds": info.seconds,
    }


def pcg_evaluation(spec, state, x, method: str, pev_sampled=None, fixed_cov=None):
    """The protocol Evaluation of a single-trait PCG solution ``x`` at ``state.sigma2``.

    ``state`` gives ``sigma2``, ``nz`` (where b̂ starts in x), ``term_values`` and ``apply_t``
    (:class:`~henderson.solvers.pcg.PCGMME`, or the blocks adapter of
    :mod:`henderson.api_pcg_general`). ``pev_sampled`` is the output of
    :func:`~henderson.solvers.pev_sampling.sampled_pev` by term index, or None (PEV NaN; 0 for
    a term at σ²ₖ = 0); ``fixed_cov`` the unscaled fixed-effect block of C⁻¹ (p, p) or None
    (SE(b̂) NaN). −2 log L is NaN: iteration gives no log|C|.
    """
    from .solvers.protocol import Evaluation

    s = state.sigma2
    blups, pev, pev_se = {}, {}, {}
    for k, t in enumerate(spec.terms):
        blups[t.name] = state.term_values(x, k)
        if not state.active[k]:
            pev[t.name], pev_se[t.name] = np.zeros(t.q), np.zeros(t.q)
        elif pev_sampled is not None:
            pev[t.name], pev_se[t.name] = pev_sampled["pev"][k], pev_sampled["se"][k]
        else:
            pev[t.name] = np.full(t.q, np.nan)
    fitted = state.apply_t(x)
    fixed_var = None if fixed_cov is None else np.maximum(np.diag(fixed_cov), 0) * s[-1]
    return Evaluation(
        theta=s,
        method=method,
        m2ll=float("nan"),
        score=None,
        ai=None,
        fixed=x[state.nz :],
        blups=blups,
        pev=pev,
        residuals=spec.y - fitted,
        detail=x,
        fixed_var=fixed_var,
        pev_se=pev_se if pev_sampled is not None else None,
        fitted=fitted,
    )


def pcg_run(state, info, method: str, pev_sampled=None, notes=(), settings=None) -> assemble.Run:
    """The :class:`~henderson.assemble.Run` of a PCG solve at given variances: its rounds,
    residual history, notes (``notes`` first, then the solve, no log-likelihood, and how
    PEV was or was not obtained) and ``settings["pcg"]``, ``["pev_method"]`` (and ``settings``)."""
    pev_note = (
        "PEV and reliabilities not computed: exact PEV needs diag(C⁻¹), which "
        "iteration does not give; pass pev='sample' for sampled PEV"
        if pev_sampled is None
        else f"PEV estimated by sampling: {pev_sampled['method']}"
    )
    return assemble.Run(
        state.name,
        method,
        info.rounds,
        info.converged,
        info.log(),
        estimated=False,
        notes=(
            *notes,
            solve_note(info),
            "log-likelihood, AIC and BIC not computed by the PCG solver (no factor of C)",
            pev_note,
        ),
        settings={
            "pcg": pcg_settings(info),
            "pev_method": pev_sampled["method"] if pev_sampled is not None else None,
            **(settings or {}),
        },
    )


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

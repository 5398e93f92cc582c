"""FitResult of the PCG solver at given variance components (:mod:`henderson.solvers.pcg`).

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

import numpy as np
import pandas as pd

from .assemble import reliability, settings_of, variance_table
from .results import FitResult
from .results_builder import build_fit_result, fixed_effects_table


def pcg_result(spec, state, x, info, method: str, pev_sampled=None, fixed_cov=None, extra_notes=()) -> FitResult:
    """Assemble the result of :class:`~henderson.solvers.pcg.PCGMME` at solution ``x``.

    ``pev_sampled`` is the output of :func:`~henderson.solvers.pev_sampling.sampled_pev`
    or None; ``fixed_cov`` the unscaled fixed-effect block of C⁻¹ (p, p) or None.
    """
    s = state.sigma2
    notes = list(spec.notes) + list(extra_notes)
    notes.append(
        f"PCG: {info.rounds} rounds to ‖r − Cx‖/‖r‖ = {info.rel_residual:.3g} "
        f"(tolerance {info.tol:g}, {info.preconditioner} preconditioner)"
    )
    notes.append("log-likelihood, AIC and BIC not computed by the PCG solver (no factor of C)")
    vc = variance_table(spec, s, None, [], notes)  # given, not estimated: no boundary
    b = x[state.nz :]
    if fixed_cov is not None:
        b_se = np.sqrt(np.maximum(np.diag(fixed_cov), 0) * s[-1])
    else:
        b_se = np.full(spec.p, np.nan)
    fe = fixed_effects_table(b, b_se, spec.x_names)
    if pev_sampled is None:
        notes.append(
            "PEV and reliabilities not computed: exact PEV needs diag(C⁻¹), which "
            "iteration does not give; pass pev='sample' for sampled PEV"
        )
    else:
        notes.append(f"PEV estimated by sampling: {pev_sampled['method']}")
    blups = {}
    for k, t in enumerate(spec.terms):
        u = state.term_values(x, k)
        cols = {"blup": u}
        if not state.active[k]:
            pev = np.zeros(t.q)
            pev_se = np.zeros(t.q)
        elif pev_sampled is not None:
            pev, pev_se = pev_sampled["pev"][k], pev_sampled["se"][k]
        else:
            pev = pev_se = np.full(t.q, np.nan)
        cols["pev"] = pev
        if pev_sampled is not None:
            cols["pev_se"] = pev_se
        cols["reliability"] = reliability(pev, s[k], t.k_diag)
        cols["n_records"] = t.n_records
        blups[t.name] = pd.DataFrame(cols, index=pd.Index(t.levels, name=t.name))
    fitted = state.apply_t(x)
    settings = settings_of(spec, method, True, state.name)
    settings["pcg"] = {
        "tol": info.tol,
        "rounds": info.rounds,
        "rel_residual": info.rel_residual,
        "preconditioner": info.preconditioner,
        "seconds": info.seconds,
    }
    settings["pev_method"] = pev_sampled["method"] if pev_sampled is not None else None
    return build_fit_result(
        spec,
        m2ll=float("nan"),  # iteration gives no log|C|: logLik, AIC and BIC are NaN
        n_theta=0,
        residuals=spec.y - fitted,
        fitted=fitted,
        notes=notes,
        variance_components=vc,
        fixed_effects=fe,
        blups=blups,
        method=method,
        solver=state.name,
        iterations=info.rounds,
        converged=info.converged,
        log=info.log(),
        settings=settings,
        vcov=None,
    )

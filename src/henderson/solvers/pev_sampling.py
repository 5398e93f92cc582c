"""Prediction error variances by sampling, for MME too large to invert (PCG solver).

Method (Garcia-Cortes, Moreno, Varona & Altarriba 1995, Genet Sel Evol 27:229;
with a control variate as in Hickey et al. 2009, Genet Sel Evol 41:23):

1. Simulate data from the model at the given σ²: u*ₖ ~ N(0, σ²ₖKₖ), e* ~ N(0, σ²ₑI),
   y* = Σₖ Z̃ₖu*ₖ + e* (β = 0: BLUP of u is invariant to Xβ).
2. Solve the MME with y* (PCG): û*.
3. u* − û* ~ N(0, PEV) exactly, so PEVᵢ = E[(u*ᵢ − û*ᵢ)²]. Over S samples,
   the plain estimator mean(dᵢ²) has relative SE √(2/S). Because Cov(u − û, û) = 0
   for BLUP, u² = d² + û² + 2dû, and E[uᵢ²] = σ²ₖKᵢᵢ is known, the control variate
   c = d² − β(u² − σ²ₖKᵢᵢ) with β = (PEVᵢ/σ²ₖKᵢᵢ)² (its optimum under normality,
   β estimated by the plain estimator) has variance 2PEV²(1 − (1 − ρ)²)/S, ρ the
   reliability: far smaller for poorly predicted levels.

The reported ``pev_se`` is the sample SD of c over √S. Cost: one PCG solve per sample.

Sampling u ~ N(0, σ²K) needs a factor of K: iid terms (K = I); a dense K refitted as
FF' (u = Fz); a pedigree A⁻¹ from :func:`~henderson.pedigree_inverse`, whose parents
it carries (the recursion uᵢ = ½(u_s + u_d) + √dᵢ zᵢ, O(q)); any other K⁻¹ up to
:data:`DENSE_LIMIT` levels by a dense Cholesky of K⁻¹.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ..errors import ModelError
from ..linalg import dense_safe
from ..spec.levels import Factored, Identity
from . import _pcg_kernels as kern

#: levels up to which a K⁻¹ without a pedigree is factored densely for sampling
DENSE_LIMIT = 10000

METHOD = (
    "Garcia-Cortes et al. (1995) sampling, Var(u* − û*) over {S} data sets simulated "
    "at the given variances (seed {seed}), with the known Var(u*) as control variate "
    "(Hickey et al. 2009)"
)


def _sampler(term, sigma2_k: float):
    """A function rng -> one draw of u ~ N(0, σ²ₖKₖ), shape (q,)."""
    sd = np.sqrt(sigma2_k)
    q = term.q
    if isinstance(term.covariance, Identity):
        return lambda rng: sd * rng.standard_normal(q)
    if isinstance(term.covariance, Factored):
        F = term.factor
        return lambda rng: sd * (F @ rng.standard_normal(F.shape[1]))
    par = term.info.get("parents") if isinstance(term.info, dict) else None
    if par is not None and len(par["d"]) == q:
        sire, dam, order, msd = par["sire"], par["dam"], par["order"], np.sqrt(par["d"])

        def draw(rng):
            out = np.empty(q)
            kern.pedigree_sample(order, sire, dam, msd, rng.standard_normal(q), out)
            return sd * out

        return draw
    if q <= DENSE_LIMIT:
        P = term.penalty.toarray() if sp.issparse(term.penalty) else np.asarray(term.penalty, float)
        L = dense_safe.cholesky_lower(P)  # K⁻¹ = LL' → u = L'⁻¹z has covariance K (guarded ≥ 12k)
        return lambda rng: sd * sla.solve_triangular(L, rng.standard_normal(q), lower=True, trans="T")
    raise ModelError(
        f"sampled PEV needs draws of {term.name!r} ~ N(0, σ²K): give K⁻¹ as a pedigree_inverse() "
        f"(it carries the parents) or use at most {DENSE_LIMIT} levels"
    )


def sampled_pev(state, n_samples: int = 200, seed: int = 0, tol: float = 1e-8) -> dict:
    """PEV of every active term's levels by sampling (see the module notes).

    Parameters
    ----------
    state : PCGMME
        The MME at the given σ² (its operator and preconditioner are reused).
    n_samples : int
        Simulated data sets S (one PCG solve each); the relative SE is at most √(2/S).
    seed : int
        Seed of ``numpy.random.default_rng``: same seed, same PEV.
    tol : float
        PCG tolerance of each solve (its error is far below the sampling error).

    Returns
    -------
    dict with ``pev`` and ``se`` (term index → array (q,)), ``method`` (text) and
    ``n_samples``.
    """
    if n_samples < 2:
        raise ModelError("sampled PEV needs at least 2 samples")
    spec, s = state.spec, state.sigma2
    rng = np.random.default_rng(seed)
    draws = {k: _sampler(spec.terms[k], s[k]) for k in state.terms}
    prior = {k: s[k] * spec.terms[k].k_diag for k in state.terms}
    se_e = np.sqrt(s[-1])
    # running sums of a = d², b = u² − σ²K, a², b², ab per level: O(q) memory for any S
    acc = {k: np.zeros((5, spec.terms[k].q)) for k in state.terms}
    for i in range(n_samples):
        u = {k: draws[k](rng) for k in state.terms}
        y = se_e * rng.standard_normal(spec.n)
        for k in state.terms:
            y += u[k][spec.terms[k].codes]
        x, info = state.solve(state.rhs(y), tol=tol, warn=False)
        if not info.converged:
            raise ModelError(
                f"sampled PEV: PCG did not converge on sample {i} "
                f"(residual {info.rel_residual:.3g} after {info.rounds} rounds)"
            )
        for k in state.terms:
            a = (u[k] - state.term_values(x, k)) ** 2
            b = u[k] ** 2 - prior[k]
            acc[k] += (a, b, a * a, b * b, a * b)
    pev, se = {}, {}
    S = n_samples
    for k in state.terms:
        ma, mb = acc[k][0] / S, acc[k][1] / S
        vaa = (acc[k][2] - S * ma * ma) / (S - 1)
        vbb = (acc[k][3] - S * mb * mb) / (S - 1)
        vab = (acc[k][4] - S * ma * mb) / (S - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            beta = np.clip(np.where(prior[k] > 0, ma / prior[k], 0.0), 0.0, 1.0) ** 2
        pev[k] = ma - beta * mb
        var_c = np.maximum(vaa - 2 * beta * vab + beta * beta * vbb, 0.0)
        se[k] = np.sqrt(var_c / S)
    return {"pev": pev, "se": se, "n_samples": n_samples, "method": METHOD.format(S=n_samples, seed=seed)}


def fixed_effect_cov(state, tol: float = 1e-10) -> np.ndarray:
    """The unscaled fixed-effect block of C⁻¹ (p, p) by p PCG solves C xⱼ = eⱼ."""
    p, m = state.p, state.m
    out = np.empty((p, p))
    for j in range(p):
        e = np.zeros(m)
        e[state.nz + j] = 1.0
        x, info = state.solve(e, tol=tol)
        out[:, j] = x[state.nz :]
    return 0.5 * (out + out.T)

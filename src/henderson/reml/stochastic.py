"""Stochastic (Monte Carlo EM) REML with PCG solves, for models too large to factor.

Newton steps with the average information (AI) matrix and a Monte Carlo score
(Matilainen, Mäntysaari, Lidauer, Strandén & Thompson 2013, PLoS ONE 8:e80821: "MC
AI-REML"). With C the MME at the current σ² (PEV = σ²ₑC⁻¹), the REML score is that of
:mod:`henderson.solvers.dense`,

    ∂ℓ/∂σ²ₖ = −½[qₖ/σ²ₖ − σ²ₑtr(PₖC^{kk})/σ⁴ₖ − ûₖ'Pₖûₖ/σ⁴ₖ],
    ∂ℓ/∂σ²ₑ = −½[tr(P) − ê'ê/σ⁴ₑ],  σ²ₑtr(P) = n − p − Σₖ(qₖ − σ²ₑtr(PₖC^{kk})/σ²ₖ),

and only the traces need C⁻¹. They are estimated from S data sets simulated at the
current σ² (Garcia-Cortes et al. 1992, Genet Sel Evol 24:255): u*ₖ − û*ₖ ~
N(0, σ²ₑC^{kk}), so σ²ₑtr(PₖC^{kk}) = E[dₖ'Pₖdₖ], with the control variate
E[u*ₖ'Pₖu*ₖ] = σ²ₖqₖ as in :mod:`henderson.solvers.pev_sampling`. The AI matrix
½W'PW (working variates wₖ = Z̃ₖûₖ/σ²ₖ, wₑ = ê/σ²ₑ) needs K + 1 solves and no sampling.

Common random numbers: within a chain the standard normal draws are fixed, so the
Newton map is a deterministic function of σ² and converges to a fixed point (warm-
started PCG solves make each round cheap). That point differs from REML by Monte
Carlo error; ``chains`` independent chains (seeds (seed, c)) give the estimate (their
mean) and its Monte Carlo SE (their SD/√chains).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ModelError
from ..solvers import _pcg_kernels as kern
from ..solvers.pcg import PCGMME
from ..solvers.pev_sampling import _sampler
from ..spec.levels import Factored


def _quad(state, k, v):
    """v'Pₖv for term k (Pₖ = I for iid terms)."""
    if k in state._penalties:
        indptr, indices, data, _ = state._penalties[k]
        out = np.zeros(len(v))
        kern.csr_matvec_add(indptr, indices, data, np.ascontiguousarray(v), 1.0, out)
        return float(v @ out)
    return float(v @ v)


def _chain(spec, start, n_samples, rng, max_iter, tol):
    """One chain: Newton steps with the average information and a Monte Carlo score."""
    K = len(spec.terms)
    for t in spec.terms:
        if isinstance(t.covariance, Factored):
            raise ModelError("stochastic REML supports iid and sparse K⁻¹ terms only")
    s = np.array(start, dtype=float)
    n, p = spec.n, spec.p
    # fixed standard-normal draws (common random numbers) for e* and u*ₖ
    z_e = [rng.standard_normal(n) for _ in range(n_samples)]
    seeds = rng.integers(2**63 - 1, size=n_samples)
    x_data, x_samp, x_ai = None, [None] * n_samples, None
    log = []
    for it in range(1, max_iter + 1):
        state = PCGMME(spec, s)
        se = s[-1]
        r = state.rhs()
        x_data, _ = state.solve(r, x0=x_data, tol=1e-10, warn=False)
        resid = spec.y - state.apply_t(x_data)
        # Monte Carlo σ²ₑ tr(PₖC^{kk}) = E[dₖ'Pₖdₖ], with the control variate E[u*'Pu*] = σ²ₖqₖ
        tr = np.zeros((K, n_samples))
        cv = np.zeros((K, n_samples))
        for j in range(n_samples):
            sub = np.random.default_rng(seeds[j])  # the same u* draws every round
            u = [_sampler(spec.terms[k], s[k])(sub) for k in range(K)]
            y = np.sqrt(se) * z_e[j]
            for k in range(K):
                y += u[k][spec.terms[k].codes]
            x_samp[j], _ = state.solve(state.rhs(y), x0=x_samp[j], tol=1e-10, warn=False)
            for k in range(K):
                d = u[k] - state.term_values(x_samp[j], k)
                tr[k, j] = _quad(state, k, d)
                cv[k, j] = _quad(state, k, u[k]) - s[k] * spec.terms[k].q
        T = np.empty(K)
        for k in range(K):
            a = tr[k].mean()
            beta = min(max(a / (s[k] * spec.terms[k].q), 0.0), 1.0) ** 2
            T[k] = a - beta * cv[k].mean()
        # score (as solvers/dense.py, with σ²ₑtr(PₖC^{kk}) = T[k]) and AI (solves only)
        score = np.empty(K + 1)
        W = np.empty((n, K + 1))
        trP_se = n - p
        for k in range(K):
            q = spec.terms[k].q
            uk = state.term_values(x_data, k)
            score[k] = -0.5 * (q / s[k] - T[k] / s[k] ** 2 - _quad(state, k, uk) / s[k] ** 2)
            trP_se -= q - T[k] / s[k]
            W[:, k] = uk[spec.terms[k].codes] / s[k]
        score[K] = -0.5 * (trP_se / se - float(resid @ resid) / se**2)
        W[:, K] = resid / se
        PW = np.empty_like(W)
        x_ai = x_ai or [None] * (K + 1)
        for j in range(K + 1):
            x_ai[j], _ = state.solve(state.rhs(W[:, j]), x0=x_ai[j], tol=1e-10, warn=False)
            PW[:, j] = (W[:, j] - state.apply_t(x_ai[j])) / se
        ai = 0.5 * W.T @ PW
        step = np.linalg.solve(ai, score)
        new = s + step
        while np.any(new <= 0):  # halve towards the current point rather than leave the space
            step *= 0.5
            new = s + step
            if np.max(np.abs(step) / s) < 1e-12:
                raise ModelError("stochastic REML: a variance component heads to 0 (boundary); fit without that term")
        if np.any(new[:-1] < 1e-6 * new[-1]):  # this chain's fixed point is on the boundary
            raise ModelError(
                "stochastic REML: a variance component heads to 0 in a chain "
                f"({dict(zip([t.name for t in spec.terms], new[:-1].round(8)))}): its Monte Carlo "
                "noise is as large as the component; use more samples per round, or drop the term"
            )
        change = float(np.max(np.abs(new - s) / s))
        s = new
        log.append([it, change, *s])
        if change < tol:
            return s, it, True, log
    return s, max_iter, False, log


def stochastic_reml(
    spec, start=None, n_samples: int = 10, chains: int = 4, seed: int = 0, max_iter: int = 500, tol: float = 1e-5
) -> dict:
    """MC-EM REML estimates, their Monte Carlo SEs and the log (see the module notes).

    Parameters
    ----------
    spec : ModelSpec
        iid and sparse-K⁻¹ terms.
    start : array (K + 1,), optional
        Starting σ² (default: var(y)/(K + 1) each).
    n_samples : int
        Simulated data sets per EM round (fixed draws within a chain).
    chains : int
        Independent chains; the MC SE is their SD/√chains.
    seed : int
    max_iter, tol : EM rounds and the relative change of σ² at convergence.

    Returns
    -------
    dict with ``sigma2`` (K + 1,), ``mc_se`` (K + 1,), ``iterations`` (per chain),
    ``converged`` (all chains), ``log`` (DataFrame: chain, iteration, change, σ²).
    """
    if chains < 2:
        raise ModelError("stochastic REML needs at least 2 chains for its Monte Carlo SE")
    K = len(spec.terms)
    if start is None:
        start = np.full(K + 1, float(np.var(spec.y)) / (K + 1))
    est, its, conv, rows = [], [], [], []
    for c in range(chains):
        s, it, ok, log = _chain(spec, start, n_samples, np.random.default_rng([seed, c]), max_iter, tol)
        est.append(s)
        its.append(it)
        conv.append(ok)
        rows += [[c, *r] for r in log]
    est_arr = np.array(est)
    names = [t.name for t in spec.terms] + ["Residual"]
    log = pd.DataFrame(rows, columns=["chain", "iteration", "change"] + [f"sigma2_{n}" for n in names])
    return {
        "sigma2": est_arr.mean(axis=0),
        "mc_se": est_arr.std(axis=0, ddof=1) / np.sqrt(chains),
        "iterations": its,
        "converged": all(conv),
        "log": log,
        "chains": est_arr,
    }

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

Speed (issue 13): per round the 1 + S solves (data and simulated data) run as one PCG in
lockstep over S + 1 right-hand sides (one pass over the records per round for all of
them), warm-started from the previous round; early rounds solve to a looser tolerance
(:func:`_solve_tol`) and the reported round to 1e-10.

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
from ..solvers.pcg import PCGMME
from ..solvers.pev_sampling import _sampler
from ..spec.levels import Factored


def _quads(state, k, V):
    """Column-wise v'Pₖv for V (qₖ, S) (Pₖ = I for iid terms): shape (S,)."""
    return np.einsum("ij,ij->j", V, state.penalty_multi(k, V))


#: PCG tolerance bounds of the rounds before the last (see :func:`_solve_tol`)
LOOSE_TOL, TIGHT_TOL = 1e-8, 1e-10


def _solve_tol(change: float | None) -> float:
    """PCG tolerance for a round whose previous round changed σ² by ``change`` (relative).

    Why this is safe: a solve to relative residual ε moves the quadratic forms of the
    score by O(κε) relative (κ = cond(C), ~1e2–1e3 for animal models), so while σ² still
    moves by ``change`` per round an ε of 1e-3·change perturbs the Newton step by far less
    than the step itself; Newton's convergence is unaffected and the early rounds need
    fewer PCG rounds. The round that is reported is re-run at :data:`TIGHT_TOL`.
    """
    if change is None:
        return LOOSE_TOL
    return float(min(LOOSE_TOL, max(1e-4 * change, TIGHT_TOL)))


def _chain(spec, start, n_samples, rng, max_iter, tol, stats=None):
    """One chain: Newton steps with the average information and a Monte Carlo score.

    Per round: one PCG run over 1 + S right-hand sides in lockstep (the data and the S
    simulated data sets), then one over the K + 1 AI working variates; every run is warm-
    started from the previous round's solutions and uses :func:`_solve_tol`; once σ²
    changes by less than ``tol``, a last round at :data:`TIGHT_TOL` gives the estimate.
    """
    K = len(spec.terms)
    for t in spec.terms:
        if isinstance(t.covariance, Factored):
            raise ModelError("stochastic REML supports iid and sparse K⁻¹ terms only")
    s = np.array(start, dtype=float)
    n, p = spec.n, spec.p
    # fixed standard-normal draws (common random numbers) for e* and u*ₖ
    z_e = np.column_stack([rng.standard_normal(n) for _ in range(n_samples)])  # draw order as before
    seeds = rng.integers(2**63 - 1, size=n_samples)
    X_samp = X_ai = None
    log = []
    change = None
    final = False
    stats = {} if stats is None else stats
    stats.setdefault("pcg_rounds", [])
    for it in range(1, max_iter + 1):
        state = PCGMME(spec, s)
        se = s[-1]
        ptol = TIGHT_TOL if final else _solve_tol(change)
        # simulated data y* = Σ Z̃ₖu*ₖ + e* (β = 0) with the same draws every round
        U = [np.empty((spec.terms[k].q, n_samples)) for k in range(K)]
        for j in range(n_samples):
            sub = np.random.default_rng(seeds[j])
            for k in range(K):
                U[k][:, j] = _sampler(spec.terms[k], s[k])(sub)
        Ys = np.sqrt(se) * z_e
        for k in range(K):
            Ys += U[k][spec.terms[k].codes]
        Ys = np.column_stack([spec.y, Ys])
        X_samp, r1 = state.solve_multi(state.apply_tt_multi(Ys), X0=X_samp, tol=ptol)
        x_data = X_samp[:, 0]
        resid = spec.y - state.apply_t(x_data)
        # Monte Carlo σ²ₑ tr(PₖC^{kk}) = E[dₖ'Pₖdₖ], with the control variate E[u*'Pu*] = σ²ₖqₖ
        T = np.empty(K)
        for k in range(K):
            a, b = state.spans[k]
            q = spec.terms[k].q
            tr = _quads(state, k, U[k] - X_samp[a:b, 1:])
            cv = _quads(state, k, U[k]) - s[k] * q
            m = tr.mean()
            beta = min(max(m / (s[k] * q), 0.0), 1.0) ** 2
            T[k] = m - beta * cv.mean()
        # score (as solvers/dense.py, with σ²ₑtr(PₖC^{kk}) = T[k]) and AI (solves only)
        score = np.empty(K + 1)
        W = np.empty((n, K + 1))
        trP_se = n - p
        for k in range(K):
            q = spec.terms[k].q
            uk = state.term_values(x_data, k)
            score[k] = -0.5 * (q / s[k] - T[k] / s[k] ** 2 - float(_quads(state, k, uk[:, None])[0]) / s[k] ** 2)
            trP_se -= q - T[k] / s[k]
            W[:, k] = uk[spec.terms[k].codes] / s[k]
        score[K] = -0.5 * (trP_se / se - float(resid @ resid) / se**2)
        W[:, K] = resid / se
        X_ai, r2 = state.solve_multi(state.apply_tt_multi(W), X0=X_ai, tol=ptol)
        stats["pcg_rounds"].append((it, ptol, r1, r2))
        PW = (W - state.apply_t_multi(X_ai)) / se
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
        if final:
            return s, it, change < 10 * tol, log
        if change < tol:
            final = True  # one more round with tight solves gives the reported estimate
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
    ``converged`` (all chains), ``log`` (DataFrame: chain, iteration, change, σ²),
    ``pcg_rounds`` (per chain, per round: (round, PCG tolerance, rounds of the data and
    sample solves, rounds of the AI solves)).
    """
    if chains < 2:
        raise ModelError("stochastic REML needs at least 2 chains for its Monte Carlo SE")
    K = len(spec.terms)
    if start is None:
        start = np.full(K + 1, float(np.var(spec.y)) / (K + 1))
    est, its, conv, rows = [], [], [], []
    pcg_rounds: list = []
    for c in range(chains):
        st: dict = {}
        s, it, ok, log = _chain(spec, start, n_samples, np.random.default_rng([seed, c]), max_iter, tol, st)
        pcg_rounds.append(st["pcg_rounds"])
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
        "pcg_rounds": pcg_rounds,
    }

"""Sampled PEV and exact fixed-effect covariances for the general PCG (multi-trait, maternal, H⁻¹).

The MME of :class:`~henderson.solvers.pcg_general.GeneralPCG` are
C = T'R⁻¹T + ⊕_g K_g⁻¹ ⊗ Σ_g⁻¹ (residual and genetic covariances inside C), so C⁻¹ is
the covariance itself: PEV = diag(C⁻¹)_uu and Var(b̂) = (C⁻¹)_bb = (X'V⁻¹X)⁻¹, with no
σ²ₑ factor.

PEV by sampling (Garcia-Cortes, Moreno, Varona & Altarriba 1995, Genet Sel Evol 27:229;
Hickey et al. 2009, Genet Sel Evol 41:23):

1. Simulate S data sets from the model at the given (co)variances: per group
   U* = L_K Z L_Σ' ~ N(0, K ⊗ Σ) (q × g), per record e* ~ N(0, R₀) (missing traits drop
   out through R_i⁻¹), y* = T[u*; 0] + e* (b = 0: BLUP of u is invariant to Xb).
2. Solve the MME for û* — all S right-hand sides T'R⁻¹y* in lockstep by block PCG
   (:meth:`GeneralPCG.solve_multi`, one pass over the records per round for all columns).
3. u* − û* ~ N(0, C⁻¹_uu) exactly, so PEVᵢ = E[(u*ᵢ − û*ᵢ)²]. The plain mean of
   dᵢ² has relative SE √(2/S); where the prior variance vᵢ = K_ll Σ_jj is known, the
   control variate c = d² − β(u*² − vᵢ), β = (PEVᵢ/vᵢ)² (estimated from the plain mean,
   clipped to [0, 1]), uses Cov(u − û, û) = 0 and shrinks the variance for poorly
   predicted levels (Hickey et al. 2009). Where vᵢ is unknown (NaN) the plain mean is
   used.

The Monte Carlo SE of each PEV (``se``) is the sample SD of c over √S; each solve stops at
``tol`` (default 1e-8, its error far below the sampling error).

Draws of U* ~ N(0, K ⊗ Σ) need a factor of K: iid groups (K = I); a pedigree A⁻¹ from
:func:`~henderson.pedigree_inverse`, whose parents it carries (recursion uᵢ = ½(u_s + u_d)
+ √dᵢ zᵢ, O(q) per draw); any other K⁻¹ — including a single-step H⁻¹ in blocks, its
genomic block added densely — up to :data:`DENSE_LIMIT` levels by a dense Cholesky of K⁻¹.

Fixed-effect covariance: the pt × pt block of C⁻¹, the inverse of the Schur complement
X'V⁻¹X, by pt extra solves C xⱼ = eⱼ (again in lockstep), exact to the solver tolerance.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ..errors import ModelError
from ..linalg import dense_safe
from . import _pcg_kernels as kern

#: levels up to which a K⁻¹ without a pedigree (or an H⁻¹) is factored densely for sampling
DENSE_LIMIT = 10000
#: bytes of working arrays per lockstep batch of samples (the batch size follows from it)
BATCH_BYTES = 512 * 2**20
#: at most this many samples in lockstep: per column, a block PCG round costs about 0.5 of a
#: single-vector round from 8 columns up and no less beyond 32 (measured at 30,000 and
#: 100,000 animals, two traits; benchmarks/results/pcg_general.md), while the working set grows
MAX_BATCH = 32

METHOD = (
    "Garcia-Cortes et al. (1995) sampling: PEV = mean (u* − û*)² over {S} data sets simulated at the "
    "given (co)variances (seed {seed}), solved in lockstep by block PCG (tolerance {tol:g}), with the "
    "known Var(u*) as control variate where diag(K) is known (Hickey et al. 2009); pev_se is its Monte "
    "Carlo SE"
)


def _group_sampler(gr):
    """rng, S → S draws of vec U ~ N(0, K ⊗ Σ) as (q, g, S), and the prior variances (q, g)."""
    q, g = gr.q, gr.g
    Ls = np.linalg.cholesky(np.asarray(gr.sigma, dtype=float).reshape(g, g))
    kd = None if gr.k_diag is None else np.asarray(gr.k_diag, dtype=float)
    par = (gr.info or {}).get("parents") if isinstance(gr.info, dict) else None
    if gr.kinv is None:

        def base(rng, S):
            return rng.standard_normal((q, g * S))

        kd = np.ones(q)
    elif par is not None and len(par["d"]) == q and gr._block is None:
        order, sire, dam = par["order"], par["sire"], par["dam"]
        msd = np.sqrt(np.asarray(par["d"], dtype=float))

        def base(rng, S):
            Z = rng.standard_normal((q, g * S))
            out = np.empty_like(Z)
            kern.pedigree_sample_multi(order, sire, dam, msd, Z, out)
            return out

    elif q <= DENSE_LIMIT:
        P = gr._kinv.toarray() if sp.issparse(gr._kinv) else np.array(gr._kinv, dtype=float)
        if gr._block is not None:
            blk = gr._block
            D = blk.D if getattr(blk, "D", None) is not None else blk @ np.eye(blk.k)
            P[np.ix_(gr._gidx, gr._gidx)] += D
        try:
            L = dense_safe.cholesky_lower(P)  # K⁻¹ = LL' → u = L'⁻¹z has covariance K (guarded ≥ 12k)
        except np.linalg.LinAlgError:
            raise ModelError(f"sampled PEV: K⁻¹ of {gr.name!r} is not positive definite") from None
        if kd is None or not np.all(np.isfinite(kd)):
            Li = sla.solve_triangular(L, np.eye(q), lower=True)
            kd = np.einsum("ij,ij->j", Li, Li)  # diag(K) = column sums of squares of L⁻¹

        def base(rng, S):
            return sla.solve_triangular(L, rng.standard_normal((q, g * S)), lower=True, trans="T")

    else:
        raise ModelError(
            f"sampled PEV needs draws of {gr.name!r} ~ N(0, K): give K⁻¹ as a pedigree_inverse() (it "
            f"carries the parents; an H⁻¹ in blocks is sampled densely) or use at most {DENSE_LIMIT} levels"
        )

    def draw(rng, S):
        Zk = base(rng, S).reshape(q, S, g)  # columns s·g + e: the S draws of each effect's K-part
        return np.einsum("qse,fe->qfs", Zk, Ls)

    prior = (np.full(q, np.nan) if kd is None else kd)[:, None] * np.diag(Ls @ Ls.T)[None, :]
    return draw, prior


def sampled_pev_general(model, n_samples: int = 200, seed: int = 0, tol: float = 1e-8, batch: int | None = None):
    """PEV of every random equation of a :class:`GeneralPCG` by sampling (module notes).

    Parameters
    ----------
    model : GeneralPCG
    n_samples : int
        Simulated data sets S (default 200); the relative Monte Carlo SE is at most √(2/S).
    seed : int
        Seed of ``numpy.random.default_rng``: the same seed (and batch) gives the same PEV.
    tol : float
        Relative residual of each solve.
    batch : int, optional
        Samples solved in lockstep (default: :data:`MAX_BATCH`, or fewer if
        :data:`BATCH_BYTES` holds fewer).

    Returns
    -------
    dict with ``pev``, ``se`` and ``prior`` (arrays over the random equations, level-major
    per group as in ``model.spans``), ``method`` (text), ``n_samples``, ``seed``,
    ``rounds`` (mean PCG rounds per sample) and ``seconds``.
    """
    if n_samples < 2:
        raise ModelError("sampled PEV needs at least 2 samples")
    t0 = time.perf_counter()
    m, nz, n, t = model.m, model.fpos, model.n, model.t
    if batch is None:
        per = 8 * (8 * m + 2 * n * t)
        batch = int(max(1, min(n_samples, MAX_BATCH, BATCH_BYTES // per)))
    rng = np.random.default_rng(seed)
    samplers = [_group_sampler(gr) for gr in model.groups]
    prior = np.concatenate([p.ravel() for _, p in samplers]) if samplers else np.empty(0)
    known = np.isfinite(prior)
    prior0 = np.where(known, prior, 0.0)
    Lr = np.linalg.cholesky(model.R0)
    acc = np.zeros((5, nz))
    rounds = 0
    done = 0
    while done < n_samples:
        S = min(batch, n_samples - done)
        Xs = np.zeros((m, S))
        for gr, (draw, _) in zip(model.groups, samplers, strict=True):
            a, b = model.spans[gr.name]
            Xs[a:b] = draw(rng, S).reshape(b - a, S)
        E = np.einsum("ntS,jt->njS", rng.standard_normal((n, t, S)), Lr)
        B = model.matmat_data(Xs) + model.rhs_multi(E)
        Xh, info = model.solve_multi(B, tol=tol, warn=False)
        if not info.all_converged:
            bad = np.flatnonzero(~info.converged)
            raise ModelError(
                f"sampled PEV: block PCG did not converge on {bad.size} of {S} samples "
                f"(worst residual {info.rel_residual[bad].max():.3g} after {info.rounds.max()} rounds)"
            )
        rounds += int(info.rounds.sum())
        D2 = (Xs[:nz] - Xh[:nz]) ** 2
        U2 = np.where(known[:, None], Xs[:nz] ** 2 - prior0[:, None], 0.0)
        acc += np.stack([D2.sum(1), U2.sum(1), (D2 * D2).sum(1), (U2 * U2).sum(1), (D2 * U2).sum(1)])
        done += S
    S = n_samples
    ma, mb = acc[0] / S, acc[1] / S
    vaa = (acc[2] - S * ma * ma) / (S - 1)
    vbb = (acc[3] - S * mb * mb) / (S - 1)
    vab = (acc[4] - S * ma * mb) / (S - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.where(known & (prior0 > 0), np.clip(ma / np.where(prior0 > 0, prior0, 1.0), 0.0, 1.0) ** 2, 0.0)
    pev = ma - beta * mb
    se = np.sqrt(np.maximum(vaa - 2 * beta * vab + beta * beta * vbb, 0.0) / S)
    return {
        "pev": pev,
        "se": se,
        "prior": prior,
        "n_samples": S,
        "seed": seed,
        "rounds": rounds / S,
        "seconds": time.perf_counter() - t0,
        "method": METHOD.format(S=S, seed=seed, tol=tol),
    }


def fixed_effect_cov_general(model, tol: float = 1e-10) -> np.ndarray:
    """Var(b̂) = (X'V⁻¹X)⁻¹, the pt × pt fixed block of C⁻¹ (coefficient-major, as
    ``model.fixed``), by pt solves C xⱼ = eⱼ in lockstep; exact to ``tol``."""
    k = model.m - model.fpos
    if k == 0:
        return np.zeros((0, 0))
    B = np.zeros((model.m, k))
    B[model.fpos + np.arange(k), np.arange(k)] = 1.0
    Xs, info = model.solve_multi(B, tol=tol, warn=False)
    if not info.all_converged:
        raise ModelError(f"fixed-effect SEs: PCG did not converge (worst residual {info.rel_residual.max():.3g})")
    V = Xs[model.fpos :]
    return 0.5 * (V + V.T)

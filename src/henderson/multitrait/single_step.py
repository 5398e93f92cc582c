"""Multi-trait single-step GBLUP at given (co)variances: Var(u) = Σ_g ⊗ H, Var(e) = Σ_e per animal.

    y_j = 1μ_j + Z_j u_j + e_j,  j = 1..t;   Var(u) = Σ_g ⊗ H,  Cov(e_ij, e_ij') = Σ_e[j, j']

for records of the same animal (row of the phenotype table), independent between rows.
H⁻¹ is :func:`~henderson.single_step_inverse` (kept as A⁻¹ plus the dense genotyped
block, :class:`~henderson.relationships.h_inverse.SparsePlusDenseInverse`). The mixed
model equations (Henderson 1976; Mrode 2014, ch. 5) with unknowns trait-major,

    [Z'R⁻¹Z + Σ_g⁻¹ ⊗ H⁻¹   Z'R⁻¹X] [û]   [Z'R⁻¹y]
    [X'R⁻¹Z                X'R⁻¹X ] [b̂] = [X'R⁻¹y]

are built sparse — R⁻¹ block-diagonal by animal, one (Σ_e restricted to the observed
traits)⁻¹ per missing-value pattern, so animals missing some traits are handled as
BLUPF90 does — and solved by the supernodal Cholesky of :mod:`henderson.linalg` with
the t intercepts ordered last. PEV (= diagonal of C⁻¹ for û) comes from its selected
inverse. This is the BLUPF90 workflow of fixed (co)variances; estimating Σ_g, Σ_e by
REML with H⁻¹ is the multi-trait package's (its sparse path), not done here.

Fixed effects are one intercept per trait.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import AlignmentError, DataError, NotPositiveDefiniteError, format_ids
from ..linalg import SymbolicCholesky
from ..relationships.h_inverse import SparsePlusDenseInverse
from ..relationships.pedigree import _as_pedigree, pedigree_inverse
from ..relationships.single_step import single_step_inverse


@dataclass(eq=False)
class MultiTraitSingleStep:
    """Solutions of multi-trait ssGBLUP at given (co)variances.

    Attributes
    ----------
    ebv : DataFrame (n animals × t traits), by pedigree id
    pev : DataFrame (n × t) or None
        Prediction-error variances diag(C⁻¹) of û.
    reliability : DataFrame (n × t) or None
        1 − PEV / (Σ_g[j, j] · H_ii) where diag(H) is known (NaN elsewhere).
    fixed : Series (t,)
        Intercepts by trait.
    Hinv : SparsePlusDenseInverse
    info : dict
        ``n_records`` by trait, ``patterns`` (missing-value patterns and counts), ``n_equations``.
    """

    ebv: pd.DataFrame
    pev: pd.DataFrame | None
    reliability: pd.DataFrame | None
    fixed: pd.Series
    Hinv: SparsePlusDenseInverse
    info: dict = field(default_factory=dict)


def _spd(S, name: str, t: int) -> np.ndarray:
    S = np.asarray(S, dtype=np.float64)
    if S.shape != (t, t):
        raise DataError(f"{name} must be {t} × {t} (one row per trait), got shape {S.shape}")
    if not np.allclose(S, S.T, rtol=0, atol=1e-12 * max(1.0, float(np.abs(S).max()))):
        raise DataError(f"{name} is not symmetric")
    w = np.linalg.eigvalsh(S)
    if w[0] <= 0:
        raise NotPositiveDefiniteError(f"{name} is not positive definite (smallest eigenvalue {w[0]:.3g})")
    return S


def _as_blocks(pedigree, genotypes_or_G, h_settings) -> SparsePlusDenseInverse:
    ped = _as_pedigree(pedigree)
    if genotypes_or_G is None:
        A = pedigree_inverse(ped)
        info = dict(A.info)
        info["diag"] = 1.0 + A.info["inbreeding"].to_numpy()  # diag(A) = 1 + F
        return SparsePlusDenseInverse(A.ids, A.matrix, np.zeros((0, 0)), np.zeros(0, np.int64), info=info)
    return single_step_inverse(ped, genotypes_or_G, as_blocks=True, **h_settings)


def _r_inverse(obs: np.ndarray, oi: np.ndarray, Se: np.ndarray, nobs: int) -> tuple[sp.csr_matrix, dict]:
    """R⁻¹ over the stacked observations: per missing-value pattern, (Σ_e[p, p])⁻¹ by animal."""
    t = obs.shape[1]
    code = obs.astype(np.int64) @ (1 << np.arange(t, dtype=np.int64))
    rows, cols, vals = [], [], []
    patterns = {}
    for c in np.unique(code):  # at most 2^t - 1 patterns, not a loop over animals
        which = np.flatnonzero(code == c)
        tp = np.flatnonzero(obs[which[0]])
        Einv = np.linalg.inv(Se[np.ix_(tp, tp)])
        idx = oi[np.ix_(which, tp)]  # (animals, traits in pattern) -> observation index
        for a in range(len(tp)):
            for b in range(len(tp)):
                rows.append(idx[:, a])
                cols.append(idx[:, b])
                vals.append(np.full(len(which), Einv[a, b]))
        patterns["".join("1" if (c >> j) & 1 else "0" for j in range(t))] = len(which)
    Rinv = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(nobs, nobs))
    return Rinv, patterns


def fit_ssgblup_traits(
    Y: pd.DataFrame,
    pedigree,
    genotypes_or_G=None,
    *,
    sigma_g=None,
    sigma_e=None,
    pev: bool = True,
    Hinv: SparsePlusDenseInverse | None = None,
    **h_settings,
) -> MultiTraitSingleStep:
    """Multi-trait ssGBLUP at given Σ_g, Σ_e (module notes).

    Parameters
    ----------
    Y : DataFrame (records × t traits), indexed by animal id
        One row per animal with records; NaN where a trait is not recorded.
    pedigree : Pedigree or DataFrame (id, sire, dam)
    genotypes_or_G : Genotypes, G, or None (None: multi-trait pedigree BLUP)
    sigma_g, sigma_e : array (t, t), or both None
        Genetic and residual covariance matrices, in the order of ``Y``'s columns. Both
        None: estimated by REML with the general multi-trait engine
        (:func:`henderson.multitrait.general.optimise_general`, AI-REML on the sparse MME
        with H⁻¹ as the term's K⁻¹), then the equations are solved at the estimates.
    pev : bool
        Compute PEV and reliabilities (selected inverse of the MME).
    Hinv : SparsePlusDenseInverse, optional
        A prepared H⁻¹ (then ``pedigree``/``genotypes_or_G``/settings are not used).
    **h_settings
        Passed to :func:`~henderson.single_step_inverse` (tuning, alpha, beta, tau, omega, ...).

    Returns
    -------
    MultiTraitSingleStep
    """
    if not isinstance(Y, pd.DataFrame) or Y.shape[1] < 1:
        raise DataError("Y must be a DataFrame with one column per trait, indexed by animal id")
    traits = [str(c) for c in Y.columns]
    t = len(traits)
    reml = sigma_g is None and sigma_e is None
    if not reml:
        if sigma_g is None or sigma_e is None:
            raise DataError("give both sigma_g and sigma_e (given variances), or neither (REML)")
        Sg = _spd(sigma_g, "sigma_g (genetic covariance)", t)
        Se = _spd(sigma_e, "sigma_e (residual covariance)", t)
    rec_ids = pd.Index([str(i) for i in Y.index])
    if rec_ids.has_duplicates:
        raise DataError(f"phenotype ids repeated (one row per animal): {format_ids(rec_ids[rec_ids.duplicated()])}")
    vals = Y.to_numpy(dtype=np.float64)
    obs = np.isfinite(vals)
    none = ~obs.any(axis=1)
    vals, obs, rec_ids = vals[~none], obs[~none], rec_ids[~none]
    n_rec = obs.sum(axis=0)
    if np.any(n_rec == 0):
        raise DataError(f"trait(s) without a record: {[traits[j] for j in np.flatnonzero(n_rec == 0)]}")
    H = Hinv if Hinv is not None else _as_blocks(pedigree, genotypes_or_G, h_settings)
    ids = pd.Index(H.ids)
    n = len(ids)
    rpos = ids.get_indexer(rec_ids)
    if np.any(rpos < 0):
        raise AlignmentError(
            f"{int(np.sum(rpos < 0))} phenotyped id(s) not in the pedigree: {format_ids(rec_ids[rpos < 0])}"
        )

    opt = None
    if reml:
        Sg, Se, opt = _reml(vals, obs, rpos, H)
    # stacked observations, trait-major
    tr, row = np.nonzero(obs.T)
    nobs = len(tr)
    oi = np.full(obs.shape, -1, np.int64)
    oi[row, tr] = np.arange(nobs)
    y = vals[row, tr]
    Rinv, patterns = _r_inverse(obs, oi, Se, nobs)
    # unknowns: u (trait-major, t·n), then the t intercepts (ordered last in the factor)
    N = t * n + t
    ar = np.arange(nobs)
    W = sp.csr_matrix(
        (np.ones(2 * nobs), (np.concatenate([ar, ar]), np.concatenate([tr * n + rpos[row], t * n + tr]))),
        shape=(nobs, N),
    )
    WR = (W.T @ Rinv).tocsr()
    C = (WR @ W).tocsr()
    rhs = WR @ y
    Sginv = np.linalg.inv(Sg)
    K = sp.kron(sp.csr_matrix(Sginv), H.to_sparse(), format="csr")
    C = C + sp.block_diag([K, sp.csr_matrix((t, t))], format="csr")
    C.sum_duplicates()
    sym = SymbolicCholesky(C, last=t)
    try:
        f = sym.factor_matrix(C)
    except NotPositiveDefiniteError as exc:
        raise NotPositiveDefiniteError(f"multi-trait single-step MME is not positive definite: {exc}") from exc
    sol = f.solve(rhs)
    u = sol[: t * n].reshape(t, n).T
    ebv = pd.DataFrame(u, index=ids, columns=traits)
    fixed = pd.Series(sol[t * n :], index=traits, name="intercept")
    pev_df = rel_df = None
    if pev:
        d = f.selected_inverse().diag()[: t * n].reshape(t, n).T
        pev_df = pd.DataFrame(d, index=ids, columns=traits)
        hdiag = np.asarray(H.info.get("diag", np.full(n, np.nan)), dtype=np.float64)
        if hdiag.shape != (n,):
            hdiag = np.full(n, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel_df = pd.DataFrame(1.0 - d / (hdiag[:, None] * np.diag(Sg)[None, :]), index=ids, columns=traits)
    info = {
        "n_records": dict(zip(traits, map(int, n_rec))),
        "patterns": patterns,
        "n_equations": N,
        "n_genotyped": len(H.index),
        "notes": list(H.info.get("notes", [])),
        "sigma_g": Sg,
        "sigma_e": Se,
    }
    if opt is not None:
        info.update(m2ll=opt.m2ll, iterations=opt.iterations, converged=opt.converged, reml_log=opt.log)
    return MultiTraitSingleStep(ebv, pev_df, rel_df, fixed, H, info)


def _reml(vals: np.ndarray, obs: np.ndarray, rpos: np.ndarray, H: SparsePlusDenseInverse):
    """(Σ_g, Σ_e, optimum) by AI-REML of the general multi-trait engine with K⁻¹ = H⁻¹."""
    import warnings

    from ..errors import ConvergenceWarning
    from .general import GeneralTerm, MultiTraitMME, optimise_general

    Yn = np.where(obs, vals, np.nan)
    Xs = [np.ones((int(obs[:, k].sum()), 1)) for k in range(obs.shape[1])]
    term = GeneralTerm("id", rpos.astype(np.int64), np.asarray(H.ids), Kinv=H.to_sparse(), logdet_K=-H.logdet_inverse())
    state = MultiTraitMME(Yn, Xs, [term], backend="sparse")
    opt = optimise_general(state)
    if not opt.converged:
        warnings.warn(
            f"multi-trait single-step REML did not converge in {opt.iterations} iterations",
            ConvergenceWarning,
            stacklevel=3,
        )
    Sigmas, R0 = state.unpack(opt.theta)
    return np.asarray(Sigmas[0]), np.asarray(R0), opt

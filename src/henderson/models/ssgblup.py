"""Single-step GBLUP: the animal model with H⁻¹ in place of A⁻¹, and ssSNP effects.

y = Xb + Zu + e, u ~ N(0, Hσ²_u) over every pedigree animal, H⁻¹ from
:func:`~henderson.single_step_inverse`. The model is built from arrays with ids
(:func:`~henderson.models._align.genetic_spec`, H⁻¹ as the ``id`` term's K⁻¹) and fitted by
:func:`henderson.api.fit_spec`, so REML, BLUP at given variances (the BLUPF90
workflow: variances from a previous run) and PEV come from the same sparse or dense
MME as pedigree BLUP.

SNP effects are back-solved from the genotyped animals' GEBVs as postGSf90 does
(Wang et al. 2012, Genet Res 94:73; Aguilar et al. 2019, Genet Sel Evol 51:28):

    â = λ W' G*⁻¹ û₂,   Var(â) = λ² diag(W' G*⁻¹ (G* σ²_u − C²²) G*⁻¹ W),   λ = 1/(2Σpq)

with W the centred genotypes of the k genotyped animals, û₂ their GEBVs, and C²²
their block of the MME inverse times σ²_e (the PEV covariance). â/√Var(â) is the
statistic postGSf90 turns into p-values (``snp_p_value``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import norm

from ..api import fit_spec
from ..data._ids import str_ids
from ..data.genotypes import Genotypes
from ..errors import DataError
from ..linalg import SymbolicCholesky
from ..relationships.pedigree import _as_pedigree, pedigree_inverse
from ..relationships.single_step import single_step_inverse
from ..spec.model import ModelSpec
from ._align import ID, genetic_spec, records_frame, with_notes
from .snpblup import centred_crossprod


@dataclass(frozen=True, eq=False)
class SingleStepFit:
    """A fitted ssGBLUP: the FitResult, H⁻¹, and what the SNP back-solving needs."""

    result: Any
    Hinv: Any
    #: the model fitted, y = Xb + Zu + e with u ~ N(0, σ²_u H): the MME of :func:`pev_block`
    #: (None when fitted by PCG with a lazy H⁻¹: no MME is assembled)
    spec: ModelSpec | None


def fit_ssgblup(
    y: pd.Series,
    pedigree,
    genotypes_or_G=None,
    *,
    fixed: str | None = None,
    data=None,
    method: str = "reml",
    sigma2=None,
    missing: str = "error",
    pev="auto",
    tol: float | None = None,
    **h_settings,
) -> SingleStepFit:
    """Fit ssGBLUP by REML (or at given (σ²_u, σ²_e)).

    Parameters
    ----------
    y : Series indexed by animal id
    pedigree : Pedigree or DataFrame (id, sire, dam)
    genotypes_or_G : Genotypes, G, or None
        None (or no genotyped animal): H⁻¹ = A⁻¹, pedigree BLUP.
    fixed, data, method, sigma2 : as :func:`henderson.fit`
    tol : float, optional
        PCG relative-residual tolerance with ``lazy=True`` at given ``sigma2`` (default
        :data:`henderson.solvers.pcg.TOL`).
    missing : {"error", "drop"}
        Phenotyped ids absent from the pedigree.
    **h_settings
        Passed to :func:`~henderson.single_step_inverse` (tuning, alpha, beta, tau,
        omega, apy_core, a22_inverse, lazy, ...; ``missing`` there is ``genotyped_missing``).
        With ``lazy=True`` and given ``sigma2`` the model is solved by PCG with A₂₂⁻¹ applied
        as an operator (:func:`henderson.api_pcg_general.fit_blocks_pcg`; no MME assembled,
        so no :func:`pev_block`); with REML the direct MME forms the genotyped block on demand.
    """
    ped = _as_pedigree(pedigree)
    if "genotyped_missing" in h_settings:
        h_settings["missing"] = h_settings.pop("genotyped_missing")
    if genotypes_or_G is None or (isinstance(genotypes_or_G, Genotypes) and genotypes_or_G.n == 0):
        Hinv = pedigree_inverse(ped)
        note = "no genotyped animal: H⁻¹ = A⁻¹ (pedigree BLUP)"
    else:
        Hinv = single_step_inverse(ped, genotypes_or_G, keep_g_inverse=True, **h_settings)
        note = None
    frame, formula, _, notes = records_frame(y, Hinv.ids, fixed=fixed, data=data, missing=missing, what="pedigree")
    t0 = time.perf_counter()
    spec: ModelSpec | None
    if hasattr(Hinv, "block_operator") and sigma2 is not None:
        # lazy H⁻¹ at given variances: PCG, τG*⁻¹ − ωA₂₂⁻¹ applied as products
        from ..api_pcg_general import fit_blocks_pcg
        from ..solvers.pcg import TOL

        s2 = np.asarray(sigma2, dtype=float).ravel()
        res = fit_blocks_pcg(
            formula, frame, cov_inverse={ID: Hinv}, sigma2=s2, method=method, solver="pcg", pev=pev, t0=t0,
            tol=TOL if tol is None else tol,
        )  # fmt: skip
        spec = None
    else:
        if hasattr(Hinv, "block_operator"):
            notes = [
                *notes,
                "lazy=True with REML: the direct MME formed the genotyped block τG*⁻¹ − ωA22⁻¹ on demand "
                "(give sigma2 to solve by PCG with A22⁻¹ as an operator)",
            ]
        spec = genetic_spec(frame, formula, cov_inverse=Hinv)
        res = fit_spec(spec, method=method, sigma2=sigma2, pev=pev, t0=t0)
    extra = tuple(notes) + tuple(Hinv.info.get("notes", ())) + ((note,) if note else ())
    res = with_notes(res, before=extra)
    return SingleStepFit(res, Hinv, spec)


def pev_block(f: SingleStepFit, ids) -> np.ndarray:
    """C²² σ²_e: the PEV covariance of the animals ``ids`` (k × k), from the MME's factor.

    Assembles the MME C = [[X'X, X'Z], [Z'X, Z'Z + (σ²_e/σ²_u) H⁻¹]] itself (the
    same equations the fit solved) and solves it for the unit vectors of ``ids``.
    """
    res = f.result
    s_u, s_e = float(res.sigma2[ID]), float(res.sigma2["Residual"])
    spec = f.spec
    if spec is None:
        raise DataError(
            "the PEV covariance of the genotyped animals needs the direct MME, which a fit by PCG with "
            "a lazy H⁻¹ (lazy=True at given sigma2) does not assemble: refit with lazy=False"
        )
    term = spec.terms[0]
    Z = term.design()
    X = sp.csr_matrix(spec.X)
    T = sp.hstack([Z, X], format="csc")
    C = (T.T @ T).tolil()
    q = term.q
    C[:q, :q] = C[:q, :q] + (s_e / s_u) * sp.csr_matrix(term.penalty)
    C = sp.csc_matrix(C)
    fac = SymbolicCholesky(C, last=X.shape[1]).factor_matrix(C)
    pos = pd.Index(term.levels).get_indexer(str_ids(ids))
    k = len(pos)
    # H⁻¹'s genotyped block is dense, so those rows form a clique of C and every (i, j)
    # of C²² is on the pattern of L: the selected inverse (Takahashi) gives the block
    # without k solves. Other id sets fall back to solves, 256 right-hand sides at a time.
    try:
        ii = np.repeat(pos, k)
        jj = np.tile(pos, k)
        out = fac.selected_inverse().entries(ii, jj).reshape(k, k)
    except ValueError:
        out = np.empty((k, k))
        for a in range(0, k, 256):
            b = min(a + 256, k)
            E = np.zeros((C.shape[0], b - a))
            E[pos[a:b], np.arange(b - a)] = 1.0
            out[:, a:b] = fac.solve(E)[pos]
    return 0.5 * (out + out.T) * s_e


def snp_effects_single_step(
    f: SingleStepFit, genotypes: Genotypes, variances: bool = True, C22: np.ndarray | None = None
) -> pd.DataFrame:
    """ssSNP effects back-solved from the genotyped animals' GEBVs (postGSf90).

    Parameters
    ----------
    f : SingleStepFit with H⁻¹ built from ``genotypes`` (``keep_g_inverse``)
    genotypes : Genotypes, k genotyped animals × m SNPs
    variances : bool
        Also Var(â) (k sparse solves for C²² and O(k²m) for the diagonal).
    C22 : ndarray (k, k), optional
        :func:`pev_block` of the genotyped animals in ``info["genotyped"]`` order, when
        already computed (the estimator caches it for ``genotyped_pec``).

    Returns
    -------
    DataFrame, one row per SNP: ``snp, chrom, pos, allele1, allele2, freq, effect``
    and, with ``variances``, ``var``, ``z`` = effect/√var and ``p_value`` (two-sided,
    normal), as postGSf90's ``snp_p_value``.
    """
    info = f.Hinv.info
    if "G_star_inverse" not in info:
        raise DataError("SNP effects need the single-step H⁻¹ built from genotypes (not pedigree BLUP)")
    gids = np.asarray(info["genotyped"], dtype=object)
    geno = genotypes.subset(ids=gids)  # G*'s order
    freq = geno.allele_freq
    ok = geno.n_called > 0
    lam = 1.0 / (2.0 * float(np.sum(freq[ok] * (1 - freq[ok]))))
    gebv = f.result.blups[ID]["blup"].reindex(pd.Index(gids)).to_numpy()
    Ginv = info["G_star_inverse"]
    alpha = Ginv @ gebv
    out = geno.snps.copy()
    out["freq"] = freq
    out["effect"] = lam * centred_crossprod(geno, alpha, freq)
    s_u = float(f.result.sigma2[ID])
    if variances and s_u <= 0:  # σ²_u on the boundary: û ≡ 0, â ≡ 0 without error
        out["var"], out["z"], out["p_value"] = 0.0, np.nan, np.nan
    elif variances:
        if C22 is None:
            C22 = pev_block(f, gids)
        Q = Ginv @ (info["G_star"] * s_u - C22) @ Ginv  # Var(û₂) pre- and post-multiplied by G*⁻¹
        var = np.empty(geno.p)
        for cols, w in geno.centered(allele_freq=freq):
            var[cols] = np.einsum("ij,ij->j", w, Q @ w)
        var *= lam * lam
        out["var"] = var
        with np.errstate(divide="ignore", invalid="ignore"):
            z = out["effect"].to_numpy() / np.sqrt(np.where(var > 0, var, np.nan))
        out["z"] = z
        out["p_value"] = 2.0 * norm.sf(np.abs(z))
    return out

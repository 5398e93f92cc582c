"""``solver="pcg"`` at given (co)variances for multi-trait formulas ``cbind(y1, y2) ~ ...``.

Missing traits, iid terms, ``diag(1|g)``, a sparse K⁻¹ (pedigree A⁻¹) or a single-step H⁻¹
given in blocks (:class:`~henderson.relationships.h_inverse.SparsePlusDenseInverse`, whose
dense block τG*⁻¹ − ωA₂₂⁻¹ is applied as a product): the groups of
:class:`~henderson.solvers.pcg_general.GeneralPCG` from the parsed multi-trait inputs, and
its solution as a ``MultiTraitResult`` (docs/theory.md, "PCG for multi-trait, maternal and
single-step models"). The single-trait general models are in :mod:`henderson.api_pcg_general`,
whose notes and settings this module shares.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from .. import api_pcg
from ..api_pcg_general import (
    _auto_note,
    genomic_block,
    pev_and_fixed_cov,
    pev_notes,
    sampled_reliability,
    sampling_settings,
    sp_of,
)
from ..errors import DataError, ModelError
from ..results import stage_timings
from ..solvers.pcg import TOL
from ..solvers.pcg_general import GeneralPCG, RandomGroup
from ..spec.levels import SparseInverseWithDenseBlock


# -- multi-trait formulas ------------------------------------------------------------------------
def multitrait_equations(kept: pd.DataFrame, traits, terms, cov, cov_inverse) -> int | None:
    """Random-effect equations (levels × traits) of a multi-trait model, or None when a term
    has a dense ``cov=`` (PCG does not take it). The fixed effects are not counted: a
    handful beside the levels."""
    from ..relationships.container import as_relationship

    t = len(traits)
    total = 0
    for name, _ in terms:
        if name in cov:
            return None
        if name in cov_inverse:
            K = cov_inverse[name]
            total += (
                len(K.ids) if isinstance(K, SparseInverseWithDenseBlock) else len(as_relationship(K, inverse=True).ids)
            )
        elif name in kept.columns:
            total += int(kept[name].nunique())
    return total * t


def prefers_pcg(kept, traits, terms, cov, cov_inverse) -> bool:
    m = multitrait_equations(kept, traits, terms, cov, cov_inverse)
    return m is not None and m > api_pcg.PCG_THRESHOLD


def _common_fixed(fixed, traits) -> str:
    if fixed is None:
        return "1"
    if isinstance(fixed, str):
        return fixed
    parts = {fixed.get(t, "1") for t in traits}
    if len(parts) != 1:
        raise ModelError(
            "solver='pcg' fits the same fixed effects for every trait; fixed= gives different ones "
            f"({fixed}): use solver='auto' (the multi-trait MME)"
        )
    return parts.pop()


def _trait_groups(kept, traits, terms, cov, cov_inverse, Sigmas):
    """RandomGroup per (name, diag) term: each trait one effect on the term's levels."""
    from .general import build_terms

    t = len(traits)
    groups, meta = [], []
    for (name, diag), S in zip(terms, Sigmas, strict=True):
        S = np.asarray(S, dtype=float)
        if S.shape != (t, t):
            raise ModelError(f"Σ of term {name!r} must be {t} × {t} (traits {traits}), got shape {S.shape}")
        if diag:
            S = np.diag(np.diag(S))
        K = cov_inverse.get(name)
        if isinstance(K, SparseInverseWithDenseBlock):
            # single-step H⁻¹ in blocks: A⁻¹ sparse, the genomic block applied as a product
            if name not in kept.columns:
                raise ModelError(f"random term (1|{name}): column {name!r} is not in the data")
            labels = kept[name].astype(str).to_numpy()
            levels = np.asarray(K.ids, dtype=str)
            codes = pd.Index(levels).get_indexer(labels)
            if (codes < 0).any():
                from ..errors import format_ids

                raise DataError(
                    f"level(s) of {name!r} have records but are not in the H⁻¹ given for it: "
                    + format_ids(pd.unique(labels[codes < 0]))
                )
            kinv = sp_of(K.sparse_part())
            genomic = (np.asarray(K.block_positions), genomic_block(K))  # a lazy H⁻¹: its operator
            info = dict(K.info or {})
            kd = np.asarray(info["diag"], dtype=float) if "diag" in info else None  # diag(H), for reliabilities
        else:
            (gt,) = build_terms(kept, [(name, diag)], cov, cov_inverse)
            if gt.L is not None:
                raise ModelError(
                    f"solver='pcg' needs term {name!r}'s covariance as an inverse (cov_inverse=, e.g. "
                    "a pedigree A⁻¹ or a single-step H⁻¹) or iid levels, not a dense cov="
                )
            levels, codes = np.asarray(gt.levels, dtype=str), np.asarray(gt.codes)
            kinv = None if gt.Kinv is None else sp_of(gt.Kinv)
            genomic = None
            kd, info = np.asarray(gt.k_diag, dtype=float), getattr(gt, "info", None)
        codes = np.repeat(np.asarray(codes, dtype=np.int64)[:, None], t, axis=1)
        groups.append(
            RandomGroup(name, codes, np.arange(t), S, len(levels), kinv=kinv, genomic=genomic, k_diag=kd, info=info)
        )
        meta.append((name, levels, codes[:, 0]))
    return groups, meta


def fit_traits_pcg(
    kept: pd.DataFrame,
    traits,
    terms,
    *,
    cov=None,
    cov_inverse=None,
    fixed=None,
    sigma=None,
    formula: str | None = None,
    notes=(),
    tol: float = TOL,
    auto: bool = False,
    pev="auto",
    pev_samples: int = 200,
    seed: int = 0,
):
    """Multi-trait BLUP at given Σ's by PCG (see module notes); returns a MultiTraitResult.

    Parameters
    ----------
    kept : DataFrame
        Records (each with at least one trait; NaN where a trait is missing).
    traits : list of str
    terms : list of (name, diag)
    cov, cov_inverse : dict name → K or K⁻¹ (a dense K is refused; terms not named are iid)
    fixed : str or dict trait → formula part (the same part for every trait)
    sigma : dict
        ``{"Sigma": [Σ per term (t × t)], "Residual": R₀ (t × t)}``, required.
    pev : {"auto", True, False, "sample"}
        True or "sample": PEV and reliabilities by sampling
        (:func:`~henderson.solvers.pev_sampling_general.sampled_pev_general`, ``pev_samples``
        simulated data sets seeded by ``seed``; a ``pev_se`` column holds each PEV's Monte
        Carlo SE and ``settings["pev_method"]`` names the method), and exact fixed-effect SEs
        from p·t extra solves. "auto" and False: NaN (a note says so).
    """
    import dataclasses

    from .._version import __version__
    from ..spec.model import _fixed_matrix
    from .general import term_pairs
    from .results import MultiTraitResult, correlation_tables, heritability_table

    t0 = time.perf_counter()
    traits = list(traits)
    t = len(traits)
    cov, cov_inverse = dict(cov or {}), dict(cov_inverse or {})
    if sigma is None:
        raise ModelError(
            "solver='pcg' on a multi-trait model needs the covariances: sigma2=(Σ_g, Σ_e) for one "
            'random term, or {"Sigma": [one t × t matrix per term], "Residual": Σ_e}'
        )
    Sigmas = list(sigma["Sigma"])
    R0 = np.asarray(sigma["Residual"], dtype=float)
    if len(Sigmas) != len(terms):
        raise ModelError(f"sigma has {len(Sigmas)} Σ matrices for {len(terms)} random terms")
    if R0.shape != (t, t):
        raise ModelError(f"the residual Σ_e must be {t} × {t} (traits {traits}), got shape {R0.shape}")
    fixed_part = _common_fixed(fixed, traits)
    X, x_names, aliased = _fixed_matrix(fixed_part, kept)
    notes = list(notes)
    if aliased:
        notes.append(f"fixed-effect columns aliased with others and dropped: {', '.join(aliased)}")
    groups, meta = _trait_groups(kept, traits, terms, cov, cov_inverse, Sigmas)
    Y = kept[traits].to_numpy(dtype=float)
    model = GeneralPCG(Y, X, groups, R0)
    t2 = time.perf_counter()
    x, info = model.solve(tol=tol)
    t3 = time.perf_counter()
    tr_idx = pd.Index(traits, name="trait")
    sampled, Vb = pev_and_fixed_cov(model, pev, pev_samples, seed, tol)
    notes += [api_pcg.solve_note(info), *pev_notes(sampled)] + ([_auto_note(model.m)] if auto else [])

    def frame(S):
        return pd.DataFrame(S, index=tr_idx, columns=traits)

    nan_tt = np.full((t, t), np.nan)
    covariances, covariance_se, correlations, correlation_se = {}, {}, {}, {}
    for gr in groups:
        covariances[gr.name], covariance_se[gr.name] = frame(gr.sigma), frame(nan_tt)
        correlations[gr.name], correlation_se[gr.name] = correlation_tables(gr.sigma, None, traits)
    covariances["Residual"], covariance_se["Residual"] = frame(R0), frame(nan_tt)
    correlations["Residual"], correlation_se["Residual"] = correlation_tables(R0, None, traits)
    # the genetic term: the first with a known covariance, else the first (as the MME path)
    gj = next((j for j, (nm, _) in enumerate(terms) if nm in cov_inverse), 0)
    term = groups[gj].name
    for d in (covariances, covariance_se, correlations, correlation_se):
        if term != "genetic":
            d["genetic"] = d[term]
    h2 = heritability_table(groups[gj].sigma, R0, None, traits)
    names, est = [], []
    for (name, diag), gr in zip(terms, groups, strict=True):
        for k, l in term_pairs(t, diag):
            names.append(f"{name}:{traits[k]}:{traits[l]}")
            est.append(gr.sigma[k, l])
    for k, l in term_pairs(t, False):
        names.append(f"Residual:{traits[k]}:{traits[l]}")
        est.append(R0[k, l])
    vc = pd.DataFrame({"estimate": est, "se": np.nan}, index=pd.Index(names, name="parameter"))
    B = model.fixed(x)  # p × t
    b_se = np.full(B.shape, np.nan) if Vb is None else np.sqrt(np.maximum(np.diag(Vb), 0.0)).reshape(B.shape)
    fe = pd.DataFrame(
        {"estimate": B.T.ravel(), "se": b_se.T.ravel(), "t": (B / b_se).T.ravel()},
        index=pd.MultiIndex.from_product([traits, x_names], names=["trait", "coefficient"]),
    )
    blups, record_levels = {}, {}
    for name, levels, codes in meta:
        U = model.effects(x, name)
        nrec = np.bincount(codes, minlength=len(levels))
        cols = {"blup": U.ravel(), "pev": np.nan, "reliability": np.nan}
        if sampled is not None:
            a, b = model.spans[name]
            cols["pev"] = sampled["pev"][a:b]
            cols["pev_se"] = sampled["se"][a:b]
            cols["reliability"] = sampled_reliability(sampled["pev"][a:b], sampled["prior"][a:b])
        cols["n_records"] = np.repeat(nrec, t)
        blups[name] = pd.DataFrame(cols, index=pd.MultiIndex.from_product([levels, traits], names=[name, "trait"]))
        record_levels[name] = levels[codes]
    fit_all = model.fitted(x)
    obs = ~np.isnan(Y)
    res_mat = np.where(obs, Y - fit_all, np.nan)
    settings = {
        "formula": formula,
        "method": "reml",
        "traits": traits,
        "term": term,
        "terms": [(nm, dg) for nm, dg in terms],
        "fixed": fixed_part,
        "version": __version__,
        "solver": "multitrait-pcg",
        "fixed_sigma2": True,
        "pcg": api_pcg.pcg_settings(info),
        "pev_method": None if sampled is None else sampled["method"],
        "pev_sampling": sampling_settings(sampled),
    }
    res = MultiTraitResult(
        traits=traits,
        term=term,
        covariances=covariances,
        covariance_se=covariance_se,
        correlations=correlations,
        correlation_se=correlation_se,
        heritability=h2,
        variance_components=vc,
        vcov=None,
        fixed_effects=fe,
        blups=blups,
        loglik=float("nan"),
        aic=float("nan"),
        bic=float("nan"),
        n_obs=len(Y),
        n_records=pd.Series(obs.sum(axis=0), index=tr_idx, name="records"),
        method="reml",
        solver="multitrait-pcg",
        iterations=int(info.rounds),
        converged=bool(info.converged),
        log=info.log(),
        fitted=pd.DataFrame(np.where(obs, fit_all, np.nan), index=kept.index, columns=traits),
        residuals=pd.DataFrame(res_mat, index=kept.index, columns=traits),
        boundary=(),
        notes=tuple(notes),
        settings=settings,
        record_levels=record_levels,
    )
    return dataclasses.replace(res, timings=stage_timings(t0, prepare=t2, optimise=t3))

"""``solver="pcg"`` at given (co)variances for multi-trait, correlated and single-step models.

:class:`~henderson.solvers.pcg_general.GeneralPCG` solves the MME of these models by
iteration on data (docs/theory.md, "PCG for multi-trait, maternal and single-step
models"). This module turns the public inputs into its groups and its solution into the
usual results:

- the general engine's models (``correlated=[("animal", "dam")]`` maternal models,
  ``us(0 + Env|Name)`` and other random intercepts with a structure Σ(θ)), from their
  :class:`~henderson.spec.terms.GeneralSpec`: :func:`fit_general_pcg` → ``FitResult``;
- multi-trait formulas ``cbind(y1, y2) ~ ...`` with missing traits, iid terms,
  ``diag(1|g)``, a sparse K⁻¹ (pedigree A⁻¹) or a single-step H⁻¹ given in blocks
  (:class:`~henderson.relationships.h_inverse.SparsePlusDenseInverse`, whose dense block
  τG*⁻¹ − ωA₂₂⁻¹ is applied as a product, never filled into a sparse matrix):
  :func:`fit_traits_pcg` → ``MultiTraitResult``.

What PCG does not give, the results say (notes): −2 log L, AIC and BIC (no factor of C),
PEV, reliabilities and fixed-effect SEs (NaN). ``solver="auto"`` takes this path with
given (co)variances above :data:`henderson.api_pcg.PCG_THRESHOLD` equations (read at
call time) and says so in the notes. A solve that does not converge in its rounds is a
:class:`~henderson.ConvergenceWarning` carrying the residual history
(:func:`henderson.solvers.pcg.pcg_loop`).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from . import api_pcg
from .errors import DataError, ModelError
from .solvers.pcg import TOL
from .solvers.pcg_general import GeneralPCG, RandomGroup
from .spec.levels import Factored, SparseInverse, SparseInverseWithDenseBlock

PCG_NOTES = (
    "log-likelihood, AIC and BIC not computed by the PCG solver (no factor of C)",
    "PEV, reliabilities and fixed-effect standard errors not computed by the PCG solver (NaN)",
)


def _solve_note(info) -> str:
    return (
        f"PCG: {info.rounds} rounds to ‖r − Cx‖/‖r‖ = {info.rel_residual:.3g} "
        f"(tolerance {info.tol:g}, {info.preconditioner} preconditioner)"
    )


def _auto_note(m: int) -> str:
    return f"solver 'auto' chose PCG: {m} MME equations > PCG_THRESHOLD ({api_pcg.PCG_THRESHOLD}) with given variances"


def _pcg_settings(info) -> dict:
    return {
        "tol": info.tol,
        "rounds": info.rounds,
        "rel_residual": info.rel_residual,
        "preconditioner": info.preconditioner,
        "seconds": info.seconds,
    }


# -- the general engine's models (maternal, structured random intercepts) -------------------
def general_equations(spec) -> int:
    """MME equations of a GeneralSpec: Σ levels × components, plus the fixed effects."""
    return int(sum(t.q * t.size for t in spec.terms) + spec.p)


def general_pcg_applies(spec) -> bool:
    """Whether :func:`general_groups` takes this model (what ``solver="auto"`` checks)."""
    r = spec.residual
    if r.weights is not None or len(r.groups) != 1 or r.unit is not None:
        return False
    return all(not isinstance(t.level.covariance, Factored) and np.all((t.z == 0) | (t.z == 1)) for t in spec.terms)


def prefers_general_pcg(spec) -> bool:
    """Above PCG_THRESHOLD equations and a model PCG takes (``solver="auto"`` with θ given)."""
    return general_equations(spec) > api_pcg.PCG_THRESHOLD and general_pcg_applies(spec)


def general_groups(spec, theta) -> tuple[list[RandomGroup], np.ndarray]:
    """GeneralPCG groups and R₀ (1 × 1) of a single-trait GeneralSpec at θ.

    A term's component a loads record i on level ``codes[i, a]`` when ``z[i, a]`` is 1
    and not at all when it is 0 (an unknown dam); other loadings (random slopes) are not
    incidences and are refused, as are a dense K, residual groups and weights.
    """
    theta = np.asarray(theta, dtype=float)
    if theta.shape != (spec.n_theta,):
        raise ModelError(f"sigma2 needs {spec.n_theta} values: {spec.theta_names}")
    r = spec.residual
    if r.weights is not None or len(r.groups) != 1 or r.unit is not None:
        raise ModelError(
            "solver='pcg' fits one residual variance (no weights=, residual= groups or units); "
            "use solver='auto', 'dense' or 'sparse' for this model"
        )
    groups = []
    slices = spec.slices
    for k, t in enumerate(spec.terms):
        z = np.asarray(t.z, dtype=float)
        if not np.all((z == 0) | (z == 1)):
            raise ModelError(
                f"solver='pcg' takes random intercepts (incidences); term {t.name!r} has covariate "
                f"loadings ({', '.join(t.components)}): use solver='auto', 'dense' or 'sparse'"
            )
        cov = t.level.covariance
        if isinstance(cov, Factored):
            raise ModelError(
                f"solver='pcg' needs term {t.name!r}'s covariance as an inverse (cov_inverse=, e.g. "
                "a pedigree A⁻¹) or iid levels, not a dense cov="
            )
        kinv = sp_of(t.level.penalty) if isinstance(cov, SparseInverse) else None
        codes = np.where(z == 1, np.asarray(t.codes, dtype=np.int64), -1)
        sigma = t.structure.sigma(theta[slices[k]])
        groups.append(RandomGroup(t.name, codes, np.zeros(t.size, np.int64), sigma, t.q, kinv=kinv))
    R0 = np.atleast_2d(float(theta[slices[-1]][0]))
    return groups, R0


def sp_of(K):
    import scipy.sparse as sp

    return sp.csr_matrix(K, dtype=np.float64)


class _GeneralPCGState:
    """What :func:`henderson.assemble_general.general_result` reads, from a PCG solution."""

    name = "general-pcg"

    def __init__(self, spec, model: GeneralPCG, x: np.ndarray):
        self.spec, self.model, self.x = spec, model, x
        self.slices = spec.slices

    def fixed(self, ev):
        p = self.spec.p
        return self.model.fixed(self.x)[:, 0], np.full((p, p), np.nan)

    def term_blups(self, ev, k: int):
        U = self.model.effects(self.x, self.spec.terms[k].name)
        return U, np.full(U.shape, np.nan)


class _Evaluation:
    def __init__(self, theta, sigmas, residuals):
        self.theta, self.sigmas, self.residuals = theta, sigmas, residuals
        self.m2ll, self.ai = float("nan"), None


def fit_general_pcg(spec, theta, *, method: str = "reml", tol: float = TOL, auto: bool = False, t0=None):
    """Solve a general-engine model at θ by PCG and assemble its FitResult (see module notes)."""
    import dataclasses

    from .assemble_general import general_result

    t0 = time.perf_counter() if t0 is None else t0
    if theta is None:
        raise ModelError(
            "solver='pcg' for structured or correlated terms needs the variances: pass sigma2= "
            f"({', '.join(spec.theta_names)}); stochastic REML covers single-trait models only"
        )
    groups, R0 = general_groups(spec, theta)
    t1 = time.perf_counter()
    model = GeneralPCG(spec.y, spec.X, groups, R0)
    t2 = time.perf_counter()
    x, info = model.solve(tol=tol)
    t3 = time.perf_counter()
    resid = spec.y - model.fitted(x)[:, 0]
    ev = _Evaluation(np.asarray(theta, dtype=float), [g.sigma for g in groups], resid)
    state = _GeneralPCGState(spec, model, x)
    notes = [_solve_note(info), *PCG_NOTES] + ([_auto_note(model.m)] if auto else [])
    log = info.log()
    res = general_result(spec, state, ev, method, info.rounds, info.converged, log, [], fixed_theta=True)
    settings = dict(res.settings, pcg=_pcg_settings(info))
    timings = {
        "spec": t1 - t0,
        "prepare": t2 - t1,
        "optimise": t3 - t2,
        "results": time.perf_counter() - t3,
        "total": time.perf_counter() - t0,
    }
    return dataclasses.replace(res, notes=tuple(res.notes) + tuple(notes), settings=settings, timings=timings, log=log)


# -- multi-trait formulas ------------------------------------------------------------------------
def multitrait_equations(kept: pd.DataFrame, traits, terms, cov, cov_inverse) -> int | None:
    """Random-effect equations (levels × traits) of a multi-trait model, or None when a term
    has a dense ``cov=`` (PCG does not take it). The fixed effects are not counted: a
    handful beside the levels."""
    from .relationships.container import as_relationship

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
    from .multitrait.general import build_terms

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
                from .errors import format_ids

                raise DataError(
                    f"level(s) of {name!r} have records but are not in the H⁻¹ given for it: "
                    + format_ids(pd.unique(labels[codes < 0]))
                )
            kinv = sp_of(K.sparse_part())
            genomic = (np.asarray(K.block_positions), np.asarray(K.dense_block(), dtype=float))
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
        codes = np.repeat(np.asarray(codes, dtype=np.int64)[:, None], t, axis=1)
        groups.append(RandomGroup(name, codes, np.arange(t), S, len(levels), kinv=kinv, genomic=genomic))
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
    """
    import dataclasses

    from ._version import __version__
    from .multitrait.general import term_pairs
    from .multitrait.results import MultiTraitResult, correlation_tables, heritability_table
    from .spec.model import _fixed_matrix

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
    t1 = time.perf_counter()
    model = GeneralPCG(Y, X, groups, R0)
    t2 = time.perf_counter()
    x, info = model.solve(tol=tol)
    t3 = time.perf_counter()
    tr_idx = pd.Index(traits, name="trait")
    notes += [_solve_note(info), *PCG_NOTES] + ([_auto_note(model.m)] if auto else [])

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
    fe = pd.DataFrame(
        {"estimate": B.T.ravel(), "se": np.nan, "t": np.nan},
        index=pd.MultiIndex.from_product([traits, x_names], names=["trait", "coefficient"]),
    )
    blups, record_levels = {}, {}
    for name, levels, codes in meta:
        U = model.effects(x, name)
        nrec = np.bincount(codes, minlength=len(levels))
        blups[name] = pd.DataFrame(
            {"blup": U.ravel(), "pev": np.nan, "reliability": np.nan, "n_records": np.repeat(nrec, t)},
            index=pd.MultiIndex.from_product([levels, traits], names=[name, "trait"]),
        )
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
        "pcg": _pcg_settings(info),
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
    timings = {
        "prepare": t1 - t0 + (t2 - t1),
        "optimise": t3 - t2,
        "results": time.perf_counter() - t3,
        "total": time.perf_counter() - t0,
    }
    return dataclasses.replace(res, timings=timings)

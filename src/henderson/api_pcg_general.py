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

What PCG does not give, the results say (notes): −2 log L, AIC and BIC (no factor of C).
PEV, reliabilities and fixed-effect SEs are NaN unless ``pev="sample"`` (or True): then PEV
is estimated by sampling (Garcia-Cortes et al. 1995 with Hickey et al.'s 2009 control
variate; :mod:`henderson.solvers.pev_sampling_general`, all samples solved in lockstep by
block PCG), each with its Monte Carlo SE in a ``pev_se`` column and the method in the notes
and ``settings["pev_method"]``; reliability = 1 − PEV/(diag(K)σ²), NaN where diag(K) is not
known; fixed-effect SEs are exact, (X'V⁻¹X)⁻¹ from one extra solve per fixed-effect
equation. ``solver="auto"`` takes this path with
given (co)variances above :data:`henderson.api_pcg.PCG_THRESHOLD` equations (read at
call time) and says so in the notes. A solve that does not converge in its rounds is a
:class:`~henderson.ConvergenceWarning` carrying the residual history
(:func:`henderson.solvers.pcg.pcg_loop`).
"""

from __future__ import annotations

import time

import numpy as np

from . import api_pcg
from .errors import ModelError
from .results import stage_timings
from .solvers.pcg import TOL
from .solvers.pcg_general import GeneralPCG, RandomGroup
from .spec.levels import Factored, SparseInverse

PCG_NOTES = (
    "log-likelihood, AIC and BIC not computed by the PCG solver (no factor of C)",
    "PEV, reliabilities and fixed-effect standard errors not computed by the PCG solver (NaN); "
    "pev='sample' estimates PEV by sampling and gives exact fixed-effect SEs",
)


def pev_and_fixed_cov(model: GeneralPCG, pev, n_samples: int, seed: int, tol: float):
    """Sampled PEV (dict, or None) and Var(b̂) (pt × pt, or None) when ``pev`` asks for them
    (True or "sample"; "auto" and False skip both)."""
    from .solvers.pev_sampling_general import fixed_effect_cov_general, sampled_pev_general

    if pev not in ("auto", True, False, "sample"):
        raise ModelError(f"pev must be 'auto', True, False or 'sample', not {pev!r}")
    if pev not in (True, "sample"):
        return None, None
    sampled = sampled_pev_general(model, n_samples=n_samples, seed=seed)
    return sampled, fixed_effect_cov_general(model, tol=tol)


def sampling_settings(sampled) -> dict | None:
    """``settings["pev_sampling"]``: samples, seed, seconds and mean PCG rounds per sample."""
    if sampled is None:
        return None
    return {k: sampled[k] for k in ("n_samples", "seed", "seconds", "rounds")}


def pev_notes(sampled) -> list[str]:
    """The PCG notes: no log-likelihood; PEV not computed, or the sampling method."""
    if sampled is None:
        return list(PCG_NOTES)
    return [
        PCG_NOTES[0],
        f"PEV estimated by sampling: {sampled['method']}; reliability = 1 − PEV/(diag(K)·σ²), NaN where diag(K) "
        f"is not known",
        "fixed-effect SEs exact: (X'V⁻¹X)⁻¹ from one PCG solve per fixed-effect equation",
    ]


def sampled_reliability(pev: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """1 − PEV/(diag(K)σ²): NaN (not 0) where the prior variance is unknown (NaN) or 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(prior) & (prior > 0), 1.0 - pev / prior, np.nan)


def _auto_note(m: int) -> str:
    return f"solver 'auto' chose PCG: {m} MME equations > PCG_THRESHOLD ({api_pcg.PCG_THRESHOLD}) with given variances"


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
        groups.append(
            RandomGroup(
                t.name, codes, np.zeros(t.size, np.int64), sigma, t.q, kinv=kinv,
                k_diag=np.asarray(t.level.k_diag, dtype=float),
                info=getattr(t.level, "info", None),
            )
        )  # fmt: skip
    R0 = np.atleast_2d(float(theta[slices[-1]][0]))
    return groups, R0


def sp_of(K):
    import scipy.sparse as sp

    return sp.csr_matrix(K, dtype=np.float64)


def general_pcg_evaluation(spec, model: GeneralPCG, x, theta, method: str, sampled=None, Vb=None):
    """The protocol Evaluation of a GeneralPCG solution ``x`` of a GeneralSpec at θ: BLUPs
    (q, S) per term, PEV NaN or sampled (with ``pev_se``), SE(b̂) from ``Vb`` or NaN, and
    −2 log L NaN (iteration gives no log|C|)."""
    from .solvers.protocol import Evaluation

    blups, pevs, pev_se = {}, {}, {}
    for t in spec.terms:
        U = model.effects(x, t.name)
        blups[t.name] = U
        if sampled is None:
            pevs[t.name] = np.full(U.shape, np.nan)
        else:
            a, b = model.spans[t.name]
            pevs[t.name], pev_se[t.name] = sampled["pev"][a:b].reshape(U.shape), sampled["se"][a:b]
    return Evaluation(
        theta=np.asarray(theta, dtype=float),
        method=method,
        m2ll=float("nan"),  # iteration gives no log|C|
        score=None,
        ai=None,
        fixed=model.fixed(x)[:, 0],
        blups=blups,
        pev=pevs,
        residuals=spec.y - model.fitted(x)[:, 0],
        detail=x,
        fixed_var=None if Vb is None else np.maximum(np.diag(Vb), 0.0),
        pev_se=None if sampled is None else pev_se,
    )


def fit_general_pcg(
    spec,
    theta,
    *,
    method: str = "reml",
    tol: float = TOL,
    auto: bool = False,
    t0=None,
    pev="auto",
    pev_samples: int = 200,
    seed: int = 0,
):
    """Solve a general-engine model at θ by PCG and assemble its FitResult (see module notes).

    ``pev="sample"`` (or True): PEV by sampling (``pev_samples`` data sets seeded by
    ``seed``; a ``pev_se`` column, ``settings["pev_method"]``) and exact fixed-effect SEs.
    """
    import dataclasses

    from . import assemble

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
    sampled, Vb = pev_and_fixed_cov(model, pev, pev_samples, seed, tol)
    ev = general_pcg_evaluation(spec, model, x, theta, method, sampled, Vb)
    run = assemble.Run(
        "general-pcg",
        method,
        info.rounds,
        info.converged,
        info.log(),
        estimated=False,
        notes=(api_pcg.solve_note(info), *pev_notes(sampled), *([_auto_note(model.m)] if auto else [])),
        settings={
            "pcg": api_pcg.pcg_settings(info),
            "pev_method": None if sampled is None else sampled["method"],
            "pev_sampling": sampling_settings(sampled),
        },
    )
    res = assemble.fit_result(spec, ev, run)
    return dataclasses.replace(res, timings=stage_timings(t0, spec=t1, prepare=t2, optimise=t3))


# -- single-trait models with a single-step H⁻¹ given in blocks ------------------------------------
def has_blocks(cov_inverse) -> bool:
    """Whether a ``cov_inverse`` value is a sparse K⁻¹ plus a dense block (H⁻¹ in blocks)."""
    from .spec.levels import SparseInverseWithDenseBlock

    return any(isinstance(v, SparseInverseWithDenseBlock) for v in (cov_inverse or {}).values())


def genomic_block(K):
    """The genomic block of an H⁻¹ in blocks for :class:`GeneralPCG`: a lazy H⁻¹'s
    operator (τG*⁻¹ − ωA₂₂⁻¹ as products, A₂₂⁻¹ never formed), else the dense block."""
    if hasattr(K, "block_operator"):
        return K.block_operator()
    return np.asarray(K.dense_block(), dtype=float)


class _BlocksPCGState:
    """What :func:`henderson.api_pcg.pcg_evaluation` and :func:`~henderson.api_pcg.pcg_run`
    read (PCGMME's names), from a GeneralPCG solution."""

    name = "pcg"

    def __init__(self, spec, model: GeneralPCG, s: np.ndarray):
        self.spec, self.model, self.sigma2 = spec, model, s
        self.active = s[:-1] > 0
        self.nz = model.fpos

    def term_values(self, x: np.ndarray, k: int) -> np.ndarray:
        t = self.spec.terms[k]
        return self.model.effects(x, t.name)[:, 0].copy() if self.active[k] else np.zeros(t.q)

    def apply_t(self, x: np.ndarray) -> np.ndarray:
        return self.model.fitted(x)[:, 0]


def fit_blocks_pcg(
    formula,
    data,
    *,
    cov=None,
    cov_inverse=None,
    sigma2,
    method="reml",
    solver="pcg",
    tol=TOL,
    pev="auto",
    t0=None,
    pev_samples: int = 200,
    seed: int = 0,
):
    """Single-trait BLUP at given σ² by PCG with an H⁻¹ given in blocks (A⁻¹ sparse, the
    genomic block τG*⁻¹ − ωA₂₂⁻¹ applied as a product — never filled into a CSR matrix of
    k² entries). With ``solver="auto"`` returns None below ``PCG_THRESHOLD`` equations
    (the caller then takes the direct solvers on the filled H⁻¹). ``pev="sample"`` (or True):
    sampled PEV (the H⁻¹ factored densely for the draws, up to
    :data:`~henderson.solvers.pev_sampling_general.DENSE_LIMIT` levels) and exact
    fixed-effect SEs."""
    import dataclasses

    from . import assemble
    from .relationships.container import Relationship
    from .spec.levels import SparseInverseWithDenseBlock
    from .spec.model import build_spec

    t0 = time.perf_counter() if t0 is None else t0
    blocks, plain = {}, dict(cov_inverse)
    lazy_notes: list[str] = []
    for name, K in cov_inverse.items():
        if isinstance(K, SparseInverseWithDenseBlock):
            # the spec gets the sparse part, with H's log-determinant and diagonal (for
            # reliabilities): PCG adds the dense block as a product below
            info = dict(getattr(K, "info", None) or {})
            # a lazy H⁻¹ (A₂₂⁻¹ as an operator) knows log|H| only when ω = 1: NaN otherwise
            lazy = hasattr(K, "block_operator")
            info["logdet"] = -(K.logdet_inverse(compute=False) if lazy else K.logdet_inverse())  # type: ignore[attr-defined]
            if lazy and not np.isfinite(info["logdet"]):
                lazy_notes.append(
                    f"log|H| of {name!r} unknown (NaN): lazy H⁻¹ with omega != 1 (the log-likelihood is NaN)"
                )
            plain[name] = Relationship(K.ids, K.sparse_part(), inverse=True, kind="Hinv (sparse part)", info=info)
            blocks[name] = K
    spec = build_spec(formula, data, cov=cov, cov_inverse=plain)
    if solver == "auto" and not api_pcg.prefers_pcg(spec):
        return None
    s = np.asarray(sigma2, dtype=float)
    K = len(spec.terms)
    if s.shape != (K + 1,):
        raise ModelError(f"sigma2 needs {K + 1} values (terms, then residual)")
    if not np.all(np.isfinite(s)) or not s[-1] > 0 or np.any(s[:-1] < 0):
        raise ModelError(f"variance components must be finite, >= 0, and the residual > 0: got {s.tolist()}")
    groups = []
    for k, t in enumerate(spec.terms):
        if s[k] == 0:
            continue
        cov_k = t.covariance
        if isinstance(cov_k, Factored):
            raise ModelError(
                f"solver='pcg' with an H⁻¹ in blocks needs term {t.name!r}'s covariance as an inverse "
                "(cov_inverse=) or iid levels, not a dense cov="
            )
        kinv = sp_of(t.penalty) if isinstance(cov_k, SparseInverse) else None
        genomic = None
        if t.name in blocks:
            Kb = blocks[t.name]
            genomic = (np.asarray(Kb.block_positions), genomic_block(Kb))
        codes = np.asarray(t.codes, dtype=np.int64)[:, None]
        kd = np.asarray(t.k_diag, dtype=float)
        groups.append(
            RandomGroup(
                t.name,
                codes,
                np.zeros(1, np.int64),
                np.array([[s[k]]]),
                t.q,
                kinv=kinv,
                genomic=genomic,
                k_diag=kd,
                info=t.info,
            )
        )
    t1 = time.perf_counter()
    model = GeneralPCG(spec.y, spec.X, groups, [[s[-1]]])
    t2 = time.perf_counter()
    x, info = model.solve(tol=tol)
    t3 = time.perf_counter()
    notes = (
        [f"H⁻¹ of {', '.join(blocks)} kept in blocks: A⁻¹ sparse, the dense genomic block applied as a product"]
        + lazy_notes
        + ([_auto_note(model.m)] if solver == "auto" else [])
    )
    sampled, Vb = pev_and_fixed_cov(model, pev, pev_samples, seed, tol)
    by_term = None
    if sampled is not None:
        # per term index, as pcg_evaluation reads them (dropped terms: σ² = 0, no group)
        by_term = {"method": sampled["method"], "pev": {}, "se": {}}
        for k, t in enumerate(spec.terms):
            if s[k] > 0:
                a, b = model.spans[t.name]
                by_term["pev"][k], by_term["se"][k] = sampled["pev"][a:b], sampled["se"][a:b]
        notes.append("fixed-effect SEs exact: (X'V⁻¹X)⁻¹ from one PCG solve per fixed-effect equation")
    fixed_cov = None if Vb is None else Vb / s[-1]  # pcg_evaluation scales by σ²ₑ
    state = _BlocksPCGState(spec, model, s)
    ev = api_pcg.pcg_evaluation(spec, state, x, method.lower(), by_term, fixed_cov)
    run = api_pcg.pcg_run(state, info, method.lower(), by_term, notes, {"pev_sampling": sampling_settings(sampled)})
    res = assemble.fit_result(spec, ev, run)
    return dataclasses.replace(res, timings=stage_timings(t0, spec=t1, prepare=t2, optimise=t3))

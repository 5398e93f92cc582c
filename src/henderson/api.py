"""``henderson.fit``: formula + data (+ covariances) → :class:`FitResult`.

A thin face over the tiers: :func:`~henderson.spec.model.build_spec` (formula and
data to arrays with ids), a solver prepared once (:class:`DenseMME`), the AI-REML
optimiser, and the result tables. No modelling logic lives here.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import assemble
from .api_pcg import fit_pcg, prefers_pcg
from .errors import ModelError
from .reml.optimize import optimise
from .results import FitResult, stage_timings
from .solvers import identifiability
from .solvers.dense import DenseMME
from .solvers.kernel_inverse import sparse_inverse_spec
from .solvers.memory import check_memory
from .solvers.protocol import Prepared
from .solvers.protocol import prepare as prepare_solver
from .spec.formula import ParsedFormula
from .spec.levels import DenseKernel, Factored, Identity, SparseInverse
from .spec.model import build_spec


def prepare(
    formula: str | ParsedFormula,
    data: pd.DataFrame,
    cov: dict | None = None,
    cov_inverse: dict | None = None,
    *,
    solver: str = "auto",
    weights: str | None = None,
    residual: str | None = None,
    correlated=None,
):
    """Build the spec and the engine ``fit`` would use, without optimising.

    The returned state's ``evaluate(theta, method="reml").m2ll`` is −2 log L at any
    parameters: useful for profiling, likelihood-ratio tests and checks. ``state.name``
    names the engine as ``fit`` reports it in ``result.solver``.

    The engine is chosen by the rule of :func:`fit` (the same functions: :func:`choose_engine`
    for one variance per term, ``_general_state`` for structured models), and ``solver=``
    chooses as there:

    - one variance per term: the dense MME (:class:`~henderson.solvers.dense.DenseMME`,
      ``"dense-mme"``), the sparse MME (:class:`~henderson.solvers.sparse.SparseMME`,
      ``"sparse-mme"``) or, for one term with a dense K, the spectral solver
      (:class:`~henderson.solvers.spectral.SpectralSolver`, ``"spectral"``); ``evaluate``
      takes (σ²₁ … σ²_K, σ²ₑ). Under "auto" a dense K whose inverse is sparse (a pedigree
      A) is held as that K⁻¹, as ``fit`` does.
    - structured models: the dense C-form (:class:`~henderson.solvers.general.GeneralMME`),
      the sparse C-form (:class:`~henderson.solvers.general_sparse.GeneralSparseMME`) or
      the V-form (:class:`~henderson.solvers.general_vform.GeneralVForm`), ``solver`` one
      of "auto", "dense", "sparse", "vform"; ``evaluate`` takes θ in the order of
      ``state.spec.theta_names``.

    ``solver="pcg"`` is refused: PCG solves at given variances and evaluates no −2 log L.
    The data are taken as given (``fit`` standardises y first; −2 log L at parameters on the
    user's scale is the same model's).
    """
    if solver == "pcg":
        raise ModelError(
            "prepare() gives an engine that evaluates -2 log L; solver='pcg' solves at given variances "
            "and has none (use 'auto', 'dense', 'sparse', 'spectral' or 'vform')"
        )
    if _structured(formula, weights, residual, correlated):
        from .spec.terms import build_general_spec

        if solver not in ("auto", "dense", "sparse", "vform"):
            raise ModelError(
                f"structured models are fitted by the general engine, dense, sparse or V-form; "
                f"solver={solver!r} is not available for them (use 'auto', 'dense', 'sparse' or 'vform')"
            )
        spec = build_general_spec(
            formula,
            data,
            cov=cov,
            cov_inverse=cov_inverse,
            weights=weights,
            residual=residual,
            correlated=correlated,
        )
        return _general_state(spec, solver)
    if solver == "vform":
        raise ModelError(
            "solver='vform' is the general engine's observation-space form, for structured models; "
            "with one variance per term use 'auto', 'dense', 'sparse' or 'spectral'"
        )
    engine, spec = choose_engine(build_spec(formula, data, cov=cov, cov_inverse=cov_inverse), solver)
    return _prepare_engine(spec, engine).state


def fit(
    formula: str | ParsedFormula,
    data: pd.DataFrame,
    cov: dict | None = None,
    method: str = "reml",
    *,
    cov_inverse: dict | None = None,
    start=None,
    max_iter: int = 200,
    sigma2=None,
    solver: str = "auto",
    pev: bool | str = "auto",
    weights: str | None = None,
    residual: str | None = None,
    correlated=None,
    x0=None,
    tol: float = 1e-10,
    pev_samples: int = 200,
    seed: int = 0,
) -> FitResult:
    """Fit a linear mixed model y = Xb + Σₖ Zₖuₖ + e by REML (or ML).

    Parameters
    ----------
    formula : str
        lme4-style: ``"Yield ~ Env + (1|Name)"``; crossed ``(1|plate) + (1|sample)``;
        nested ``(1|batch/cask)`` or ``(1|batch:cask)``; ``0 +`` drops the intercept.
    data : DataFrame
        One row per record.
    cov : dict, optional
        ``{group: K}`` known covariance of a grouping factor's effects, K a DataFrame
        indexed by level ids or a :class:`~henderson.Relationship`. Levels in K with no
        records still get BLUPs.
    method : {"reml", "ml"}
    cov_inverse : dict, optional
        ``{group: Kinv}`` the inverse covariance, e.g. a sparse pedigree A⁻¹.
    start : array, optional
        Starting variance components (terms in formula order, then residual). The
        spectral solver, whose search is one-dimensional in σ²_g/σ²ₑ, centres its
        initial grid on their ratio.
    max_iter : int
        AI-REML iterations (dense, sparse) or Brent iterations (spectral); reaching it
        is a :class:`~henderson.ConvergenceWarning` carrying the log.
    sigma2 : array, optional
        Fixed variance components: skip estimation and solve the MME at these values
        (BLUP with known variances, as in Mrode's textbook examples).
    solver : {"auto", "dense", "spectral", "sparse", "pcg"}
        ``"auto"`` chooses, and ``result.solver`` reports the choice:

        - ``"pcg"`` (matrix-free preconditioned conjugate gradients, iteration on
          data; :mod:`henderson.solvers.pcg`) when ``sigma2`` is given and the MME
          have more than ``PCG_THRESHOLD`` equations (a note says so). Asked for
          without ``sigma2``, it estimates them by stochastic REML (Monte Carlo
          AI-REML with PCG solves, seeded by ``seed``; ``variance_components`` gains
          an ``mc_se`` column). At given variances it also solves multi-trait
          (``cbind``, missing traits), correlated (``correlated=``) and structured
          random-intercept models, and a single-step H⁻¹ given in blocks
          (:mod:`henderson.api_pcg_general`; ``"auto"`` likewise above the threshold);

        - ``"spectral"`` when the model has one random term with a dense known
          covariance (GBLUP): ZKZ' is reduced to tridiagonal form once and each REML
          evaluation is O(n);
        - ``"sparse"`` (sparse MME, supernodal Cholesky with selected inverse,
          :mod:`henderson.linalg`) when there is no dense covariance and either a term
          has a sparse K⁻¹ with ``SPARSE_INVERSE_LEVELS`` levels or more (animal
          models with A⁻¹) or more than ``SPARSE_THRESHOLD`` random-effect equations
          remain after the largest iid term is eliminated (big crossed factors). A
          dense K whose inverse is sparse (a pedigree A given dense) is inverted
          once and takes the same route (:mod:`henderson.solvers.kernel_inverse`);
        - ``"dense"`` otherwise: the dense MME with the largest iid term's diagonal
          block eliminated first (exact AI-REML score, exact PEV).
    pev : bool or "auto"
        Compute prediction error variances (always for the dense solver; for the
        spectral solver it costs O(n²N), so ``"auto"`` computes it up to 6,000 records).
        With the PCG solver exact PEV is not available: ``"sample"`` (or True) estimates
        it by sampling (Garcia-Cortes et al. 1995; :mod:`henderson.solvers.pev_sampling`
        and, for multi-trait, correlated, structured and H⁻¹-in-blocks models,
        :mod:`henderson.solvers.pev_sampling_general`; ``pev_samples`` simulated data
        sets, seeded by ``seed``; the method is named in the notes and in
        ``settings["pev_method"]``, each PEV's Monte Carlo SE in a ``pev_se`` column)
        and gives exact fixed-effect SEs from one extra solve per fixed-effect
        equation; "auto" skips both.
    x0 : array or FitResult, optional
        PCG only: warm start, an equation vector or a previous result (matched by
        ids and coefficient names).
    tol : float
        PCG only (single-trait, multi-trait and structured models): convergence at
        ‖r − Cx‖/‖r‖ <= tol.
    weights : str, optional
        Column of record weights: var(eᵢ) = σ²ₑ/wᵢ (e.g. deregressed proofs). Missing,
        zero or negative weights are an error naming the rows.
    residual : str, optional
        Column whose levels each get their own residual variance (``residual="Env"``).
    correlated : list of pairs, optional
        ``[("animal", "dam")]``: two random intercept terms on different grouping columns
        sharing levels (and one K) get an unstructured 2 × 2 Σ ⊗ K — Mrode's maternal
        model. The covariance goes with the first: ``cov_inverse={"animal": Ainv}``.

    Returns
    -------
    FitResult

    Notes
    -----
    Structured terms — ``(Days|Subject)``, ``(Days||Subject)``, ``us(0 + Env|Name)``,
    ``diag(...)``, ``cs(...)``, ``fa(..., d)``, ``us(leg(dim, 2)|animal)`` — and the
    three options above are fitted by the general engine (``result.solver`` is
    ``"dense-general"``, or ``"sparse-general"`` — the same equations on a sparse
    Cholesky factor, for pedigree A⁻¹ and many levels — or ``"vform-general"`` — the
    same likelihood on the n × n covariance of the records, for a dense K with fewer
    records than random equations; ``solver="dense"``/``"sparse"``/``"vform"``
    choose): AI-REML over θ (the elements of each Σ, see
    ``result.variance_components``), with ``result.covariances`` and
    ``result.correlations``. ``sigma2`` then takes θ in that table's order.

    Multi-trait models: ``"cbind(y1, y2) ~ 1 + (1|id)"`` with ``cov={"id": G}`` fits
    Var(u) = Σ_g ⊗ G, Var(e) = Σ_e ⊗ I on complete records by the multi-trait spectral
    solver (:mod:`henderson.multitrait`) and returns a
    :class:`~henderson.multitrait.MultiTraitResult`; ``sigma2`` is then a pair of
    t × t matrices (Σ_g, Σ_e). Records missing some traits, several terms, ``diag(1|g)``
    and A⁻¹ run on the general multi-trait engines (:mod:`henderson.multitrait.general`;
    with a dense K and missing traits the observation-space REML of
    :mod:`henderson.multitrait.vform` when it is the smaller problem);
    ``solver="mme"``/``"dense"``/``"sparse"``/``"vform"`` choose.

    Examples
    --------
    >>> from henderson.datasets import load_potato
    >>> res = fit("Yield ~ Env + (1|Name)", load_potato())
    >>> print(round(float(res.sigma2["Name"]), 4))
    4.8559
    """
    t0 = time.perf_counter()
    from .multitrait.formula import is_multitrait

    if is_multitrait(formula):  # cbind(y1, y2, ...): henderson.multitrait (result: MultiTraitResult)
        from .multitrait.formula import fit_formula

        return fit_formula(
            formula,
            data,
            cov=cov,
            cov_inverse=cov_inverse,
            method=method,
            solver=solver,
            sigma=sigma2,
            start=start,
            max_iter=max(max_iter, 500),
            pev=pev,
            tol=tol,
            pev_samples=pev_samples,
            seed=seed,
        )
    if _structured(formula, weights, residual, correlated):
        return fit_general(
            formula,
            data,
            cov=cov,
            cov_inverse=cov_inverse,
            method=method,
            start=start,
            max_iter=max_iter,
            theta=sigma2,
            weights=weights,
            residual=residual,
            correlated=correlated,
            solver=solver,
            t0=t0,
            tol=tol,
            pev=pev,
            pev_samples=pev_samples,
            seed=seed,
        )
    if sigma2 is not None and solver in ("pcg", "auto") and x0 is None:
        # an H⁻¹ given in blocks: PCG keeps its dense block apart (api_pcg_general.py)
        from .api_pcg_general import fit_blocks_pcg, has_blocks

        if has_blocks(cov_inverse):
            res = fit_blocks_pcg(
                formula, data, cov=cov, cov_inverse=cov_inverse, sigma2=sigma2, method=method, solver=solver, tol=tol,
                pev=pev, t0=t0, pev_samples=pev_samples, seed=seed,
            )  # fmt: skip
            if res is not None:
                return res
    spec = build_spec(formula, data, cov=cov, cov_inverse=cov_inverse)
    return fit_spec(
        spec,
        method=method,
        start=start,
        max_iter=max_iter,
        sigma2=sigma2,
        solver=solver,
        pev=pev,
        t0=t0,
        x0=x0,
        tol=tol,
        pev_samples=pev_samples,
        seed=seed,
    )


def fit_spec(
    spec,
    *,
    method: str = "reml",
    start=None,
    max_iter: int = 200,
    sigma2=None,
    solver: str = "auto",
    pev="auto",
    t0: float | None = None,
    x0=None,
    tol: float = 1e-10,
    pev_samples: int = 200,
    seed: int = 0,
) -> FitResult:
    """Fit a prepared :class:`~henderson.spec.model.ModelSpec` (see :func:`fit`).

    The solvers see y centred on its OLS fit and divided by the OLS residual SD, and
    the result is mapped back to the user's scale exactly (:mod:`henderson._scaling`),
    so that a trait with mean 1e5 and SD 1, or in units of 1e150, fits as well as a
    standardised one. A PCG warm start ``x0`` is on the user's scale, so that fit is
    solved on it as given.
    """
    from ._scaling import standardise, to_user, to_working

    pcg = dict(x0=x0, tol=tol, pev_samples=pev_samples, seed=seed)
    if x0 is not None:
        return _fit_working(
            spec, method=method, start=start, max_iter=max_iter, sigma2=sigma2, solver=solver, pev=pev, t0=t0, **pcg
        )
    work, scaling = standardise(spec)
    res = _fit_working(
        work,
        method=method,
        start=to_working(start, scaling),
        max_iter=max_iter,
        sigma2=to_working(sigma2, scaling),
        solver=solver,
        pev=pev,
        t0=t0,
        **pcg,
    )
    return to_user(res, spec, scaling, method.lower())


def _fit_working(
    spec,
    *,
    method: str = "reml",
    start=None,
    max_iter: int = 200,
    sigma2=None,
    solver: str = "auto",
    pev="auto",
    t0: float | None = None,
    x0=None,
    tol: float = 1e-10,
    pev_samples: int = 200,
    seed: int = 0,
) -> FitResult:
    """Fit a ModelSpec as given (no standardisation of y)."""
    t0 = time.perf_counter() if t0 is None else t0
    method = method.lower()
    if method not in ("reml", "ml"):
        raise ModelError(f"method must be 'reml' or 'ml', not {method!r}")
    if not spec.terms:
        raise ModelError("the formula has no random term such as (1|group); use ordinary least squares")
    t1 = time.perf_counter()
    engine, spec = choose_engine(spec, solver, sigma2=sigma2)
    if engine == "pcg":
        return fit_pcg(
            spec,
            sigma2,
            method=method,
            pev=pev,
            x0=x0,
            tol=tol,
            n_samples=pev_samples,
            seed=seed,
            t0=t0,
            t1=t1,
            auto=solver == "auto",
            start=start,
            max_iter=max_iter,
        )
    if x0 is not None:
        raise ModelError("x0 (a warm start) applies to solver='pcg' only; the direct solvers do not iterate")
    if engine == "spectral":
        return _fit_spectral(spec, method, sigma2, pev, t0, t1, start=start, max_iter=max_iter)
    # the protocol (solvers/protocol.py): prepare once, the optimiser sees only the
    # Prepared and its Evaluations, one result builder (assemble.fit_result)
    prepared = _prepare_engine(spec, engine)
    t2 = time.perf_counter()
    if sigma2 is not None:
        s = np.asarray(sigma2, dtype=float)
        if s.shape != (len(spec.terms) + 1,):
            raise ModelError(f"sigma2 needs {len(spec.terms) + 1} values (terms, then residual)")
        ev = prepared.evaluate(s, derivatives=True, method=method)
        iterations, converged, log, boundary = 0, True, pd.DataFrame(), []
    else:
        # variance components that cannot be told apart are an error, not an arbitrary split
        if isinstance(prepared.state, DenseMME):
            identifiability.check_dense(prepared.state)
        else:
            identifiability.simple_confounding(spec)
        opt = optimise(prepared, method=method, start=start, max_iter=max_iter)
        ev, iterations, converged, log, boundary = (
            opt.evaluation,
            opt.iterations,
            opt.converged,
            opt.log,
            opt.boundary,
        )
    t3 = time.perf_counter()
    run = assemble.Run(prepared.state.name, method, iterations, converged, log, boundary, sigma2 is None)
    result = assemble.fit_result(spec, prepared.with_pev(ev), run)
    if sigma2 is None and opt.residual_boundary:  # σ²ₑ → 0: reml/residual_boundary.py
        from .reml.residual_boundary import boundary_message, mark_residual_boundary

        result = mark_residual_boundary(
            result, boundary_message([t.name for k, t in enumerate(spec.terms) if k not in boundary])
        )
    return dataclasses.replace(result, timings=stage_timings(t0, spec=t1, prepare=t2, optimise=t3))


#: random-effect equations left after eliminating the largest iid term, above which
#: "auto" takes the sparse solver (a dense Cholesky of 4,000 costs ~0.2 s here).
SPARSE_THRESHOLD = 4000


#: a term with a sparse K⁻¹ (pedigree A⁻¹) and at least this many levels takes the
#: sparse solver: the dense one factors and inverts a dense C over all its levels
#: every iteration (gryphon, 1,309 animals: 3-6 s dense, 0.2 s sparse).
SPARSE_INVERSE_LEVELS = 500


def _prefers_sparse(spec) -> bool:
    if any(isinstance(t.covariance, Factored) for t in spec.terms):
        return False
    if any(
        isinstance(t.covariance, SparseInverse) and sp.issparse(t.penalty) and t.q >= SPARSE_INVERSE_LEVELS
        for t in spec.terms
    ):
        return True
    sizes = sorted((t.q for t in spec.terms if isinstance(t.covariance, Identity)), reverse=True)
    eliminated = sizes[0] if sizes else 0
    rest = sum(t.q for t in spec.terms) - eliminated
    return rest > SPARSE_THRESHOLD


def choose_engine(spec, solver: str = "auto", *, sigma2=None):
    """The engine ``fit`` uses for a :class:`~henderson.spec.model.ModelSpec` (one variance
    per term), and the spec it runs on: the rule documented at :func:`fit` (``solver=``).

    Shared by :func:`fit` and :func:`prepare`, so that both take the same engine.

    Returns
    -------
    engine : {"pcg", "spectral", "sparse", "dense"}
    spec : ModelSpec
        ``spec``, or under "auto" the same model with a dense K whose inverse is sparse
        (a pedigree A given dense) turned into that sparse K⁻¹ (:mod:`henderson.solvers.kernel_inverse`).

    Raises
    ------
    ModelError
        For an unknown ``solver``, or "spectral" on a model that is not one term with a dense K.
    """
    if solver not in ("auto", "dense", "spectral", "sparse", "pcg"):
        raise ModelError(f"solver must be 'auto', 'dense', 'spectral', 'sparse' or 'pcg', not {solver!r}")
    if not spec.terms:
        raise ModelError("the formula has no random term such as (1|group); use ordinary least squares")
    if solver == "pcg" or (solver == "auto" and sigma2 is not None and prefers_pcg(spec)):
        return "pcg", spec
    one_kernel = len(spec.terms) == 1 and isinstance(spec.terms[0].covariance, DenseKernel)
    if solver == "spectral" and not one_kernel:
        raise ModelError("the spectral solver needs exactly one random term with a dense covariance (cov=)")
    if one_kernel and solver in ("auto", "spectral"):
        return "spectral", spec
    if solver == "auto" and (inv_spec := sparse_inverse_spec(spec)) is not None:
        spec = inv_spec  # a dense K with a sparse inverse (pedigree A): solvers/kernel_inverse.py
    if solver == "sparse" or (solver == "auto" and _prefers_sparse(spec)):
        return "sparse", spec
    return "dense", spec


def _prepare_engine(spec, engine: str) -> Prepared:
    """:func:`~henderson.solvers.protocol.prepare` of a direct engine, after the memory check
    of the dense steps (an error naming the size instead of swapping)."""
    if engine in ("dense", "spectral"):
        check_memory(spec, engine)
    return prepare_solver(spec, engine)


def _fit_spectral(spec, method, sigma2, pev, t0, t1, *, start=None, max_iter=200) -> FitResult:
    """The one-kernel model on the spectral solver, through the protocol: prepared once
    (with the memory check), the one-dimensional search of ``reml/`` on the Prepared, and
    the one result builder (:func:`~henderson.assemble.fit_result`)."""
    term = spec.terms[0]
    prepared = _prepare_engine(spec, "spectral")
    t2 = time.perf_counter()
    if sigma2 is not None:
        s = np.asarray(sigma2, dtype=float)
        if s.shape != (2,):
            raise ModelError("sigma2 needs 2 values (the term, then the residual)")
        sg, se = float(s[0]), float(s[1])
        info = {"iterations": 0, "converged": True, "log": pd.DataFrame()}
    else:
        from .reml.residual_boundary import optimise_spectral

        k_mean = float(np.nanmean(term.k_diag))
        sg, se, info = optimise_spectral(prepared, method, max_iter=max_iter, start=start, k_mean=k_mean)
    t3 = time.perf_counter()
    want_pev = (spec.n <= 6000) if pev == "auto" else bool(pev)
    fixed = sigma2 is not None
    ev = prepared.evaluate([sg, se], method=method, derivatives=not fixed, pev=want_pev)
    boundary = [0] if sg == 0.0 else []
    run = assemble.Run(
        prepared.state.name,
        method,
        int(info.get("iterations", 0)),
        bool(info.get("converged", True)),
        info.get("log", pd.DataFrame()),
        boundary,
        estimated=not fixed,
        notes=() if want_pev else ("PEV and reliabilities not computed (pev=False)",),
    )
    result = assemble.fit_result(spec, ev, run)
    if info.get("residual_boundary"):
        from .reml.residual_boundary import mark_residual_boundary

        result = mark_residual_boundary(result, info["message"])
    return dataclasses.replace(result, timings=stage_timings(t0, spec=t1, prepare=t2, optimise=t3))


def _structured(formula, weights, residual, correlated) -> bool:
    """True when the model needs the general engine (several components, a structure,
    weights, residual groups or correlated terms)."""
    from .spec.formula import parse_formula

    parsed = parse_formula(formula)
    return any(t.structured for t in parsed.random) or weights is not None or residual is not None or bool(correlated)


#: structured models with a sparse K⁻¹ (pedigree A⁻¹) and at least this many random
#: equations go to the sparse general engine; with identity K only, above the second figure.
#: Below them one dense Cholesky of C costs little (m³/3 flops at m = 2,000: ~0.1 s).
GENERAL_SPARSE_MIN_EQUATIONS = (2000, 3000)

#: with a dense K (G) and every other K dense or identity, "auto" takes the V-form
#: (:mod:`henderson.solvers.general_vform`) when n < VFORM_MAX_RATIO × Σₖ Sₖqₖ: an
#: evaluation costs n³ there against m³ (m = Σₖ Sₖrₖ + p) on the dense C-form, so the
#: V-form is ≥ 2× cheaper below this ratio and the row-building overheads stay small.
VFORM_MAX_RATIO = 0.8


def _general_state(spec, solver: str):
    """The general engine for ``solver``: "auto" takes the sparse one
    (:mod:`henderson.solvers.general_sparse`) when no term has a dense K and the random
    equations reach ``GENERAL_SPARSE_MIN_EQUATIONS`` (the first figure when a term has a
    sparse K⁻¹, the second otherwise); a dense K (G) makes C dense, so the dense engine,
    or the V-form when the records are fewer than ``VFORM_MAX_RATIO`` × the random
    equations and no term enters through K⁻¹."""
    from .solvers.general import GeneralMME
    from .solvers.general_sparse import GeneralSparseMME
    from .solvers.general_vform import GeneralVForm, supported

    if solver == "vform":
        return GeneralVForm(spec)

    if solver == "auto":
        from .spec.levels import Factored, SparseInverse

        covs = [t.level.covariance for t in spec.terms]
        n_eq = sum(t.size * t.q for t in spec.terms)
        sparse_kinv = any(
            isinstance(c, SparseInverse) and sp.issparse(t.level.penalty) for c, t in zip(covs, spec.terms)
        )
        dense_k = any(isinstance(c, Factored) for c in covs)
        low, high = GENERAL_SPARSE_MIN_EQUATIONS
        solver = "sparse" if not dense_k and n_eq >= (low if sparse_kinv else high) else "dense"
        if dense_k and spec.n < VFORM_MAX_RATIO * n_eq and supported(spec) is None:
            from .solvers.memory import InsufficientMemoryError

            try:
                return GeneralVForm(spec)
            except InsufficientMemoryError:
                pass  # n × n too large here: the C-form's memory is set by the equations
    return GeneralSparseMME(spec) if solver == "sparse" else GeneralMME(spec)


def fit_general(
    formula,
    data,
    *,
    cov=None,
    cov_inverse=None,
    method="reml",
    start=None,
    max_iter=200,
    theta=None,
    weights=None,
    residual=None,
    correlated=None,
    solver="auto",
    t0=None,
    tol=1e-10,
    pev="auto",
    pev_samples: int = 200,
    seed: int = 0,
) -> FitResult:
    """Fit with the general engine, dense or sparse, or PCG at given θ (see :func:`fit`).

    ``pev``, ``pev_samples`` and ``seed`` apply to PCG (sampled PEV, exact fixed-effect
    SEs); the dense and sparse engines give exact PEV always."""
    from .reml.general import boundary_of, optimise_general
    from .spec.terms import build_general_spec

    t0 = time.perf_counter() if t0 is None else t0
    method = method.lower()
    if method not in ("reml", "ml"):
        raise ModelError(f"method must be 'reml' or 'ml', not {method!r}")
    if solver not in ("auto", "dense", "sparse", "vform", "pcg"):
        raise ModelError(
            f"structured models are fitted by the general engine, dense, sparse or V-form, or at given θ by PCG; "
            f"solver={solver!r} is not available for them (use 'auto', 'dense', 'sparse', 'vform' or 'pcg')"
        )
    spec = build_general_spec(
        formula, data, cov=cov, cov_inverse=cov_inverse, weights=weights, residual=residual, correlated=correlated
    )
    if not spec.terms:
        raise ModelError("the formula has no random term such as (1|group); use ordinary least squares")
    # at given θ, PCG by iteration on data (api_pcg_general.py; "auto" above PCG_THRESHOLD)
    from .api_pcg_general import fit_general_pcg, prefers_general_pcg

    auto_pcg = solver == "auto" and theta is not None and prefers_general_pcg(spec)
    if solver == "pcg" or auto_pcg:
        return fit_general_pcg(
            spec, theta, method=method, auto=auto_pcg, t0=t0, tol=tol, pev=pev, pev_samples=pev_samples, seed=seed
        )
    t1 = time.perf_counter()
    state = _general_state(spec, solver)
    prepared = Prepared.of(state)  # the protocol: the optimiser sees Prepared and Evaluation only
    t2 = time.perf_counter()
    if theta is not None:
        th = np.asarray(theta, dtype=float)
        if th.shape != (spec.n_theta,):
            raise ModelError(f"sigma2 needs {spec.n_theta} values: {spec.theta_names}")
        ev = prepared.evaluate(th, derivatives=True, method=method)
        iterations, converged, log, boundary = 0, True, pd.DataFrame(), boundary_of(state, th)
    else:
        opt = optimise_general(prepared, method=method, start=start, max_iter=max_iter)
        ev, iterations, converged, log, boundary = (
            opt.evaluation,
            opt.iterations,
            opt.converged,
            opt.log,
            opt.boundary,
        )
    t3 = time.perf_counter()
    run = assemble.Run(state.name, method, iterations, converged, log, boundary, theta is None)
    result = assemble.fit_result(spec, prepared.with_pev(ev), run)
    return dataclasses.replace(result, timings=stage_timings(t0, spec=t1, prepare=t2, optimise=t3))

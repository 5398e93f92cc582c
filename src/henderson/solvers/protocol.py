"""One protocol for every REML solver: prepare once, then evaluate at θ.

``prepare(spec, solver)`` does the work that does not depend on the parameters (cross
products, symbolic analysis, tridiagonal reduction) and returns a :class:`Prepared`.
``prepared.evaluate(theta)`` returns one :class:`Evaluation`: −2 log L, and on request the
score ∂ℓ/∂θ, the average-information matrix, the solutions (b̂ and the BLUPs of every
term in level space) and their PEV. θ is the solver's parameter vector, named by
``prepared.names``:

- ``"dense"``, ``"sparse"``: the variances (σ²₁ … σ²_K, σ²ₑ) of a :class:`~henderson.spec.model.ModelSpec`;
- ``"spectral"``: (σ²_g, σ²ₑ) of a one-kernel ModelSpec;
- ``"general"``: the structure parameters θ of a :class:`~henderson.spec.terms.GeneralSpec`
  (ASReml order, :meth:`~henderson.solvers.general.GeneralMME.names`); ``"general_sparse"``
  the same on the sparse factor (:class:`~henderson.solvers.general_sparse.GeneralSparseMME`)
  and ``"general_vform"`` in observation space (:class:`~henderson.solvers.general_vform.GeneralVForm`).

The optimisers behind ``henderson.fit`` see only this class. AI-REML on the dense and
sparse MME (:func:`henderson.reml.optimize.optimise`) uses :meth:`Prepared.evaluate`, and
for its fallbacks :meth:`Prepared.em_step` (the EM-REML update), :meth:`Prepared.boundary_score`
(the re-entry test of a variance held at 0), :meth:`Prepared.release` / :meth:`Prepared.restore`
(drop and rebuild an evaluation's factor, so that one factor at a time is alive) and
:meth:`Prepared.active`; the structured-model optimiser (:func:`henderson.reml.general.optimise_general`)
uses ``evaluate``, :meth:`Prepared.complete` (derivatives of an accepted point from the
factor it kept), ``em_step`` and :meth:`Prepared.start`; the one-dimensional search of the
spectral solver (:func:`henderson.reml.spectral_search.search`) uses ``evaluate`` (its
Newton steps, ``solutions=False``), :meth:`Prepared.profiled` and
:meth:`Prepared.profiled_at_zero` (−2 log L with σ²ₑ profiled out, over h = σ²_g/σ²ₑ and
at h = 0) and :meth:`Prepared.check_identifiable`. The solver-native evaluation (block
factor, selected inverse, C⁻¹) rides along as ``Evaluation.detail`` for the result
builders' adapters (:meth:`Prepared.with_pev`); every single-trait fit's result is built by
one function, :func:`henderson.assemble.fit_result`, from an Evaluation. See docs/theory.md,
"Solver protocol".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..spec.levels import Factored

SOLVERS = ("dense", "sparse", "spectral", "general", "general_sparse", "general_vform")


@dataclass(frozen=True, eq=False)
class Evaluation:
    """A solver at one θ.

    Attributes
    ----------
    theta : ndarray, shape (k,)
    method : {"reml", "ml"}
    m2ll : float
        −2 log L with lme4's constants.
    score : ndarray, shape (k,) or None
        ∂ℓ/∂θ (exact), with ``derivatives=True``.
    ai : ndarray, shape (k, k) or None
        Average-information matrix, with ``derivatives=True``.
    fixed : ndarray, shape (p,) or None
        b̂ (GLS); None when evaluated with ``solutions=False`` by a solver that skips it.
    blups : dict of str to ndarray
        Per term, BLUPs in level space: shape (q,) for one component, (q, S) for S.
    pev : dict of str to ndarray or None
        PEV of the BLUPs (same shapes), with ``pev=True``.
    residuals : ndarray, shape (n,) or None
        ê = y − Xb̂ − Zû (None when evaluated with ``solutions=False`` by a solver that skips it).
    detail : object
        The solver-native evaluation (for result builders and the optimiser's EM step).
    fixed_var : ndarray, shape (p,) or None
        Sampling variances of b̂, diag((X'V⁻¹X)⁻¹) = σ²ₑ diag(C⁻¹) on the fixed
        equations, with ``pev=True`` (dense and sparse MME) or always (spectral: p × p);
        None otherwise.
    pev_se : dict of str to ndarray or None
        Monte Carlo SE of sampled PEV (PCG with ``pev="sample"``), shaped as ``pev``
        flattened level-major; None for exact PEV.
    fitted : ndarray, shape (n,) or None
        Xb̂ + Zû when the solver computes it directly (PCG: T x); None: y − ê.
    """

    theta: np.ndarray
    method: str
    m2ll: float
    score: np.ndarray | None
    ai: np.ndarray | None
    fixed: np.ndarray
    blups: dict
    pev: dict | None
    residuals: np.ndarray | None
    detail: Any
    fixed_var: np.ndarray | None = None
    pev_se: dict | None = None
    fitted: np.ndarray | None = None

    @property
    def sigma2(self) -> np.ndarray:
        """θ of the variance-component solvers ("dense", "sparse", "spectral"): σ²."""
        return self.theta


class Prepared:
    """A solver prepared for one model; :meth:`evaluate` at any θ.

    Attributes
    ----------
    name : str
        One of :data:`SOLVERS`.
    state : object
        The solver object (:class:`~henderson.solvers.dense.DenseMME`,
        :class:`~henderson.solvers.sparse.SparseMME`,
        :class:`~henderson.solvers.spectral.SpectralSolver`,
        :class:`~henderson.solvers.general.GeneralMME`,
        :class:`~henderson.solvers.general_sparse.GeneralSparseMME`,
        :class:`~henderson.solvers.general_vform.GeneralVForm`).
    names : list of str
        Names of the entries of θ.
    """

    def __init__(self, name: str, state, names: list[str]) -> None:
        self.name, self.state, self.names = name, state, list(names)

    @classmethod
    def of(cls, state) -> Prepared:
        """The Prepared of a solver object made elsewhere (dense, sparse or spectral, a general engine)."""
        from .dense import DenseMME
        from .general_sparse import GeneralSparseMME
        from .general_vform import GeneralVForm
        from .sparse import SparseMME
        from .spectral import SpectralSolver

        if isinstance(state, GeneralSparseMME):
            return cls("general_sparse", state, list(state.spec.theta_names))
        if isinstance(state, GeneralVForm):
            return cls("general_vform", state, list(state.spec.theta_names))
        if hasattr(state.spec, "theta_names"):  # GeneralMME
            return cls("general", state, list(state.spec.theta_names))
        if isinstance(state, SpectralSolver):
            return cls("spectral", state, [f"sigma2_{state.term}", "sigma2_Residual"])
        if isinstance(state, DenseMME):
            name = "dense"
        elif isinstance(state, SparseMME) or type(state).__name__ == "SparseMME":
            name = "sparse"  # by name too: benchmarks/bench_sparse.py loads an earlier version
        else:
            raise TypeError(f"no protocol adapter for {type(state).__name__}")
        return cls(name, state, [f"sigma2_{t.name}" for t in state.spec.terms] + ["sigma2_Residual"])

    @property
    def spec(self):
        """The model (:class:`~henderson.spec.model.ModelSpec` or ``GeneralSpec``)."""
        return self.state.spec

    @property
    def par_tol(self) -> float:
        """Smallest relative change of θ the solver resolves (1e-7 with a numerical score)."""
        return float(getattr(self.state, "par_tol", 1e-8))

    def evaluate(
        self, theta, *, method: str = "reml", derivatives: bool = False, pev: bool = False, solutions: bool = True
    ) -> Evaluation:
        """The solver at θ (see the module notes).

        ``solutions=False`` is for an optimiser that needs −2 log L (and the derivatives) only:
        a solver whose b̂ and BLUPs cost more than its likelihood may leave ``fixed``,
        ``blups`` and ``residuals`` None (the spectral solver: O(n²) rotations and an
        N × N product against O(n)); the others return them anyway, as by-products.
        """
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (len(self.names),):
            raise ValueError(f"theta needs {len(self.names)} values ({', '.join(self.names)}), got shape {theta.shape}")
        if self.name == "spectral":
            return self._evaluate_spectral(theta, method, derivatives, pev, solutions)
        return getattr(self, f"_evaluate_{self.name}")(theta, method, derivatives, pev)

    # -- one adapter per solver ------------------------------------------------------
    def _mme(self, theta, method, derivatives, want_pev):
        """Dense and sparse MME: solution vector in ``index`` order, terms at ``spans``."""
        ev = self.state.evaluate(theta, derivatives=derivatives or want_pev, method=method)
        return self._wrap_mme(ev, method, derivatives, want_pev)

    def _wrap_mme(self, ev, method, derivatives, want_pev):
        st = self.state
        theta = ev.sigma2
        se = theta[-1]
        nz = len(ev.index) - st.spec.p
        blups, pevs = {}, {}
        diag = st.inverse_diag(ev) if (want_pev and self.name == "sparse") else None
        for k, t in enumerate(st.spec.terms):
            if not ev.active[k]:
                blups[t.name], pevs[t.name] = np.zeros(t.q), np.zeros(t.q)
                continue
            a, b = ev.spans[k]
            v = ev.solution[a:b]
            F = t.factor if isinstance(t.covariance, Factored) else None
            blups[t.name] = F @ v if F is not None else v
            if want_pev:
                if diag is not None:
                    pevs[t.name] = diag[a:b] * se
                elif F is not None:
                    pevs[t.name] = np.einsum("ij,ij->i", F @ (ev.inverse_block(k) * se), F)
                else:
                    pevs[t.name] = ev.inverse_diag(k) * se
        ai = ev.ai if ev.ai is not None or not derivatives else st.average_information(ev)
        fixed_var = None
        if want_pev:
            fixed_diag = diag[nz:] if diag is not None else np.diag(ev.fixed_cov())
            fixed_var = np.maximum(fixed_diag, 0) * se
        return Evaluation(
            theta,
            method,
            float(ev.m2ll),
            ev.score if derivatives else None,
            ai if derivatives else None,
            ev.solution[nz:],
            blups,
            pevs if want_pev else None,
            np.asarray(ev.residuals),
            ev,
            fixed_var,
        )

    _evaluate_dense = _mme
    _evaluate_sparse = _mme

    # -- what the variance-component optimiser needs besides evaluate (dense, sparse) --
    def active(self, ev: Evaluation) -> np.ndarray:
        """(K,) bool: the terms in the MME at ``ev`` (σ²ₖ > 0; a term at 0 leaves them)."""
        return ev.theta[:-1] > 0

    def em_step(self, ev: Evaluation) -> np.ndarray:
        """The EM-REML update of σ² from ``ev`` (evaluated with its factor):

        σ²ₖ ← [ûₖ'Pₖûₖ + σ²ₑ tr(PₖC^{kk})]/qₖ (Pₖ = I or K⁻¹, C^{kk} of the unscaled C,
        C_zz for ML), σ²ₑ ← y'ê/(n − p) (REML; /n for ML). Terms at 0 stay there. For
        the general engines, θ from their EM targets (:meth:`_em_general`).

        Raises
        ------
        ModelError
            With ``residual_at_zero`` set, when the update would put σ²ₑ at 0.
        """
        if self.name.startswith("general"):
            return self._em_general(ev)
        from .identifiability import residual_at_zero_error

        st, native = self.state, ev.detail
        spec = st.spec
        se = ev.theta[-1]
        new = ev.theta.copy()
        zz = ev.method != "reml"
        for k in np.flatnonzero(native.active):
            a, b = native.spans[k]
            u = native.solution[a:b]
            P = st.penalties[k]
            quad = float(u @ u) if P is None else float(u @ P @ u)
            new[k] = (quad + se * st.trace(native, k, zz)) / (b - a)
        dof = st.n - st.p if ev.method == "reml" else st.n
        new[-1] = float(spec.y @ native.residuals) / dof
        if not new[-1] > 1e-12 * float(np.var(spec.y)):
            raise residual_at_zero_error(st.n, f"{sum(t.q for t in spec.terms)} random levels")
        return new

    def _em_general(self, ev: Evaluation) -> np.ndarray:
        """EM-REML of a general engine: Σₖ ← (Qₖ + Tₖ)/rₖ projected on term k's structure
        (``Structure.em``), residual variances ← (ê'D_gê + tr(C⁻¹M_g))/n_g; the targets are
        computed with the derivatives (``detail.em``)."""
        spec = self.spec
        theta = ev.theta.copy()
        for k, t in enumerate(spec.terms):
            sl = spec.slices[k]
            theta[sl] = t.structure.em(ev.detail.em["terms"][k], theta[sl])
        theta[spec.slices[-1]] = ev.detail.em["residual"]
        return theta

    def boundary_score(self, ev: Evaluation, k: int) -> tuple[float, float]:
        """(∂ℓ/∂σ²ₖ, AIₖₖ) at σ²ₖ = 0 for a term k held at 0, of ``ev.method``'s likelihood
        (REML or ML): a positive score means the likelihood rises away from the boundary
        (the solver's ``boundary_score``)."""
        return self.state.boundary_score(ev.detail, k, method=ev.method)

    def release(self, ev: Evaluation) -> Evaluation:
        """``ev`` without its factor and selected inverse (sparse MME, sparse general engine:
        they are the memory an evaluation holds), else ``ev``; :meth:`restore` (MME) or the
        general engine itself, when its results need them, makes them again at the same θ."""
        native = ev.detail
        if self.name.startswith("general"):
            if getattr(native, "selinv", None) is None:  # the dense general engine keeps its factor
                return ev
        elif not _holds_factor(native) or native.factor is None:
            return ev
        return dataclasses.replace(ev, detail=dataclasses.replace(native, factor=None, selinv=None))

    def restore(self, ev: Evaluation) -> Evaluation:
        """``ev`` with its factor (re-evaluated at the same θ) if :meth:`release` dropped it."""
        if _holds_factor(ev.detail) and ev.detail.factor is None:
            return self.evaluate(ev.theta, method=ev.method, derivatives=True)
        return ev

    def with_pev(self, ev: Evaluation) -> Evaluation:
        """``ev`` with the PEV of the BLUPs, from its own factor (no new evaluation)."""
        if ev.pev is not None:
            return ev
        if self.name.startswith("general"):
            return self._general_pev(ev)
        if self.name not in ("dense", "sparse"):
            return self.evaluate(ev.theta, method=ev.method, derivatives=ev.score is not None, pev=True)
        return self._wrap_mme(self.restore(ev).detail, ev.method, ev.score is not None, True)

    def _general_pev(self, ev: Evaluation) -> Evaluation:
        """A general engine's ``ev`` with BLUPs and PEV (``term_blups``), b̂ and its sampling
        variances (``fixed``: the fixed block of C⁻¹, (X'V⁻¹X)⁻¹ in the V-form), from the
        native evaluation (its factor, or made again by the engine when it was released)."""
        st, native = self.state, ev.detail
        blups, pevs = {}, {}
        for k, t in enumerate(st.spec.terms):
            U, P = st.term_blups(native, k)
            blups[t.name], pevs[t.name] = (U[:, 0], P[:, 0]) if t.size == 1 else (U, P)
        b, vb = st.fixed(native)
        return dataclasses.replace(ev, fixed=b, blups=blups, pev=pevs, fixed_var=np.maximum(np.diag(vb), 0.0))

    def _evaluate_spectral(self, theta, method, derivatives, want_pev, solutions=True):
        """The spectral solver: b̂, ĝ = σ²_g K Z'Py and ê = σ²ₑ Py from one solve, SE(b̂)² from
        (X'V⁻¹X)⁻¹ (p × p, always), PEV on request (O(n²N)); at σ²_g = 0 the BLUPs and
        their PEV are exactly 0 (not rounding noise, not −0.0)."""
        s = self.state
        ev = s.evaluate(theta, method=method, derivatives=derivatives)
        if not (solutions or want_pev):
            return Evaluation(theta, method, ev.m2ll, ev.score, ev.ai, None, {}, None, None, ev)
        sg, se = theta
        sol = s.solve(sg, se)
        g = sol["g"] if sg > 0 else np.zeros(s.K.shape[0])
        pev = None
        if want_pev:
            pev = {s.term: np.zeros(s.K.shape[0]) if sg == 0.0 else s.pev(sg, se, sol["cov_b"])}
        fixed_var = np.diag(sol["cov_b"]).copy()
        return Evaluation(
            theta, method, ev.m2ll, ev.score, ev.ai, sol["b"], {s.term: g}, pev, se * sol["Py"], ev, fixed_var
        )

    # -- what the one-dimensional search needs besides evaluate (spectral) -------------
    def profiled(self, log_h: float, method: str = "reml") -> tuple[float, float]:
        """(−2 log L, σ̂²ₑ) with σ²ₑ profiled out at h = σ²_g/σ²ₑ = exp(``log_h``): the
        objective of :func:`henderson.reml.spectral_search.search` (spectral solver)."""
        val, se = self.state._profiled(log_h, method)
        return float(val), float(se)

    def profiled_at_zero(self, method: str = "reml") -> tuple[float, float]:
        """(−2 log L, σ̂²ₑ) at the boundary h = 0 (V = σ²ₑ I, the OLS fit), spectral solver."""
        val, se = self.state._boundary_value(method)
        return float(val), float(se)

    def check_identifiable(self, method: str = "reml") -> None:
        """ModelError when σ²_g and σ²ₑ cannot be told apart (spectral solver:
        :func:`~henderson.solvers.identifiability.check_spectral`)."""
        from .identifiability import check_spectral

        check_spectral(self.state, self.state.term, method)

    def _evaluate_general(self, theta, method, derivatives, want_pev):
        ev = self.state.evaluate(theta, method=method, derivatives=derivatives or want_pev)
        return self._wrap_general(ev, method, derivatives, want_pev)

    def _wrap_general(self, ev, method, derivatives, want_pev):
        st = self.state
        blups, pevs = {}, {}
        for k, t in enumerate(st.spec.terms):
            if want_pev:
                U, P = st.term_blups(ev, k)
                pevs[t.name] = P[:, 0] if t.size == 1 else P
            else:
                r, S = st.ranks[k], t.size
                a, b = st.offsets[k], st.offsets[k + 1]
                V = ev.solution[a:b].reshape(S, r).T
                U = t.level.factor @ V if isinstance(t.level.covariance, Factored) else V
            blups[t.name] = U[:, 0] if t.size == 1 else U
        fixed = ev.solution[st.offsets[-1] :]
        return Evaluation(
            np.asarray(ev.theta, dtype=float),
            method,
            float(ev.m2ll),
            ev.score if derivatives else None,
            ev.ai if derivatives else None,
            fixed,
            blups,
            pevs if want_pev else None,
            np.asarray(ev.residuals),
            ev,
        )

    # -- what the structured-model optimiser needs besides evaluate (general engines) --
    def start(self) -> np.ndarray:
        """Starting θ of a general engine (``GeneralMME.start``)."""
        return self.state.start()

    def complete(self, ev: Evaluation) -> Evaluation:
        """``ev`` with score and AI: from the factor it kept (``with_derivatives``) when the
        engine can, else by evaluating again with derivatives."""
        if ev.score is not None:
            return ev
        add = getattr(self.state, "with_derivatives", None)
        if add is not None:
            native = add(ev.detail)
        else:
            native = self.state.evaluate(ev.theta, derivatives=True, method=ev.method)
        wrap = self._wrap_general_vform if self.name == "general_vform" else self._wrap_general
        return wrap(native, ev.method, True, False)

    _evaluate_general_sparse = _evaluate_general  # same fields (solvers/general_sparse.py)

    def _evaluate_general_vform(self, theta, method, derivatives, want_pev):
        """The V-form (solvers/general_vform.py): BLUPs (Σ ⊗ K)Z'Py, PEV from P."""
        ev = self.state.evaluate(theta, method=method, derivatives=derivatives or want_pev)
        return self._wrap_general_vform(ev, method, derivatives, want_pev)

    def _wrap_general_vform(self, ev, method, derivatives, want_pev):
        st = self.state
        blups, pevs = {}, {}
        for k, t in enumerate(st.spec.terms):
            U = st.blups(ev, k)
            blups[t.name] = U[:, 0] if t.size == 1 else U
            if want_pev:
                P = st.pev(ev, k)
                pevs[t.name] = P[:, 0] if t.size == 1 else P
        return Evaluation(
            np.asarray(ev.theta, dtype=float),
            method,
            float(ev.m2ll),
            ev.score if derivatives else None,
            ev.ai if derivatives else None,
            ev.fixed,
            blups,
            pevs if want_pev else None,
            np.asarray(ev.residuals),
            ev,
        )


def prepare(spec, solver: str = "dense") -> Prepared:
    """Prepare ``solver`` for ``spec`` once (see the module notes).

    Parameters
    ----------
    spec : ModelSpec or GeneralSpec
        A :class:`~henderson.spec.model.ModelSpec` for "dense", "sparse" and "spectral"
        (one term with a dense K), a :class:`~henderson.spec.terms.GeneralSpec` for "general".
    solver : {"dense", "sparse", "spectral", "general", "general_sparse", "general_vform"}

    Returns
    -------
    Prepared
    """
    if solver == "dense":
        from .dense import DenseMME

        state: Any = DenseMME(spec)
    elif solver == "sparse":
        from .sparse import SparseMME

        state = SparseMME(spec)
    elif solver == "spectral":
        from .spectral import SpectralSolver

        return Prepared.of(SpectralSolver.from_spec(spec))
    elif solver == "general":
        from .general import GeneralMME

        state = GeneralMME(spec)
        return Prepared("general", state, list(spec.theta_names))
    elif solver == "general_sparse":
        from .general_sparse import GeneralSparseMME

        return Prepared("general_sparse", GeneralSparseMME(spec), list(spec.theta_names))
    elif solver == "general_vform":
        from .general_vform import GeneralVForm

        return Prepared("general_vform", GeneralVForm(spec), list(spec.theta_names))
    else:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    return Prepared(solver, state, [f"sigma2_{t.name}" for t in spec.terms] + ["sigma2_Residual"])


def _holds_factor(native) -> bool:
    """A native evaluation that keeps a factor and a selected inverse (the sparse MME's)."""
    return dataclasses.is_dataclass(native) and {"factor", "selinv"} <= {f.name for f in dataclasses.fields(native)}

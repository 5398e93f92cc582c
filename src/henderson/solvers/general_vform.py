"""Observation-space ("V-form") evaluation of the general model: cheaper when records are few.

Model and parameters are those of the general engine (:mod:`henderson.solvers.general`,
docs/theory.md "The general engine"): y = Xb + Σₖ Zₖuₖ + e, Var(vec Uₖ) = Σₖ(θ) ⊗ Kₖ,
R = diag(σ²_{g(i)}/wᵢ). Instead of the m equations of C this module works with the
n × n covariance of the records (docs/theory.md, "V-form of the general engine"):

    V = Σₖ Eₖ (Σ̃ₖ ∘ K̃ₖ) Eₖ' + R,

over the *pairs* p = (record i, component a) with zᵢₐ ≠ 0 of term k (component-major):
K̃ₖ[p, p'] = z_p z_p' Kₖ[c_p, c_p'] (formed once), Σ̃ₖ[p, p'] = Σₖ[a_p, a_p'], and Eₖ the
0/1 map from pairs to records. With V = LL' (one ``dpotrf``):

- −2 log L_REML = (n − p) log 2π + log|V| + log|X'V⁻¹X| + y'Py, P = V⁻¹ − V⁻¹X(X'V⁻¹X)⁻¹X'V⁻¹
  (ML: n log 2π + log|V| + y'Py); the same number as the C-form's log|R| + log|G| + log|C|;
- α = Py = V⁻¹(y − Xb̂), b̂ = (X'V⁻¹X)⁻¹X'V⁻¹y (GLS), ê = Rα, ûₖ = (Σₖ ⊗ Kₖ)Zₖ'α;
- score: ∂ℓ/∂θⱼ = −½[tr(P V̇ⱼ) − α'V̇ⱼα]. For θⱼ of term k with Dⱼ = ∂Σₖ/∂θⱼ,
  tr(P V̇ⱼ) = Σ_ab Dⱼ[a, b] T[a, b] and α'V̇ⱼα = Σ_ab Dⱼ[a, b] Q[a, b] with
  T[a, b] = Σ (P[recₐ, rec_b] ∘ K̃_ab) (elementwise sum, P from one inverse of L: O(n²) per
  term, shared by all its parameters) and Q[a, b] = α_a'K̃_ab α_b. For a residual group,
  V̇_g = diag(1/wᵢ, i ∈ g): tr = Σ_{i∈g} P_ii/wᵢ, quadratic Σ_{i∈g} αᵢ²/wᵢ. ML: V⁻¹ for P
  in the traces;
- AI_ij = ½ wᵢ'P wⱼ with wⱼ = V̇ⱼα (n-vectors; ML: V⁻¹ for P), one n × n_θ product;
- EM targets from the score identity (the C-form's (Q + T)/r, r = number of level
  equations of the term): Σ − Σ(T − Q)Σ/r, and σ²_g − σ⁴_g(tr − quad)/n_g;
- PEV (diagonal of Var(u − û) = Σ ⊗ K − Cov(u, y)P Cov(y, u), REML: the C-form's C⁻¹
  random block): per component a, Yₐ = Σ_b Σ_ab Z_b' (q × n, sparse), Mₐ = YₐPYₐ' (q × q),
  PEVₐ = Σ_aa diag(K) − rowsum((K Mₐ) ∘ K); O(N n + q³) per component, no (Sq) × (Sq) matrix.

Cost of one evaluation: n³/3 (``dpotrf``) for −2 log L; with derivatives + 2n³/3 (V⁻¹: ``dpotri``, ``solvers/_spd.py``)
+ O(S N²) + n² n_θ for the AI. The dense C-form costs m³ (m = Σₖ Sₖ rₖ + p), so this form
wins when n is well below m (``api.VFORM_MAX_RATIO``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

from .._threads import blas_threads_for
from ..errors import ModelError, NotPositiveDefiniteError
from ..spec.levels import DenseKernel, Factored, Identity
from ..spec.terms import GeneralSpec
from ._spd import inverse_from_cholesky
from ._spd import mirror_lower as _mirror_lower  # noqa: F401  (moved to _spd; tests import it here)
from .general import GeneralMME, residual_variances

LOG2PI = float(np.log(2 * np.pi))


def supported(spec: GeneralSpec) -> str | None:
    """None when the V-form can fit ``spec``, else why not (for the error and the router)."""
    res = spec.residual
    if res.unit is not None or res.structure.kind not in ("scalar", "diag"):
        return "a residual covariance across the traits of a unit (the V-form fits diagonal residuals)"
    for t in spec.terms:
        if not isinstance(t.level.covariance, (Identity, Factored)):
            return f"term {t.name!r} enters through K⁻¹ (the V-form needs K itself: give cov=, not cov_inverse=)"
    return None


def vform_bytes(spec: GeneralSpec) -> int:
    """Upper bound of the bytes the V-form holds: K̃ₖ (Nₖ × Nₖ) per term, and V, its factor,
    L⁻¹ and P (four n × n) during an evaluation with derivatives."""
    pairs = [int(np.count_nonzero(t.z)) for t in spec.terms]
    return 8 * (sum(N * N for N in pairs) + 4 * spec.n * spec.n)


def check_vform_memory(spec: GeneralSpec, available: int | None = None) -> None:
    """:class:`~henderson.solvers.memory.InsufficientMemoryError` when the V-form would not fit."""
    from .._memory import available_bytes
    from .memory import FRACTION, InsufficientMemoryError

    need = vform_bytes(spec)
    have = available_bytes() if available is None else available
    if need > FRACTION * have:
        raise InsufficientMemoryError(
            f"the V-form general engine (n × n covariance of the {spec.n:,} records) needs about "
            f"{need / 2**30:.1f} GiB of memory, but {have / 2**30:.1f} GiB is available: use solver='dense' "
            "or 'sparse' (memory set by the random equations, not the records)"
        )


def _inverse_from_cholesky(L: np.ndarray, how: str | None = None) -> np.ndarray:
    """V⁻¹ from V = LL' (:func:`henderson.solvers._spd.inverse_from_cholesky`; dpotri at
    every size since benchmarks/results/cform_inverse.md, which measured it faster than
    dtrtri + dsyrk at 2,000 and 5,000 rows)."""
    return inverse_from_cholesky(L, how, what="V")


def _index(rec: np.ndarray):
    """A slice when ``rec`` is a contiguous increasing range (cheap views), else the array."""
    if len(rec) and rec[-1] - rec[0] + 1 == len(rec) and np.all(np.diff(rec) == 1):
        return slice(int(rec[0]), int(rec[-1]) + 1)
    return rec


@dataclass
class _Term:
    """One term in pair space: records ``rec`` (N,), level ``codes`` (N,), loadings ``z``
    (N,), component blocks ``bounds`` (S + 1,), K̃ (N × N), K (q × q, None for iid)."""

    rec: np.ndarray
    codes: np.ndarray
    z: np.ndarray
    bounds: np.ndarray
    Kz: np.ndarray
    K: np.ndarray | None
    idx: list = field(default_factory=list)  # per component: slice or array into records

    def blk(self, a: int) -> slice:
        return slice(int(self.bounds[a]), int(self.bounds[a + 1]))


@dataclass(frozen=True, eq=False)
class VFormEvaluation:
    """The V-form at one θ (fields as :class:`~henderson.solvers.general.GeneralEvaluation`).

    ``alpha`` is Py (records in the engine's order), ``fixed``/``vb`` b̂ and (X'V⁻¹X)⁻¹;
    ``factor`` keeps (L, residual variances, V⁻¹X) for :meth:`GeneralVForm.with_derivatives`;
    ``pmat`` is P (REML) or V⁻¹ (ML) once derivatives are computed, for the PEV.
    """

    theta: np.ndarray
    method: str
    m2ll: float
    fixed: np.ndarray
    vb: np.ndarray
    alpha: np.ndarray
    residuals: np.ndarray
    sigmas: list
    score: np.ndarray | None = None
    ai: np.ndarray | None = None
    em: dict | None = None
    factor: tuple | None = field(default=None, repr=False)
    pmat: np.ndarray | None = field(default=None, repr=False)
    cinv = None  # no C⁻¹ in this form (the result builders ask the state)


class GeneralVForm:
    """V-form evaluation of a :class:`~henderson.spec.terms.GeneralSpec` whose terms all have
    a dense K or K = I (same interface as :class:`~henderson.solvers.general.GeneralMME`).

    Records are reordered once so that the largest term whose records load on one
    component each has its components in contiguous blocks (cheap views of V and P);
    residuals and everything returned are in the spec's record order.

    Parameters
    ----------
    spec : GeneralSpec
    """

    name = "vform-general"

    def __init__(self, spec: GeneralSpec):
        why = supported(spec)
        if why is not None:
            raise ModelError(f"the V-form general engine cannot fit this model: {why}")
        check_vform_memory(spec)
        self.spec = spec
        n = spec.n
        self.n, self.p = n, spec.p
        self.slices = spec.slices
        self.theta_names = spec.theta_names
        self.order = self._record_order(spec)
        self.inverse_order = np.empty(n, dtype=np.int64)
        self.inverse_order[self.order] = np.arange(n)
        o = self.order
        self.y = np.asarray(spec.y, float)[o]
        self.X = np.asfortranarray(np.asarray(spec.X, float)[o])
        res = spec.residual
        w = res.weights if res.weights is not None else np.ones(n)
        self.w = np.asarray(w, float)[o]
        self.sum_logw = float(np.log(w).sum())
        self.gcodes = np.asarray(res.codes)[o]
        self.groups = [np.flatnonzero(self.gcodes == g) for g in range(len(res.groups))]
        self.terms = [self._pairs(t) for t in spec.terms]
        self._ranks: list | None = None
        self.m = n  # the order of the matrix factorised (for thread control and reports)

    # -- preparation (once) ---------------------------------------------------------
    @staticmethod
    def _record_order(spec) -> np.ndarray:
        """Records sorted (stably) by the component of the largest one-component-per-record
        term, so its component blocks are contiguous; identity order otherwise."""
        best, size = None, -1
        for t in spec.terms:
            nz = t.z != 0
            if t.size > 1 and np.all(nz.sum(axis=1) <= 1) and t.q > size:
                best, size = t, t.q
        if best is None:
            return np.arange(spec.n)
        nz = best.z != 0
        comp = np.where(nz.any(axis=1), nz.argmax(axis=1), best.size)
        return np.argsort(comp, kind="stable")

    def _pairs(self, t) -> _Term:
        z = t.z[self.order]
        codes = t.codes[self.order]
        recs, cs, zs, bounds = [], [], [], [0]
        for a in range(t.size):
            r = np.flatnonzero(z[:, a] != 0)
            recs.append(r)
            cs.append(codes[r, a])
            zs.append(z[r, a].astype(float))
            bounds.append(bounds[-1] + len(r))
        rec, cp, zp = np.concatenate(recs), np.concatenate(cs), np.concatenate(zs)
        cov = t.level.covariance
        if isinstance(cov, Identity):
            K = None
            Kz = (cp[:, None] == cp[None, :]).astype(float)
        else:
            K = np.asarray(cov.K if isinstance(cov, DenseKernel) else cov.as_dense(), dtype=float)
            Kz = K[np.ix_(cp, cp)]
        Kz *= zp[:, None]
        Kz *= zp[None, :]
        return _Term(rec, cp, zp, np.asarray(bounds), Kz, K, [_index(r) for r in recs])

    @property
    def ranks(self) -> list:
        """Level equations per component of each term (r of the C-form: rank of the factor
        of K, q for K = I); the EM step divides by it."""
        if self._ranks is None:
            self._ranks = [
                t.level.factor.shape[1] if isinstance(t.level.covariance, Factored) else t.q for t in self.spec.terms
            ]
        return self._ranks

    # -- θ helpers (shared with the dense engine) -------------------------------------
    def start(self) -> np.ndarray:
        """Starting θ, as :meth:`GeneralMME.start` (the OLS residual variance shared out)."""
        return GeneralMME.start(self)  # type: ignore[arg-type]

    def sigmas(self, theta) -> list:
        return [t.structure.sigma(theta[self.slices[k]]) for k, t in enumerate(self.spec.terms)]

    # -- evaluation -----------------------------------------------------------------
    def evaluate(self, theta, *, method: str = "reml", derivatives: bool = False) -> VFormEvaluation:
        """−2 log L (and score, AI, EM targets) at θ; see the module notes.

        Parameters
        ----------
        theta : array, shape (n_theta,)
            In the order of ``spec.theta_names``.
        method : {"reml", "ml"}
        derivatives : bool
        """
        if method not in ("reml", "ml"):
            raise ModelError(f"method must be 'reml' or 'ml', not {method!r}")
        with blas_threads_for(self.n):
            ev = self._evaluate(np.asarray(theta, dtype=float), method)
            return self._derivatives(ev) if derivatives else ev

    def covariance(self, theta) -> np.ndarray:
        """V(θ) (n × n, Fortran order, records in the engine's order), lower triangle
        exact and upper triangle too (every block is written)."""
        rs = residual_variances(self.spec, theta, self.slices[-1])
        n = self.n
        V = np.zeros((n, n), order="F")
        V[np.diag_indices(n)] = rs[self.gcodes] / self.w
        for k, t in enumerate(self.spec.terms):
            S = t.structure.sigma(theta[self.slices[k]])
            tm = self.terms[k]
            for a in range(t.size):
                for b in range(t.size):
                    if S[a, b] == 0.0:
                        continue
                    V[_sub(tm.idx[a], tm.idx[b])] += S[a, b] * tm.Kz[tm.blk(a), tm.blk(b)]
        return V

    def _evaluate(self, theta, method) -> VFormEvaluation:
        rs = residual_variances(self.spec, theta, self.slices[-1])
        sigmas = self.sigmas(theta)
        V = self.covariance(theta)
        L, info = lapack.dpotrf(V, lower=1, overwrite_a=1, clean=0)
        if info != 0:
            raise NotPositiveDefiniteError(
                "the covariance of the records V is not positive definite at these parameters"
            )
        logdet_v = 2.0 * float(np.log(np.diag(L)).sum())
        B = np.asfortranarray(np.column_stack([self.X, self.y]))
        ViB, info = lapack.dpotrs(L, B, lower=1)
        ViX, Viy = ViB[:, : self.p], ViB[:, self.p]
        XtViX = self.X.T @ ViX
        n, p = self.n, self.p
        if p:
            try:
                Lx = np.linalg.cholesky(XtViX)
            except np.linalg.LinAlgError as exc:
                raise NotPositiveDefiniteError(
                    "X'V⁻¹X is not positive definite: the fixed effects are not estimable"
                ) from exc
            vb = np.linalg.inv(XtViX)
            vb = 0.5 * (vb + vb.T)
            b = vb @ (self.X.T @ Viy)
            logdet_x = 2.0 * float(np.log(np.diag(Lx)).sum())
        else:
            vb, b, logdet_x = np.zeros((0, 0)), np.zeros(0), 0.0
        alpha = Viy - ViX @ b
        ypy = float(self.y @ alpha)
        if method == "reml":
            m2ll = (n - p) * LOG2PI + logdet_v + logdet_x + ypy
        else:
            m2ll = n * LOG2PI + logdet_v + ypy
        resid = (alpha * rs[self.gcodes] / self.w)[self.inverse_order]
        return VFormEvaluation(theta, method, float(m2ll), b, vb, alpha, resid, sigmas, factor=(L, rs, ViX))

    def with_derivatives(self, ev: VFormEvaluation) -> VFormEvaluation:
        """``ev`` with score, AI and EM targets added from the factor it kept (no new dpotrf)."""
        if ev.score is not None:
            return ev
        with blas_threads_for(self.n):
            return self._derivatives(ev)

    def _derivatives(self, ev: VFormEvaluation) -> VFormEvaluation:
        assert ev.factor is not None
        L, rs, ViX = ev.factor
        theta, alpha = ev.theta, ev.alpha
        Pm = _inverse_from_cholesky(L)
        if ev.method == "reml" and self.p:
            # P = V⁻¹ − V⁻¹X (X'V⁻¹X)⁻¹ X'V⁻¹, in place (one n × n rank-p update)
            Pm -= ViX @ (ev.vb @ ViX.T)
        nt = self.spec.n_theta
        score = np.zeros(nt)
        work = np.zeros((self.n, nt))
        em: dict = {"terms": [], "residual": None}
        for k, t in enumerate(self.spec.terms):
            tm, S = self.terms[k], t.size
            aE = alpha[tm.rec]
            G = np.empty((len(tm.rec), S))
            for b in range(S):
                G[:, b] = tm.Kz[:, tm.blk(b)] @ aE[tm.blk(b)]
            Q = np.empty((S, S))
            T = np.empty((S, S))
            for a in range(S):
                Q[a] = aE[tm.blk(a)] @ G[tm.blk(a)]
                for b in range(a + 1):
                    Pab = Pm[_sub(tm.idx[a], tm.idx[b])]
                    T[a, b] = T[b, a] = np.einsum("ij,ij->", Pab, tm.Kz[tm.blk(a), tm.blk(b)])
            Q = 0.5 * (Q + Q.T)
            Sig = ev.sigmas[k]
            em["terms"].append(Sig - Sig @ (T - Q) @ Sig / self.ranks[k])
            for j, D in enumerate(t.structure.dsigma(theta[self.slices[k]])):
                col = self.slices[k].start + j
                score[col] = -0.5 * float(np.sum(D * (T - Q)))
                wj = work[:, col]
                for a in range(S):
                    wj[tm.rec[tm.blk(a)]] += G[tm.blk(a)] @ D[a]
        rsl = self.slices[-1]
        dP = np.diagonal(Pm)
        new_r = np.empty(len(self.groups))
        for g, idx in enumerate(self.groups):
            d = 1.0 / self.w[idx]
            tr = float(dP[idx] @ d)
            quad = float((alpha[idx] ** 2) @ d)
            j = rsl.start + (g if len(self.groups) > 1 else 0)
            score[j] += -0.5 * (tr - quad)
            work[idx, j] += alpha[idx] * d
            new_r[g] = rs[g] - rs[g] ** 2 * (tr - quad) / len(idx)
        em["residual"] = new_r
        ai = 0.5 * work.T @ (Pm @ work)
        ai = 0.5 * (ai + ai.T)
        return VFormEvaluation(
            theta,
            ev.method,
            ev.m2ll,
            ev.fixed,
            ev.vb,
            alpha,
            ev.residuals,
            ev.sigmas,
            score,
            ai,
            em,
            factor=None,
            pmat=Pm,
        )

    # -- pieces for results ---------------------------------------------------------
    def _level_sums(self, k: int, alpha: np.ndarray) -> np.ndarray:
        """Zₖ'α in level space, (q, S): Σ over the pairs of component a at level c of z α."""
        t, tm = self.spec.terms[k], self.terms[k]
        out = np.empty((t.q, t.size))
        aE = alpha[tm.rec] * tm.z
        for a in range(t.size):
            out[:, a] = np.bincount(tm.codes[tm.blk(a)], weights=aE[tm.blk(a)], minlength=t.q)
        return out

    def blups(self, ev: VFormEvaluation, k: int) -> np.ndarray:
        """ûₖ = (Σₖ ⊗ Kₖ)Zₖ'Py in level space, (q, S)."""
        tm = self.terms[k]
        Zs = self._level_sums(k, ev.alpha) @ ev.sigmas[k]
        return Zs if tm.K is None else tm.K @ Zs

    def pev(self, ev: VFormEvaluation, k: int) -> np.ndarray:
        """PEV of term k's BLUPs, (q, S): diag(Σ_aa K − YₐPYₐ' through K), see the module notes."""
        if ev.pmat is None or (ev.method != "reml" and ev.method != "ml"):
            raise ValueError("PEV needs an evaluation with derivatives")
        Pm = ev.pmat if ev.method == "reml" else self._reml_p(ev)
        t, tm = self.spec.terms[k], self.terms[k]
        S, q = t.size, t.q
        comp = np.repeat(np.arange(S), np.diff(tm.bounds))
        kd = np.ones(q) if tm.K is None else np.diag(tm.K)
        out = np.empty((q, S))
        for a in range(S):
            Y = sp.csr_matrix((tm.z * ev.sigmas[k][a, comp], (tm.codes, tm.rec)), shape=(q, self.n))
            YP = np.asarray(Y @ Pm)  # q × n
            M = np.asarray(Y @ YP.T)  # q × q: YₐPYₐ'
            if tm.K is None:
                red = np.diag(M)
            else:
                red = np.einsum("ij,ij->i", tm.K @ M, tm.K)
            out[:, a] = ev.sigmas[k][a, a] * kd - red
        return out

    def _reml_p(self, ev: VFormEvaluation) -> np.ndarray:
        """P from V⁻¹ (an ML evaluation keeps V⁻¹): PEV is the REML C⁻¹ block either way,
        as in the C-form engine, whose ``cinv`` is the full C⁻¹."""
        assert ev.pmat is not None
        ViX = ev.pmat @ self.X
        return ev.pmat - ViX @ (ev.vb @ ViX.T)

    def term_blups(self, ev: VFormEvaluation, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Term k's BLUPs and PEVs in level space, each (q, S)."""
        if ev.pmat is None:
            ev = self.with_derivatives(ev)
        with blas_threads_for(self.n):
            return self.blups(ev, k), self.pev(ev, k)

    def fixed(self, ev: VFormEvaluation) -> tuple[np.ndarray, np.ndarray]:
        """b̂ and Var(b̂) = (X'V⁻¹X)⁻¹."""
        return ev.fixed, ev.vb


def _sub(ia, ib):
    """Index of the block (records ia) × (records ib): two slices give a view, else np.ix_."""
    if isinstance(ia, slice) and isinstance(ib, slice):
        return ia, ib
    as_arr = [np.arange(i.start, i.stop) if isinstance(i, slice) else i for i in (ia, ib)]
    return np.ix_(*as_arr)

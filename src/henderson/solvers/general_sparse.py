"""Sparse mixed model equations for covariance structures: prepare once, evaluate at θ.

The model, the order of the equations and every formula are those of the dense
general engine (:mod:`henderson.solvers.general`, docs/theory.md "The general
engine"); only the linear algebra differs. C(θ) is held as a sparse matrix

    C = Σ_g W_g'D_gW_g / σ²_g + blockdiag(⊕ₖ Σₖ⁻¹ ⊗ Pₖ, 0),   Pₖ = Kₖ⁻¹ (or I),

whose pattern does not depend on θ. So the symbolic analysis (METIS ordering,
supernodes, where each entry of M_g and of each Σ⁻¹ ⊗ Pₖ block lands in L) is done
once, and each evaluation is one numeric supernodal factorisation of
:mod:`henderson.linalg` plus, with derivatives, one selected inverse (Takahashi):

- −2 log L from log|C| = 2 Σ log diag(L) (ML: the leading random block);
- T[a, b] = tr(Pₖ C^{ab}) = Σᵢⱼ (Pₖ)ᵢⱼ (C⁻¹)_{a r + i, b r + j} and tr(C⁻¹M_g) need
  C⁻¹ only on the patterns of Σ⁻¹ ⊗ Pₖ and M_g, which lie in the pattern of C and
  hence of L: the selected inverse has exactly those entries;
- AI = ½ W'PW with working variates W (n × n_θ): one multi-right-hand-side solve.
  For ML, C_zz⁻¹b = (C⁻¹)_zz b − (C⁻¹)_zx ((C⁻¹)_xx)⁻¹ (C⁻¹)_xz b (block inverse),
  from solves with the full factor and p extra unit right-hand sides.

A dense K = FF' (:class:`~henderson.spec.levels.Factored`) is accepted (its Z̃ columns are dense), but
such models are better served by the dense engine; ``solver="auto"`` sends here the
models with a sparse K⁻¹ (pedigree A⁻¹) or many identity levels.

As the dense engine: y'Py is the penalised sum of squares (``penalised_ss``), y is centred
by its OLS fit once, and an evaluation whose estimated rounding error of −2 log L exceeds
``RELIABLE_RTOL`` (1e-9) raises :class:`~henderson.errors.UnreliableEvaluationError`. C is
factorised unscaled (the Λ'CΛ of the dense engine would change the pattern of C), so the
estimate is the scale-free pivot growth (``pivot_rounding_error``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._threads import _blas_controller
from ..errors import ModelError, NotPositiveDefiniteError, UnreliableEvaluationError
from ..linalg import SymbolicCholesky
from ..linalg._numeric import gather, scatter_add
from ..linalg.cholesky import return_freed_heap
from ..spec.levels import Factored, SparseInverse
from ..spec.terms import GeneralSpec
from .general import (
    RELIABLE_RTOL,
    GeneralMME,
    penalised_ss,
    pivot_rounding_error,
    residual_variances,
    term_covariances,
)

LOG2PI = float(np.log(2 * np.pi))


@dataclass(frozen=True, eq=False)
class GeneralSparseEvaluation:
    """The sparse equations at one θ (fields as :class:`~henderson.solvers.general.GeneralEvaluation`).

    ``cinv`` is None: C⁻¹ is held on the pattern of L as ``selinv`` (C_zz⁻¹ for ML,
    then ``selinv_full`` is C⁻¹ for results), ``factor`` the Cholesky factor of C.
    """

    theta: np.ndarray
    method: str
    m2ll: float
    solution: np.ndarray
    residuals: np.ndarray
    sigmas: list
    score: np.ndarray | None = None
    ai: np.ndarray | None = None
    cinv: Any = None
    em: dict | None = None
    factor: Any = None
    selinv: Any = None


class GeneralSparseMME:
    """Sparse MME of a :class:`~henderson.spec.terms.GeneralSpec` (same interface as
    :class:`~henderson.solvers.general.GeneralMME`).

    Parameters
    ----------
    spec : GeneralSpec
    """

    name = "sparse-general"

    def __init__(self, spec: GeneralSpec):
        self.spec = spec
        n = spec.n
        res = spec.residual
        if res.unit is not None or res.structure.kind not in ("scalar", "diag"):
            raise ModelError(
                "the sparse general engine fits diagonal residuals (scalar, by group, weighted); "
                "a residual covariance across the traits of a unit is not implemented here"
            )
        cols, self.offsets, self.ranks, self.penalties, self.logdet_k = [], [0], [], [], []
        rows_n = np.arange(n)
        for t in spec.terms:
            lv = t.level
            if isinstance(lv.covariance, Factored):
                F = lv.factor
                r = F.shape[1]
                Zk = sp.csc_matrix(np.hstack([t.z[:, a : a + 1] * F[t.codes[:, a]] for a in range(t.size)]))
                P, ld = None, 0.0
            else:
                r = t.q
                # one entry per record and component (component-major columns); z = 0 dropped
                rr = np.tile(rows_n, t.size)
                cc = (np.arange(t.size)[None, :] * r + t.codes).T.ravel()
                vv = t.z.T.ravel().astype(float)
                keep = vv != 0
                Zk = sp.csc_matrix((vv[keep], (rr[keep], cc[keep])), shape=(n, t.size * r))
                if isinstance(lv.covariance, SparseInverse):
                    P = sp.csc_matrix(lv.penalty, dtype=float)
                    ld = float(lv.logdet_k)
                else:
                    P, ld = None, 0.0
            cols.append(Zk)
            self.ranks.append(r)
            self.penalties.append(P)
            self.logdet_k.append(ld)
            self.offsets.append(self.offsets[-1] + t.size * r)
        self.mz = self.offsets[-1]
        self.W = sp.hstack(cols + [sp.csc_matrix(spec.X)], format="csc")
        self.m = self.W.shape[1]
        w = res.weights if res.weights is not None else np.ones(n)
        self.w = w
        self.sum_logw = float(np.log(w).sum())
        self.n, self.p = n, spec.p
        self.slices = spec.slices
        self.theta_names = spec.theta_names
        self._analyse()

    # -- symbolic analysis (once) -------------------------------------------------------
    def _analyse(self) -> None:
        """Pattern of C, its symbolic factor, and where each piece lands in L."""
        m, spec = self.m, self.spec
        Wr = self.W.tocsr()
        self.groups: list = []
        # y centred by its OLS fit once (as the dense engine): the equations are solved
        # for (b − β₀, u), whose size sets the rounding of the weakly determined directions
        X = np.asarray(spec.X, dtype=float)
        self.beta0 = np.linalg.lstsq(X, spec.y, rcond=None)[0] if X.shape[1] else np.zeros(0)
        self.y0 = spec.y - X @ self.beta0
        pieces = [sp.identity(m, format="coo")]
        for g in range(len(spec.residual.groups)):
            idx = np.flatnonzero(spec.residual.codes == g)
            Wg = Wr[idx]
            wg = self.w[idx]
            yg = self.y0[idx]
            M = (Wg.T @ sp.diags(wg) @ Wg).tocoo()
            M.sum_duplicates()
            pieces.append(M)
            self.groups.append(
                dict(idx=idx, n=len(idx), M=M, Wy=np.asarray(Wg.T @ (wg * yg)).ravel(), yy=float(wg @ (yg * yg)))
            )
        self.blocks = []
        for k, t in enumerate(spec.terms):
            S, r, a0 = t.size, self.ranks[k], self.offsets[k]
            P = self.penalties[k]
            P = sp.identity(r, format="coo") if P is None else P.tocoo()
            nn = P.nnz
            # Σ⁻¹ ⊗ P over all S² component pairs: entry (a r + i, b r + j), label a S + b
            a_of = np.repeat(np.arange(S), S)
            b_of = np.tile(np.arange(S), S)
            row = a0 + (a_of[:, None] * r + P.row[None, :]).ravel()
            col = a0 + (b_of[:, None] * r + P.col[None, :]).ravel()
            lab = np.repeat(a_of * S + b_of, nn)
            val = np.tile(P.data.astype(float), S * S)
            B = sp.coo_matrix((val, (row, col)), shape=(m, m))
            pieces.append(B)
            self.blocks.append(dict(row=row, col=col, lab=lab, val=val))
            if isinstance(self.spec.terms[k].level.covariance, Factored):  # dense level blocks, for the PEVs
                ii, jj = (v.ravel() for v in np.meshgrid(np.arange(r), np.arange(r), indexing="ij"))
                for a in range(S):
                    lo = a0 + a * r
                    pieces.append(sp.coo_matrix((np.ones(r * r), (lo + ii, lo + jj)), shape=(m, m)))
        # the pattern from indicator values: adding values could cancel to (dropped) zeros
        rows = np.concatenate([q.row for q in pieces])
        cols = np.concatenate([q.col for q in pieces])
        pattern = sp.csc_matrix((np.ones(len(rows)), (rows, cols)), shape=(m, m))
        self.symbolic = sym = SymbolicCholesky(pattern, last=self.p)
        for G in self.groups:
            M = G["M"]
            keep, pos = sym.assembly_map(M)
            G["pos"], G["data"] = pos, M.data[keep].astype(float)
            G["pos_all"], G["data_all"] = sym.positions(M.row, M.col), M.data.astype(float)
            G["zz_all"] = (M.row < self.mz) & (M.col < self.mz)
        for blk in self.blocks:
            B = sp.coo_matrix((blk["val"], (blk["row"], blk["col"])), shape=(m, m))
            keep, pos = sym.assembly_map(B)
            blk["pos"], blk["keep"] = pos, keep
            blk["pos_all"] = sym.positions(blk["row"], blk["col"])
        self.diag_pos = sym.diagonal_positions()
        del pattern, rows, cols
        return_freed_heap()  # the assembly's scratch, before the first factor (issue 13)

    # -- θ helpers (shared with the dense engine) ---------------------------------------
    def start(self) -> np.ndarray:
        """Starting θ, as :meth:`GeneralMME.start` (the OLS residual variance shared out)."""
        return GeneralMME.start(self)  # type: ignore[arg-type]

    def sigmas(self, theta) -> list:
        return [t.structure.sigma(theta[self.slices[k]]) for k, t in enumerate(self.spec.terms)]

    # -- evaluation ---------------------------------------------------------------------
    def evaluate(self, theta, *, method: str = "reml", derivatives: bool = False) -> GeneralSparseEvaluation:
        """−2 log L (and score, AI, EM targets) at θ; see :meth:`GeneralMME.evaluate`.

        Parameters
        ----------
        theta : array, shape (n_theta,)
            In the order of ``spec.theta_names``.
        method : {"reml", "ml"}
        derivatives : bool
        """
        # one BLAS thread: supernodes are small (see henderson._threads and solvers/sparse.py)
        with _blas_controller().limit(limits=1, user_api="blas"):
            return self._evaluate(np.asarray(theta, dtype=float), method, derivatives)

    def _evaluate(self, theta, method, derivatives) -> GeneralSparseEvaluation:
        spec = self.spec
        if method not in ("reml", "ml"):
            raise ModelError(f"method must be 'reml' or 'ml', not {method!r}")
        rs = residual_variances(spec, theta, self.slices[-1])
        x = np.zeros(self.symbolic.size)
        rhs = np.zeros(self.m)
        logdet_r = -self.sum_logw
        for g, G in enumerate(self.groups):
            scatter_add(x, G["pos"], G["data"], 1.0 / rs[g])
            rhs += G["Wy"] / rs[g]
            logdet_r += G["n"] * np.log(rs[g])
        logdet_g = 0.0
        sigmas, sig_inv, logdet_sigma = term_covariances(spec, theta, self.slices)
        for k, t in enumerate(spec.terms):
            blk = self.blocks[k]
            keep = blk["keep"]
            scatter_add(x, blk["pos"], blk["val"][keep] * sig_inv[k].ravel()[blk["lab"][keep]], 1.0)
            logdet_g += self.ranks[k] * logdet_sigma[k] + t.size * self.logdet_k[k]
        cdiag = x[self.diag_pos]  # a copy (fancy index): the factorisation consumes x
        try:
            factor = self.symbolic.factor(x)
        except NotPositiveDefiniteError as exc:
            raise NotPositiveDefiniteError(
                "the mixed model equations are not positive definite: a fixed effect confounded "
                "with a random term, or a covariance that is not positive definite"
            ) from exc
        sol = factor.solve(rhs)
        resid = self.y0 - self.W @ sol
        sol[self.mz :] += self.beta0
        rinv = self.w / rs[spec.residual.codes]
        # y'Py as the penalised sum of squares: y'R⁻¹y − ŝ'W'R⁻¹y cancels as σ²ₑ → 0
        ypy = penalised_ss(resid, rinv, sol, self.offsets, self.ranks, self.penalties, sig_inv)
        n, p = self.n, self.p
        if method == "reml":
            m2ll = (n - p) * LOG2PI + logdet_r + logdet_g + factor.logdet() + ypy
        else:
            m2ll = n * LOG2PI + logdet_r + logdet_g + factor.logdet(self.mz) + ypy
        rounding = pivot_rounding_error(cdiag, factor.values()[self.diag_pos], m2ll)
        if rounding > RELIABLE_RTOL:
            raise UnreliableEvaluationError(
                f"−2 log L at this θ is numerically unreliable in the sparse C-form (estimated relative "
                f"rounding error {rounding:.1e} > {RELIABLE_RTOL:.0e}: the mixed model equations are too "
                f"ill-conditioned, smallest residual variance {float(np.min(rs)):.3g}, or a covariance near "
                "singular); the observation-space form is exact as σ²ₑ → 0: use solver='vform' (it needs K, "
                "not K⁻¹)",
                parameter="solver",
                value="sparse",
            )
        if not derivatives:
            return GeneralSparseEvaluation(theta, method, float(m2ll), sol, resid, sigmas, factor=factor)
        return self._derivatives(theta, method, float(m2ll), sol, resid, sigmas, sig_inv, factor, rs)

    def with_derivatives(self, ev: GeneralSparseEvaluation) -> GeneralSparseEvaluation:
        """``ev`` (evaluated without derivatives) with score, AI, selected inverse and EM
        targets, from the factor it holds: the numbers of ``evaluate(ev.theta,
        derivatives=True)`` without a second factorisation, and without a second factor
        alive while it runs (the optimiser completes only the accepted trial point)."""
        if ev.score is not None:
            return ev
        if ev.factor is None or ev.factor.x is None:
            return self.evaluate(ev.theta, method=ev.method, derivatives=True)
        theta = ev.theta
        rs = residual_variances(self.spec, theta, self.slices[-1])
        _, sig_inv, _ = term_covariances(self.spec, theta, self.slices)
        with _blas_controller().limit(limits=1, user_api="blas"):
            return self._derivatives(
                theta, ev.method, ev.m2ll, ev.solution, ev.residuals, ev.sigmas, sig_inv, ev.factor, rs
            )

    def _zz_solve(self, factor, B: np.ndarray) -> np.ndarray:
        """C_zz⁻¹B (B: mz × k) from the factor of the whole C, by the block-inverse
        identity (C_zz)⁻¹ = (C⁻¹)_zz − (C⁻¹)_zx ((C⁻¹)_xx)⁻¹ (C⁻¹)_xz."""
        mz, p = self.mz, self.p
        full = np.zeros((self.m, B.shape[1]))
        full[:mz] = B
        X = factor.solve(full)
        if p == 0:
            return X[:mz]
        E = np.zeros((self.m, p))
        E[mz:] = np.eye(p)
        Y = factor.solve(E)
        return X[:mz] - Y[:mz] @ np.linalg.solve(Y[mz:], X[mz:])

    def _derivatives(self, theta, method, m2ll, sol, resid, sigmas, sig_inv, factor, rs):
        spec = self.spec
        reml = method == "reml"
        mu = self.m if reml else self.mz
        nt = spec.n_theta
        # working variates first, and the AI's solve with them: every solve with the
        # factor comes before the selected inverse, which then overwrites the factor's
        # value array (one array of L's size alive, not two; issue 13)
        work = np.zeros((self.n, nt))
        terms = []
        for k, t in enumerate(spec.terms):
            r, S = self.ranks[k], t.size
            a, b = self.offsets[k], self.offsets[k + 1]
            U = sol[a:b].reshape(S, r).T  # r × S
            dS = t.structure.dsigma(theta[self.slices[k]])
            Zk = self.W[:, a:b]
            As = [sig_inv[k] @ D for D in dS]
            for j, A in enumerate(As):
                work[:, self.slices[k].start + j] = Zk @ (U @ A).T.ravel()
            terms.append((U, As))
        rsl = self.slices[-1]
        rinv = self.w / rs[spec.residual.codes]
        for g, G in enumerate(self.groups):
            idx = G["idx"]
            j = rsl.start + (g if len(self.groups) > 1 else 0)
            work[idx, j] += resid[idx] / rs[g]
        Wu = self.W[:, :mu]
        RW = work * rinv[:, None]
        WtRW = np.asarray(Wu.T @ RW)
        CW = factor.solve(WtRW) if reml else self._zz_solve(factor, WtRW)
        Pw = RW - rinv[:, None] * np.asarray(Wu @ CW)
        ai = 0.5 * work.T @ Pw
        ai = 0.5 * (ai + ai.T)
        del RW, WtRW, CW, Pw
        Z = factor.selected_inverse(None if reml else self.mz, overwrite=True)
        score = np.zeros(nt)
        em: dict = {"terms": [], "residual": None}
        for k, t in enumerate(spec.terms):
            r, S = self.ranks[k], t.size
            U, As = terms[k]
            P = self.penalties[k]
            Q = U.T @ U if P is None else U.T @ (P @ U)
            blk = self.blocks[k]
            T = np.bincount(blk["lab"], weights=blk["val"] * gather(Z.z, blk["pos_all"]), minlength=S * S)
            T = T.reshape(S, S)
            Si = sig_inv[k]
            QT = Q + T
            em["terms"].append(QT / r)
            for j, A in enumerate(As):
                score[self.slices[k].start + j] = -0.5 * (r * np.trace(A) - np.trace(A @ Si @ QT))
        new_r = np.empty(len(self.groups))
        for g, G in enumerate(self.groups):
            idx = G["idx"]
            if reml:
                tr = float(G["data_all"] @ gather(Z.z, G["pos_all"]))
            else:
                zz = G["zz_all"]
                tr = float(G["data_all"][zz] @ gather(Z.z, G["pos_all"][zz]))
            ede = float(self.w[idx] @ resid[idx] ** 2)
            sg = rs[g]
            new_r[g] = (ede + tr) / G["n"]
            j = rsl.start + (g if len(self.groups) > 1 else 0)
            score[j] += -0.5 * (G["n"] / sg - (tr + ede) / sg**2)
        em["residual"] = new_r if len(self.groups) > 1 else np.array([new_r[0]])
        return GeneralSparseEvaluation(
            theta, method, m2ll, sol, resid, sigmas, score, ai, None, em, factor=factor, selinv=Z
        )

    def _live_factor(self, ev: GeneralSparseEvaluation):
        """``ev.factor``, or the factor again at ``ev.theta`` if the selected inverse consumed it."""
        if ev.factor is not None and ev.factor.x is not None:
            return ev.factor
        return self._evaluate(ev.theta, ev.method, False).factor

    # -- pieces for results -------------------------------------------------------------
    def _full_selinv(self, ev: GeneralSparseEvaluation):
        if ev.method == "reml" and ev.selinv is not None:
            return ev.selinv
        with _blas_controller().limit(limits=1, user_api="blas"):
            return self._live_factor(ev).selected_inverse(overwrite=True)

    def term_blups(self, ev: GeneralSparseEvaluation, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Term k's BLUPs and PEVs in level space, each (q, S); PEV from the selected inverse."""
        t = self.spec.terms[k]
        r, S = self.ranks[k], t.size
        a, b = self.offsets[k], self.offsets[k + 1]
        V = ev.solution[a:b].reshape(S, r).T
        Z = self._full_selinv(ev)
        if isinstance(t.level.covariance, Factored):
            F = t.level.factor
            U = F @ V
            ii, jj = (v.ravel() for v in np.meshgrid(np.arange(r), np.arange(r), indexing="ij"))
            pev = np.column_stack(
                [
                    np.einsum("ij,ij->i", F @ Z.entries(a + i * r + ii, a + i * r + jj).reshape(r, r), F)
                    for i in range(S)
                ]
            )
        else:
            U = V
            pev = gather(Z.z, self.diag_pos[a:b]).reshape(S, r).T.copy()
        return U, pev

    def fixed(self, ev: GeneralSparseEvaluation) -> tuple[np.ndarray, np.ndarray]:
        """b̂ and Var(b̂) = the fixed block of C⁻¹: from the selected inverse when it is the
        full C⁻¹ and the p × p block lies in the pattern of L, else by p solves."""
        if ev.method == "reml" and ev.selinv is not None:
            ii, jj = (v.ravel() for v in np.meshgrid(np.arange(self.p), np.arange(self.p), indexing="ij"))
            try:
                V = ev.selinv.entries(self.mz + ii, self.mz + jj).reshape(self.p, self.p)
                return ev.solution[self.mz :], 0.5 * (V + V.T)
            except ValueError:  # fixed effects that never meet (their block is not dense in L)
                pass
        E = np.zeros((self.m, self.p))
        E[self.mz :] = np.eye(self.p)
        with _blas_controller().limit(limits=1, user_api="blas"):
            V = self._live_factor(ev).solve(E)[self.mz :]
        return ev.solution[self.mz :], 0.5 * (V + V.T)

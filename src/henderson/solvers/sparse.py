"""Sparse Henderson MME for large animal models (sparse A⁻¹, many iid levels).

C = [[Z'Z + ⊕ₖ Pₖ/γₖ, Z'X], [X'Z, X'X]] is factored by the supernodal sparse Cholesky
of :mod:`henderson.linalg` (numba over LAPACK, METIS nested dissection), whose
symbolic analysis — ordering, elimination tree, supernodes, where each entry of T'T
and of each Pₖ lands in L — is done once per set of active terms and reused at
every σ². The objective is the dense solver's (:mod:`henderson.solvers.dense`,
docs/theory.md "REML on the MME"): log|C| from the factor's diagonal.

Derivatives are exact, as in the dense solver, from one factorisation:

- tr(PₖC^{kk}) = Σᵢⱼ (Pₖ)ᵢⱼ (C⁻¹)ᵢⱼ needs C⁻¹ only on the pattern of Pₖ, which lies
  inside the pattern of C and hence of L; the selected inverse (Takahashi equations,
  :meth:`henderson.linalg.Factor.selected_inverse`) gives exactly those entries, in
  the memory of L;
- the AI matrix uses the working variates and one extra multi-right-hand-side solve;
- PEV is σ²ₑ·diag(C⁻¹), the selected inverse's diagonal (no unit-vector solves).

Each AI iteration therefore costs one numeric factorisation, one selected inverse
and two solves. The solves come first; the selected inverse then overwrites the
factor's value array (``overwrite=True``), so one array of L's size is alive per
evaluation (issue 13). A later request that needs the factor again (a solve, or the
selected inverse of another block) refactors at the same σ².
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._threads import _blas_controller
from ..errors import ModelError
from ..linalg import SymbolicCholesky
from ..linalg._numeric import scatter_add
from ..linalg.cholesky import return_freed_heap
from ..spec.levels import Factored, SparseInverse
from ..spec.model import ModelSpec

LOG2PI = float(np.log(2 * np.pi))


@dataclass(frozen=True, eq=False)
class SparseEvaluation:
    """The sparse MME at one σ² (fields as the dense solver's :class:`Evaluation`).

    ``factor`` is the Cholesky factor of the unscaled C; ``selinv`` its selected
    inverse (C⁻¹ on the pattern of L; C_zz⁻¹ for ML), present when derivatives were
    asked for.
    """

    sigma2: np.ndarray
    active: np.ndarray
    m2ll: float
    ell2: float
    solution: np.ndarray
    index: np.ndarray
    spans: dict
    residuals: np.ndarray
    factor: Any
    score: np.ndarray | None = None
    ai: np.ndarray | None = None
    logdet_c: float = float("nan")
    selinv: Any = None
    selinv_zz: bool = False

    @property
    def lu(self):
        """The factor (kept under the name of the former SuperLU object: ``.solve``)."""
        return self.factor


class _Analysis:
    """Symbolic factorisation of C for one set of active terms, and assembly maps."""

    def __init__(self, state: SparseMME, active: np.ndarray):
        self.index, self.spans = state._index(active)
        idx = self.index
        m = len(idx)
        self.nz = m - state.p
        TtT = state.TtT[idx][:, idx].tocoo()
        blocks = []
        self.pen = []  # (term, keep, pos, data, tr_rows, tr_cols, tr_data) per active term
        for k, on in enumerate(active):
            if not on:
                continue
            a, b = self.spans[k]
            P = state.penalties[k]
            P = sp.identity(b - a, format="coo") if P is None else P.tocoo()
            blocks.append(sp.coo_matrix((P.data, (P.row + a, P.col + a)), shape=(m, m)))
        pattern = (TtT + sum(blocks, sp.csc_matrix((m, m))) + sp.identity(m)).tocsc()
        self.symbolic = SymbolicCholesky(pattern, last=state.p)
        self.t_keep, self.t_pos = self.symbolic.assembly_map(TtT)
        self.t_data = TtT.data[self.t_keep].astype(float)
        for k, B in zip(np.flatnonzero(active).tolist(), blocks):
            keep, pos = self.symbolic.assembly_map(B)
            # all entries (both triangles) for tr(PₖC^{kk}) = Σᵢⱼ Pᵢⱼ Zᵢⱼ
            self.pen.append(
                (int(k), pos, B.data[keep].astype(float), self.symbolic.positions(B.row, B.col), B.data.astype(float))
            )
        del TtT, blocks, pattern
        return_freed_heap()  # the assembly's scratch, before the first factor (issue 13)

    def assemble(self, lam: dict) -> np.ndarray:
        x = np.zeros(self.symbolic.size)
        scatter_add(x, self.t_pos, self.t_data, 1.0)
        for k, pos, data, _, _ in self.pen:
            scatter_add(x, pos, data, lam[k])
        return x


class SparseMME:
    """Prepared sparse MME; terms must be iid or given by a (sparse) inverse covariance."""

    name = "sparse-mme"

    def __init__(self, spec: ModelSpec):
        for t in spec.terms:
            if isinstance(t.covariance, Factored):
                raise ModelError(f"term {t.name!r} has a dense covariance: use the dense or spectral solver")
        self.spec = spec
        T = sp.hstack([sp.csr_matrix(t.design()) for t in spec.terms] + [sp.csr_matrix(spec.X)], format="csc")
        self.T = T
        self.TtT = (T.T @ T).tocsc()
        self.Tty = np.asarray(T.T @ spec.y).ravel()
        self.yty = float(spec.y @ spec.y)
        sizes = [t.q for t in spec.terms]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.n_random = int(self.offsets[-1])
        self.penalties = [
            sp.csc_matrix(t.penalty) if isinstance(t.covariance, SparseInverse) else None for t in spec.terms
        ]
        self.n, self.p = spec.n, spec.p
        self._analyses: dict[tuple, _Analysis] = {}

    def _index(self, active):
        idx, spans, pos = [], {}, 0
        for k, on in enumerate(active):
            a, b = self.offsets[k], self.offsets[k + 1]
            if on:
                idx.append(np.arange(a, b))
                spans[k] = (pos, pos + b - a)
                pos += b - a
            else:
                spans[k] = (pos, pos)
        idx.append(self.n_random + np.arange(self.p))
        return np.concatenate(idx), spans

    def analysis(self, active) -> _Analysis:
        """The symbolic factorisation for this set of active terms (made once, cached)."""
        key = tuple(bool(a) for a in active)
        if key not in self._analyses:
            self._analyses[key] = _Analysis(self, np.asarray(key))
        return self._analyses[key]

    def evaluate(self, sigma2, *, derivatives: bool = False, method: str = "reml") -> SparseEvaluation:
        """Objective (and optionally exact score and AI) at ``sigma2`` (see DenseMME.evaluate)."""
        s = np.asarray(sigma2, dtype=float)
        se = s[-1]
        if not se > 0:
            raise ModelError(f"the residual variance must be positive, got {se!r}")
        active = s[:-1] > 0
        an = self.analysis(active)
        index, spans = an.index, an.spans
        lam, logdet_d = {}, 0.0
        for k, t in enumerate(self.spec.terms):
            if active[k]:
                a, b = spans[k]
                lam[k] = se / s[k]
                logdet_d += (b - a) * np.log(s[k] / se) + (
                    t.logdet_k if isinstance(t.covariance, SparseInverse) else 0.0
                )
        # one BLAS thread: the supernodes are small, and spinning threads on a busy
        # machine cost more than they give (see henderson._threads)
        with _blas_controller().limit(limits=1, user_api="blas"):
            factor = an.symbolic.factor(an.assemble(lam))
            logdet_c = factor.logdet()
            r = self.Tty[index]
            sol = factor.solve(r)
            ell2 = max(self.yty - float(r @ sol), 0.0)
            n, p = self.n, self.p
            if method == "reml":
                m2ll = (n - p) * (LOG2PI + np.log(se)) + logdet_c + logdet_d + ell2 / se
            else:
                m2ll = n * (LOG2PI + np.log(se)) + factor.logdet(an.nz) + logdet_d + ell2 / se
            resid = self.spec.y - self.T[:, index] @ sol
            if not derivatives:
                return SparseEvaluation(
                    s, active, float(m2ll), ell2, sol, index, spans, resid, factor, logdet_c=logdet_c
                )
            zz = method != "reml"
            # every solve with the factor (b̂, û above, the AI's multi-RHS solve here) comes
            # before the selected inverse, which then overwrites the factor's value array:
            # one array of the factor's size is alive, not two (issue 13)
            ai = self.average_information(
                SparseEvaluation(s, active, float(m2ll), ell2, sol, index, spans, resid, factor)
            )
            selinv = factor.selected_inverse(an.nz if zz else None, overwrite=True)
            ev = SparseEvaluation(
                s,
                active,
                float(m2ll),
                ell2,
                sol,
                index,
                spans,
                resid,
                factor,
                ai=ai,
                logdet_c=logdet_c,
                selinv=selinv,
                selinv_zz=zz,
            )
            score = self._score(ev, method)
        return dataclasses.replace(ev, score=score)

    def _live_factor(self, ev: SparseEvaluation):
        """``ev.factor``, or the factor again at ``ev.sigma2`` if the selected inverse consumed it."""
        if ev.factor is not None and ev.factor.x is not None:
            return ev.factor
        an = self.analysis(ev.active)
        se = ev.sigma2[-1]
        lam = {k: se / ev.sigma2[k] for k in range(len(self.spec.terms)) if ev.active[k]}
        with _blas_controller().limit(limits=1, user_api="blas"):
            return an.symbolic.factor(an.assemble(lam))

    def _score(self, ev: SparseEvaluation, method: str) -> np.ndarray:
        """∂ℓ/∂σ² (the dense solver's formulas; traces from the selected inverse)."""
        s, se = ev.sigma2, ev.sigma2[-1]
        K = len(self.spec.terms)
        dof = self.n - self.p if method == "reml" else self.n
        score = np.full(K + 1, np.nan)
        trP_se = dof
        for k in range(K):
            if not ev.active[k]:
                continue
            a, b = ev.spans[k]
            u = ev.solution[a:b]
            tr = self.trace(ev, k, method != "reml")
            P = self.penalties[k]
            quad = float(u @ u) if P is None else float(u @ (P @ u))
            q = b - a
            score[k] = -0.5 * (q / s[k] - se * tr / s[k] ** 2 - quad / s[k] ** 2)
            trP_se -= q - se * tr / s[k]
        score[K] = -0.5 * (trP_se / se - float(ev.residuals @ ev.residuals) / se**2)
        return score

    def trace(self, ev: SparseEvaluation, k: int, zz: bool = False) -> float:
        """tr(Pₖ C^{kk}) = Σᵢⱼ (Pₖ)ᵢⱼ (C⁻¹)ᵢⱼ from the selected inverse (C_zz⁻¹ when ``zz``)."""
        Z = ev.selinv
        if Z is None or ev.selinv_zz != zz:
            an = self.analysis(ev.active)
            with _blas_controller().limit(limits=1, user_api="blas"):
                Z = self._live_factor(ev).selected_inverse(an.nz if zz else None, overwrite=True)
        for kk, _, _, pos_all, data_all in self.analysis(ev.active).pen:
            if kk == k:
                return float(data_all @ Z.at(pos_all))
        raise ValueError(f"term {k} is not active at this evaluation")

    def boundary_score(self, ev, k: int, method: str = "reml") -> tuple[float, float]:
        """Score ∂ℓ/∂σ²ₖ at σ²ₖ = 0 (REML or ML, ``method``) and its AI, for an inactive term k.

        The score is analytic in σ²ₖ at 0 but the MME without term k cannot give its trace
        tr(WZₖKₖZₖ') (W = P or V⁻¹) without q solves, nor Kₖ where only Kₖ⁻¹ is held. It
        is therefore extrapolated from the exact scores at σ²ₖ = ε, 2ε, 4ε (Richardson,
        error O(ε³)): s(0) ≈ (8s(ε) − 6s(2ε) + s(4ε))/3. The score's relative slope in σ²ₖ
        is about the largest eigenvalue of ZₖKₖZₖ'P, ~ (records per level)/σ²ₑ, so
        ε = 10⁻⁵σ²ₑ/(records per level) makes the O(ε³) truncation negligible while the
        cancellation in qₖ/σ²ₖ − σ²ₑtr(PₖC^{kk})/σ⁴ₖ loses ~5–7 of the 16 digits: ~10⁻⁹
        relative on small models (measured against dense V algebra; smaller ε loses more
        to the cancellation, larger ε to the truncation), far below what the re-entry test
        (a sign) needs. The AI is the one at ε.
        """
        a, b = self.offsets[k], self.offsets[k + 1]
        per_level = float(self.TtT[a:b, a:b].diagonal().max(initial=1.0))  # Σ Z² per level
        eps = 1e-5 * ev.sigma2[-1] / max(per_level, 1.0)
        scores, ai = [], np.nan
        for f in (1.0, 2.0, 4.0):
            s = ev.sigma2.copy()
            s[k] = f * eps
            near = self.evaluate(s, derivatives=True, method=method)
            assert near.score is not None and near.ai is not None  # derivatives=True computes both
            scores.append(float(near.score[k]))
            if f == 1.0:
                ai = float(near.ai[k, k])
            del near  # one factor and selected inverse alive at a time (issue 13)
        return (8.0 * scores[0] - 6.0 * scores[1] + scores[2]) / 3.0, ai

    def average_information(self, ev: SparseEvaluation) -> np.ndarray:
        """AI_ij = ½ wᵢ'Pwⱼ (working variates as in the dense solver; solves only)."""
        K = len(self.spec.terms)
        s, se = ev.sigma2, ev.sigma2[-1]
        free = [k for k in range(K) if ev.active[k]] + [K]
        W = np.zeros((self.n, len(free)))
        Tx = self.T[:, ev.index]
        for j, k in enumerate(free[:-1]):
            a, b = ev.spans[k]
            W[:, j] = Tx[:, a:b] @ ev.solution[a:b] / s[k]
        W[:, -1] = ev.residuals / se
        PW = (W - Tx @ self._live_factor(ev).solve(np.asarray(Tx.T @ W))) / se
        ai = np.full((K + 1, K + 1), np.nan)
        ai[np.ix_(free, free)] = 0.5 * W.T @ PW
        return ai

    def inverse_diag(self, ev: SparseEvaluation) -> np.ndarray:
        """diag(C⁻¹) in ``ev.index`` order, from the selected inverse (exact)."""
        Z = ev.selinv
        if Z is None or ev.selinv_zz:
            with _blas_controller().limit(limits=1, user_api="blas"):
                Z = self._live_factor(ev).selected_inverse(overwrite=ev.factor is None or ev.factor.x is None)
        return Z.diag()

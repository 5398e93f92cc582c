"""Sparse Henderson MME for large animal models (sparse A⁻¹, many iid levels).

C = [[Z'Z + ⊕ₖ Pₖ/γₖ, Z'X], [X'Z, X'X]] is assembled as a scipy.sparse matrix and
factored by SuperLU with a fill-reducing symmetric ordering and no pivoting
(``diag_pivot_thresh=0``: for a symmetric positive definite C the LU is the Cholesky
factor up to a diagonal scaling, and log|C| = Σ log uᵢᵢ). The objective is the same
as :mod:`henderson.solvers.dense` (see docs/theory.md).

REML uses the same AI-REML optimiser as the dense solver (:mod:`henderson.reml.optimize`),
but the score comes from central differences of the objective, because the analytic
score needs traces of C⁻¹ that a sparse factor does not give cheaply. The AI matrix
needs only solves, so steps and standard errors are the usual AI ones. Each iteration
costs 2(K + 1) + 1 sparse factorisations.
Prediction error variances need diag(C⁻¹); they are computed by blocked solves when
the system is small enough (``pev_limit``) and reported as missing otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..errors import ModelError, NotPositiveDefiniteError
from ..spec.model import ModelSpec

LOG2PI = float(np.log(2 * np.pi))


@dataclass(frozen=True, eq=False)
class SparseEvaluation:
    sigma2: np.ndarray
    active: np.ndarray
    m2ll: float
    ell2: float
    solution: np.ndarray
    index: np.ndarray
    spans: dict
    residuals: np.ndarray
    lu: object
    score: np.ndarray | None = None
    ai: np.ndarray | None = None


class SparseMME:
    """Prepared sparse MME; terms must be iid or given by a (sparse) inverse covariance."""

    name = "sparse-mme"
    par_tol = 1e-6  # relative σ² change at convergence: the numerical score's resolution

    def __init__(self, spec: ModelSpec):
        for t in spec.terms:
            if t.kind == "factor":
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
        self.penalties = [sp.csc_matrix(t.penalty) if t.kind == "inverse" else None for t in spec.terms]
        self.n, self.p = spec.n, spec.p

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

    def _factor(self, C):
        try:
            lu = spla.splu(C.tocsc(), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                           options={"SymmetricMode": True})
        except RuntimeError as exc:  # SuperLU: "Factor is exactly singular"
            raise NotPositiveDefiniteError(
                "the mixed model equations are singular: check for a fixed effect confounded "
                f"with a random term ({exc})") from exc
        u = lu.U.diagonal()
        if np.any(u <= 0):
            raise NotPositiveDefiniteError(
                "the mixed model equations are not positive definite: check for a fixed effect "
                "confounded with a random term")
        return lu, float(np.log(u).sum())

    def evaluate(self, sigma2, *, derivatives: bool = False, method: str = "reml") -> SparseEvaluation:
        s = np.asarray(sigma2, dtype=float)
        se = s[-1]
        active = s[:-1] > 0
        index, spans = self._index(active)
        pen = []
        logdet_d = 0.0
        for k, t in enumerate(self.spec.terms):
            if not active[k]:
                continue
            a, b = spans[k]
            lam = se / s[k]
            P = self.penalties[k] if self.penalties[k] is not None else sp.identity(b - a, format="csc")
            pen.append(lam * P)
            logdet_d += (b - a) * np.log(s[k] / se) + (t.logdet_k if t.kind == "inverse" else 0.0)
        pen.append(sp.csc_matrix((self.p, self.p)))
        C = (self.TtT[index][:, index] + sp.block_diag(pen, format="csc")).tocsc()
        lu, logdet_c = self._factor(C)
        r = self.Tty[index]
        sol = lu.solve(r)
        ell2 = max(self.yty - float(r @ sol), 0.0)
        n, p = self.n, self.p
        if method == "reml":
            m2ll = (n - p) * (LOG2PI + np.log(se)) + logdet_c + logdet_d + ell2 / se
        else:
            nz = len(index) - p
            _, logdet_zz = self._factor(C[:nz, :nz]) if nz else (None, 0.0)
            m2ll = n * (LOG2PI + np.log(se)) + logdet_zz + logdet_d + ell2 / se
        resid = self.spec.y - self.T[:, index] @ sol
        ev = SparseEvaluation(s, active, float(m2ll), ell2, sol, index, spans, resid, lu)
        if not derivatives:
            return ev
        return SparseEvaluation(s, active, float(m2ll), ell2, sol, index, spans, resid, lu,
                                self._numerical_score(s, ev.m2ll, method), self.average_information(ev))

    def _numerical_score(self, s, m2ll, method) -> np.ndarray:
        """∂ℓ/∂σ² by central differences (relative step 1e-4); NaN for inactive terms."""
        K = len(self.spec.terms)
        score = np.full(K + 1, np.nan)
        for k in range(K + 1):
            if k < K and s[k] <= 0:
                continue
            h = 1e-4 * s[k]
            up, dn = s.copy(), s.copy()
            up[k] += h
            dn[k] -= h
            score[k] = -0.25 * (self.evaluate(up, method=method).m2ll
                                - self.evaluate(dn, method=method).m2ll) / h
        return score

    def trace(self, ev, k: int, zz: bool = False) -> float:
        """tr(Pₖ C^{kk}) by solves with the term's unit vectors (EM fallback only)."""
        a, b = ev.spans[k]
        m = len(ev.index)
        E = np.zeros((m, b - a))
        E[np.arange(a, b), np.arange(b - a)] = 1.0
        blk = ev.lu.solve(E)[a:b]
        P = self.penalties[k]
        return float(np.trace(blk)) if P is None else float(P.multiply(blk).sum())

    def boundary_score(self, ev, k: int) -> tuple[float, float]:
        """One-sided score at σ²ₖ = 0 by a forward difference; (score, ai) as the dense solver."""
        h = 1e-6 * ev.sigma2[-1]
        s = ev.sigma2.copy()
        s[k] = h
        score = -0.5 * (self.evaluate(s).m2ll - ev.m2ll) / h
        # restart at a tenth of the residual variance: score / ai = 0.1 σ²ₑ
        return score, score / (0.1 * ev.sigma2[-1]) if score > 0 else 1.0

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
        PW = (W - Tx @ ev.lu.solve(np.asarray(Tx.T @ W))) / se
        ai = np.full((K + 1, K + 1), np.nan)
        ai[np.ix_(free, free)] = 0.5 * W.T @ PW
        return ai

    def inverse_diag(self, ev: SparseEvaluation, block: int = 512) -> np.ndarray:
        """diag(C⁻¹) by blocked solves with unit vectors (O(m) solves)."""
        m = len(ev.index)
        out = np.empty(m)
        for a in range(0, m, block):
            b = min(a + block, m)
            E = np.zeros((m, b - a))
            E[np.arange(a, b), np.arange(b - a)] = 1.0
            out[a:b] = ev.lu.solve(E)[np.arange(a, b), np.arange(b - a)]
        return out

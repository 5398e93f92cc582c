"""Dense Henderson mixed model equations: prepare once, evaluate at many σ².

The model is y = Xb + Σₖ Z̃ₖuₖ + e with uₖ ~ N(0, σ²ₖ Kₖ), e ~ N(0, σ²ₑ I). With
γₖ = σ²ₖ/σ²ₑ and Pₖ = Kₖ⁻¹ (the identity for iid and factored terms), Henderson's
coefficient matrix (random equations first, fixed last) is

    C = [[Z̃'Z̃ + ⊕ₖ Pₖ/γₖ, Z̃'X], [X'Z̃, X'X]],   r = [Z̃'y; X'y].

From one Cholesky factor C = LL' (see docs/theory.md, "REML on the MME"):

- solutions s = C⁻¹r = [û; b̂] and ℓ² = y'y − r's = σ²ₑ · y'Py;
- log|V| + log|X'V⁻¹X| = (n − p) log σ²ₑ + log|C| + log|D|, log|D| = Σₖ qₖ log γₖ + log|Kₖ|;
- log|V| = n log σ²ₑ + log|C_zz| + log|D| (ML), C_zz the leading block.

Derivatives for AI-REML (Gilmour, Thompson & Cullis 1995; Johnson & Thompson 1995)
use C⁻¹ (unscaled; the PEV matrix is σ²ₑC⁻¹):

- ∂ℓ/∂σ²ₖ = −½[qₖ/σ²ₖ − σ²ₑ tr(PₖC^{kk})/σ⁴ₖ − ûₖ'Pₖûₖ/σ⁴ₖ];
- ∂ℓ/∂σ²ₑ = −½[tr(P) − ê'ê/σ⁴ₑ], σ²ₑ tr(P) = n − p − Σₖ(qₖ − σ²ₑ tr(PₖC^{kk})/σ²ₖ);
- AI_ij = ½ wᵢ'Pwⱼ with working variates wₖ = Z̃ₖûₖ/σ²ₖ, wₑ = ê/σ²ₑ; Pw is the
  MME residual of w divided by σ²ₑ, so AI costs one extra solve.

Terms with σ²ₖ = 0 (on the boundary) are dropped from C: the limit of the objective
as γₖ → 0 is the objective of the model without them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from .._threads import blas_threads_for
from ..errors import ModelError
from ..spec.levels import Identity, SparseInverse
from ..spec.model import ModelSpec
from ._block_factor import BlockFactor

LOG2PI = float(np.log(2 * np.pi))


@dataclass(frozen=True, eq=False)
class Evaluation:
    """The MME at one σ²: objective, solutions and (optionally) derivatives.

    ``index`` lists the MME rows kept at this σ² (the eliminated diagonal term first,
    then the other active random terms, then X); ``spans[k]`` is term k's slice of
    ``solution`` (empty when σ²ₖ = 0).
    """

    sigma2: np.ndarray  # (K + 1,) term variances then residual
    active: np.ndarray  # (K,) bool: term in the MME (σ²ₖ > 0)
    m2ll: float  # −2 log L (REML or ML, lme4's constants)
    ell2: float  # σ²ₑ · y'Py
    solution: np.ndarray  # [û of active terms..., b̂] in ``index`` order
    index: np.ndarray  # rows of the full MME kept at this σ²
    spans: dict  # term k → (a, b) slice of ``solution``
    logdet_c: float
    residuals: np.ndarray  # ê = y − Xb̂ − Z̃û, shape (n,)
    factor: BlockFactor  # factor of the (unscaled) C; σ²ₑC⁻¹ is the PEV matrix
    score: np.ndarray | None = None  # ∂ℓ/∂σ², shape (K + 1,); NaN for inactive terms
    ai: np.ndarray | None = None  # average information, (K + 1, K + 1)

    @property
    def _nz(self) -> int:
        return int(sum(b - a for a, b in self.spans.values()))

    def inverse_block(self, k: int, zz: bool = False) -> np.ndarray:
        """Term k's block of C⁻¹ (dense; not for the eliminated diagonal term)."""
        a, b = self.spans[k]
        return self.factor.inverse_block(a, b, zz)

    def inverse_diag(self, k: int, zz: bool = False) -> np.ndarray:
        a, b = self.spans[k]
        return self.factor.inverse_diag(a, b, zz)

    def fixed_cov(self) -> np.ndarray:
        """Unscaled (X'V⁻¹X)⁻¹/σ²ₑ: the fixed-effect block of C⁻¹."""
        nz = self._nz
        return self.factor.inverse_block(nz, len(self.index))


class DenseMME:
    """Henderson's MME held as dense cross-products of [Z̃₁ … Z̃_K X].

    Parameters
    ----------
    spec : ModelSpec

    Notes
    -----
    Preparation costs one pass over the records (T'T for T = [Z̃ X], n × (r + p)).
    The iid term with the most levels has a diagonal block in C and is eliminated
    first (:class:`BlockFactor`), so each evaluation is one dense Cholesky of the
    *other* equations only: a one-factor model with thousands of levels costs
    O(q·p²). Other terms (crossed factors, dense K, A⁻¹) stay dense; the spectral
    solver handles one dense kernel faster.
    """

    name = "dense-mme"

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        blocks = [t.design() for t in spec.terms] + [spec.X]
        if all(sp.issparse(b) for b in blocks[:-1]):
            T = sp.hstack([sp.csr_matrix(b) for b in blocks], format="csc")
        else:
            T = np.hstack([sp.csr_matrix(b).toarray() if sp.issparse(b) else np.asarray(b) for b in blocks])
        self.T = T
        self.Tty = np.asarray(T.T @ spec.y).ravel()
        self.yty = float(spec.y @ spec.y)
        sizes = [t.rank for t in spec.terms]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.n_random = int(self.offsets[-1])
        self.penalties: list = []
        for t in spec.terms:
            if isinstance(t.covariance, SparseInverse):
                P = sp.csr_matrix(t.penalty).toarray() if sp.issparse(t.penalty) else np.asarray(t.penalty, float)
                self.penalties.append(P)
            else:
                self.penalties.append(None)  # identity
        self.n, self.p = spec.n, spec.p
        # the iid term with most levels: its block of C is diagonal (one level per record)
        iid = [k for k, t in enumerate(spec.terms) if isinstance(t.covariance, Identity)]
        self.diagonal_term = max(iid, key=lambda k: spec.terms[k].q) if iid else None
        self._cross_products(T)

    def _cross_products(self, T) -> None:
        """T'T held in blocks, never as a dense (q0 + m)² matrix.

        With the diagonal term's columns c0 (q0 of them) and the other columns o (m):
        ``d0`` = diag(Z0'Z0) (q0,), ``B0`` = Z0'T_o (q0, m) and ``R`` = T_o'T_o (m, m).
        A one-factor model with 50,000 levels thus holds 50,000·(1 + p) numbers for Z0,
        not 50,000² (20 GB); ``pos`` maps a column of T to its row of ``R`` (−1 on c0).
        """
        ncol = T.shape[1]
        pos = np.arange(ncol)
        if self.diagonal_term is None:
            c0 = np.empty(0, dtype=int)
            others = pos
        else:
            k = self.diagonal_term
            c0 = np.arange(self.offsets[k], self.offsets[k + 1])
            others = np.setdiff1d(pos, c0)
        pos = np.full(ncol, -1)
        pos[others] = np.arange(len(others))
        To = T[:, others]
        R = To.T @ To
        self.R = R.toarray() if sp.issparse(R) else np.asarray(R)
        if len(c0):
            T0 = T[:, c0]
            d0 = T0.multiply(T0).sum(axis=0) if sp.issparse(T0) else np.einsum("ij,ij->j", T0, T0)
            self.d0 = np.asarray(d0).ravel()
            B0 = T0.T @ To
            self.B0 = B0.toarray() if sp.issparse(B0) else np.asarray(B0)
        else:
            self.d0 = np.empty(0)
            self.B0 = np.empty((0, len(others)))
        self.pos = pos
        self.c0 = c0

    # -- index helpers -------------------------------------------------------------
    def _index(self, active: np.ndarray) -> tuple[np.ndarray, dict, int]:
        """Row order: eliminated diagonal term, other active random terms, X."""
        order = [k for k in range(len(active)) if active[k]]
        q0 = 0
        if self.diagonal_term is not None and active[self.diagonal_term]:
            order.remove(self.diagonal_term)
            order.insert(0, self.diagonal_term)
            q0 = self.spec.terms[self.diagonal_term].q
        idx, spans, pos = [], {}, 0
        for k in order:
            a, b = self.offsets[k], self.offsets[k + 1]
            idx.append(np.arange(a, b))
            spans[k] = (pos, pos + b - a)
            pos += b - a
        for k in range(len(active)):
            spans.setdefault(k, (pos, pos))
        idx.append(self.n_random + np.arange(self.p))
        return np.concatenate(idx), spans, q0

    def _design(self, index: np.ndarray):
        if len(index) == self.T.shape[1] and np.array_equal(index, np.arange(len(index))):
            return self.T
        return self.T[:, index]

    # -- evaluation ----------------------------------------------------------------
    def evaluate(self, sigma2, *, derivatives: bool = False, method: str = "reml") -> Evaluation:
        """Objective (and optionally score and AI) at variance components ``sigma2``.

        Parameters
        ----------
        sigma2 : array, shape (K + 1,)
            σ²₁ … σ²_K, σ²ₑ; σ²ₖ = 0 drops term k (boundary).
        derivatives : bool
            Also compute the traces of C⁻¹, the score and the average-information matrix.
        method : {"reml", "ml"}
        """
        s = np.asarray(sigma2, dtype=np.float64)
        se = s[-1]
        if not se > 0:
            raise ModelError(f"the residual variance must be positive, got {se!r}")
        active = s[:-1] > 0
        index, spans, q0 = self._index(active)
        rest = index[q0:]
        pr = self.pos[rest]  # rows of R: the diagonal term is never in ``rest``
        C_r = self.R[np.ix_(pr, pr)]
        d = np.empty(0)
        B = np.empty((0, len(rest)))
        logdet_d = 0.0
        for k, t in enumerate(self.spec.terms):
            if not active[k]:
                continue
            a, b = spans[k]
            lam = se / s[k]
            logdet_d += (b - a) * np.log(s[k] / se)
            if a < q0:  # the eliminated diagonal term
                d = self.d0 + lam  # index[:q0] is exactly the diagonal term's columns c0
                B = self.B0[:, pr]
                continue
            a, b = a - q0, b - q0
            if self.penalties[k] is None:
                C_r[a:b, a:b][np.diag_indices(b - a)] += lam
            else:
                C_r[a:b, a:b] += lam * self.penalties[k]
                logdet_d += t.logdet_k
        m_z = len(rest) - self.p
        with blas_threads_for(len(rest)):  # see henderson._threads
            factor = BlockFactor(d, B, C_r, m_z)
        r = self.Tty[index]
        sol = factor.solve(r)
        ell2 = max(self.yty - float(r @ sol), 0.0)
        n, p = self.n, self.p
        if method == "reml":
            m2ll = (n - p) * (LOG2PI + np.log(se)) + factor.logdet + logdet_d + ell2 / se
        else:
            m2ll = n * (LOG2PI + np.log(se)) + factor.logdet_zz + logdet_d + ell2 / se
        design = self._design(index)
        resid = self.spec.y - np.asarray(design @ sol).ravel()
        ev = Evaluation(s, active, float(m2ll), ell2, sol, index, spans, factor.logdet, resid, factor)
        if not derivatives:
            return ev
        zz = method != "reml"  # ML traces use C_zz⁻¹, the random block alone
        dof = n - p if method == "reml" else n
        K = len(self.spec.terms)
        score = np.full(K + 1, np.nan)
        work = np.zeros((n, K + 1))
        trP_se = dof
        for k in range(K):
            if not active[k]:
                continue
            a, b = spans[k]
            u = sol[a:b]
            tr = self.trace(ev, k, zz)
            P = self.penalties[k]
            quad = float(u @ u) if P is None else float(u @ P @ u)
            q = b - a
            score[k] = -0.5 * (q / s[k] - se * tr / s[k] ** 2 - quad / s[k] ** 2)
            trP_se -= q - se * tr / s[k]
            work[:, k] = np.asarray(design[:, a:b] @ u).ravel() / s[k]
        score[K] = -0.5 * (trP_se / se - float(resid @ resid) / se**2)
        work[:, K] = resid / se
        free = np.concatenate([np.flatnonzero(active), [K]])
        W = work[:, free]
        Pw = (W - np.asarray(design @ factor.solve(np.asarray(design.T @ W)))) / se
        ai = np.full((K + 1, K + 1), np.nan)
        ai[np.ix_(free, free)] = 0.5 * (W.T @ Pw)
        return Evaluation(s, active, float(m2ll), ell2, sol, index, spans, factor.logdet, resid, factor, score, ai)

    def trace(self, ev: Evaluation, k: int, zz: bool = False) -> float:
        """tr(Pₖ C^{kk}) (unscaled C⁻¹; C_zz⁻¹ when ``zz``), Pₖ = I or K⁻¹."""
        P = self.penalties[k]
        if P is None:
            return float(ev.inverse_diag(k, zz).sum())
        return float(np.sum(P * ev.inverse_block(k, zz)))

    def boundary_score(self, ev: Evaluation, k: int, method: str = "reml") -> tuple[float, float]:
        """Score ∂ℓ/∂σ²ₖ and its AI at σ²ₖ = 0 for an inactive term k.

        A positive score means the likelihood rises as σ²ₖ leaves zero, so the term
        should re-enter the optimisation. Returns (score, ai_kk).

        ∂ℓ/∂σ²ₖ = −½[tr(WZₖKₖZₖ') − y'PZₖKₖZₖ'Py] with W = P (REML) or V⁻¹ (ML: the
        fixed effects are not integrated out, so the trace has no X-projection); Py =
        V⁻¹(y − Xb̂) = ê/σ²ₑ in both. V⁻¹Zₖ is the residual of Zₖ from the random
        equations alone (C_zz), PZₖ from the whole of C.
        """
        se = ev.sigma2[-1]
        Zk = self.T[:, self.offsets[k] : self.offsets[k + 1]]
        Zk = Zk.toarray() if sp.issparse(Zk) else np.asarray(Zk)
        Tx = self._design(ev.index)
        if method == "reml":
            PZ = (Zk - np.asarray(Tx @ ev.factor.solve(np.asarray(Tx.T @ Zk)))) / se
        else:
            Tz = Tx[:, : ev._nz]
            PZ = (Zk - np.asarray(Tz @ ev.factor.solve_zz(np.asarray(Tz.T @ Zk)))) / se  # V⁻¹Zₖ
        Py = ev.residuals / se
        Kk = None if self.penalties[k] is None else sla.inv(self.penalties[k])
        ZtPy = Zk.T @ Py
        if Kk is None:
            tr = float(np.einsum("ij,ij->", Zk, PZ))
            quad = float(ZtPy @ ZtPy)
            w = Zk @ ZtPy
        else:
            tr = float(np.sum((Zk.T @ PZ) * Kk))
            quad = float(ZtPy @ Kk @ ZtPy)
            w = Zk @ (Kk @ ZtPy)
        score = -0.5 * (tr - quad)
        Pw = (w - np.asarray(Tx @ ev.factor.solve(np.asarray(Tx.T @ w)))) / se
        return score, 0.5 * float(w @ Pw)

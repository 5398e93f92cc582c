"""Spectral solver for one dense kernel: y = Xb + Zg + e, g ~ N(0, σ²_g K).

The record-level covariance V = σ²_g K_r + σ²_e I, K_r = ZKZ' (n × n), is reduced
once to tridiagonal form K_r = Q T Q' (LAPACK ``dsytrd``; half the cost of a full
eigendecomposition). With ỹ = Q'y and X̃ = Q'X every REML evaluation is O(n(p + 1)):

- M = σ²_g T + σ²_e I is SPD tridiagonal; log|V| = log|M| from its LDL' pivots;
- X'V⁻¹X = X̃'M⁻¹X̃, y'Py = ỹ'M⁻¹ỹ − (X̃'M⁻¹ỹ)'(X̃'M⁻¹X̃)⁻¹(X̃'M⁻¹ỹ);
- −2ℓ_REML = (n − p) log 2π + log|M| + log|X̃'M⁻¹X̃| + y'Py (lme4's constants).

σ²_e is profiled out (σ̂²_e = y'P₁y/(n − p) at ratio h = σ²_g/σ²_e): :meth:`SpectralSolver._profiled`
evaluates the profiled objective, which the solver protocol exposes as
``Prepared.profiled`` (:mod:`henderson.solvers.protocol`). This module only evaluates; the
one-dimensional search over log h (grid bracket, Brent, Newton polishing, the boundary
h = 0) is :func:`henderson.reml.spectral_search.search`, on the Prepared. Standard errors come from the average-information matrix
AI_ij = ½ wᵢ'Pwⱼ (w_g = K_r Py, w_e = Py), which needs only tridiagonal products.
BLUPs for every level of K (with or without records) are ĝ = σ²_g K Z'Py; Py = Q a.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
from scipy.linalg import lapack

from .._threads import blas_threads_for
from ..errors import NotPositiveDefiniteError
from ..linalg import dense_safe
from ..linalg._tridiagonal import apply_q, apply_qt, tridiag_ldl_solve, tridiag_matvec
from ..spec.model import PSD_TOL, psd_error

LOG2PI = float(np.log(2 * np.pi))
#: the range of log(σ²_g/σ²_e) the search in :mod:`henderson.reml.spectral_search` considers
LOG_H_BOUNDS = (-25.0, 25.0)


@dataclass(frozen=True, eq=False)
class SpectralEvaluation:
    """The one-kernel model at θ = (σ²_g, σ²_e): −2 log L, and the exact score and AI (2 × 2)."""

    theta: np.ndarray
    m2ll: float
    score: np.ndarray | None = None
    ai: np.ndarray | None = None


class SpectralSolver:
    """Prepared state of the one-kernel model.

    Parameters
    ----------
    y : ndarray, shape (n,)
    X : ndarray, shape (n, p), full column rank
    K : ndarray, shape (N, N)
        Covariance of the N levels (e.g. G of all genotyped individuals).
    codes : ndarray of int, shape (n,)
        Level of each record.
    term : str
        The term's name, for messages and the log columns.
    ids : ndarray of str, shape (N,), optional
        Level ids, so that a covariance that is not PSD is reported by id.
    """

    name = "spectral"
    #: the :class:`~henderson.spec.model.ModelSpec` when prepared from one (:meth:`from_spec`)
    spec = None

    def __init__(self, y, X, K, codes, term: str = "g", ids=None):
        self.term = term
        self.ids = np.asarray(ids, dtype=object) if ids is not None else np.arange(K.shape[0]).astype(str)
        self.y = np.asarray(y, dtype=np.float64)
        self.X = np.asarray(X, dtype=np.float64)
        self.K = K
        self.codes = np.asarray(codes)
        self.n, self.p = self.X.shape
        Kr = self._record_kernel_fortran()
        # scipy's default workspace (n) makes LAPACK fall back to the unblocked
        # reduction: the optimal lwork halves the time at n = 5,000 (13.5 s → 6 s)
        lwork = int(lapack.dsytrd_lwork(self.n, lower=1)[0])
        with blas_threads_for(self.n):  # see henderson._threads
            c, d, e, tau, info = lapack.dsytrd(Kr, lower=1, lwork=max(lwork, 1), overwrite_a=1)
        if info != 0:
            raise NotPositiveDefiniteError(f"tridiagonal reduction failed (LAPACK info {info})")
        self._c, self._tau, self.d, self.e = c, tau, d, e
        rot = apply_qt(c, tau, np.ascontiguousarray(np.column_stack([self.y, self.X])))
        self.y_rot, self.X_rot = rot[:, 0].copy(), rot[:, 1:].copy()
        # extreme eigenvalues of K_r, for diagnostics and the PSD check
        ev = lapack.dsterf(d.copy(), e.copy())[0]
        self.eigenvalues = ev  # of K_r (= of T), for the traces in the score
        self.eig_min, self.eig_max = float(ev[0]), float(ev[-1])
        if self.eig_min < -PSD_TOL * max(self.eig_max, 1e-300):
            raise self._psd_error()

    @classmethod
    def from_spec(cls, spec) -> SpectralSolver:
        """The solver of a one-term :class:`~henderson.spec.model.ModelSpec` with a dense K,
        keeping the spec (``self.spec``) for the result builder and ``henderson.prepare``."""
        if len(spec.terms) != 1 or spec.terms[0].kernel is None:
            raise ValueError("the spectral solver needs one random term with a dense K (cov=)")
        t = spec.terms[0]
        solver = cls(spec.y, spec.X, t.kernel, t.codes, term=t.name, ids=t.levels)
        solver.spec = spec
        return solver

    def _psd_error(self) -> NotPositiveDefiniteError:
        """The spec's PSD error, naming the ids that load on K_r's smallest eigenvector.

        That eigenvector comes from T (one eigenpair of a tridiagonal, O(n)) and the
        stored reflectors: no second decomposition. K_r = ZKZ' keeps K's inertia on the
        levels with records, and its eigenvector is constant within a level, so each
        level's loading is that of its records.
        """
        _, t = sla.eigh_tridiagonal(self.d, self.e, select="i", select_range=(0, 0))
        v = apply_q(self._c, self._tau, np.ascontiguousarray(t))[:, 0]
        load = np.zeros(self.K.shape[0])
        np.maximum.at(load, self.codes, np.abs(v))
        return psd_error(
            self.term, self.ids, self.eig_min, self.eig_max, load, what=" (on its levels with records, ZKZ')"
        )

    def _identity_codes(self) -> bool:
        return self.n == self.K.shape[0] and np.array_equal(self.codes, np.arange(self.n))

    def _record_kernel_fortran(self) -> np.ndarray:
        """A Fortran-ordered copy of K_r = ZKZ' (ours to overwrite).

        K is symmetric, so the transpose of a C-ordered copy is the Fortran-ordered
        matrix itself: one straight copy, no transposing pass.
        """
        K = np.asarray(self.K, dtype=np.float64)
        if self._identity_codes():
            return np.array(K.T, order="F") if K.flags.c_contiguous else np.array(K, order="F")
        return np.ascontiguousarray(K[np.ix_(self.codes, self.codes)]).T

    # -- core pieces ---------------------------------------------------------------------
    def _pieces(self, sg, se):
        """M⁻¹[ỹ X̃], log|M|, GLS b̂ and the rotated Py for σ²_g = sg, σ²_e = se."""
        rhs = np.column_stack([self.y_rot, self.X_rot])
        sol, logdet_m = tridiag_ldl_solve(sg * self.d + se, sg * self.e, rhs)
        if not np.isfinite(logdet_m):
            raise NotPositiveDefiniteError("V is not positive definite at these variance components")
        Miy, MiX = sol[:, 0], sol[:, 1:]
        XtMiX = self.X_rot.T @ MiX
        XtMiy = self.X_rot.T @ Miy
        cf = sla.cho_factor(XtMiX)
        b = sla.cho_solve(cf, XtMiy)
        a = Miy - MiX @ b  # rotated P y
        ypy = float(self.y_rot @ a)
        logdet_x = 2.0 * np.log(np.diag(cf[0])).sum()
        return dict(a=a, b=b, ypy=ypy, logdet_m=logdet_m, logdet_x=logdet_x, cf=cf, MiX=MiX)

    def evaluate(self, theta, *, method: str = "reml", derivatives: bool = False) -> SpectralEvaluation:
        """−2 log L at θ = (σ²_g, σ²_e), with the exact score and AI when ``derivatives``.

        One tridiagonal solve serves all three (the solver protocol's native evaluation,
        :mod:`henderson.solvers.protocol`).
        """
        sg, se = float(theta[0]), float(theta[1])
        pc = self._pieces(sg, se)
        m2ll = self._m2ll(pc, method)
        if not derivatives:
            return SpectralEvaluation(np.array([sg, se]), m2ll)
        return SpectralEvaluation(np.array([sg, se]), m2ll, self._score(pc, sg, se, method), self._ai(pc, sg, se))

    def m2ll(self, sg, se, method="reml") -> float:
        """−2 log L at (σ²_g, σ²_e), lme4's constants."""
        return self._m2ll(self._pieces(sg, se), method)

    def _m2ll(self, pc, method) -> float:
        n, p = self.n, self.p
        if method == "reml":
            return (n - p) * LOG2PI + pc["logdet_m"] + pc["logdet_x"] + pc["ypy"]
        return n * LOG2PI + pc["logdet_m"] + pc["ypy"]

    def _profiled(self, log_h, method):
        h = np.exp(log_h)
        pc = self._pieces(h, 1.0)
        n, p = self.n, self.p
        dof = n - p if method == "reml" else n
        se = pc["ypy"] / dof
        # M(σ²_e h, σ²_e) = σ²_e M(h, 1): log|M| gains n log σ²_e, log|X'V⁻¹X| loses p log σ²_e
        val = dof * (LOG2PI + np.log(se) + 1.0) + pc["logdet_m"]
        if method == "reml":
            val += pc["logdet_x"]
        return val, se

    def _boundary_value(self, method):
        n, p = self.n, self.p
        b, *_ = np.linalg.lstsq(self.X, self.y, rcond=None)
        r = self.y - self.X @ b
        dof = n - p if method == "reml" else n
        se = float(r @ r) / dof
        val = dof * (LOG2PI + np.log(se) + 1.0)
        if method == "reml":
            val += np.linalg.slogdet(self.X.T @ self.X)[1]
        return val, se

    def score(self, sg, se, method="reml"):
        """∂ℓ/∂(σ²_g, σ²_e) = −½[tr(PVᵢ) − y'PVᵢPy], traces from the eigenvalues of T.

        tr(M⁻¹T) = Σλᵢ/(σ²_gλᵢ + σ²_e), tr(M⁻¹) = Σ1/(σ²_gλᵢ + σ²_e); REML subtracts
        tr[(X̃'M⁻¹X̃)⁻¹ X̃'M⁻¹VᵢM⁻¹X̃].
        """
        return self._score(self._pieces(sg, se), sg, se, method)

    def _score(self, pc, sg, se, method):
        a, MiX, cf = pc["a"], pc["MiX"], pc["cf"]
        lam = self.eigenvalues
        den = sg * lam + se
        tr_g, tr_e = float(np.sum(lam / den)), float(np.sum(1.0 / den))
        if method == "reml":
            TMiX = tridiag_matvec(self.d, self.e, np.ascontiguousarray(MiX))
            tr_g -= float(np.trace(sla.cho_solve(cf, MiX.T @ TMiX)))
            tr_e -= float(np.trace(sla.cho_solve(cf, MiX.T @ MiX)))
        Ta = tridiag_matvec(self.d, self.e, a[:, None])[:, 0]
        return -0.5 * np.array([tr_g - float(a @ Ta), tr_e - float(a @ a)])

    # -- results ----------------------------------------------------------------------------
    def average_information(self, sg, se):
        """AI matrix (2 × 2, order σ²_g, σ²_e): ½ wᵢ'Pwⱼ, w_g = K_r Py, w_e = Py."""
        return self._ai(self._pieces(sg, se), sg, se)

    def _ai(self, pc, sg, se):
        a = pc["a"]
        W = np.column_stack([tridiag_matvec(self.d, self.e, a[:, None])[:, 0], a])
        sol, _ = tridiag_ldl_solve(sg * self.d + se, sg * self.e, np.ascontiguousarray(W))
        PW = sol - pc["MiX"] @ sla.cho_solve(pc["cf"], self.X_rot.T @ sol)
        return 0.5 * W.T @ PW

    def solve(self, sg, se):
        """GLS b̂, its covariance, Py on the record scale, and ĝ for all N levels."""
        pc = self._pieces(sg, se)
        cov_b = sla.cho_solve(pc["cf"], np.eye(self.p))
        Py = apply_q(self._c, self._tau, np.ascontiguousarray(pc["a"][:, None]))[:, 0]
        ZtPy = np.bincount(self.codes, weights=Py, minlength=self.K.shape[0])
        g = sg * (self.K @ ZtPy)  # ZtPy is 0 for levels without records: no column copy
        return dict(b=pc["b"], cov_b=cov_b, Py=Py, g=g, ypy=pc["ypy"])

    def pev(self, sg, se, cov_b):
        """Exact PEV of ĝ for all N levels: σ²_g Kᵢᵢ − σ⁴_g [KZ'PZK]ᵢᵢ.

        Costs one n × n Cholesky and an n × N triangular solve (O(n²N)): seconds at
        n = N = 5,000, so it is optional for large problems.
        """
        with blas_threads_for(self.n):
            return self._pev(sg, se, cov_b)

    def _pev(self, sg, se, cov_b):
        n = self.n
        V = np.array(self.K, dtype=np.float64) if self._identity_codes() else self.K[np.ix_(self.codes, self.codes)]
        V *= sg
        V[np.diag_indices(n)] += se
        # split above 12k rows (OpenBLAS threaded-dsyrk crash: linalg.dense_safe)
        L = dense_safe.cholesky_lower(V, overwrite=True)
        ZK = self.K if self._identity_codes() else self.K[self.codes]  # n × N: row i is K[level of record i]
        B = sla.solve_triangular(L, ZK, lower=True, check_finite=False)  # L⁻¹ZK
        LX = sla.solve_triangular(L, self.X, lower=True, check_finite=False)
        # P = V⁻¹ − V⁻¹X(X'V⁻¹X)⁻¹X'V⁻¹ ⇒ KZ'PZK = B'B − (B'LX) cov_b (LX'B)
        XB = LX.T @ B  # p × N
        quad = np.einsum("ij,ij->j", B, B) - np.einsum("ij,ij->j", XB, cov_b @ XB)
        return sg * np.diag(self.K) - sg**2 * quad

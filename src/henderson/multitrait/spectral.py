"""Spectral evaluations of the multi-trait model with one known kernel and complete data.

Model (records i = 1..n, traits k = 1..t, traits stacked: all records of trait 1, then
trait 2, ...):

    y = X b + (I_t ⊗ Z) u + e,
    Var(u) = Σ_g ⊗ K,   Var(e) = Σ_e ⊗ I_n,   V = Σ_g ⊗ K_r + Σ_e ⊗ I_n,  K_r = Z K Z'.

X is block-diagonal over traits (trait k has its own n × p_k design X_k). With
K_r = U D U' (one eigendecomposition) and Ỹ = U'Y, X̃_k = U'X_k the rotated model has
independent records: ỹ_i ~ N(X̃_i b, H_i), H_i = d_i Σ_g + Σ_e (t × t), as in GEMMA's
mvLMM (Zhou & Stephens 2014, Nat. Methods 11:407). Every quantity of REML is then a
sum over i of t × t products: O(n t³) per evaluation (see docs/theory.md,
"Multi-trait model").

The rotated fixed design is held as ``Xt`` of shape (n, t, p), p = Σ p_k, with
``Xt[i, k, cols of trait k] = row i of X̃_k`` and zeros elsewhere, so that trait-specific
designs need no special case.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from .._threads import blas_threads_for
from ..errors import ModelError, NotPositiveDefiniteError

LOG2PI = float(np.log(2 * np.pi))
#: eigenvalues of K_r below this (relative to the largest) are 0: K_r is PSD up to rounding
EIG_TOL = 1e-10


def vech_index(t: int) -> list[tuple[int, int]]:
    """(row, col) of the lower triangle in ASReml order: (0,0), (1,0), (1,1), (2,0), ..."""
    return [(k, l) for k in range(t) for l in range(k + 1)]


def vech(S: np.ndarray) -> np.ndarray:
    return np.array([S[k, l] for k, l in vech_index(S.shape[0])])


def unvech(v: np.ndarray, t: int) -> np.ndarray:
    S = np.zeros((t, t))
    for x, (k, l) in zip(v, vech_index(t)):
        S[k, l] = S[l, k] = x
    return S


class MultiTraitSpectral:
    """Prepared state: K_r eigendecomposed once, Y and X rotated.

    Parameters
    ----------
    Y : ndarray, shape (n, t)
        Complete records (no NaN), one row per record.
    Xs : list of t ndarrays, shapes (n, p_k)
        Fixed-effect design of each trait (full column rank).
    K : ndarray, shape (N, N)
        Known covariance of the N levels (G, A).
    codes : ndarray of int, shape (n,)
        Level of each record.
    vectors : {"full", "tridiagonal"}
        ``"full"``: K_r = UDU' by LAPACK dsyevr (needed for PEV). ``"tridiagonal"``:
        K_r = QTQ' (dsytrd, as the single-trait solver) and T = ZDZ' by MRRR, about half
        the cost; the REML evaluations are identical.

    Attributes
    ----------
    d : ndarray (n,)  eigenvalues of K_r (negatives at rounding level set to 0)
    U : ndarray (n, n)  eigenvectors of K_r (``vectors="full"``) or of T = Q'K_rQ
        (``"tridiagonal"``: K_r's eigenvectors are QU, never formed; no PEV)
    Yt : ndarray (n, t)  U'Y
    Xt : ndarray (n, t, p)  rotated stacked design
    """

    name = "multitrait-spectral"

    def __init__(self, Y, Xs, K, codes, vectors: str = "full"):
        self.Y = np.asarray(Y, dtype=np.float64)
        self.n, self.t = self.Y.shape
        if len(Xs) != self.t:
            raise ModelError(f"{len(Xs)} fixed-effect designs for {self.t} traits")
        self.Xs = [np.asarray(x, dtype=np.float64) for x in Xs]
        self.p_k = [x.shape[1] for x in self.Xs]
        self.p = int(sum(self.p_k))
        self.K = K
        self.codes = np.asarray(codes)
        n = self.n
        identity = n == K.shape[0] and np.array_equal(self.codes, np.arange(n))
        Kr = np.array(K, dtype=np.float64) if identity else np.asarray(K)[np.ix_(self.codes, self.codes)]
        self.identity_codes = identity
        if vectors not in ("full", "tridiagonal"):
            raise ModelError(f"vectors must be 'full' or 'tridiagonal', not {vectors!r}")
        self.vectors = vectors
        cols = np.cumsum([0] + self.p_k)
        Xt = np.zeros((n, self.t, self.p))
        with blas_threads_for(n):
            if vectors == "full":
                # U explicitly (PEV needs its rows): LAPACK dsyevr
                d, U = sla.eigh(Kr, overwrite_a=True, check_finite=False, driver="evr")
                self.Yt = U.T @ self.Y
                for k, x in enumerate(self.Xs):
                    Xt[:, k, cols[k] : cols[k + 1]] = U.T @ x
                self._c = self._tau = None
            else:
                # K_r = Q T Q' (dsytrd, as the single-trait spectral solver), T = Z D Z'
                # (MRRR, O(n²)): U = QZ is never formed; U'B = Z'(Q'B) with Q applied by
                # its reflectors. Half the cost of a full eigendecomposition, no PEV.
                from scipy.linalg import lapack

                from ..linalg._tridiagonal import apply_qt

                Kf = np.asfortranarray(Kr)
                lwork = int(lapack.dsytrd_lwork(n, lower=1)[0])
                c, dd, e, tau, info = lapack.dsytrd(Kf, lower=1, lwork=max(lwork, 1), overwrite_a=1)
                if info != 0:
                    raise NotPositiveDefiniteError(f"tridiagonal reduction failed (LAPACK info {info})")
                d, U = sla.eigh_tridiagonal(dd, e, check_finite=False)
                self._c, self._tau = c, tau
                B = apply_qt(c, tau, np.ascontiguousarray(np.column_stack([self.Y] + self.Xs)))
                B = U.T @ B
                self.Yt = B[:, : self.t].copy()
                off = self.t
                for k, x in enumerate(self.Xs):
                    Xt[:, k, cols[k] : cols[k + 1]] = B[:, off : off + x.shape[1]]
                    off += x.shape[1]
        top = max(float(d[-1]), 1e-300)
        if d[0] < -1e-8 * top:
            raise NotPositiveDefiniteError(
                f"the relationship matrix on the levels with records is not positive semi-definite "
                f"(smallest eigenvalue {d[0]:.3g}, largest {top:.3g})"
            )
        d = np.where(d < EIG_TOL * top, 0.0, d)
        self.d, self.U, self.Xt = d, U, Xt
        self.rank = int(np.count_nonzero(d))
        self.x_cols = cols

    # -- one evaluation ----------------------------------------------------------------------
    def pieces(self, Sg, Se):
        """Everything at (Σ_g, Σ_e): H_i⁻¹, GLS b̂, rotated Py, and −2 log L_REML.

        Returns a dict with ``Hinv`` (n, t, t), ``M`` = H_i⁻¹X̃_i (n, t, p), ``C`` =
        (X'V⁻¹X)⁻¹, ``b``, ``Pt`` (n, t: row i is the rotated Py of record i), ``ypy``,
        ``logdet_v`` = Σ log|H_i|, ``logdet_x`` = log|X'V⁻¹X|, ``m2ll``.
        """
        Sg = np.asarray(Sg, dtype=float)
        Se = np.asarray(Se, dtype=float)
        H = self.d[:, None, None] * Sg + Se
        try:
            L = np.linalg.cholesky(H)
        except np.linalg.LinAlgError:
            raise NotPositiveDefiniteError("V is not positive definite at these covariance matrices") from None
        logdet_v = 2.0 * float(np.log(np.diagonal(L, axis1=1, axis2=2)).sum())
        Linv = np.linalg.inv(L)
        Hinv = np.einsum("imk,iml->ikl", Linv, Linv)  # H⁻¹ = L⁻ᵀL⁻¹
        M = np.einsum("ikl,ilp->ikp", Hinv, self.Xt)
        XVX = np.einsum("ikp,ikq->pq", self.Xt, M)
        XVy = np.einsum("ikp,ik->p", M, self.Yt)
        try:
            cf = sla.cho_factor(XVX, check_finite=False)
        except np.linalg.LinAlgError:
            raise ModelError("X'V⁻¹X is singular: the fixed effects are not estimable") from None
        b = sla.cho_solve(cf, XVy, check_finite=False)
        C = sla.cho_solve(cf, np.eye(self.p), check_finite=False)
        R = self.Yt - np.einsum("ikp,p->ik", self.Xt, b)
        Pt = np.einsum("ikl,il->ik", Hinv, R)
        ypy = float(np.sum(self.Yt * Pt))
        logdet_x = 2.0 * float(np.log(np.diag(cf[0])).sum())
        m2ll = (self.n * self.t - self.p) * LOG2PI + logdet_v + logdet_x + ypy
        return dict(Hinv=Hinv, M=M, C=C, b=b, Pt=Pt, ypy=ypy, logdet_v=logdet_v, logdet_x=logdet_x, m2ll=float(m2ll))

    def m2ll(self, Sg, Se) -> float:
        """−2 log L_REML = (nt − p) log 2π + log|V| + log|X'V⁻¹X| + y'Py (lme4's constants)."""
        return self.pieces(Sg, Se)["m2ll"]

    def _q_blocks(self, pc):
        """Diagonal t × t blocks of the rotated P: Q_i = H_i⁻¹ − M_i C M_i'."""
        MC = np.einsum("ikp,pq->ikq", pc["M"], pc["C"])
        return pc["Hinv"] - np.einsum("ikq,ilq->ikl", MC, pc["M"])

    def gradients(self, Sg, Se, pc=None):
        """∂ℓ/∂Σ_g and ∂ℓ/∂Σ_e as symmetric matrices (ℓ = REML log-likelihood).

        ∂ℓ/∂Σ[k,l] treated as one free entry of a symmetric matrix: with
        W_g = Σ_i d_i (p_i p_i' − Q_i) and W_e = Σ_i (p_i p_i' − Q_i), the score of a
        variance Σ[k,k] is ½W[k,k] and of a covariance Σ[k,l] (entering twice) W[k,l].
        Returns (W_g, W_e, pieces).
        """
        pc = self.pieces(Sg, Se) if pc is None else pc
        Q = self._q_blocks(pc)
        pp = np.einsum("ik,il->ikl", pc["Pt"], pc["Pt"])
        A = pp - Q
        Wg = np.einsum("i,ikl->kl", self.d, A)
        We = A.sum(axis=0)
        return Wg, We, pc

    def score(self, Sg, Se, pc=None):
        """Score vector over θ = (vech Σ_g, vech Σ_e), lower triangles in ASReml order."""
        Wg, We, pc = self.gradients(Sg, Se, pc)
        idx = vech_index(self.t)
        f = np.array([0.5 if k == l else 1.0 for k, l in idx])
        s = np.concatenate([f * vech(Wg), f * vech(We)])
        return s, pc

    def _dv_py(self, pc):
        """F[:, :, j] = rotated V_j P y for every parameter j (n, t, J)."""
        t, Pt, d = self.t, pc["Pt"], self.d
        idx = vech_index(t)
        J = 2 * len(idx)
        F = np.zeros((self.n, t, J))
        for c, w in enumerate((d, None)):
            for j, (k, l) in enumerate(idx):
                col = c * len(idx) + j
                F[:, k, col] = Pt[:, l]
                if k != l:
                    F[:, l, col] = Pt[:, k]
                if w is not None:
                    F[:, :, col] *= w[:, None]
        return F

    def average_information(self, Sg, Se, pc=None):
        """AI_jm = ½ y'P V_j P V_m P y over θ (Gilmour, Thompson & Cullis 1995)."""
        pc = self.pieces(Sg, Se) if pc is None else pc
        F = self._dv_py(pc)
        HF = np.einsum("ikl,ilj->ikj", pc["Hinv"], F)
        XF = np.einsum("ikp,ikj->pj", pc["M"], F)  # X'V⁻¹F
        ai = np.einsum("ikj,ikm->jm", F, HF) - XF.T @ pc["C"] @ XF
        return 0.25 * (ai + ai.T)  # ½ F'PF, symmetrised against rounding

    def em_update(self, Sg, Se, pc=None):
        """One EM-REML step, closed form in the rotated space; both results PSD.

        Σ_g ← Σ_g + Σ_g W_g Σ_g / rank(K_r),  Σ_e ← Σ_e + Σ_e W_e Σ_e / n: the averages of
        E[g̃_i g̃_i'|y]/d_i and E[ẽ_i ẽ_i'|y] under REML (flat prior on b), each a second
        moment and so PSD.
        """
        Wg, We, pc = self.gradients(Sg, Se, pc)
        Sg_new = Sg + Sg @ Wg @ Sg / max(self.rank, 1)
        Se_new = Se + Se @ We @ Se / self.n
        return 0.5 * (Sg_new + Sg_new.T), 0.5 * (Se_new + Se_new.T)

    # -- solutions ------------------------------------------------------------------------
    def solve(self, Sg, Se, pev: bool = True):
        """GLS b̂ with its covariance, GEBVs of all N levels, PEV and fitted values.

        û = (Σ_g ⊗ K Z') P y, i.e. Û = K Z'(U P̃) Σ_g (N × t). PEV of level j, trait k:
        [Σ_g K_jj − Σ_g B_j Σ_g]_kk, B_j = Σ_i a_ji² H_i⁻¹ − (Σ_i a_ji M_i) C (Σ_i a_ji M_i)',
        a_j = U'Z K[:, j] (the rotated covariance of level j with the records).
        """
        pc = self.pieces(Sg, Se)
        N = self.K.shape[0]
        Py = self._u_times(pc["Pt"])  # (n, t) = U P̃
        ZtPy = np.zeros((N, self.t))
        np.add.at(ZtPy, self.codes, Py)
        # K Z'Py; with one record per level K_r U = U D
        KZtPy = np.asarray(self.K) @ ZtPy if not self.identity_codes else self._u_times(self.d[:, None] * pc["Pt"])
        U_hat = KZtPy @ Sg
        out = dict(b=pc["b"], cov_b=pc["C"], U_hat=U_hat, Py=Py, m2ll=pc["m2ll"], pieces=pc)
        if pev and self.vectors != "full":
            raise ModelError("PEV needs the eigenvectors of K_r (vectors='full')")
        if pev:
            A = self._rotated_cross(N)  # (N, n)
            S1 = ((A * A) @ pc["Hinv"].reshape(self.n, -1)).reshape(N, self.t, self.t)
            B2 = (A @ pc["M"].reshape(self.n, -1)).reshape(N, self.t, self.p)
            quad = np.einsum("jkp,pq,jlq->jkl", B2, pc["C"], B2)
            Bj = S1 - quad
            kdiag = np.diag(np.asarray(self.K))
            shrink = np.einsum("kl,jlm,mk->jk", Sg, Bj, Sg)  # diag of Σ_g B_j Σ_g
            out["pev"] = np.maximum(kdiag[:, None] * np.diag(Sg)[None, :] - shrink, 0.0)
            out["k_diag"] = np.asarray(kdiag, dtype=float)
        return out

    def _u_times(self, B):
        """U B (n × k): U explicitly, or Q(Z B) with Q applied by its reflectors."""
        if self.vectors == "full":
            return self.U @ B
        from ..linalg._tridiagonal import apply_q

        return apply_q(self._c, self._tau, np.ascontiguousarray(self.U @ B))

    def _rotated_cross(self, N):
        """A (N × n): row j = (U'Z K[:, j])' = K[j, codes] U."""
        if self.identity_codes:
            return self.U * self.d[None, :]
        K = np.asarray(self.K)
        with blas_threads_for(self.n):
            return K[:, self.codes] @ self.U

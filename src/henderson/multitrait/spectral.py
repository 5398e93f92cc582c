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

Two evaluators share that interface: :class:`MultiTraitSpectral` holds U explicitly
(LAPACK dsyevr; the reference in the tests) and :class:`MultiTraitTridiagonal`, which the
fit uses, works on K_r = QTQ' alone (dsytrd, as the single-trait solver): V⁻¹ by t
tridiagonal solves per right-hand side, no eigenvectors unless PEV is asked for.

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
#: the null vectors N of K_r (n × n₀, dense) are deflated when n·n₀ is at most this (200 MB);
#: the bordered system they enter stays small for any n₀ (see MultiTraitTridiagonal._apply_p).
#: Beyond it V is solved whole as before: exact while Σ_e is well away from singular
MAX_NULL_ENTRIES = 25_000_000
#: singular values of a rotated null-block design X̂_N below this (relative to its largest)
#: are 0: their directions decouple from b (see MultiTraitTridiagonal.pieces)
SV_TOL = 1e-12
#: a pencil value b_r (∈ [0, 1], a_r + b_r = 1) at or below this is 0: Σ_e singular along
#: S_r, b_r then rounding (S_r'Σ_eS_r); on directions of the null block that X̂_N does not
#: absorb V is then singular on the error contrasts
B_TOL = 1e-13


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
    vectors : {"full"}
        K_r = UDU' by LAPACK dsyevr, U held explicitly (n × n). The fit uses
        :class:`MultiTraitTridiagonal` (no eigenvectors during REML); this dense-eigenvector
        rotation stays as its reference in the tests.

    Attributes
    ----------
    d : ndarray (n,)  eigenvalues of K_r (negatives at rounding level set to 0)
    U : ndarray (n, n)  eigenvectors of K_r
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
        if vectors != "full":
            raise ModelError(
                f"vectors must be 'full' (for the tridiagonal path use MultiTraitTridiagonal), not {vectors!r}"
            )
        self.vectors = vectors
        cols = np.cumsum([0] + self.p_k)
        Xt = np.zeros((n, self.t, self.p))
        with blas_threads_for(n):  # U explicitly: LAPACK dsyevr
            d, U = sla.eigh(Kr, overwrite_a=True, check_finite=False, driver="evr")
            self.Yt = U.T @ self.Y
            for k, x in enumerate(self.Xs):
                Xt[:, k, cols[k] : cols[k + 1]] = U.T @ x
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
        """U B (n × k)."""
        return self.U @ B

    def _rotated_cross(self, N):
        """A (N × n): row j = (U'Z K[:, j])' = K[j, codes] U."""
        if self.identity_codes:
            return self.U * self.d[None, :]
        K = np.asarray(self.K)
        with blas_threads_for(self.n):
            return K[:, self.codes] @ self.U


class MultiTraitTridiagonal(MultiTraitSpectral):
    """The same model on the tridiagonal reduction alone: no eigenvectors during REML.

    K_r = Q T Q' (LAPACK dsytrd, the single-trait spectral solver's reduction; Q kept as
    its Householder reflectors) and the eigenvalues d of T (dsterf, O(n²)). With
    Ỹ = Q'Y and X̃_k = Q'X_k, (I_t ⊗ Q')V(I_t ⊗ Q) = Σ_g ⊗ T + Σ_e ⊗ I. At each (Σ_g, Σ_e)
    the t × t pencil is diagonalised on Σ_g + Σ_e = LL': L⁻¹Σ_gL⁻ᵀ = W diag(a) W',
    S = L⁻ᵀW, so that S'Σ_gS = diag a and S'Σ_eS = diag b (a + b = 1, either matrix may be
    singular); then

        V⁻¹ = (S ⊗ I) diag_r[(a_r T + b_r I)⁻¹] (S' ⊗ I),
        log|V| = n log|Σ_g + Σ_e| + Σ_r log|a_r T + b_r I|,

    t SPD tridiagonal solves per right-hand side (O(n t) each), and the traces of the score
    come from d alone: tr[(V⁻¹)_kl T] = Σ_r S_kr S_lr Σ_i d_i/(a_r d_i + b_r). REML costs
    O(n t (t + p + J)) per evaluation with no n × n matrix beyond the reduced K_r. The
    eigenvectors U = QZ (T = ZDZ' by MRRR, then Q applied by LAPACK dormtr, 2n³ flops in
    BLAS 3) are formed only for PEV, in :meth:`solve`.

    Null vectors of K_r (a centred G has one, 1; G from m SNPs has n − m or more) are
    deflated (up to n·n₀ ≤ :data:`MAX_NULL_ENTRIES`):
    their eigenvectors N of T (bisection + inverse iteration, O(n) each) split V into
    V_N = I ⊗ Σ_e and V_R on the complement. At a singular Σ_e V_N is singular, and
    log|V| → −∞ while log|X'V⁻¹X| → +∞ (the intercepts lie in N): the REML likelihood
    stays finite, but the two terms cancel catastrophically (measured on the bench data:
    −2 log L off by 4.6 at Σ_e's smallest eigenvalue 4e-12, where the optimiser then
    stopped). Here V_R is solved on the complement and the null block enters through the
    small bordered (saddle-point) system of :meth:`_apply_p`, exact at a singular Σ_e. See
    docs/theory.md, "Multi-trait model", the tridiagonal evaluation.

    docs/theory.md, "Multi-trait model", the tridiagonal evaluation.

    Parameters are those of :class:`MultiTraitSpectral` (without ``vectors``).

    Attributes
    ----------
    d : ndarray (n,)  eigenvalues of K_r (of T), negatives at rounding level set to 0
    dT, eT : ndarray (n,), (n − 1,)  diagonal and off-diagonal of T
    Yt : ndarray (n, t)  Q'Y
    Xt : ndarray (n, t, p)  Q'X in the stacked layout of :class:`MultiTraitSpectral`
    """

    def __init__(self, Y, Xs, K, codes):
        from scipy.linalg import lapack

        from ..linalg._tridiagonal import apply_qt

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
        Kd = np.asarray(K, dtype=np.float64)
        self.identity_codes = n == Kd.shape[0] and np.array_equal(self.codes, np.arange(n))
        self.vectors = "tridiagonal"
        # Fortran-ordered copy of K_r for dsytrd to overwrite; K is symmetric, so the
        # transpose of a C-ordered copy is that matrix with no transposing pass
        if self.identity_codes:
            Kf = np.array(Kd.T, order="F") if Kd.flags.c_contiguous else np.array(Kd, order="F")
        else:
            Kf = np.ascontiguousarray(Kd[np.ix_(self.codes, self.codes)]).T
        # optimal workspace: scipy's default (n) makes dsytrd unblocked, twice as slow
        lwork = int(lapack.dsytrd_lwork(n, lower=1)[0])
        with blas_threads_for(n):
            c, dT, eT, tau, info = lapack.dsytrd(Kf, lower=1, lwork=max(lwork, 1), overwrite_a=1)
        if info != 0:
            raise NotPositiveDefiniteError(f"tridiagonal reduction failed (LAPACK info {info})")
        self._c, self._tau, self.dT, self.eT = c, tau, dT, eT
        d = lapack.dsterf(dT.copy(), eT.copy())[0]  # eigenvalues only, O(n²)
        top = max(float(d[-1]), 1e-300)
        if d[0] < -1e-8 * top:
            raise NotPositiveDefiniteError(
                f"the relationship matrix on the levels with records is not positive semi-definite "
                f"(smallest eigenvalue {d[0]:.3g}, largest {top:.3g})"
            )
        self.d_raw = d  # the spectrum of T itself: the traces must match the solves with T
        self.d = np.where(d < EIG_TOL * top, 0.0, d)
        self.rank = int(np.count_nonzero(self.d))
        cols = np.cumsum([0] + self.p_k)
        self.x_cols = cols
        B = apply_qt(c, tau, np.ascontiguousarray(np.column_stack([self.Y] + self.Xs)))
        self.Yt = B[:, : self.t].copy()
        Xt = np.zeros((n, self.t, self.p))
        off = self.t
        for k, x in enumerate(self.Xs):
            Xt[:, k, cols[k] : cols[k + 1]] = B[:, off : off + x.shape[1]]
            off += x.shape[1]
        self.Xt = Xt
        self.U = None  # K_r's eigenvectors: formed only for PEV (see solve)
        # the null vectors N of T (a centred G has one: 1): deflated, so that V's null block
        # I ⊗ Σ_e is handled exactly when Σ_e is singular (see _apply_p)
        n0 = n - self.rank
        self._n0 = n0 if 0 < n0 < n and n * n0 <= MAX_NULL_ENTRIES else 0
        if self._n0:
            _, N = sla.eigh_tridiagonal(
                dT, eT, select="i", select_range=(0, self._n0 - 1), check_finite=False, lapack_driver="stebz"
            )
            if self._n0 > 1:
                # inverse iteration on a large cluster at 0 (G from few SNPs) may leave the
                # vectors off orthogonality by more than rounding: re-orthonormalise (O(n n₀²))
                N = np.linalg.qr(N)[0]
            self._N = np.ascontiguousarray(N)
            self._XN = np.einsum("in,ikp->nkp", self._N, Xt).reshape(self._n0 * self.t, self.p)
            self._XtR = self._project(Xt)
        else:
            self._N = np.zeros((n, 0))
            self._XN = np.zeros((0, self.p))
            self._XtR = Xt
        self._d_rest = d[self._n0 :]  # T's eigenvalues on the complement of N
        self._d_min = float(self._d_rest[0]) if len(self._d_rest) else 0.0

    # -- V⁻¹ through the t × t diagonalisation ------------------------------------------
    def _diagonalise(self, Sg, Se):
        """S (t × t), a, b (t,) with S'Σ_gS = diag a, S'Σ_eS = diag b, a + b = 1; log|Σ_g + Σ_e|.

        The pencil is diagonalised on Σ_g + Σ_e = LL' (W'L⁻¹Σ_gL⁻ᵀW = diag a), so either
        matrix may be singular: V's blocks a_r T + b_r I have a_r, b_r ∈ [0, 1]. b_r is
        formed from Σ_e itself, not as 1 − a_r, so that it keeps its relative accuracy when
        Σ_e is nearly singular.
        """
        try:
            L = np.linalg.cholesky(Sg + Se)
        except np.linalg.LinAlgError:
            raise NotPositiveDefiniteError(
                "the residual covariance matrix and the genetic one are singular in a common direction: "
                "V is not positive definite"
            ) from None
        Li = np.linalg.inv(L)  # t × t (scipy's triangular solve costs ms per call on tiny input)
        A = Li @ Sg @ Li.T
        a, W = np.linalg.eigh(0.5 * (A + A.T))
        S = Li.T @ W
        b = np.einsum("kr,kl,lr->r", S, Se, S)
        a = np.clip(a, 0.0, None)
        b = np.clip(b, 0.0, None)
        return S, a, b, 2.0 * float(np.log(np.diag(L)).sum())

    def _project(self, B):
        """B with its components along the null vectors N of T removed (B: (n, ...))."""
        if self._n0 == 0:
            return B
        N = self._N
        flat = B.reshape(self.n, -1)
        return (flat - N @ (N.T @ flat)).reshape(B.shape)

    def _vinv(self, S, a, b, B):
        """V_R⁻¹B for B (n, t, k) in the Q basis; returns (V_R⁻¹B, Σ_r log|a_r T_R + b_r I|).

        V_R is V on the complement of the null vectors N of T (all of V when there are none
        or they are not deflated); B must have no component along N. Without N: one SPD
        tridiagonal solve per r. With N, a_r T + b_r I is singular (b_r = 0: Σ_e singular)
        or ill-conditioned along N; it is solved shifted by s_r = 10⁻³ of its smallest
        eigenvalue on the complement, the result projected off N, and iteratively refined
        against the unshifted matrix (each sweep shrinks the error ≥ 1000×, so 6 sweeps
        reach rounding); the log-determinant is then Σ over the non-null eigenvalues of T.
        """
        from ..linalg._tridiagonal import tridiag_ldl_solve, tridiag_matvec

        Bs = np.einsum("ikc,kr->irc", B, S)
        out = np.empty_like(Bs)
        logdet = 0.0
        for r in range(self.t):  # t tridiagonal systems, each with all k right-hand sides
            rhs = np.ascontiguousarray(Bs[:, r, :])
            if self._n0 == 0:
                sol, ld = tridiag_ldl_solve(a[r] * self.dT + b[r], a[r] * self.eT, rhs)
                if not np.isfinite(ld):
                    raise NotPositiveDefiniteError("V is not positive definite at these covariance matrices")
            else:
                low = a[r] * self._d_min + b[r]  # smallest eigenvalue of a_r T_R + b_r I
                shift = max(0.0, 1e-3 * low - b[r])
                diag, off = a[r] * self.dT + b[r], a[r] * self.eT
                sol, ld = tridiag_ldl_solve(diag + shift, off, rhs)
                if not np.isfinite(ld):
                    raise NotPositiveDefiniteError("V is not positive definite at these covariance matrices")
                sol = self._project(sol)
                for _ in range(6 if shift > 0 else 0):
                    res = self._project(rhs - tridiag_matvec(diag, off, np.ascontiguousarray(sol)))
                    sol = sol + self._project(tridiag_ldl_solve(diag + shift, off, res)[0])
                ld = float(np.log(a[r] * self._d_rest + b[r]).sum())
            out[:, r, :] = sol
            logdet += ld
        return np.einsum("irc,kr->ikc", out, S), logdet

    def _t_times(self, B):
        """T B for B (n, ...) along the first axis."""
        from ..linalg._tridiagonal import tridiag_matvec

        flat = np.ascontiguousarray(B.reshape(self.n, -1))
        return tridiag_matvec(self.dT, self.eT, flat).reshape(B.shape)

    def _apply_p(self, pc, B):
        """(P B, β_B) for B (n, t, k) in the Q basis: P = V⁻¹ − V⁻¹XCX'V⁻¹, β_B the GLS
        coefficients of B (PB = V⁻¹(B − Xβ_B)); stable when V is singular along N.

        P and β are the blocks of the bordered system [[V, X], [X', 0]] [PB; β] = [B; 0],
        which is nonsingular whenever the REML likelihood is finite, V singular or not.
        In the pencil basis S (S'Σ_gS = diag a, S'Σ_eS = diag b) V is ⊕_r (a_r T + b_r I);
        with the null vectors N of T deflated its null block is ⊕_r b_r I_{n₀}. Per r the
        rotated null-block design X̂_N^r = N'X S_r (n₀ × p) is split by its SVD into
        range Q_r (q_r ≤ p columns) and the rest: the rest decouples (w = B̂/b_r there,
        since X̂_N^r β has no component on it), and eliminating V_R leaves the small
        saddle-point matrix B_s = [[⊕_r b_r I_{q_r}, R], [R', −A]] (R: the stacked
        R_r = Q_r'X̂_N^r, A = X_R'V_R⁻¹X_R; Σ q_r + p square whatever n₀), so that
        B_s [w_top; β] = [Q'B̂_N; −X_R'V_R⁻¹B_R] and (PB)_R = V_R⁻¹B_R − V_R⁻¹X_R β.
        Neither V_N⁻¹ nor A⁻¹ is needed: with a centred G the intercepts lie in N, and A
        is singular; a b_r = 0 enters only B_s (q_r = n₀ then, or pieces refuses it).
        """
        k = B.shape[2]
        BR = self._project(B)
        VB, _ = self._vinv(pc["S"], pc["a"], pc["bb"], BR)
        XVB = np.tensordot(self.Xt, VB, axes=([0, 1], [0, 1])).reshape(self.p, k)
        PN = None
        if self._n0:
            S = pc["S"]
            BN = np.einsum("in,ikc,kr->rnc", self._N, B, S)  # (t, n0, k) in the pencil basis
            tops, rests = [], []
            for r, Qr in enumerate(pc["Qs"]):
                top = Qr.T @ BN[r]
                tops.append(top)
                rests.append(BN[r] - Qr @ top)
            sol = pc["Binv"] @ np.concatenate(tops + [-XVB])
            m = pc["q_off"][-1]
            wtop, beta = sol[:m], sol[m:]
            W = np.empty_like(BN)
            for r, Qr in enumerate(pc["Qs"]):
                lo, hi = pc["q_off"][r], pc["q_off"][r + 1]
                W[r] = Qr @ wtop[lo:hi]
                if Qr.shape[1] < self._n0:
                    W[r] += rests[r] / pc["bb"][r]
            PN = np.einsum("kr,rnc->nkc", S, W)  # back to traits: (S ⊗ I) w
        else:
            beta = sla.cho_solve(pc["cfA"], XVB, check_finite=False)
        PB = VB - pc["VX"] @ beta
        if PN is not None:
            PB = PB + np.einsum("in,nkc->ikc", self._N, PN)
        return PB, beta, PN

    def _null_blocks(self, pc):
        """P's null block P_NN (n₀, t, n₀, t) and the block G1 (n₀, t, p) with
        P_NR a_R = −G1 X_R'V_R⁻¹a_R, both by trait (for PEV; O(n₀² t²) memory)."""
        S, n0, t = pc["S"], self._n0, self.t
        Binv, off = pc["Binv"], pc["q_off"]
        m = off[-1]
        Phat = np.zeros((t, n0, t, n0))
        G1h = np.zeros((t, n0, self.p))
        for r, Qr in enumerate(pc["Qs"]):
            G1h[r] = Qr @ Binv[off[r] : off[r + 1], m:]
            for s_, Qs_ in enumerate(pc["Qs"]):
                Phat[r, :, s_, :] = Qr @ Binv[off[r] : off[r + 1], off[s_] : off[s_ + 1]] @ Qs_.T
            if Qr.shape[1] < n0:
                Phat[r, :, r, :] += (np.eye(n0) - Qr @ Qr.T) / pc["bb"][r]
        PNN = np.einsum("kr,rnsm,ls->nkml", S, Phat, S)
        G1 = np.einsum("kr,rnp->nkp", S, G1h)
        return PNN, G1

    def pieces(self, Sg, Se):
        """Everything at (Σ_g, Σ_e) in the Q basis: GLS b̂, Py, C, −2 log L_REML.

        Returns a dict with ``S``, ``a``, ``bb`` (the t × t diagonalisation), ``VX`` =
        V_R⁻¹X̃_R (n, t, p), ``cfA`` (Cholesky factor of A = X'V⁻¹X, no null vectors) or
        ``Binv`` (the inverse of the saddle-point matrix B_s of :meth:`_apply_p`), ``C`` =
        (X'V⁻¹X)⁻¹ (−B_s⁻¹'s β block with null vectors), ``b``, ``Pt`` (n, t: Q'Py by
        trait), ``ypy``, ``logdet_v``, ``logdet_x``, ``m2ll``. With N deflated,
        |V|·|X'V⁻¹X| = |V_R|·|det B_s| (the bordered matrix's determinant, V_R eliminated),
        which stays finite as Σ_e becomes singular; the two are then reported as log|V_R|
        and log|det B_s|.
        """
        Sg = np.asarray(Sg, dtype=float)
        Se = np.asarray(Se, dtype=float)
        S, a, bb, logdet_ref = self._diagonalise(Sg, Se)
        VX, logdet_m = self._vinv(S, a, bb, self._XtR)
        logdet_v = self.n * logdet_ref + logdet_m  # |Σ_g+Σ_e|^n Π_r |a_r T_R + b_r I| (+ null block)
        XVX = np.tensordot(self.Xt, VX, axes=([0, 1], [0, 1]))
        XVX = 0.5 * (XVX + XVX.T)
        pc = dict(S=S, a=a, bb=bb, VX=VX, cfA=None, Binv=None)
        if self._n0:
            n0 = self._n0
            XNh = np.einsum("nkp,kr->rnp", self._XN.reshape(n0, self.t, self.p), S)  # X̂_N^r
            Qs, Rs = [], []
            for r in range(self.t):
                U, sv, Vt = np.linalg.svd(XNh[r], full_matrices=False)
                q = int(np.count_nonzero(sv > SV_TOL * max(float(sv[0]) if len(sv) else 0.0, 1e-300)))
                Qs.append(np.ascontiguousarray(U[:, :q]))
                Rs.append(sv[:q, None] * Vt[:q])
                if q < n0:  # the decoupled part: b_r I on n₀ − q_r directions
                    if bb[r] <= B_TOL:
                        raise NotPositiveDefiniteError(
                            "the residual covariance matrix is singular along a direction that the null space of the "
                            "relationship matrix does not absorb into the fixed effects: V is singular on the error "
                            "contrasts"
                        )
                    logdet_v += (n0 - q) * float(np.log(bb[r]))
            off = np.concatenate([[0], np.cumsum([Q.shape[1] for Q in Qs])]).astype(int)
            m = int(off[-1])
            Bs = np.zeros((m + self.p, m + self.p))
            Bs[:m, :m] = np.diag(np.repeat(bb, np.diff(off)))
            Bs[:m, m:] = np.concatenate(Rs) if m else np.zeros((0, self.p))
            Bs[m:, :m] = Bs[:m, m:].T
            Bs[m:, m:] = -XVX
            # symmetric equilibration: rows of very different scales (b, R, A)
            sc = 1.0 / np.sqrt(np.maximum(np.abs(Bs).max(axis=1), 1e-300))
            Bq = Bs * np.outer(sc, sc)
            sign, ld = np.linalg.slogdet(Bq)
            # a saddle-point matrix with V PD on the contrasts has sign (−1)^p; rcond guards
            # against a numerically singular one
            if sign != (-1) ** self.p or np.linalg.cond(Bq) > 1e13:
                raise NotPositiveDefiniteError(
                    "the residual covariance matrix is singular along a direction that the null space of the "
                    "relationship matrix does not absorb into the fixed effects: V is singular on the error contrasts"
                )
            Binv = np.linalg.inv(Bq) * np.outer(sc, sc)
            pc.update(Binv=0.5 * (Binv + Binv.T), Qs=Qs, q_off=off)
            logdet_x = ld - 2.0 * float(np.log(sc).sum())
            C = -pc["Binv"][m:, m:]
        else:
            try:
                cfA = sla.cho_factor(XVX, check_finite=False)
            except np.linalg.LinAlgError:
                raise ModelError("X'V⁻¹X is singular: the fixed effects are not estimable") from None
            pc["cfA"] = cfA
            logdet_x = 2.0 * float(np.log(np.diag(cfA[0])).sum())
            C = sla.cho_solve(cfA, np.eye(self.p), check_finite=False)
        pc["C"] = 0.5 * (C + C.T)
        Py, beta, PN = self._apply_p(pc, self.Yt[:, :, None])
        Pt = Py[:, :, 0]
        # y'Py as (y − Xb̂)'Py (X'Py = 0): y'Py itself sums terms ~|y|²/b_r that cancel when
        # Σ_e is near singular along a null vector of T in X's span (the intercepts)
        ypy = float(np.sum((self.Yt - self.Xt @ beta[:, 0]) * Pt))
        m2ll = (self.n * self.t - self.p) * LOG2PI + logdet_v + logdet_x + ypy
        pc.update(b=beta[:, 0], Pt=Pt, ypy=ypy, logdet_v=logdet_v, logdet_x=logdet_x, m2ll=float(m2ll))
        return pc

    def _tp(self, Pt):
        """T_R Pt: T on the complement of N (T acts as 0 on N, where d is set to 0)."""
        return self._t_times(self._project(Pt))

    def gradients(self, Sg, Se, pc=None):
        """W_g = Py'T Py − [tr(P_kl T)], W_e = Py'Py − [tr(P_kl)] (see the parent class).

        On the complement, tr[(V_R⁻¹)_kl T] = Σ_r S_kr S_lr Σ_i d_i/(a_r d_i + b_r) from the
        eigenvalues of T, and the REML part tr[(V_R⁻¹XCX'V_R⁻¹)_kl T] =
        Σ_pq C_pq (V_R⁻¹X)_k,p' T (V_R⁻¹X)_l,q (P_RR = V_R⁻¹ − V_R⁻¹X_R C X_R'V_R⁻¹). The null
        block adds tr[(P_NN)_kl] to tr(P_kl) only (d = 0 there), P_NN = (B_s⁻¹)_NN.
        """
        pc = self.pieces(Sg, Se) if pc is None else pc
        S, VX, C, Pt = pc["S"], pc["VX"], pc["C"], pc["Pt"]
        d = self._d_rest
        den = pc["a"][None, :] * d[:, None] + pc["bb"][None, :]  # (n − n0, t)
        tr_g = (S * (d @ (1.0 / den))[None, :]) @ S.T
        tr_e = (S * (1.0 / den).sum(axis=0)[None, :]) @ S.T
        if self._n0:  # tr P_NN = S [tr P̂_NN^{rs}] S' (pencil basis, see _apply_p)
            off, Qs = pc["q_off"], pc["Qs"]
            trh = np.zeros((self.t, self.t))
            for r, Qr in enumerate(Qs):
                for s_, Qs_ in enumerate(Qs):
                    M = pc["Binv"][off[r] : off[r + 1], off[s_] : off[s_ + 1]]
                    trh[r, s_] = float(np.sum(M * (Qr.T @ Qs_)))  # tr(Q_r M Q_s')
                if Qr.shape[1] < self._n0:
                    trh[r, r] += (self._n0 - Qr.shape[1]) / pc["bb"][r]
            tr_e = tr_e + S @ (0.5 * (trh + trh.T)) @ S.T
        TVX = self._t_times(VX)
        VXC = VX @ C  # (n, t, p); symmetric C
        corr_g = np.tensordot(VXC, TVX, axes=([0, 2], [0, 2]))
        corr_e = np.tensordot(VXC, VX, axes=([0, 2], [0, 2]))
        TP = self._tp(Pt)
        Wg = Pt.T @ TP - (tr_g - 0.5 * (corr_g + corr_g.T))
        We = Pt.T @ Pt - (tr_e - corr_e)
        return 0.5 * (Wg + Wg.T), 0.5 * (We + We.T), pc

    def average_information(self, Sg, Se, pc=None):
        """AI_jm = ½ y'P V_j P V_m P y (Gilmour, Thompson & Cullis 1995), V_j = E_kl ⊗ T or E_kl ⊗ I."""
        pc = self.pieces(Sg, Se) if pc is None else pc
        Pt = pc["Pt"]
        TP = self._tp(Pt)
        idx = vech_index(self.t)
        F = np.zeros((self.n, self.t, 2 * len(idx)))
        for c, src in enumerate((TP, Pt)):
            for j, (k, l) in enumerate(idx):
                col = c * len(idx) + j
                F[:, k, col] = src[:, l]
                if k != l:
                    F[:, l, col] = src[:, k]
        PF, _, _ = self._apply_p(pc, F)
        ai = np.tensordot(F, PF, axes=([0, 1], [0, 1]))
        return 0.25 * (ai + ai.T)

    # -- solutions ------------------------------------------------------------------------
    def _q_times(self, B):
        """Q B (n × k) with Q applied by its reflectors (on a copy: B is left alone)."""
        from ..linalg._tridiagonal import apply_q

        return apply_q(self._c, self._tau, np.array(B, dtype=np.float64, order="C"))

    def solve(self, Sg, Se, pev: bool = True):
        """GLS b̂, GEBVs of all N levels and (optionally) PEV; see :meth:`MultiTraitSpectral.solve`.

        Py = Q P̃ (reflectors, O(n² t)); with one record per level K_r Py = Q T P̃. PEV
        forms the eigenvectors once (:meth:`_form_eigenvectors`) and uses the parent's
        formula on the U-rotated pieces.
        """
        pc = self.pieces(Sg, Se)
        N = self.K.shape[0]
        Py = self._q_times(pc["Pt"])
        if self.identity_codes:
            KZtPy = self._q_times(self._tp(pc["Pt"]))
        else:
            ZtPy = np.zeros((N, self.t))
            np.add.at(ZtPy, self.codes, Py)
            KZtPy = np.asarray(self.K) @ ZtPy
        out = dict(b=pc["b"], cov_b=pc["C"], U_hat=KZtPy @ Sg, Py=Py, m2ll=pc["m2ll"], pieces=pc)
        if pev:
            out["pev"], out["k_diag"] = self._pev(Sg, Se, pc)
        return out

    def _form_eigenvectors(self):
        """U = QZ (n × n): T = ZDZ' by MRRR (O(n²)), then Q applied in place by dormtr.

        Cost 2n³ flops in BLAS 3 (dlarfb) plus MRRR; the tridiagonal reduction is reused.
        Sets ``self.U`` and ``self.d_vec`` (the eigenvalues from MRRR, clipped as ``d``).
        """
        from ..linalg._lapack import ormtr_lower

        dvec, Z = sla.eigh_tridiagonal(self.dT, self.eT, check_finite=False)
        U = np.asfortranarray(Z)
        del Z
        c = np.asfortranarray(self._c)
        with blas_threads_for(self.n):
            info = ormtr_lower("L", "N", c, self._tau, U)
        if info != 0:
            raise NotPositiveDefiniteError(f"applying the tridiagonal reflectors failed (LAPACK info {info})")
        top = max(float(dvec[-1]), 1e-300)
        self.U = U
        self.d_vec = np.where(dvec < EIG_TOL * top, 0.0, dvec)
        return U

    def _pev(self, Sg, Se, pc):
        """PEV of every level and trait (the parent's formula), in the eigenvector basis.

        With U = QZ: X̃ᵁ = Z'(Q'X) is already at hand as U'X = Z'X̃ (the reduced X),
        H_i⁻¹ = (d_i Σ_g + Σ_e)⁻¹, M_i = H_i⁻¹X̃ᵁ_i. Extra cost over REML: MRRR + 2n³ (U)
        + O(n²(t² + tp)) (two products with U, or N n² with levels without records).
        """
        U = self.U if self.U is not None else self._form_eigenvectors()
        n, t, p = self.n, self.t, self.p
        d = self.d_vec
        with blas_threads_for(n):
            XtU = U.T @ np.column_stack(self.Xs)  # U'X (n, p), O(n²p)
        XU = np.zeros((n, t, p))
        cols = self.x_cols
        for k in range(t):
            XU[:, k, cols[k] : cols[k + 1]] = XtU[:, cols[k] : cols[k + 1]]
        H = d[:, None, None] * Sg + Se
        n0 = self._n0
        H[:n0] = np.eye(t)  # the null block (d ascending: the first n0) enters through W below
        Hinv = np.linalg.inv(H)
        Hinv = 0.5 * (Hinv + np.transpose(Hinv, (0, 2, 1)))
        Hinv[:n0] = 0.0
        M = np.einsum("ikl,ilp->ikp", Hinv, XU)
        N = self.K.shape[0]
        with blas_threads_for(n):
            if self.identity_codes:
                # A = U diag(d): A M first, then (A∘A) with U squared in place (one n × n)
                B2 = (U @ (d[:, None] * M.reshape(n, -1))).reshape(N, t, p)
                Uw = U
                Uw *= Uw  # U is not needed again after PEV: square it in place
                self.U = None
                S1 = (Uw @ ((d * d)[:, None] * Hinv.reshape(n, -1))).reshape(N, t, t)
            else:
                A = np.asarray(self.K)[:, self.codes] @ U  # (N, n)
                B2 = (A @ M.reshape(n, -1)).reshape(N, t, p)
                A *= A
                S1 = (A @ Hinv.reshape(n, -1)).reshape(N, t, t)
        quad = np.einsum("jkp,pq,jlq->jkl", B2, pc["C"], B2)
        Bj = S1 - quad
        if n0 and not self.identity_codes:
            # a_j's null-block part (0 with one record per level: A = U diag(d)):
            # a_N'P_NN a_N + 2 sym(a_N'P_NR a_R), P_NN = (B_s⁻¹)_NN and
            # P_NR a_R = −(B_s⁻¹)_Nβ X_R'V_R⁻¹a_R = −(B_s⁻¹)_Nβ B2_j' (see _apply_p)
            aN = np.asarray(self.K)[:, self.codes] @ self._q_times(self._N)  # (N, n0)
            PNN, G1 = self._null_blocks(pc)
            cross = -np.einsum("ji,ikp,jlp->jkl", aN, G1, B2)
            Bj = Bj + np.einsum("ji,jm,ikml->jkl", aN, aN, PNN) + cross + np.transpose(cross, (0, 2, 1))
        kdiag = np.asarray(np.diag(np.asarray(self.K)), dtype=float)
        shrink = np.einsum("kl,jlm,mk->jk", Sg, Bj, Sg)  # diag of Σ_g B_j Σ_g
        return np.maximum(kdiag[:, None] * np.diag(Sg)[None, :] - shrink, 0.0), kdiag

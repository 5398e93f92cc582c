"""Dense mixed model equations for covariance structures: prepare once, evaluate at θ.

Model (``spec/terms.py``): y = Xb + Σₖ Zₖuₖ + e, Var(vec Uₖ) = Σₖ(θ) ⊗ Kₖ,
R = diag(σ²_{g(i)}/wᵢ). Henderson's equations with G⁻¹ = ⊕ₖ Σₖ⁻¹ ⊗ Kₖ⁻¹, the random
equations first (component-major inside a term: component a's levels together),

    C = W'R⁻¹W + blockdiag(G⁻¹, 0),   W = [Z̃₁ … Z̃_K X],   C s = W'R⁻¹y.

A dense K = FF' is refitted as u = (I ⊗ F)v, Var(vec V) = Σ ⊗ I, so a singular K is
fine; K⁻¹ given (A⁻¹) enters as a penalty. From one Cholesky factor of C
(docs/theory.md, "The general engine"):

- −2 log L_REML = (n − p) log 2π + log|R| + log|G| + log|C| + y'Py,
  y'Py = ê'R⁻¹ê + û'G⁻¹û (the penalised sum of squares, :func:`penalised_ss`; equal to
  y'R⁻¹y − s'W'R⁻¹y, which cancels catastrophically when R⁻¹ is large);
  ML uses n and log|C_zz| (the random block of C);
- score of θⱼ in term k: −½[r tr(Σ⁻¹Σ̇ⱼ) − tr(Σ⁻¹Σ̇ⱼΣ⁻¹(Q + T))], r the term's
  number of level equations, Q = U'K⁻¹U and T[a, b] = tr(K⁻¹ C^{ab}) from C⁻¹;
- score of the residual variance of group g: −½[n_g/σ²_g − (tr(C⁻¹M_g) + ê'D_gê)/σ⁴_g],
  M_g = W_g'D_gW_g, D_g = diag(wᵢ) over group g;
- AI_ij = ½ wᵢ'Pwⱼ with working variates wⱼ = V̇ⱼPy: Z̃ₖ vec(UΣ⁻¹Σ̇ⱼ) for a term
  (Z̃'Py = G⁻¹û), ê/σ²_g on group g for the residual; Pw costs one solve with C.

What is factorised is the scaled matrix Λ'CΛ, Λ = blockdiag(L_Σₖ ⊗ I_rₖ, I_p) with
Σₖ = L_ΣₖL_Σₖ' (lme4's Λ(θ) form): its penalty is I ⊗ Pₖ, so Σₖ⁻¹, large near a
rank-deficient Σ, never enters the matrix; the solution is Λṽ, log|G| + log|C| =
Σₖ Sₖ log|Kₖ| + log|Λ'CΛ| (the rₖ log|Σₖ| cancel exactly), C⁻¹ = Λ(Λ'CΛ)⁻¹Λ'. y is
centred by its OLS fit once (the equations are solved for b − β₀). As σ²ₑ → 0 the
equations' condition grows like 1/σ²ₑ; an evaluation whose estimated rounding error of
−2 log L (:func:`pivot_rounding_error`) exceeds :data:`RELIABLE_RTOL` raises
:class:`~henderson.errors.UnreliableEvaluationError` (the optimiser halves its step;
the V-form is exact there).

The cross-products M_g, W_g'D_g y are formed once; each evaluation is O(G m²) to
assemble C plus one dense Cholesky of order m = Σₖ Sₖrₖ + p.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from .._threads import blas_threads_for
from ..errors import ModelError, NotPositiveDefiniteError, UnreliableEvaluationError
from ..linalg import dense_safe
from ..spec.levels import Factored, SparseInverse
from ..spec.terms import GeneralSpec
from ._spd import inverse_from_cholesky

LOG2PI = float(np.log(2 * np.pi))


def residual_variances(spec: GeneralSpec, theta: np.ndarray, sl: slice) -> np.ndarray:
    """σ²ₑ per residual group from θ (one value broadcast to a single group), checked > 0."""
    rs = theta[sl]
    if len(spec.residual.groups) == 1:
        rs = np.full(1, rs[0])
    if not np.all(rs > 0):
        raise NotPositiveDefiniteError(f"residual variances must be positive, got {rs}")
    return rs


def term_covariances(spec: GeneralSpec, theta: np.ndarray, slices) -> tuple[list, list, list]:
    """Σₖ(θ), Σₖ⁻¹ and log|Σₖ| of every random term, each Σₖ checked positive definite.

    Shared by the dense (:class:`GeneralMME`) and sparse (``general_sparse``) engines;
    both add Σₖ⁻¹ ⊗ Kₖ⁻¹ to C and rank(Kₖ)·log|Σₖ| + sₖ·log|Kₖ| to log|G|.
    """
    sigmas, sig_inv, logdets = [], [], []
    for k, t in enumerate(spec.terms):
        S = t.structure.sigma(theta[slices[k]])
        try:
            Ls = np.linalg.cholesky(S)
        except np.linalg.LinAlgError as exc:
            raise NotPositiveDefiniteError(f"the covariance of {t.name!r} is not positive definite") from exc
        sigmas.append(S)
        sig_inv.append(sla.cho_solve((Ls, True), np.eye(t.size)))
        logdets.append(2.0 * np.log(np.diag(Ls)).sum())
    return sigmas, sig_inv, logdets


def penalised_ss(resid, rinv, sol, offsets, ranks, penalties, sig_inv) -> float:
    """y'Py as the penalised sum of squares ê'R⁻¹ê + Σₖ û'(Σₖ⁻¹ ⊗ Pₖ)û (Henderson).

    The identity y'Py = y'R⁻¹y − ŝ'W'R⁻¹y subtracts two numbers of order 1/σ²ₑ whose
    difference stays of order 1 as σ²ₑ → 0, losing about log10(1/σ²ₑ) digits; every term
    of this sum is non-negative, so it loses none. Shared by the dense and sparse C-forms.

    Parameters
    ----------
    resid : array, shape (n,)
        ê = y − Wŝ.
    rinv : array, shape (n,)
        Diagonal of R⁻¹ (wᵢ/σ²_{g(i)}).
    sol : array, shape (m,)
        The solution ŝ of the equations, random equations first (component-major per term).
    offsets, ranks : sequences
        Start of each term's equations (and the end of the last) and its number of level
        equations r.
    penalties : list
        Pₖ = Kₖ⁻¹ (dense or sparse, r × r) or None for the identity.
    sig_inv : list of arrays
        Σₖ⁻¹ (S × S).
    """
    ss = float(resid @ (rinv * resid))
    for k, Si in enumerate(sig_inv):
        S, r = Si.shape[0], ranks[k]
        U = sol[offsets[k] : offsets[k + 1]].reshape(S, r).T  # r × S
        P = penalties[k]
        PU = U if P is None else np.asarray(P @ U)
        ss += float(np.sum(Si * (U.T @ PU)))
    return max(ss, 0.0)


@dataclass(frozen=True, eq=False)
class GeneralEvaluation:
    """The equations at one θ: −2 log L, solutions and (optionally) derivatives.

    ``cinv`` is C⁻¹ (m × m; the PEV matrix of the random equations, Var(b̂) in its
    fixed block), present with derivatives. ``em`` holds the EM-REML targets: per
    term the moment matrix (Q + T)/r, and the residual variances.
    """

    theta: np.ndarray
    method: str
    m2ll: float
    solution: np.ndarray
    residuals: np.ndarray
    sigmas: list
    score: np.ndarray | None = None
    ai: np.ndarray | None = None
    cinv: np.ndarray | None = None
    em: dict | None = None
    #: what :meth:`GeneralMME.with_derivatives` needs to add the derivatives later without
    #: refactorising C: (Cholesky factor of Λ'CΛ, residual variances, Σₖ⁻¹, L_Σₖ); None once used
    factor: tuple | None = field(default=None, repr=False)
    #: estimated relative rounding error of ``m2ll`` (:func:`pivot_rounding_error`)
    rounding: float = 0.0


def _cinv(ev: GeneralEvaluation) -> np.ndarray:
    """C⁻¹ of an evaluation with derivatives: results are built only from those (the
    optimiser completes its accepted point; a given θ is evaluated with them)."""
    if ev.cinv is None:
        raise ValueError("C⁻¹ is formed with derivatives: evaluate(theta, derivatives=True) (internal)")
    return ev.cinv


#: largest estimated relative rounding error of −2 log L an evaluation may carry; beyond
#: it the C-form raises :class:`~henderson.errors.UnreliableEvaluationError`
RELIABLE_RTOL = 1e-9
EPS = float(np.finfo(float).eps)


def pivot_rounding_error(cdiag: np.ndarray, ldiag: np.ndarray, m2ll: float) -> float:
    """Estimated relative rounding error of −2 log L from the pivots of C = LL' (any scaling).

    The pivot Lᵢᵢ² = Cᵢᵢ − Σⱼ Lᵢⱼ² is computed with an absolute error of order ε Cᵢᵢ, so
    log Lᵢᵢ² with a relative one of order ε Cᵢᵢ/Lᵢᵢ² (the pivot growth, unchanged by a
    diagonal scaling of C, so it needs no Λ). ε √m maxᵢ Cᵢᵢ/Lᵢᵢ², relative to
    max(1, |−2 log L|). Measured against a brute-force V (tests/solvers/
    test_cform_residual_to_zero.py, σ²ₑ = 1e-6 and 1e-8) the actual error was at most
    0.5 × this. Used by both C-forms; a bound from max Lᵢᵢ / min Lᵢᵢ instead refused sound points
    of data on a scale of 1e6 (fixed-effect rows of order n/σ²ₑ = 1e-10 against 1).
    """
    if len(cdiag) == 0:
        return 0.0
    growth = float(np.max(cdiag / ldiag**2))
    return EPS * np.sqrt(len(cdiag)) * growth / max(1.0, abs(float(m2ll)))


def _inverse_from_cholesky(L: np.ndarray) -> np.ndarray:
    """(Λ'CΛ)⁻¹ from its factor by LAPACK ``dpotri`` (⅔m³ flops, a third of solving against
    I; :mod:`henderson.solvers._spd`, dpotri measured faster than dtrtri + dsyrk for the
    C-form in benchmarks/results/cform_inverse.md)."""
    return inverse_from_cholesky(L, "dpotri", what="the mixed model equations")


class GeneralMME:
    """Dense MME of a :class:`~henderson.spec.terms.GeneralSpec`.

    Parameters
    ----------
    spec : GeneralSpec
    """

    name = "dense-general"

    def __init__(self, spec: GeneralSpec):
        self.spec = spec
        n = spec.n
        blocks, self.offsets, self.ranks, self.penalties, self.logdet_k = [], [0], [], [], []
        for t in spec.terms:
            lv = t.level
            if isinstance(lv.covariance, Factored):
                F = lv.factor
                r = F.shape[1]
                Zk = np.hstack([t.z[:, a : a + 1] * F[t.codes[:, a]] for a in range(t.size)])
                P, ld = None, 0.0
            else:
                r = t.q
                Zk = np.zeros((n, t.size * r))
                for a in range(t.size):  # one entry per record and component
                    Zk[np.arange(n), a * r + t.codes[:, a]] = t.z[:, a]
                if isinstance(lv.covariance, SparseInverse):
                    P = lv.penalty.toarray() if sp.issparse(lv.penalty) else np.asarray(lv.penalty, float)
                    ld = float(lv.logdet_k)
                else:
                    P, ld = None, 0.0
            blocks.append(Zk)
            self.ranks.append(r)
            self.penalties.append(P)
            self.logdet_k.append(ld)
            self.offsets.append(self.offsets[-1] + t.size * r)
        self.mz = self.offsets[-1]
        self.W = np.hstack(blocks + [spec.X]) if blocks else np.asarray(spec.X)
        self.m = self.W.shape[1]
        res = spec.residual
        if res.unit is not None or res.structure.kind not in ("scalar", "diag"):
            raise ModelError(
                "the dense general engine fits diagonal residuals (scalar, by group, "
                "weighted); a residual covariance across the traits of a unit is not "
                "implemented here"
            )
        w = res.weights if res.weights is not None else np.ones(n)
        self.w = w
        self.sum_logw = float(np.log(w).sum())
        self.groups: list = []
        # y centred by its OLS fit once: the equations are solved for (b − β₀, u), whose
        # size (not ‖b‖, e.g. a mean of 50) sets the rounding error of the solution in the
        # directions the data leave weakly determined (fixed × random confounding); y'Py,
        # ê and û are unchanged because PX = 0
        X = np.asarray(spec.X, dtype=float)
        self.beta0 = np.linalg.lstsq(X, spec.y, rcond=None)[0] if X.shape[1] else np.zeros(0)
        self.y0 = spec.y - X @ self.beta0
        with blas_threads_for(self.m):  # small products: threads cost more than they save
            self._cross_products(res, w)
        self.n, self.p = n, spec.p
        self.slices = spec.slices
        self.theta_names = spec.theta_names

    def _cross_products(self, res, w) -> None:
        """M_g = W_g'D_gW_g, W_g'D_g y and y'D_g y per residual group (once)."""
        for g in range(len(res.groups)):
            idx = np.flatnonzero(res.codes == g)
            Wg = self.W[idx]
            wg = w[idx]
            yg = self.y0[idx]
            self.groups.append(
                dict(idx=idx, n=len(idx), M=Wg.T @ (wg[:, None] * Wg), Wy=Wg.T @ (wg * yg), yy=float(wg @ (yg * yg)))
            )

    # -- θ helpers ------------------------------------------------------------------
    def start(self) -> np.ndarray:
        """Starting θ: the OLS residual variance split equally over the terms' components
        and the residual, each scaled by its mean z² · diag(K) (so a slope on days or
        a K with diagonal 2Σpq start at the same share)."""
        X, y = self.spec.X, self.spec.y
        beta = np.linalg.lstsq(X, y, rcond=None)[0] if X.shape[1] else np.zeros(0)
        v = float(np.sum((y - X @ beta) ** 2)) / max(self.n - self.p, 1)
        share = v / (len(self.spec.terms) + 1)
        theta = np.empty(self.spec.n_theta)
        for k, t in enumerate(self.spec.terms):
            kd = float(np.nanmean(t.level.k_diag))
            kd = kd if np.isfinite(kd) and kd > 0 else 1.0
            z2 = np.array(
                [np.mean(t.z[t.z[:, a] != 0, a] ** 2) if np.any(t.z[:, a] != 0) else 1.0 for a in range(t.size)]
            )
            theta[self.slices[k]] = t.structure.start(share / (z2 * kd))
        theta[self.slices[-1]] = share
        return theta

    def sigmas(self, theta) -> list:
        return [t.structure.sigma(theta[self.slices[k]]) for k, t in enumerate(self.spec.terms)]

    # -- evaluation -----------------------------------------------------------------
    def evaluate(self, theta, *, method: str = "reml", derivatives: bool = False) -> GeneralEvaluation:
        with blas_threads_for(self.m):  # see henderson._threads
            return self._evaluate(theta, method, derivatives)

    def _evaluate(self, theta, method, derivatives) -> GeneralEvaluation:
        """−2 log L (and score, AI, C⁻¹, EM targets) at θ.

        Parameters
        ----------
        theta : array, shape (n_theta,)
            In the order of ``spec.theta_names``.
        method : {"reml", "ml"}
        derivatives : bool
        """
        theta = np.asarray(theta, dtype=float)
        spec = self.spec
        rs = residual_variances(spec, theta, self.slices[-1])
        C = np.zeros((self.m, self.m))
        rhs = np.zeros(self.m)
        logdet_r = -self.sum_logw
        for g, G in enumerate(self.groups):
            C += G["M"] / rs[g]
            rhs += G["Wy"] / rs[g]
            logdet_r += G["n"] * np.log(rs[g])
        sigmas, sig_inv, _ = term_covariances(spec, theta, self.slices)
        lams = [np.linalg.cholesky(S) for S in sigmas]
        # the scaled equations Λ'CΛ, Λ = blockdiag(L_Σₖ ⊗ I, I_p): the penalty becomes
        # I ⊗ Pₖ, so Σ⁻¹ (large near a rank-deficient Σ) never enters the matrix factorised
        self._scale_rows(C, lams, transpose=True)
        C = np.ascontiguousarray(C.T)
        self._scale_rows(C, lams, transpose=True)
        rhs = self._scale_rows(rhs[:, None], lams, transpose=True)[:, 0]
        logdet_k = 0.0
        for k, t in enumerate(spec.terms):
            r = self.ranks[k]
            a, b = self.offsets[k], self.offsets[k + 1]
            P = self.penalties[k]
            blk = C[a:b, a:b]
            if P is None:
                blk[np.diag_indices(b - a)] += 1.0
            else:
                for i in range(t.size):
                    blk[i * r : (i + 1) * r, i * r : (i + 1) * r] += P
            logdet_k += t.size * self.logdet_k[k]
        cdiag = np.diag(C).copy()
        try:
            L = dense_safe.cholesky_lower(C)  # one dpotrf up to 12k (OpenBLAS dsyrk crash above)
        except np.linalg.LinAlgError as exc:
            raise NotPositiveDefiniteError(
                "the mixed model equations are not positive definite: a fixed effect confounded "
                "with a random term, or a covariance that is not positive definite"
            ) from exc
        del C
        v = sla.cho_solve((L, True), rhs, check_finite=False)
        sol = self._scale_rows(v[:, None].copy(), lams, transpose=False)[:, 0]
        resid = self.y0 - self.W @ sol
        sol[self.mz :] += self.beta0
        rinv = self.w / rs[spec.residual.codes]
        # û'G⁻¹û = ṽ'(I ⊗ P)ṽ in the scaled solution ṽ = Λ⁻¹ŝ: Σ = I there
        eye = [np.eye(t.size) for t in spec.terms]
        ypy = penalised_ss(resid, rinv, v, self.offsets, self.ranks, self.penalties, eye)
        d = np.diag(L)
        ld = np.log(d)
        n, p = self.n, self.p
        # log|G| + log|C| = Σₖ Sₖ log|Kₖ| + log|Λ'CΛ| (the rₖ log|Σₖ| of both cancel exactly)
        if method == "reml":
            m2ll = (n - p) * LOG2PI + logdet_r + logdet_k + 2.0 * ld.sum() + ypy
        elif method == "ml":
            m2ll = n * LOG2PI + logdet_r + logdet_k + 2.0 * ld[: self.mz].sum() + ypy
        else:
            raise ModelError(f"method must be 'reml' or 'ml', not {method!r}")
        rounding = pivot_rounding_error(cdiag, d, m2ll)
        if rounding > RELIABLE_RTOL:
            raise UnreliableEvaluationError(
                f"−2 log L at this θ is numerically unreliable in the C-form (estimated relative rounding "
                f"error {rounding:.1e} > {RELIABLE_RTOL:.0e}: the mixed model equations are too ill-conditioned, "
                f"smallest residual variance {float(np.min(rs)):.3g}); the observation-space form is exact "
                "there: use solver='vform'",
                parameter="solver",
                value="dense",
            )
        factor = (L, rs, sig_inv, lams)
        if not derivatives:
            return GeneralEvaluation(theta, method, float(m2ll), sol, resid, sigmas, factor=factor, rounding=rounding)
        ev = self._derivatives(theta, method, float(m2ll), sol, resid, sigmas, factor)
        return dataclasses.replace(ev, rounding=rounding)

    def _scale_rows(self, A: np.ndarray, lams: list, *, transpose: bool) -> np.ndarray:
        """A ← Λ'A (``transpose``) or ΛA in place, Λ = blockdiag(L_Σₖ ⊗ I_rₖ, I_p); rows
        of A component-major in each term (only the first ``offsets[-1]`` rows change, so
        A may have mz or m rows). One (S × S)·(S × r·cols) product per term."""
        for k, Ls in enumerate(lams):
            a, b = self.offsets[k], self.offsets[k + 1]
            S = Ls.shape[0]
            blk = A[a:b].reshape(S, -1)
            A[a:b] = ((Ls.T if transpose else Ls) @ blk).reshape(b - a, -1)
        return A

    def _unscale(self, Ci: np.ndarray, lams: list) -> np.ndarray:
        """C⁻¹ = Λ (Λ'CΛ)⁻¹ Λ' from the inverse of the scaled equations (symmetric)."""
        self._scale_rows(Ci, lams, transpose=False)
        Ci = np.ascontiguousarray(Ci.T)
        return self._scale_rows(Ci, lams, transpose=False)

    def with_derivatives(self, ev: GeneralEvaluation) -> GeneralEvaluation:
        """``ev`` (evaluated without derivatives) with score, AI, C⁻¹ and EM targets added,
        from the Cholesky factor it kept: the same numbers as ``evaluate(ev.theta,
        derivatives=True)`` without factorising C again. The optimiser evaluates trial
        points without derivatives and completes only the accepted one."""
        if ev.score is not None:
            return ev
        if ev.factor is None:
            return self.evaluate(ev.theta, method=ev.method, derivatives=True)
        with blas_threads_for(self.m):
            out = self._derivatives(ev.theta, ev.method, ev.m2ll, ev.solution, ev.residuals, ev.sigmas, ev.factor)
        return dataclasses.replace(out, rounding=ev.rounding)

    def _derivatives(self, theta, method, m2ll, sol, resid, sigmas, factor):
        L, rs, sig_inv, lams = factor
        spec = self.spec
        reml = method == "reml"
        cinv = self._unscale(_inverse_from_cholesky(L), lams)
        if reml:
            cuse, mu = cinv, self.m
        else:  # ML: V⁻¹ = R⁻¹ − R⁻¹ZC_zz⁻¹Z'R⁻¹, C_zz the random block alone
            cuse, mu = self._unscale(_inverse_from_cholesky(L[: self.mz, : self.mz]), lams), self.mz
        nt = spec.n_theta
        score = np.zeros(nt)
        work = np.zeros((self.n, nt))
        em = {"terms": [], "residual": None}
        for k, t in enumerate(spec.terms):
            r, S = self.ranks[k], t.size
            a, b = self.offsets[k], self.offsets[k + 1]
            U = sol[a:b].reshape(S, r).T  # r × S
            P = self.penalties[k]
            Q = U.T @ U if P is None else U.T @ P @ U
            Ck = cuse[a:b, a:b].reshape(S, r, S, r)
            T = np.einsum("aibi->ab", Ck) if P is None else np.einsum("ij,aibj->ab", P, Ck)
            Si = sig_inv[k]
            QT = Q + T
            em["terms"].append(QT / r)
            dS = t.structure.dsigma(theta[self.slices[k]])
            Zk = self.W[:, a:b]
            for j, D in enumerate(dS):
                A = Si @ D
                idx = self.slices[k].start + j
                score[idx] = -0.5 * (r * np.trace(A) - np.trace(A @ Si @ QT))
                work[:, idx] = Zk @ (U @ A).T.ravel()
        rsl = self.slices[-1]
        rinv = self.w / rs[spec.residual.codes]
        new_r = np.empty(len(self.groups))
        for g, G in enumerate(self.groups):
            idx = G["idx"]
            Mg = G["M"][:mu, :mu]
            tr = float(np.sum(cuse * Mg))
            ede = float(self.w[idx] @ resid[idx] ** 2)
            sg = rs[g]
            new_r[g] = (ede + tr) / G["n"]
            j = rsl.start + (g if len(self.groups) > 1 else 0)
            score[j] += -0.5 * (G["n"] / sg - (tr + ede) / sg**2)
            work[idx, j] += resid[idx] / sg
        em["residual"] = new_r if len(self.groups) > 1 else np.array([new_r[0]])
        Wu = self.W[:, :mu]
        RW = work * rinv[:, None]
        Pw = RW - (rinv[:, None] * Wu) @ (cuse @ (Wu.T @ RW))
        ai = 0.5 * work.T @ Pw
        ai = 0.5 * (ai + ai.T)
        return GeneralEvaluation(theta, method, m2ll, sol, resid, sigmas, score, ai, cinv, em)

    # -- pieces for results ---------------------------------------------------------
    def term_blups(self, ev: GeneralEvaluation, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Term k's BLUPs and PEVs in level space, each (q, S)."""
        t = self.spec.terms[k]
        r, S = self.ranks[k], t.size
        a, b = self.offsets[k], self.offsets[k + 1]
        V = ev.solution[a:b].reshape(S, r).T
        C = _cinv(ev)[a:b, a:b]
        if isinstance(t.level.covariance, Factored):
            F = t.level.covariance.factor
            U = F @ V
            pev = np.column_stack(
                [np.einsum("ij,ij->i", F @ C[i * r : (i + 1) * r, i * r : (i + 1) * r], F) for i in range(S)]
            )
        else:
            U = V
            pev = np.diag(C).reshape(S, r).T.copy()
        return U, pev

    def fixed(self, ev: GeneralEvaluation) -> tuple[np.ndarray, np.ndarray]:
        """b̂ and Var(b̂) = the fixed block of C⁻¹."""
        return ev.solution[self.mz :], _cinv(ev)[self.mz :, self.mz :]

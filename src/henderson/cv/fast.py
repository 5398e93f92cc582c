r"""Cross-validation at fixed variance components from one factorisation.

Model (records level): y = Xb + Zg + e, V = σ²_g ZKZ' + σ²_e I (n × n), K the
covariance of the N levels (G, or WW' for SNP-BLUP). With

    P = V⁻¹ − V⁻¹X(X'V⁻¹X)⁻¹X'V⁻¹,   r = Py,

the fit that masks the phenotypes of a fold F (trains on its complement T, fixed
effects re-estimated on T) satisfies, for every fold, exactly:

1. held-out residuals (Gianola & Schön 2016, G3 6:3107, eq. for GLS/BLUP CV;
   the same identity as scikit-learn's ``RidgeCV`` leave-one-out)::

       δ_F = y_F − ŷ_F(−F) = (P_FF)⁻¹ r_F,   ŷ_F(−F) = X_F b̂_T + Z_F ĝ(−F).

2. the training-only projection. P is the limit λ → ∞ of (V + λXX')⁻¹, an
   inverse, so the partitioned-inverse (Schur complement) identity
   (Σ_TT)⁻¹ = M_TT − M_TF M_FF⁻¹ M_FT for M = Σ⁻¹ carries over:

       P_(T) y_T = r_T − P_TF (P_FF)⁻¹ r_F = (r − P_{·F} δ_F)_T,

   and u_F := r − P_{·F} δ_F is exactly 0 on F, so it is P_(T)y_T padded with zeros.

3. out-of-fold breeding values (Henderson: ĝ = σ²_g K Z' P y on the training data):

       ĝ(−F) = σ²_g K Z' u_F,   at the records of F: σ²_g [(K_r r)_F − K_r[F,·] P_{·F} δ_F],

   with K_r = ZKZ'. For SNP-BLUP β̂(−F) = σ²_β W'Z' u_F.

One Cholesky of V (n³/3 flops) and its inverse (LAPACK ``potri``) serve every fold;
each fold then costs one Cholesky of P_FF (n_F³/3) and matrix-vector products.
Leave-one-out is fully vectorised: δ_i = r_i / P_ii and
ĝ_i(−i) = σ²_g[(K_r r)_i − (K_r ∘ P)_i· 1 δ_i]. P_FF is positive definite iff X_T has
full column rank; otherwise the fold holds every record of a fixed-effect level and
the error names the fold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from ..errors import DataError, NotPositiveDefiniteError
from ..linalg import dense_safe


def training_keeps_rank(X: np.ndarray, test: np.ndarray) -> bool:
    """True when X_T, the rows of X (n, p) outside ``test``, keeps full column rank p
    (SVD of n_T × p; p is small)."""
    train = np.ones(len(X), dtype=bool)
    train[np.asarray(test)] = False
    return bool(np.linalg.matrix_rank(X[train]) == X.shape[1])


def rank_error(label) -> DataError:
    return DataError(
        f"fold {label!r}: the training part cannot estimate the fixed effects "
        "(the fold holds every record of a fixed-effect level)"
    )


@dataclass(frozen=True, eq=False)
class FixedVarianceCV:
    """Factorised state for fast CV at fixed (σ²_g, σ²_e).

    Attributes
    ----------
    P : ndarray (n, n)
        The REML projection matrix P at the given variances.
    r : ndarray (n,)
        Py.
    Kr_r : ndarray (n,)
        K_r r (so σ²_g K_r r are the full-data GEBVs of the records).
    """

    y: np.ndarray
    X: np.ndarray
    Kr: np.ndarray
    sigma2_g: float
    sigma2_e: float
    P: np.ndarray
    r: np.ndarray
    Kr_r: np.ndarray

    @classmethod
    def build(cls, y, X, Kr, sigma2_g: float, sigma2_e: float) -> FixedVarianceCV:
        """Form V, factorise once, and P = V⁻¹ − V⁻¹X(X'V⁻¹X)⁻¹X'V⁻¹.

        Parameters
        ----------
        y : (n,), X : (n, p) full column rank, Kr : (n, n) record-level ZKZ'.
        """
        y = np.asarray(y, dtype=np.float64)
        X = np.asarray(X, dtype=np.float64).reshape(len(y), -1)
        Kr = np.asarray(Kr, dtype=np.float64)
        n = len(y)
        if Kr.shape != (n, n):
            raise DataError(f"record-level kernel has shape {Kr.shape}, expected ({n}, {n})")
        if not (sigma2_e > 0 and sigma2_g >= 0):
            raise DataError(f"fast CV needs sigma2_e > 0 and sigma2_g >= 0, got ({sigma2_g}, {sigma2_e})")
        V = np.asfortranarray(Kr * sigma2_g)
        V[np.diag_indices(n)] += sigma2_e
        c, info = dense_safe.potrf(V, overwrite=True)  # one dpotrf up to 12k (OpenBLAS dsyrk crash above)
        if info != 0:
            raise NotPositiveDefiniteError(f"V is not positive definite (Cholesky failed at {info})")
        Vi, info = dense_safe.potri(c, overwrite=True)
        if info != 0:
            raise NotPositiveDefiniteError(f"inverting V failed (LAPACK info {info})")
        Vi = np.tril(Vi)
        Vi += np.tril(Vi, -1).T
        ViX = Vi @ X
        XtViX = X.T @ ViX
        try:
            L = sla.cholesky(XtViX, lower=True)
        except np.linalg.LinAlgError as exc:
            raise DataError("the fixed-effect design is rank deficient") from exc
        H = sla.solve_triangular(L, ViX.T, lower=True)  # (p, n): P = Vi − H'H
        P = Vi
        P -= H.T @ H
        r = P @ y
        return cls(y, X, Kr, float(sigma2_g), float(sigma2_e), P, r, Kr @ r)

    def fold(self, test: np.ndarray, label="", *, check_rank: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Out-of-fold (ŷ_F, ĝ_F, u_F) for the records ``test`` (positions).

        ŷ_F = y_F − δ_F are the predicted phenotypes X_F b̂_T + ĝ_F, ĝ_F the predicted
        breeding values of the records' individuals, u_F = P_(T) y_T (zeros on F).
        """
        test = np.asarray(test)
        # P_FF is singular exactly when X_T loses rank, but in floating point its
        # Cholesky can still "succeed" on a pivot of rounding size; test the rank of
        # X_T itself so the failure is always named (``check_rank=False``: the caller
        # has checked every fold with :func:`training_keeps_rank` already)
        if check_rank and not training_keeps_rank(self.X, test):
            raise rank_error(label)
        Pff = self.P[np.ix_(test, test)]
        try:
            cf = sla.cho_factor(Pff, lower=True)
        except np.linalg.LinAlgError as exc:
            raise DataError(f"fold {label!r}: P_FF is not positive definite") from exc
        delta = sla.cho_solve(cf, self.r[test])
        Pd = self.P[:, test] @ delta
        u = self.r - Pd
        u[test] = 0.0  # exactly zero in exact arithmetic
        bv = self.sigma2_g * (self.Kr_r[test] - self.Kr[test] @ Pd)
        return self.y[test] - delta, bv, u

    def leave_one_out(self, ids=None) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised LOO: (ŷ_i(−i), ĝ_i(−i)) for every record i.

        ``ids`` (n,), optional, names the records in errors.
        """
        # X_(-i) loses rank iff record i has leverage 1 in X alone (h_ii = 1, e.g. the
        # only record of a fixed-effect level); P_ii is then zero up to rounding.
        q, _ = np.linalg.qr(self.X)
        lev = np.einsum("ij,ij->i", q, q)
        alone = np.flatnonzero(lev > 1.0 - 1e-8)
        if alone.size:
            names = (np.asarray(ids, dtype=object)[alone] if ids is not None else alone)[:10].tolist()
            raise DataError(
                f"leave-one-out: {alone.size} record(s) {names} are alone in their "
                "fixed-effect level and cannot be predicted from the others"
            )
        d = np.diag(self.P)
        delta = self.r / d
        kp = np.einsum("ij,ij->i", self.Kr, self.P)
        bv = self.sigma2_g * (self.Kr_r - kp * delta)
        return self.y - delta, bv

    def loo_u(self) -> np.ndarray:
        """u_i = P_(−i) y_(−i) for every i as columns of an (n, n) matrix."""
        delta = self.r / np.diag(self.P)
        U = self.r[:, None] - self.P * delta[None, :]
        U[np.diag_indices_from(U)] = 0.0
        return U

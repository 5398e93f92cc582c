"""Cholesky of Henderson's C with one diagonal block eliminated first.

The random-intercept term with the most levels has a diagonal block
D = Z'Z + λI in C (every record sits in one level), as in MixedModels.jl where the
largest term comes first. Ordering its equations first,

    C = [[D, B], [B', C_r]],   S = C_r − B'D⁻¹B   (Schur complement),

so log|C| = Σ log dᵢ + log|S| and only S (the other random terms and X) needs a
dense Cholesky. Solves and the pieces of C⁻¹ that REML needs follow from

    C⁻¹ = [[D⁻¹ + EₛS⁻¹Eₛ', −EₛS⁻¹], [−S⁻¹Eₛ', S⁻¹]],  Eₛ = D⁻¹B.

With no diagonal block (q₀ = 0) this is a plain dense Cholesky of C = C_r.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from ..errors import NotPositiveDefiniteError


class BlockFactor:
    """Factor of C = [[diag(d), B], [B', C_r]] with lazily formed inverse pieces.

    Parameters
    ----------
    d : ndarray, shape (q0,)
        Diagonal of the eliminated block (may be empty).
    B : ndarray, shape (q0, m)
    C_r : ndarray, shape (m, m)
        The rest of C; its first ``m_z`` rows are random effects, the rest fixed.
    m_z : int
        Number of random-effect rows in C_r (for the ML determinant log|C_zz|).
    """

    def __init__(self, d: np.ndarray, B: np.ndarray, C_r: np.ndarray, m_z: int):
        self.q0 = len(d)
        self.m = C_r.shape[0]
        self.m_z = m_z
        if self.q0:
            if np.any(d <= 0):
                raise NotPositiveDefiniteError("a diagonal pivot of the mixed model equations is not positive")
            self.dinv = 1.0 / d
            self.E = B * self.dinv[:, None]
            S = C_r - B.T @ self.E
        else:
            self.dinv = np.empty(0)
            self.E = np.empty((0, self.m))
            S = C_r
        try:
            self.L = sla.cholesky(S, lower=True, check_finite=False) if self.m else np.empty((0, 0))
        except np.linalg.LinAlgError as exc:
            raise NotPositiveDefiniteError(
                "the mixed model equations are not positive definite: check for a fixed effect "
                "confounded with a random term or a covariance matrix that is not positive definite"
            ) from exc
        self._logd = float(np.log(d).sum()) if self.q0 else 0.0
        self._ldiag = np.log(np.diag(self.L))
        self._sinv: np.ndarray | None = None  # S⁻¹ and its leading block, formed on first use
        self._sinv_zz: np.ndarray | None = None

    # -- determinants ---------------------------------------------------------------
    @property
    def logdet(self) -> float:
        """log|C|."""
        return self._logd + 2.0 * self._ldiag.sum()

    @property
    def logdet_zz(self) -> float:
        """log|C_zz| (random-effect rows only): the Schur complement's leading block."""
        return self._logd + 2.0 * self._ldiag[: self.m_z].sum()

    # -- solves ---------------------------------------------------------------------
    def solve(self, R: np.ndarray) -> np.ndarray:
        """C⁻¹R for R of shape (q0 + m,) or (q0 + m, k)."""
        R = np.asarray(R, dtype=float)
        one = R.ndim == 1
        if one:
            R = R[:, None]
        R0, Rr = R[: self.q0], R[self.q0 :]
        xr = sla.cho_solve((self.L, True), Rr - self.E.T @ R0, check_finite=False) if self.m else Rr
        x0 = self.dinv[:, None] * R0 - self.E @ xr
        out = np.vstack([x0, xr])
        return out[:, 0] if one else out

    def solve_zz(self, R: np.ndarray) -> np.ndarray:
        """C_zz⁻¹R for R of shape (q0 + m_z,) or (q0 + m_z, k): the random-effect block alone.

        C_zz = [[D, B_z], [B_z', C_r,zz]] has the Schur complement S_zz = leading m_z block
        of S, whose Cholesky factor is the leading block of L: no second factorisation.
        """
        R = np.asarray(R, dtype=float)
        one = R.ndim == 1
        if one:
            R = R[:, None]
        R0, Rz = R[: self.q0], R[self.q0 :]
        E = self.E[:, : self.m_z]
        Lz = self.L[: self.m_z, : self.m_z]
        xz = sla.cho_solve((Lz, True), Rz - E.T @ R0, check_finite=False) if self.m_z else Rz
        x0 = self.dinv[:, None] * R0 - E @ xz
        out = np.vstack([x0, xz])
        return out[:, 0] if one else out

    # -- inverse pieces -------------------------------------------------------------
    def _s_inverse(self, zz: bool) -> np.ndarray:
        if zz:
            if self._sinv_zz is None:
                Lz = self.L[: self.m_z, : self.m_z]
                self._sinv_zz = sla.cho_solve((Lz, True), np.eye(self.m_z), check_finite=False)
            return self._sinv_zz
        if self._sinv is None:
            self._sinv = sla.cho_solve((self.L, True), np.eye(self.m), check_finite=False)
        return self._sinv

    def inverse_block(self, a: int, b: int, zz: bool = False) -> np.ndarray:
        """Block [a:b, a:b] of C⁻¹ (or of C_zz⁻¹ when ``zz``), a ≥ q0 (outside the diagonal block)."""
        if a < self.q0:
            raise ValueError("dense blocks of the eliminated diagonal term are not formed")
        return self._s_inverse(zz)[a - self.q0 : b - self.q0, a - self.q0 : b - self.q0]

    def diagonal_block_inverse_diag(self, zz: bool = False) -> np.ndarray:
        """diag of the eliminated block of C⁻¹: 1/dᵢ + [Eₛ S⁻¹ Eₛ']ᵢᵢ (O(q0 m²))."""
        if not self.q0:
            return np.empty(0)
        if zz:
            E = self.E[:, : self.m_z]
            F = E @ self._s_inverse(True)
        else:
            E = self.E
            F = E @ self._s_inverse(False)
        return self.dinv + np.einsum("ij,ij->i", F, E)

    def inverse_diag(self, a: int, b: int, zz: bool = False) -> np.ndarray:
        """diag of C⁻¹ (or C_zz⁻¹) over rows a:b."""
        if b <= self.q0:
            return self.diagonal_block_inverse_diag(zz)[a:b]
        return np.diag(self.inverse_block(a, b, zz)).copy()

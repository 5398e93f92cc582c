"""SNP statistics at fixed variance ratio: one Cholesky, then TRSM per SNP block.

With λ = σ²_g/σ²_e and H = λK_r + I = LL' (K_r the kernel of the records, n × n),
whitening by L⁻¹ turns the generalised least squares of the mixed model into ordinary
least squares. With X̃ = L⁻¹X = QR (thin QR, Q: n × c) and M = I − QQ':

    r = M L⁻¹y,   R_b = M L⁻¹W_b   (W_b: centred counts of a SNP block, n × b)

give for every SNP j the two quadratic forms every test below needs,

    a_j = w_j'P_H y = R_j'r,   b_j = w_j'P_H w_j = ‖R_j‖²,   y'P_H y = ‖r‖²,

with P_H = H⁻¹ − H⁻¹X(X'H⁻¹X)⁻¹X'H⁻¹ (= σ²_e P). Cost: n³/3 once, n²b/2 per block.

From n = :data:`FLOAT32_FROM` records the triangular solve of the SNP blocks (the
O(n²m) step, all the time at scale) runs in float32 (BLAS ``strsm``, twice the speed
of float64); the Cholesky factor, y, X and all the sums stay float64. On that path the
blocks come centred straight into float32 (:meth:`FixedRatio.blocks`), are whitened in
place, and a, b come from one fused pass (:meth:`FixedRatio.forms32`), so the time is
the ``strsm`` itself plus two O(nb) passes per block. The solve's
relative error is about κ(L)·6e-8, and the statistics derived from it agree with the
float64 path to ~1e-5 relative (tested).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
from scipy.linalg import blas

from ..errors import ModelError
from ..linalg import dense_safe

#: records from which SNP blocks are whitened in float32 (strsm) instead of float64
FLOAT32_FROM = 2000


class FixedRatio:
    """Prepared whitening at a fixed λ = σ²_g/σ²_e.

    Parameters
    ----------
    Kr : ndarray, shape (n, n)
        Kernel of the records (ZKZ').
    lam : float
        σ²_g/σ²_e (≥ 0).
    y : ndarray, shape (n,)
    X : ndarray, shape (n, c), full column rank
    """

    def __init__(self, Kr: np.ndarray, lam: float, y: np.ndarray, X: np.ndarray):
        n = len(y)
        H = np.multiply(Kr, lam)  # a new array: Kr is not modified
        H[np.diag_indices(n)] += 1.0
        # split above 12k rows (OpenBLAS threaded-dsyrk crash: linalg.dense_safe)
        L, info = dense_safe.potrf(H, overwrite=True, clean=True)
        if info != 0:
            raise ModelError(
                f"lambda*K + I is not positive definite (LAPACK info {info}): K has "
                "a negative eigenvalue; check the kernel"
            )
        self.L = L
        self.L32 = np.asfortranarray(L, dtype=np.float32) if n >= FLOAT32_FROM else None
        Xt = self._white(X)
        self.Q, r = np.linalg.qr(Xt)
        self.Qf = np.asfortranarray(self.Q)
        if np.min(np.abs(np.diag(r))) <= 1e-10 * np.max(np.abs(np.diag(r))):
            raise ModelError("the fixed-effect design is rank deficient: drop aliased covariates")
        self.r = self._residualise(self._white(y[:, None]))[:, 0]
        self.yPy = float(self.r @ self.r)
        self.n, self.c = X.shape

    def _white(self, A: np.ndarray) -> np.ndarray:
        return sla.solve_triangular(self.L, A, lower=True, check_finite=False)

    def _residualise(self, A: np.ndarray) -> np.ndarray:
        return A - self.Q @ (self.Q.T @ A)

    @property
    def float32(self) -> bool:
        """True when SNP blocks should come as float32 Fortran arrays (:meth:`forms32`)."""
        return self.L32 is not None

    def blocks(self, source, rows, freq, idx):
        """The SNP blocks of ``source`` in the form :meth:`forms_of` takes (float32 at scale)."""
        if self.float32:
            return source.centred_blocks32(rows, freq, idx)
        return source.centred_blocks(rows, freq, idx)

    def forms_of(self, Wb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`forms32` for a float32 block on the float32 path, else :meth:`forms`."""
        if self.float32 and Wb.dtype == np.float32:
            return self.forms32(Wb)
        return self.forms(Wb)

    def forms32(self, Wb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) as :meth:`forms`, for a float32 Fortran-order block, which is overwritten.

        ``strsm`` whitens in place, then one fused pass
        (:func:`~henderson.gwas._blocks32.column_forms`) gives a = W̃'r and
        b = ‖W̃‖² − ‖Q'W̃‖² with float64 sums: no float64 copy of the block, no residual
        matrix. b < 1e-10‖W̃‖² (a SNP in the span of the covariates, where the
        difference is rounding) is returned as 0.
        """
        from ._blocks32 import column_forms

        Wt = blas.strsm(1.0, self.L32, Wb, lower=1, overwrite_b=1)
        a, s, q = column_forms(Wt, self.r, self.Qf)
        b = s - np.einsum("kj,kj->j", q, q)
        b[b <= 1e-10 * s] = 0.0
        return a, b

    def forms(self, Wb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(a, b), each shape (b,): w'P_H y and w'P_H w for the columns of ``Wb`` (n, b)."""
        if self.L32 is not None:
            Wt = blas.strsm(1.0, self.L32, np.asfortranarray(Wb, dtype=np.float32), lower=1, overwrite_b=1).astype(
                np.float64
            )
        else:
            Wt = self._white(Wb)
        R = self._residualise(Wt)
        return R.T @ self.r, np.einsum("ij,ij->j", R, R)

"""Exact mixed-model association: the variance ratio re-estimated by REML for every SNP.

As GEMMA's ``-lmm 1`` (Zhou & Stephens 2012, Nat. Genet. 44:821): for SNP j the model
y = Xb + x_jβ_j + g + e, V = σ²_e(λK_r + I), is fitted by REML over λ, and β_j is
tested by a Wald F test at λ̂_j. With the eigendecomposition K_r = U diag(d) U' (once)
and ỹ = U'y, X̃ = U'X, W̃ = U'W (one GEMM per SNP block), H⁻¹ = U diag(h) U' with
h = 1/(λd + 1), and every quadratic form is a weighted sum over the n rotated rows:

    A = X̃'hX̃ (c × c),  x'P₀x = x̃'hx̃ − x̃'hX̃ A⁻¹ X̃'hx̃,  (same for x'P₀y, y'P₀y)
    y'P₁y = y'P₀y − (x'P₀y)²/x'P₀x                       (P₁: X and x_j fixed)
    ℓ_R(λ) = −½[(n − c − 1) log y'P₁y + Σ log(λdᵢ + 1) + log|A| + log x'P₀x] + const.

ℓ_R is maximised over log λ in [log 1e-5, log 1e5] (GEMMA's range) for a whole block
of SNPs at once: a grid, then golden-section search inside the best grid cell, as
numpy arrays of shape (grid or 1, b) — no loop over SNPs.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

LOG_LAMBDA = (np.log(1e-5), np.log(1e5))
GRID = 25
GOLDEN_STEPS = 36  # bracket 2·(23/24) in log λ shrinks by 0.618^36 ~ 3e-8


class Rotation:
    """Eigendecomposition K_r = U diag(d) U' and the rotated response and covariates."""

    def __init__(self, Kr: np.ndarray, y: np.ndarray, X: np.ndarray):
        d, U = sla.eigh(Kr, check_finite=False, driver="evd")
        self.d = np.clip(d, 0.0, None)  # rounding can leave tiny negative eigenvalues
        self.U = U
        self.y = U.T @ y
        self.X = U.T @ X
        self.n, self.c = X.shape

    def rotate(self, Wb: np.ndarray) -> np.ndarray:
        return self.U.T @ Wb


def _forms(rot: Rotation, lam: np.ndarray, Wt: np.ndarray, S: np.ndarray):
    """Quadratic forms at λ (shape (b,)) for rotated SNPs Wt (n, b); S = Wt²."""
    h = 1.0 / (np.multiply.outer(lam, rot.d) + 1.0)  # (b, n): each SNP its own λ
    X, y = rot.X, rot.y
    n, c = X.shape
    b = Wt.shape[1]
    A = (h @ (X[:, :, None] * X[:, None, :]).reshape(n, c * c)).reshape(b, c, c)
    Xy = h @ (X * y[:, None])
    yy = h @ (y * y)
    hW = h.T * Wt  # (n, b)
    Xx = hW.T @ X
    xy = hW.T @ y
    xx = np.einsum("bn,nb->b", h, S)
    cA = np.linalg.cholesky(A)
    sx = np.linalg.solve(cA, Xx[..., None])[..., 0]
    sy = np.linalg.solve(cA, Xy[..., None])[..., 0]
    xPx = xx - np.einsum("bk,bk->b", sx, sx)
    xPy = xy - np.einsum("bk,bk->b", sx, sy)
    yPy0 = yy - np.einsum("bk,bk->b", sy, sy)
    logdet_a = 2.0 * np.log(np.diagonal(cA, axis1=1, axis2=2)).sum(1)
    logdet_h = -np.log(h).sum(1)
    return xPx, xPy, yPy0, logdet_a, logdet_h


def _loglik(rot, lam, Wt, S):
    xPx, xPy, yPy0, lda, ldh = _forms(rot, lam, Wt, S)
    yPy1 = yPy0 - xPy**2 / xPx
    df = rot.n - rot.c - 1
    return -0.5 * (df * np.log(yPy1) + ldh + lda + np.log(xPx))


def per_snp_lambda(rot: Rotation, Wt: np.ndarray) -> np.ndarray:
    """REML λ̂_j for each column of the rotated SNP block ``Wt`` (n, b), shape (b,)."""
    S = Wt * Wt
    b = Wt.shape[1]
    grid = np.linspace(*LOG_LAMBDA, GRID)
    ll = np.stack([_loglik(rot, np.full(b, np.exp(g)), Wt, S) for g in grid])  # (GRID, b)
    k = np.nanargmax(ll, axis=0)
    lo = grid[np.clip(k - 1, 0, GRID - 1)]
    hi = grid[np.clip(k + 1, 0, GRID - 1)]
    # golden-section search on [lo, hi] (contains the grid maximum), all SNPs together
    g = (np.sqrt(5.0) - 1.0) / 2.0
    x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
    f1, f2 = _loglik(rot, np.exp(x1), Wt, S), _loglik(rot, np.exp(x2), Wt, S)
    for _ in range(GOLDEN_STEPS):
        left = f1 >= f2  # the maximum is in [lo, x2]
        hi, lo = np.where(left, x2, hi), np.where(left, lo, x1)
        x1n = np.where(left, hi - g * (hi - lo), x2)
        x2n = np.where(left, x1, lo + g * (hi - lo))
        fe = _loglik(rot, np.exp(np.where(left, x1n, x2n)), Wt, S)
        f1, f2 = np.where(left, fe, f2), np.where(left, f1, fe)
        x1, x2 = x1n, x2n
    best = np.where(f1 >= f2, x1, x2)
    # the grid end points themselves (the optimum on the boundary, as GEMMA keeps it)
    best_ll = np.maximum(f1, f2)
    edge = ll[k, np.arange(b)] > best_ll
    best = np.where(edge, grid[k], best)
    return np.exp(best)


def wald(rot: Rotation, lam: np.ndarray, Wt: np.ndarray):
    """GEMMA's Wald test at λ̂_j: (beta, se, F, df), each shape (b,) except df (int).

    β̂ = x'P₀y/x'P₀x, τ = (n − c − 1)/y'P₁y, se = 1/√(τ x'P₀x), F = β̂²/se² ~ F(1, n − c − 1).
    """
    xPx, xPy, yPy0, _, _ = _forms(rot, lam, Wt, Wt * Wt)
    beta = xPy / xPx
    df = rot.n - rot.c - 1
    yPy1 = yPy0 - xPy * beta
    se = np.sqrt(yPy1 / df / xPx)
    return beta, se, (beta / se) ** 2, df

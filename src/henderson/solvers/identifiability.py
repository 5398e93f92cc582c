"""Can the variance components be told apart? Checked before REML starts.

The REML likelihood sees the data only through U'y, U an orthonormal basis of the
space orthogonal to X, whose covariance is U'VU = Σₖ σ²ₖ Aₖ + σ²ₑ I with
Aₖ = U'ZₖKₖZₖ'U. The map σ² → U'VU is one-to-one exactly when the matrices
A₁ … A_K, I are linearly independent; otherwise a whole line of σ² gives the same
likelihood and any "estimate" on it (a zero, a bound) is arbitrary. Linear
independence is decided on their Gram matrix Gᵢⱼ = tr(AᵢAⱼ) = tr(P₀VᵢP₀Vⱼ),
P₀ = I − X(X'X)⁻¹X' (the expected information at σ² = (0, …, 0, 1), up to ½).

The common case is a term with one record per level and an identity covariance
(ZZ' = I): its effects and the residuals are the same thing and only σ²ₖ + σ²ₑ can be
estimated. Both solvers raise the same :class:`~henderson.errors.ModelError` for it.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from ..errors import ModelError
from ..spec.levels import Factored, Identity

#: smallest eigenvalue of the normalised Gram matrix below which the components are
#: declared linearly dependent (exact dependence gives ~1e-16; the weakest honest
#: designs seen in tests are above 1e-4)
GRAM_TOL = 1e-10


def confounded_error(names: list[str], *, detail: str = "") -> ModelError:
    """The error for components that cannot be separated (``names`` may hold 'Residual')."""
    terms = [f"'{n}'" for n in names if n != "Residual"]
    listed = ", ".join(terms) + (" and the residual" if "Residual" in names else "")
    what = (
        "the random effect and the residual are"
        if len(terms) == 1 and "Residual" in names
        else "these variance components are"
    )
    return ModelError(
        f"the variance components of {listed} are not identifiable from these data"
        + (f": {detail}" if detail else "")
        + f"; {what} confounded, so REML cannot estimate them separately (it would return an "
        "arbitrary split, such as a zero). Give known variances with sigma2=[...] (terms in "
        "formula order, then the residual) to get BLUPs, or simplify the model."
    )


def residual_at_zero_error(n: int, levels: str) -> ModelError:
    """The error every solver raises when REML drives σ²ₑ to 0 (``levels`` describes
    the random effects, e.g. "599 levels of 'id'")."""
    err = ModelError(
        f"the residual variance is being estimated at zero ({n} records, {levels}): the random "
        "effects can absorb all the variation in these data. Give known variances (sigma2=...) "
        "or simplify the model."
    )
    err.residual_at_zero = True  # the one-kernel fit reports this as a boundary estimate instead
    return err


def one_record_per_level(term, n: int) -> bool:
    """True when every record is its own level of ``term`` (Z is a permutation)."""
    counts = term.n_records
    return term.q == n and counts is not None and bool(np.all(counts == 1))


def identity_like(term) -> bool:
    """True when the term's covariance is exactly a multiple of the identity.

    Exact zeros off the diagonal (a K = I typed in) are counted without an N × N
    temporary; a K only close to cI is left to the general checks.
    """
    if isinstance(term.covariance, Identity):
        return True
    K = term.kernel if isinstance(term.covariance, Factored) else None
    if K is None:
        return False
    d = np.diag(K)
    return bool(np.all(d == d[0])) and d[0] > 0 and np.count_nonzero(K) == len(d)


def simple_confounding(spec) -> None:
    """The cheap check every solver runs: a term with one record per level and an
    identity covariance is confounded with the residual."""
    for t in spec.terms:
        if one_record_per_level(t, spec.n) and identity_like(t):
            raise confounded_error(
                [t.name, "Residual"],
                detail=f"each of the {t.q} levels of {t.name!r} has exactly one record and its "
                "covariance is the identity, so Z K Z' = I, the residual's own structure",
            )


def check_dense(state) -> None:
    """General check on a :class:`~henderson.solvers.dense.DenseMME` (iid and dense-K terms).

    Uses the cross-products already held by the state. With W = (X'X)⁻¹ and
    Rₖₗ = Z̃ₖ'P₀Z̃ₗ = Z̃ₖ'Z̃ₗ − (Z̃ₖ'X) W (X'Z̃ₗ): Gₖₗ = ‖Rₖₗ‖²_F, G_kₑ = tr(Rₖₖ),
    G_ee = n − p. The diagonal term's own block (q0 × q0, never formed) uses
    ‖D − UWU'‖²_F = Σd² − 2Σᵢdᵢ(UWU')ᵢᵢ + tr(WMWM), M = U'U, U = Z₀'X; its blocks
    with the other terms are formed in row chunks. Terms given by K⁻¹ (pedigrees) are
    left out: K itself is not at hand.
    """
    spec = state.spec
    simple_confounding(spec)
    gram = dense_gram(state)
    if gram is None:
        return
    G, names, raw = gram
    m = len(names)
    scale = np.sqrt(np.maximum(np.diag(G), 0.0))
    # tr(Z̃ₖ'P₀Z̃ₖ) against tr(Z̃ₖ'Z̃ₖ): the PSD block is zero iff its trace is, and the
    # trace (unlike ‖·‖², a difference of squares) carries only rounding of order
    # ε·cond(X'X) relative, so a term the fixed effects absorb shows ~1e-15
    absorbed = [names[a] for a in range(m - 1) if G[a, -1] <= 1e-9 * raw[a]]
    if absorbed:
        raise ModelError(
            f"random term(s) {', '.join(repr(n) for n in absorbed)} are confounded with the fixed "
            "effects: once the fixed effects are fitted, nothing is left for their levels to "
            "explain (e.g. the same factor is both fixed and random). Remove one of the two."
        )
    C = G / np.outer(scale, scale)
    w, Q = np.linalg.eigh(C)
    if w[0] < GRAM_TOL:
        v = np.abs(Q[:, 0])
        involved = [names[a] for a in range(m) if v[a] > 1e-3]
        raise confounded_error(
            involved,
            detail="after removing the fixed effects their covariance structures Z K Z' are linearly dependent",
        )


def dense_gram(state):
    """(G, names, raw): the Gram matrix of check_dense over the iid / dense-K terms and
    the residual, their names, and tr(Z̃ₖ'Z̃ₖ) per term; None without such terms."""
    spec = state.spec
    ks = [k for k, t in enumerate(spec.terms) if isinstance(t.covariance, (Identity, Factored))]
    if not ks:
        return None
    nr, p = state.n_random, state.p
    off, pos, R = state.offsets, state.pos, state.R
    k0 = state.diagonal_term
    xr = pos[nr:]  # rows of R holding X
    W = sla.inv(R[np.ix_(xr, xr)], assume_a="pos") if p else np.zeros((0, 0))

    def rows(k):
        return pos[off[k] : off[k + 1]]

    def block(k, j):  # R_kj for two terms outside the diagonal one, dense
        a, b = rows(k), rows(j)
        out = R[np.ix_(a, b)]
        if p:
            out = out - R[np.ix_(a, xr)] @ W @ R[np.ix_(xr, b)]
        return out

    m = len(ks) + 1
    G = np.empty((m, m))
    raw = np.empty(m - 1)
    U0 = state.B0[:, xr] if (k0 is not None and p) else None
    for a, k in enumerate(ks):
        if k == k0:
            d = state.d0
            if p:
                UW = U0 @ W
                hdiag = np.einsum("ij,ij->i", UW, U0)  # diag(UWU')
                M = U0.T @ U0
                WM = W @ M
                G[a, a] = float(d @ d - 2.0 * d @ hdiag + np.sum(WM * WM.T))
                G[a, -1] = float(d.sum() - hdiag.sum())
            else:
                G[a, a] = float(d @ d)
                G[a, -1] = float(d.sum())
            raw[a] = float(d.sum())
        else:
            Rkk = block(k, k)
            G[a, a] = float(np.sum(Rkk**2))
            G[a, -1] = float(np.trace(Rkk))
            rk = rows(k)
            raw[a] = float(np.trace(R[np.ix_(rk, rk)]))
        G[-1, a] = G[a, -1]
        for b, j in enumerate(ks[:a]):
            if k0 in (k, j):
                other = j if k == k0 else k
                G[a, b] = G[b, a] = _diag_term_cross(state, other, W, xr)
            else:
                G[a, b] = G[b, a] = float(np.sum(block(k, j) ** 2))
    G[-1, -1] = state.n - p
    names = [spec.terms[k].name for k in ks] + ["Residual"]
    return G, names, raw


def _diag_term_cross(state, j, W, xr, chunk: int = 4096) -> float:
    """‖R₀ⱼ‖²_F for the diagonal term 0 and term j, in row chunks of the q0 rows."""
    b = state.pos[state.offsets[j] : state.offsets[j + 1]]
    B0, R = state.B0, state.R
    right = W @ R[np.ix_(xr, b)] if len(xr) else None
    total = 0.0
    for r0 in range(0, B0.shape[0], chunk):
        blk = B0[r0 : r0 + chunk][:, b]
        if right is not None:
            blk = blk - B0[r0 : r0 + chunk][:, xr] @ right
        total += float(np.sum(blk**2))
    return total


def check_spectral(solver, name: str, method: str) -> None:
    """Check on the one-kernel model V = σ²_g K_r + σ²_e I, from the tridiagonal form.

    REML: A = U'K_rU must not be a multiple of I; its eigenvalue mean and variance come
    from tr(A) = tr(T) − tr(G X̃'TX̃) and tr(A²) = tr(T²) − 2tr(G X̃'T²X̃) + tr((G X̃'TX̃)²),
    G = (X̃'X̃)⁻¹ (O(np²)). ML: K_r itself must not be a multiple of I.
    """
    from ..linalg._tridiagonal import tridiag_matvec

    n, p = solver.n, solver.p
    lam = solver.eigenvalues
    tr1, tr2 = float(lam.sum()), float(lam @ lam)
    m = n
    if method == "reml" and p:
        Xr = np.ascontiguousarray(solver.X_rot)
        TX = tridiag_matvec(solver.d, solver.e, Xr)
        G = np.linalg.inv(Xr.T @ Xr)
        M1 = G @ (Xr.T @ TX)
        M2 = G @ (TX.T @ TX)
        tr1 -= float(np.trace(M1))
        tr2 += -2.0 * float(np.trace(M2)) + float(np.trace(M1 @ M1))
        m = n - p
    mean = tr1 / m
    var = tr2 / m - mean**2
    if mean <= 1e-12 * max(float(np.abs(lam).max()), 1e-300):
        raise ModelError(
            f"random term {name!r} is confounded with the fixed effects: once they are fitted "
            "its covariance explains nothing (e.g. K is constant across records). Remove one of the two."
        )
    if var <= GRAM_TOL * mean**2:
        raise confounded_error(
            [name, "Residual"],
            detail=f"the covariance Z K Z' of {name!r} over the records is a multiple of the identity"
            + (" once the fixed effects are removed" if method == "reml" else "")
            + " (e.g. one record per level and K = I)",
        )

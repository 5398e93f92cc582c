"""Matrix-free PCG for multi-trait, correlated-effect and single-step (H⁻¹ / APY) MME.

The model (Henderson 1984, ch. 9 and 10; Mrode 2014, ch. 5–7) is, for n records with
up to t traits each,

    y_i = (I_t ⊗ x_i') b + Σ_e  e_trait(e) · u_{g(e)}[code(i, e), e]  + ε_i,
    Var(ε_i) = R₀ restricted to the observed traits of record i,

with the random effects in G groups. A group holds g correlated effects on one level
set of size q (e.g. the t traits of an animal; or the direct and maternal effect of an
animal — the same A⁻¹, reached through the animal's and the dam's code) with

    Var(vec U_g) = K_g ⊗ Σ_g        (U_g is q × g, one row per level),

so its penalty in the MME is K_g⁻¹ ⊗ Σ_g⁻¹ applied as the product K_g⁻¹ U Σ_g⁻¹.
K_g⁻¹ is the identity (iid), a sparse K⁻¹ (A⁻¹), or a sparse K⁻¹ plus a dense block on
a subset of levels: single-step H⁻¹ = A⁻¹ + [0 0; 0 τG_w⁻¹ − ωA₂₂⁻¹] (Aguilar et al.
2010), and ssGBLUP with APY where G_w⁻¹ is the APY inverse (Misztal 2016). The dense
block is applied as a product, held either as the dense k × k matrix or as the
Cholesky factors of G_w and A₂₂ (:class:`GenomicBlock`), never embedded in a sparse
matrix (which would carry k² non-zeros per product through scipy's index arrays).

C x = T'R⁻¹T x + ⊕_g (K_g⁻¹ ⊗ Σ_g⁻¹) x is one pass over the records
(:func:`henderson.solvers._pcg_kernels.mt_apply`, which fuses the forward pass, the
per-record t × t residual precision and the adjoint) plus one sparse product and one
dense product per group. Cost per round: O(n(E + pt + t²) + nnz(K⁻¹)g + k²g).

Unknowns: the groups first, each level-major (q × g, so one level's g effects are
contiguous), then b coefficient-major (p × t).

Preconditioner ``"block"`` (default): per group and level, the g × g diagonal block of
C, Σ_l (Z'R⁻¹Z)_{ll} + K⁻¹_{ll} Σ_g⁻¹ (over traits for a multi-trait animal, over the
direct and maternal effects for a maternal model), and the whole pt × pt fixed-effect
block; ``"jacobi"`` keeps their diagonals. PCG itself is
:func:`henderson.solvers.pcg.pcg_loop` (true-residual stop, residual history, warning).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ..errors import ModelError, NotPositiveDefiniteError
from . import _pcg_kernels as kern
from .pcg import TOL, MultiPCGInfo, PCGInfo, pcg_loop, pcg_multi


class GenomicBlock:
    """The dense genomic block τG_w⁻¹ − ωA₂₂⁻¹ of single-step H⁻¹, applied as a product.

    Either ``GenomicBlock(matrix=D)`` with D (k, k) held dense (the form preGSf90 writes),
    or ``GenomicBlock(G=G_w, A22=A22, tau=τ, omega=ω)`` held as the Cholesky factors of
    G_w and A₂₂: D·v = τ G_w⁻¹v − ω A₂₂⁻¹v by two pairs of triangular solves (the same
    O(k²) flops per product as the dense form, with no inverse formed). ``diagonal()``
    (for the preconditioner) is computed once from the inverse factors.
    """

    def __init__(self, matrix=None, *, G=None, A22=None, tau: float = 1.0, omega: float = 1.0):
        if (matrix is None) == (G is None):
            raise ModelError("GenomicBlock takes either matrix= (τG⁻¹ − ωA₂₂⁻¹) or G= and A22= (factors)")
        self.D: np.ndarray | None = None  # the formed block, or None when held as factors
        if matrix is not None:
            D = np.ascontiguousarray(matrix, dtype=np.float64)
            if D.ndim != 2 or D.shape[0] != D.shape[1] or not np.all(np.isfinite(D)):
                raise ModelError(f"the genomic block must be a finite square matrix, got shape {D.shape}")
            self.k, self.D, self._diag = D.shape[0], D, np.diag(D).copy()
            return
        self.tau, self.omega = float(tau), float(omega)
        self.k = np.shape(G)[0]
        if np.shape(A22) != (self.k, self.k) or np.shape(G) != (self.k, self.k):
            raise ModelError(f"G and A22 must both be ({self.k}, {self.k}); got {np.shape(G)} and {np.shape(A22)}")
        self._lg = _chol(np.asarray(G, dtype=np.float64), "G_w")
        self._la = _chol(np.asarray(A22, dtype=np.float64), "A22")
        # diag(M⁻¹) = column sums of squares of L⁻¹ (M = LL')
        ig = sla.solve_triangular(self._lg, np.eye(self.k), lower=True)
        ia = sla.solve_triangular(self._la, np.eye(self.k), lower=True)
        self._diag = self.tau * np.einsum("ij,ij->j", ig, ig) - self.omega * np.einsum("ij,ij->j", ia, ia)

    def diagonal(self) -> np.ndarray:
        return self._diag

    def __matmul__(self, V: np.ndarray) -> np.ndarray:
        if self.D is not None:
            return self.D @ V
        return self.tau * sla.cho_solve((self._lg, True), V) - self.omega * sla.cho_solve((self._la, True), V)


def _is_block_operator(blk) -> bool:
    """A genomic block applied as a product: :class:`GenomicBlock`, or any object with
    ``k``, ``diagonal()`` and ``@`` (e.g. :class:`~henderson.relationships.apy.ApyInverse`,
    the APY inverse kept as the core factor, G_CN and m)."""
    return isinstance(blk, GenomicBlock) or (
        not isinstance(blk, np.ndarray)
        and hasattr(blk, "k")
        and hasattr(blk, "diagonal")
        and hasattr(blk, "__matmul__")
    )


def _chol(M: np.ndarray, what: str) -> np.ndarray:
    try:
        return np.linalg.cholesky(M)
    except np.linalg.LinAlgError:
        raise NotPositiveDefiniteError(
            f"{what} is not positive definite; blend G (G_w = αG + βA₂₂ with β > 0) or tune it"
        ) from None


@dataclass
class RandomGroup:
    """g correlated random effects on one level set: Var(vec U) = K ⊗ Σ.

    Parameters
    ----------
    name : str
    codes : int array, shape (n, g)
        Level of each record in each effect (−1: the record has no such effect, e.g.
        an unknown dam in a maternal model).
    traits : int array, shape (g,)
        The trait each effect acts on (0 for every effect in a single-trait model).
    sigma : array, shape (g, g)
        Σ, positive definite.
    q : int
        Number of levels.
    kinv : sparse (q, q), optional
        K⁻¹ with both triangles stored (not one triangle); None means K = I.
    genomic : (idx, GenomicBlock, array (k, k) or block operator), optional
        A dense block added to K⁻¹[idx, idx] (single-step H⁻¹ or APY); an operator
        with ``k``, ``diagonal()`` and ``@`` (e.g. :class:`~henderson.ApyInverse`,
        G_APY⁻¹ in blocks) is applied as a product.
    k_diag : array (q,), optional
        diag(K) where known (NaN where not): the prior variance of the levels, used by the
        sampled PEV (control variate) and for reliabilities.
    info : dict, optional
        The relationship's ``info``: a pedigree A⁻¹'s ``parents`` let sampled PEV draw
        u ~ N(0, A) by the pedigree recursion.
    """

    name: str
    codes: np.ndarray
    traits: np.ndarray
    sigma: np.ndarray
    q: int
    kinv: sp.spmatrix | None = None
    genomic: tuple | None = None
    k_diag: np.ndarray | None = None
    info: dict | None = None
    # set by GeneralPCG
    _block: GenomicBlock | None = field(default=None, repr=False)
    _gidx: np.ndarray | None = field(default=None, repr=False)
    _kinv: sp.csr_matrix | None = field(default=None, repr=False)
    sigma_inv: np.ndarray | None = field(default=None, repr=False)
    g: int = 0


class GeneralPCG:
    """MME of a multi-trait / correlated-effect / single-step model at given (co)variances.

    Parameters
    ----------
    y : array, shape (n, t)
        Records; NaN marks a missing trait (a record with every trait missing is an error).
    X : array, shape (n, p)
        Fixed-effect design, the same for every trait (b is p × t).
    groups : list of RandomGroup
    R0 : array, shape (t, t)
        Residual covariance, positive definite.
    preconditioner : {"block", "jacobi"}

    Attributes
    ----------
    m : int
        Number of equations; ``spans[name]`` = (a, b) of each group (level-major q × g),
        fixed effects at ``[fpos, m)`` (p × t, coefficient-major).
    """

    def __init__(self, y, X, groups, R0, preconditioner: str = "block"):
        if preconditioner not in ("block", "jacobi"):
            raise ModelError(f"preconditioner must be 'block' or 'jacobi', not {preconditioner!r}")
        self.preconditioner = preconditioner
        Y = np.asarray(y, dtype=np.float64)
        Y = Y[:, None] if Y.ndim == 1 else Y
        self.n, self.t = Y.shape
        self.X = np.ascontiguousarray(X, dtype=np.float64).reshape(self.n, -1)
        self.p = self.X.shape[1]
        R0 = np.asarray(R0, dtype=np.float64).reshape(self.t, self.t)
        _chol(R0, "R0 (the residual covariance)")
        self.R0 = R0
        obs = ~np.isnan(Y)
        empty = np.flatnonzero(~obs.any(axis=1))
        if empty.size:
            raise ModelError(f"records {empty[:5].tolist()} have every trait missing; drop them")
        # residual precision per missing-trait pattern (patterns coded as bit masks)
        bits = obs.astype(np.int64) @ (1 << np.arange(self.t))
        pats, self.pattern = np.unique(bits, return_inverse=True)
        self.pattern = self.pattern.astype(np.int64)
        self.rinv = np.zeros((len(pats), self.t, self.t))
        for j, b in enumerate(pats):  # at most 2^t patterns
            o = np.flatnonzero((b >> np.arange(self.t)) & 1)
            self.rinv[j][np.ix_(o, o)] = np.linalg.inv(R0[np.ix_(o, o)])
        self.y = np.where(obs, Y, 0.0)
        self.groups = list(groups)
        cols: list[np.ndarray] = []
        pos: list[int] = []
        stride: list[int] = []
        trait: list[int] = []
        self.spans, self._cols = {}, []
        a = 0
        for gr in self.groups:
            codes = np.asarray(gr.codes, dtype=np.int64).reshape(self.n, -1)
            g = codes.shape[1]
            tr = np.asarray(gr.traits, dtype=np.int64).reshape(g)
            if tr.min() < 0 or tr.max() >= self.t:
                raise ModelError(f"group {gr.name!r}: effect traits must be in 0..{self.t - 1}, got {tr.tolist()}")
            if codes.max() >= gr.q:
                raise ModelError(f"group {gr.name!r}: a level code >= q = {gr.q}")
            S = np.asarray(gr.sigma, dtype=np.float64).reshape(g, g)
            _chol(S, f"Σ of group {gr.name!r}")
            gr.sigma_inv = np.linalg.inv(S)
            self._cols.append(np.arange(len(cols), len(cols) + g, dtype=np.int64))
            for e in range(g):
                cols.append(codes[:, e])
                pos.append(a + e)
                stride.append(g)
                trait.append(tr[e])
            gr.g = g
            self.spans[gr.name] = (a, a + gr.q * g)
            a += gr.q * g
            gr._block = None
            if gr.genomic is not None:
                idx, blk = gr.genomic
                blk = blk if _is_block_operator(blk) else GenomicBlock(matrix=blk)
                idx = np.asarray(idx, dtype=np.int64)
                if gr.kinv is None or idx.shape != (blk.k,):
                    raise ModelError(f"group {gr.name!r}: a genomic block needs kinv and {blk.k} level indices")
                gr._block, gr._gidx = blk, idx
            if gr.kinv is not None:
                K = sp.csr_matrix(gr.kinv, dtype=np.float64)
                if K.shape != (gr.q, gr.q):
                    raise ModelError(f"group {gr.name!r}: kinv is {K.shape}, expected ({gr.q}, {gr.q})")
                gr._kinv = K
        self.fpos, self.m = a, a + self.p * self.t
        self.codes = np.ascontiguousarray(np.column_stack(cols) if cols else np.empty((self.n, 0), np.int64))
        self.eff_pos = np.array(pos, dtype=np.int64)
        self.eff_stride = np.array(stride, dtype=np.int64)
        self.eff_trait = np.array(trait, dtype=np.int64)
        self._out = np.empty(self.m)
        self._build_preconditioner()

    # -- operator -------------------------------------------------------------------------
    def _penalty_add(self, x: np.ndarray, out: np.ndarray) -> None:
        """out += (K⁻¹ ⊗ Σ⁻¹) x per group, as K⁻¹ U Σ⁻¹ (U = level-major q × g)."""
        for gr in self.groups:
            a, b = self.spans[gr.name]
            U = x[a:b].reshape(gr.q, gr.g)
            KU = gr._kinv @ U if gr.kinv is not None else U.copy()
            if gr._block is not None:
                KU[gr._gidx] += gr._block @ U[gr._gidx]
            out[a:b] += (KU @ gr.sigma_inv).ravel()

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """C x, shape (m,)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        out = np.empty(self.m)
        kern.mt_apply(
            self.X,
            self.codes,
            self.eff_pos,
            self.eff_stride,
            self.eff_trait,
            self.fpos,
            self.rinv,
            self.pattern,
            x,
            out,
        )
        self._penalty_add(x, out)
        return out

    def rhs(self) -> np.ndarray:
        """T'R⁻¹y, shape (m,)."""
        out = np.empty(self.m)
        kern.mt_adjoint(
            self.X,
            self.codes,
            self.eff_pos,
            self.eff_stride,
            self.eff_trait,
            self.fpos,
            self.rinv,
            self.pattern,
            self.y,
            out,
        )
        return out

    def fitted(self, x: np.ndarray) -> np.ndarray:
        """Fitted values (n, t) at solution x (missing traits included: their predictions)."""
        out = np.empty((self.n, self.t))
        kern.mt_forward(self.X, self.codes, self.eff_pos, self.eff_stride, self.eff_trait, self.fpos, x, out)
        return out

    # -- several right-hand sides in lockstep (sampled PEV, fixed-effect SEs) --------------------
    def _penalty_add_multi(self, Xm: np.ndarray, out: np.ndarray) -> None:
        """out += (K⁻¹ ⊗ Σ⁻¹) X per group for X, out (m, S) C-contiguous (numba, one pass
        over K⁻¹'s index arrays for all columns; a genomic block as one dense product)."""
        S = Xm.shape[1]
        for gr in self.groups:
            a, b = self.spans[gr.name]
            U = Xm[a:b].reshape(gr.q, gr.g, S)
            O = out[a:b].reshape(gr.q, gr.g, S)  # a view: out is C-contiguous
            if gr.kinv is not None:
                K = gr._kinv
                kern.kron_penalty_add(K.indptr, K.indices, K.data, gr.sigma_inv, U, O)
            else:
                kern.iid_penalty_add(gr.sigma_inv, U, O)
            if gr._block is not None:
                KU = gr._block @ U[gr._gidx].reshape(len(gr._gidx), gr.g * S)
                O[gr._gidx] += np.einsum("kes,ef->kfs", KU.reshape(len(gr._gidx), gr.g, S), gr.sigma_inv)

    def matmat_data(self, Xm: np.ndarray) -> np.ndarray:
        """T'R⁻¹T X for X (m, S) (C without the penalty): one pass over the records."""
        Xm = np.ascontiguousarray(Xm, dtype=np.float64)
        out = np.empty_like(Xm)
        kern.mt_apply_multi(
            self.X, self.codes, self.eff_pos, self.eff_stride, self.eff_trait, self.fpos, self.rinv, self.pattern,
            Xm, out,
        )  # fmt: skip
        return out

    def matmat(self, Xm: np.ndarray) -> np.ndarray:
        """C X for X (m, S): one pass over the records serves all S columns."""
        Xm = np.ascontiguousarray(Xm, dtype=np.float64)
        out = self.matmat_data(Xm)
        self._penalty_add_multi(Xm, out)
        return out

    def rhs_multi(self, Y: np.ndarray) -> np.ndarray:
        """T'R⁻¹Y for S data sets Y (n, t, S) (values at missing traits are ignored): (m, S)."""
        Y = np.ascontiguousarray(Y, dtype=np.float64)
        out = np.empty((self.m, Y.shape[2]))
        kern.mt_adjoint_multi(
            self.X, self.codes, self.eff_pos, self.eff_stride, self.eff_trait, self.fpos, self.rinv, self.pattern,
            Y, out,
        )  # fmt: skip
        return out

    def precondition_multi(self, Rm: np.ndarray) -> np.ndarray:
        """M⁻¹ R for R (m, S)."""
        Rm = np.ascontiguousarray(Rm)
        S = Rm.shape[1]
        Z = np.empty_like(Rm)
        for gr, Binv in zip(self.groups, self._blocks, strict=True):
            a, b = self.spans[gr.name]
            kern.block_apply(Binv, Rm[a:b].reshape(gr.q, gr.g, S), Z[a:b].reshape(gr.q, gr.g, S))
        Z[self.fpos :] = self._fixed_inv @ Rm[self.fpos :]
        return Z

    def solve_multi(self, B: np.ndarray, X0=None, tol: float = TOL, max_rounds: int | None = None, warn: bool = True):
        """Solve C X = B for S right-hand sides (m, S) by block PCG in lockstep
        (:func:`henderson.solvers.pcg.pcg_multi`, per-column convergence); returns X (m, S)
        and :class:`~henderson.solvers.pcg.MultiPCGInfo`."""
        return pcg_multi(self.matmat, self.precondition_multi, B, X0, tol, max_rounds, warn)

    # -- preconditioner -----------------------------------------------------------------------
    def _build_preconditioner(self) -> None:
        self._blocks = []
        for gr, cols in zip(self.groups, self._cols, strict=True):
            B = np.zeros((gr.q, gr.g, gr.g))
            kern.mt_level_blocks(self.codes, cols, self.eff_trait, self.rinv, self.pattern, B)
            kd = gr._kinv.diagonal() if gr.kinv is not None else np.ones(gr.q)
            if gr._block is not None:
                kd = kd.copy()
                kd[gr._gidx] += gr._block.diagonal()
            bad = ~(np.isfinite(kd) & (kd > 0))
            if bad.any():
                raise NotPositiveDefiniteError(
                    f"the mixed model equations are singular: levels {np.flatnonzero(bad)[:5].tolist()} of group "
                    f"{gr.name!r} have a diagonal of K⁻¹ that is not positive"
                )
            B += kd[:, None, None] * gr.sigma_inv[None]
            if self.preconditioner == "jacobi":
                B = np.einsum("qii->qi", B)[:, :, None] * np.eye(gr.g)[None]
            self._blocks.append(np.linalg.inv(B))
        # fixed block: Σ_i x_i x_i' ⊗ R_i⁻¹, summed per missing-trait pattern
        F = np.zeros((self.p * self.t, self.p * self.t))
        for j in range(len(self.rinv)):
            Xj = self.X[self.pattern == j]
            F += np.kron(Xj.T @ Xj, self.rinv[j])
        if self.p:
            try:
                sla.cholesky(F, lower=True)
            except np.linalg.LinAlgError:
                raise NotPositiveDefiniteError(
                    "the mixed model equations are singular: the fixed effects are confounded, or a trait has "
                    "no records for a fixed-effect column"
                ) from None
        self._fixed_inv = sla.inv(F) if self.preconditioner == "block" else np.diag(1.0 / np.diag(F))

    def precondition(self, r: np.ndarray) -> np.ndarray:
        """M⁻¹ r."""
        z = np.empty_like(r)
        for gr, Binv in zip(self.groups, self._blocks, strict=True):
            a, b = self.spans[gr.name]
            z[a:b] = np.einsum("qij,qj->qi", Binv, r[a:b].reshape(gr.q, gr.g)).ravel()
        z[self.fpos :] = self._fixed_inv @ r[self.fpos :]
        return z

    # -- solve ----------------------------------------------------------------------------------
    def solve(self, x0=None, tol: float = TOL, max_rounds: int | None = None, warn: bool = True):
        """Solve C x = T'R⁻¹y by PCG; returns x (m,) and :class:`~henderson.solvers.pcg.PCGInfo`."""
        x, info = pcg_loop(
            self.matvec, self.precondition, self.rhs(), self.m, x0, tol, max_rounds, self.preconditioner, warn
        )
        return x, info

    def effects(self, x: np.ndarray, name: str) -> np.ndarray:
        """Solutions of group ``name``, shape (q, g)."""
        gr = next(g for g in self.groups if g.name == name)
        a, b = self.spans[name]
        return x[a:b].reshape(gr.q, gr.g)

    def fixed(self, x: np.ndarray) -> np.ndarray:
        """Fixed-effect solutions, shape (p, t)."""
        return x[self.fpos :].reshape(self.p, self.t)


__all__ = ["GeneralPCG", "GenomicBlock", "MultiPCGInfo", "PCGInfo", "RandomGroup"]

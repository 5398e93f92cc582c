"""Single-step H⁻¹ with A₂₂⁻¹ applied as an operator, never formed ("lazy").

    H⁻¹ = A⁻¹ + [[0, 0], [0, D]],   D = τG*⁻¹ − ωA₂₂⁻¹

:func:`~henderson.relationships.single_step.single_step_inverse` (eager) forms D as a
dense k × k matrix, which costs a second k³ inverse, A₂₂⁻¹, beside the floor (forming
and inverting G). Iterative solvers only need D·v. On the pedigree pruned to the
genotyped animals (2) and their ancestors (1), A₂₂⁻¹ is the Schur complement of the
pruned A⁻¹ (written A^{ij} for its blocks; Strandén & Mäntysaari 2014; Masuda et al.
2017, J Dairy Sci 100:1):

    A₂₂⁻¹ v = A²² v − A²¹ (A¹¹)⁻¹ A¹² v

one sparse product with A²², A¹² and A²¹ and one sparse Cholesky solve with A¹¹
(:mod:`henderson.linalg`, factored once). :class:`A22InverseOperator` holds that; a
:class:`SingleStepBlock` combines it with G*⁻¹ (a dense matrix, or APY's
:class:`~henderson.relationships.apy.ApyInverse` in blocks, when neither G nor A₂₂ is
ever k × k) and is what :class:`~henderson.solvers.pcg_general.GeneralPCG` takes as a
genomic block (``k``, ``@``, ``diagonal()``). :class:`LazySingleStepInverse` is the
H⁻¹ object: ``block_operator()`` for PCG, ``dense_block()`` / ``to_relationship()`` /
``dense()`` form D on demand (a direct solver asks for it).

What stays exact without forming D:

- log|A₂₂| = log|A_pruned| + log|A¹¹| (the factor's log-determinant), so with ω = 1
  log|H| = log|A| − log|A₂₂| − k log τ + log|G*| is known;
- with ω ≠ 1, log|T| (T = τG*⁻¹ + (1 − ω)A₂₂⁻¹) needs a dense k × k factorisation: the
  lazy object reports log|H| as NaN (``info["notes"]`` says so) until a direct solver
  forms D, when it is computed exactly;
- diag(H) of the genotyped animals is diag(G*)/τ when ω = 1 and G* is formed; otherwise
  NaN, as is diag(H) of the non-genotyped animals (eager's ``diag=True`` needs the dense
  block).

The preconditioner's diagonal, diag(D) = τ diag(G*⁻¹) − ω diag(A₂₂⁻¹), uses
diag(A₂₂⁻¹)ⱼ = A²²ⱼⱼ − (A¹²eⱼ)'(A¹¹)⁻¹(A¹²eⱼ) computed by k sparse solves in blocks when
nnz(L) · k ≤ ``DIAG_BUDGET`` (L: A¹¹'s factor; each solve reads L twice), else a seeded
stochastic estimate (Bekas et al. 2007, 64 Rademacher probes: one solve with 64
right-hand sides) clipped to the exact bounds 1/A₂₂,ⱼⱼ ≤ (A₂₂⁻¹)ⱼⱼ ≤ A²²ⱼⱼ. The exact
diagonal costs k solves, as many as forming A₂₂⁻¹ by the sparse route: at 200,000
animals / 5,000 genotyped it took twice the lazy set-up
(benchmarks/results/single_step.md). Either way PCG's solution is exact: the diagonal
only preconditions.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import scipy.sparse as sp

from ..data import _pedigree_kernels as K
from ..data.genotypes import Genotypes
from ..errors import DataError, DataWarning, NotPositiveDefiniteError, format_ids
from .pedigree import _as_pedigree, pedigree_inverse

#: nnz(L of A¹¹) · k up to which diag(A₂₂⁻¹) is exact (k solves; module notes).
DIAG_BUDGET = 2e9
#: Rademacher probes of the stochastic diag(A₂₂⁻¹) beyond that.
N_PROBES = 64


class A22InverseOperator:
    """A₂₂⁻¹ applied as a product, from the pruned pedigree's A⁻¹ (module notes).

    Parameters
    ----------
    pedigree : Pedigree or DataFrame (id, sire, dam)
    ids : array of str, shape (k,)
        The genotyped animals (all in the pedigree), in the operator's order.

    Attributes
    ----------
    k : int
    n_pruned : int
        Animals of the pruned pedigree (the ids and their ancestors).
    n_other : int
        Non-genotyped ancestors (the order of A¹¹).
    logdet_a22 : float
        log|A₂₂| = log|A_pruned| + log|A¹¹|.
    nnz_factor : int
        Nonzeros of A¹¹'s Cholesky factor.
    inbreeding : ndarray, shape (k,)
        F of the ids (diag A₂₂ = 1 + F).
    timings : dict
    """

    def __init__(self, pedigree, ids) -> None:
        from ..linalg import SymbolicCholesky

        t0 = time.perf_counter()
        ped = _as_pedigree(pedigree)
        self.ids = np.asarray([str(i) for i in ids], dtype=object)
        s, dm, d, gpos, F = _pruned_with_inbreeding(ped, ped.codes_of(self.ids))
        self.inbreeding = F
        n = len(s)
        rows, cols, vals = K.ainv_triplets(s, dm, d, np.arange(n, dtype=np.int64))
        B = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
        B.sum_duplicates()
        others = np.setdiff1d(np.arange(n), gpos)
        self.k, self.n_pruned, self.n_other = len(gpos), n, len(others)
        self._b22 = B[gpos][:, gpos].tocsr()
        self._b12 = B[others][:, gpos].tocsr()
        self._b21 = self._b12.T.tocsr()
        self._b22_diag = self._b22.diagonal()
        logdet_a = float(np.sum(np.log(d)))
        self.timings = {"prune_and_Ainv": time.perf_counter() - t0}
        t = time.perf_counter()
        self._factor = None
        self.nnz_factor = 0
        logdet_b11 = 0.0
        if self.n_other:
            B11 = B[others][:, others].tocsc()
            try:
                sym = SymbolicCholesky(B11)
                self._factor = sym.factor_matrix(B11)
            except NotPositiveDefiniteError as exc:
                raise NotPositiveDefiniteError(
                    f"the non-genotyped block of the pruned A⁻¹ is not positive definite: {exc}"
                ) from exc
            self.nnz_factor = int(sym.nnz)
            logdet_b11 = float(self._factor.logdet())
        self.logdet_a22 = logdet_a + logdet_b11
        self.timings["factor_A11"] = time.perf_counter() - t
        self._diag: np.ndarray | None = None
        self.diag_method: str | None = None

    # -- products ------------------------------------------------------------------------
    def __matmul__(self, V: np.ndarray) -> np.ndarray:
        """A₂₂⁻¹ V for V of shape (k,) or (k, r)."""
        V = np.asarray(V, dtype=np.float64)
        if V.shape[0] != self.k:
            raise DataError(f"A22⁻¹ operator: the operand has {V.shape[0]} rows, expected {self.k}")
        out = np.asarray(self._b22 @ V)
        if self._factor is not None:
            out -= self._b21 @ self._factor.solve(np.asarray(self._b12 @ V))
        return out

    def matvec(self, v: np.ndarray) -> np.ndarray:
        """A₂₂⁻¹ v, v of shape (k,)."""
        return self @ np.asarray(v).reshape(self.k)

    def matmat(self, V: np.ndarray) -> np.ndarray:
        """A₂₂⁻¹ V, V of shape (k, r)."""
        return self @ np.asarray(V).reshape(self.k, -1)

    # -- on demand -----------------------------------------------------------------------
    def dense(self, block: int = 256) -> np.ndarray:
        """A₂₂⁻¹ as a dense (k, k) array (k solves, ``block`` right-hand sides at a time)."""
        from .pedigree import check_dense_memory

        check_dense_memory(self.k, "A22⁻¹", copies=1.0)
        out = self._b22.toarray()
        if self._factor is not None:
            for a in range(0, self.k, block):
                b = min(a + block, self.k)
                out[:, a:b] -= self._b21 @ self._factor.solve(self._b12[:, a:b].toarray())
        out += out.T
        out *= 0.5
        return out

    def diagonal(self, method: str = "auto", block: int = 256, seed: int = 0) -> np.ndarray:
        """diag(A₂₂⁻¹), shape (k,) (module notes); cached.

        Parameters
        ----------
        method : {"auto", "exact", "estimate"}
            ``"exact"``: k sparse solves in blocks; ``"estimate"``: ``N_PROBES``
            Rademacher probes, clipped to [1/A₂₂,ⱼⱼ, A²²ⱼⱼ]; ``"auto"``: exact when
            nnz(L) · k ≤ ``DIAG_BUDGET``.
        """
        if method not in ("auto", "exact", "estimate"):
            raise DataError(f"diagonal method must be 'auto', 'exact' or 'estimate', not {method!r}")
        if method == "auto":
            method = "exact" if float(self.nnz_factor) * self.k <= DIAG_BUDGET else "estimate"
        if self._diag is not None and self.diag_method == method:
            return self._diag
        d = self._b22_diag.copy()
        if self._factor is not None and method == "exact":
            for a in range(0, self.k, block):
                b = min(a + block, self.k)
                R = self._b12[:, a:b].toarray()
                d[a:b] -= np.einsum("ij,ij->j", R, self._factor.solve(R))
        elif self._factor is not None:
            rng = np.random.default_rng(seed)
            Z = rng.choice(np.array([-1.0, 1.0]), size=(self.k, N_PROBES))
            est = np.einsum("ij,ij->i", Z, self @ Z) / N_PROBES
            lower = self._a22_diag_inverse()
            d = np.clip(est, lower, self._b22_diag)
        self._diag, self.diag_method = d, method
        return d

    def _a22_diag_inverse(self) -> np.ndarray:
        """1/diag(A₂₂) = 1/(1 + F) (the exact lower bound of diag(A₂₂⁻¹))."""
        return 1.0 / (1.0 + self.inbreeding)

    def __repr__(self) -> str:
        return f"A22InverseOperator(k={self.k}, pruned pedigree {self.n_pruned}, A¹¹ factor nnz {self.nnz_factor})"


def _pruned_with_inbreeding(ped, gcodes: np.ndarray):
    """The genotyped animals and their ancestors: (sire, dam, d, position of genotyped, F
    of genotyped), as :func:`~henderson.relationships.single_step._pruned`."""
    from .pedigree import _processing_order

    keep = np.zeros(len(ped), np.bool_)
    keep[gcodes] = True
    sub = np.flatnonzero(K.ancestors_mask(ped.sire, ped.dam, keep))  # increasing: parents first
    new = np.full(len(ped), -1, np.int64)
    new[sub] = np.arange(len(sub))
    s = np.where(ped.sire[sub] >= 0, new[ped.sire[sub]], -1)
    dm = np.where(ped.dam[sub] >= 0, new[ped.dam[sub]], -1)
    gen = ped.generation[sub]
    F, d = K.inbreeding_lap(s, dm, gen, _processing_order(s, dm, gen))
    gpos = new[gcodes]
    return s, dm, d, gpos, F[gpos]


class SingleStepBlock:
    """D = τG*⁻¹ − ωA₂₂⁻¹ applied as products (the genomic block of single-step H⁻¹).

    Parameters
    ----------
    g_inverse : ndarray (k, k) or ApyInverse
        G*⁻¹ (dense, symmetric) or G*_APY⁻¹ in blocks; anything with ``@``.
    a22 : A22InverseOperator
        In the same id order as ``g_inverse``.
    tau, omega : float

    Notes
    -----
    ``k``, ``@`` and :meth:`diagonal` are what
    :class:`~henderson.solvers.pcg_general.GeneralPCG` takes as a genomic block;
    :meth:`dense` forms D (k × k) on demand, as eager
    :func:`~henderson.single_step_inverse` does.
    """

    def __init__(self, g_inverse, a22: A22InverseOperator, tau: float = 1.0, omega: float = 1.0):
        k = g_inverse.shape[0] if isinstance(g_inverse, np.ndarray) else g_inverse.k
        if k != a22.k:
            raise DataError(f"G⁻¹ is {k} × {k} but the A22⁻¹ operator is of order {a22.k}")
        self.g_inverse, self.a22 = g_inverse, a22
        self.tau, self.omega = float(tau), float(omega)
        self.k = k
        self._diag: np.ndarray | None = None

    def __matmul__(self, V: np.ndarray) -> np.ndarray:
        """D V for V of shape (k,) or (k, r)."""
        V = np.asarray(V, dtype=np.float64)
        out = self.g_inverse @ V
        out *= self.tau
        if self.omega:
            out -= self.omega * (self.a22 @ V)
        return out

    def matvec(self, v: np.ndarray) -> np.ndarray:
        """D v, v of shape (k,)."""
        return self @ np.asarray(v).reshape(self.k)

    def matmat(self, V: np.ndarray) -> np.ndarray:
        """D V, V of shape (k, r)."""
        return self @ np.asarray(V).reshape(self.k, -1)

    def g_inverse_dense(self) -> np.ndarray:
        """G*⁻¹ (k, k), dense (APY's formed on demand)."""
        g = self.g_inverse
        return g if isinstance(g, np.ndarray) else g.dense()

    def diagonal(self) -> np.ndarray:
        """diag(D) for the preconditioner (diag(A₂₂⁻¹) exact or estimated: module notes)."""
        if self._diag is None:
            g = self.g_inverse
            gd = np.diag(g).copy() if isinstance(g, np.ndarray) else np.asarray(g.diagonal(), dtype=float).copy()
            self._diag = self.tau * gd - (self.omega * self.a22.diagonal() if self.omega else 0.0)
        return self._diag

    def dense(self) -> np.ndarray:
        """D = τG*⁻¹ − ωA₂₂⁻¹ as a dense (k, k) array (formed on demand: a k × k A₂₂⁻¹)."""
        out = self.a22.dense()
        out *= -self.omega
        out += self.tau * self.g_inverse_dense()
        return out

    def __repr__(self) -> str:
        kind = "dense" if isinstance(self.g_inverse, np.ndarray) else type(self.g_inverse).__name__
        return f"SingleStepBlock(k={self.k}, G*⁻¹ {kind}, tau={self.tau}, omega={self.omega}, {self.a22!r})"


class LazySingleStepInverse:
    """Single-step H⁻¹ = A⁻¹ + P D P' with D kept as a :class:`SingleStepBlock`.

    Built by :func:`~henderson.single_step_inverse` with ``lazy=True``. The level-covariance
    protocol of :class:`~henderson.spec.levels.SparseInverseWithDenseBlock`
    (``sparse_part``, ``block_positions``, ``dense_block``, ``logdet_contribution``) is
    served with D formed on demand (what a direct solver asks for);
    :meth:`block_operator` is what PCG takes instead (D as products).

    Attributes
    ----------
    ids : ndarray of str, shape (n,)
    sparse : csr_matrix (n, n)
        A⁻¹.
    index : ndarray of int, shape (k,)
        Positions of the genotyped animals.
    block : SingleStepBlock
    info : dict
        As eager ``single_step_inverse``'s (``logdet`` NaN when unknown, ``lazy`` True).
    """

    inverse = True
    kind = "Hinv"

    def __init__(self, ids, sparse, block: SingleStepBlock, index, *, logdet_a: float, info: dict):
        self.ids = np.asarray([str(i) for i in ids], dtype=object)
        self.sparse = sp.csr_matrix(sparse)
        self.block = block
        self.index = np.asarray(index, dtype=np.int64)
        self.logdet_a = float(logdet_a)  # log|A|
        self.info = dict(info)
        self._dense_block: np.ndarray | None = None

    # -- protocol ---------------------------------------------------------------------------
    @property
    def n_levels(self) -> int:
        """n, the number of levels (animals)."""
        return len(self.ids)

    def sparse_part(self) -> sp.csr_matrix:
        """A⁻¹, shape (n, n)."""
        return self.sparse

    @property
    def block_positions(self) -> np.ndarray:
        """Rows (int, shape (k,)) the genotyped block covers."""
        return self.index

    def block_operator(self) -> SingleStepBlock:
        """D as products (for PCG): ``k``, ``@``, ``diagonal()``."""
        return self.block

    def dense_block(self) -> np.ndarray:
        """D, shape (k, k), formed on first call (k sparse solves) and kept; also fills in
        log|H| when it was unknown (ω ≠ 1)."""
        if self._dense_block is None:
            a22inv = self.block.a22.dense()
            ginv = self.block.g_inverse_dense()
            tau, omega = self.block.tau, self.block.omega
            if not np.isfinite(self.info["logdet"]):
                from .single_step import _chol, _logdet_chol

                T = tau * ginv + (1.0 - omega) * a22inv
                ct = _chol(T, "H22⁻¹ = tau G⁻¹ + (1 - omega) A22⁻¹", "choose other tau/omega")
                self.info["logdet"] = self.logdet_a - self.block.a22.logdet_a22 - _logdet_chol(ct)
                del T, ct
            a22inv *= -omega
            a22inv += tau * ginv
            self._dense_block = a22inv
        return self._dense_block

    def logdet_inverse(self, compute: bool = True) -> float:
        """log|H⁻¹| = −log|H|; NaN when unknown and ``compute`` is False (ω ≠ 1, D not
        formed), else computed through :meth:`dense_block`."""
        if compute and not np.isfinite(self.info["logdet"]):
            self.dense_block()
        return -float(self.info["logdet"])

    def logdet_contribution(self) -> float:
        """log|H| (what −2 log L adds per variance of the term)."""
        return -self.logdet_inverse()

    def apply_inverse(self, x: np.ndarray) -> np.ndarray:
        """H⁻¹ x for x of shape (n,) or (n, r), D applied as products."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[0] != self.n_levels:
            raise DataError(f"apply_inverse: x has {x.shape[0]} rows, expected {self.n_levels}")
        out = np.asarray(self.sparse @ x)
        out[self.index] += self.block @ x[self.index]
        return out

    matvec = apply_inverse

    def dense(self) -> np.ndarray:
        """H⁻¹ as a dense (n, n) array (small n only)."""
        from .pedigree import check_dense_memory

        check_dense_memory(self.n_levels, "H⁻¹", copies=1.0)
        out = self.sparse.toarray()
        out[np.ix_(self.index, self.index)] += self.dense_block()
        return out

    as_dense_inverse = dense

    def as_dense(self) -> np.ndarray:
        """H (not its inverse), dense (small n only)."""
        return np.linalg.inv(self.dense())

    def to_blocks(self):
        """The eager form: a :class:`~henderson.relationships.h_inverse.SparsePlusDenseInverse`
        with D formed (on demand)."""
        from .h_inverse import SparsePlusDenseInverse

        D = self.dense_block()
        return SparsePlusDenseInverse(
            self.ids, self.sparse, D, self.index, logdet=-float(self.info["logdet"]), info=self.info
        )

    def to_sparse(self) -> sp.csr_matrix:
        """H⁻¹ as one CSR matrix with D filled in (k² more nonzeros)."""
        return self.to_blocks().to_sparse()

    def to_relationship(self):
        """The filled-in CSR as a Relationship (what direct solvers and ``cov_inverse=`` take)."""
        return self.to_blocks().to_relationship()

    def add_to(self, C: sp.spmatrix, offset: int, scale: float = 1.0) -> sp.csr_matrix:
        """C + scale · H⁻¹ at ``offset`` (D formed on demand), as
        :meth:`~henderson.relationships.h_inverse.SparsePlusDenseInverse.add_to`."""
        return self.to_blocks().add_to(C, offset, scale)

    def __repr__(self) -> str:
        return f"LazySingleStepInverse(n={self.n_levels}, nnz(A⁻¹)={self.sparse.nnz}, {self.block!r})"


def _is_genotypes(x) -> bool:
    """Genotypes, or a genotype DataFrame (not a square one with ids on both axes: a G)."""
    import pandas as pd

    if isinstance(x, Genotypes):
        return True
    if isinstance(x, pd.DataFrame):
        return not (x.shape[0] == x.shape[1] and [str(i) for i in x.index] == [str(c) for c in x.columns])
    return False


def single_step_inverse_lazy(
    pedigree,
    genotypes_or_G,
    *,
    tuning: str | None = "mean",
    alpha: float = 0.95,
    beta: float = 0.05,
    tau: float = 1.0,
    omega: float = 1.0,
    missing: str = "error",
    a22_inverse: str = "auto",
    apy_core=None,
    seed: int = 0,
    grm: str = "vanraden1",
    diag="auto",
    keep_g_inverse: bool = False,
) -> LazySingleStepInverse:
    """H⁻¹ with A₂₂⁻¹ as an operator: :func:`~henderson.single_step_inverse` with ``lazy=True``.

    Parameters are :func:`~henderson.single_step_inverse` 's, with the same defaults
    (preGSf90's). ``a22_inverse`` may only be ``"auto"`` or ``"sparse"`` (the operator is
    the sparse route); ``diag=True`` is refused (diag(H) of the non-genotyped animals needs
    the dense block: use the eager builder). With ``apy_core`` and genotypes, G*_APY⁻¹
    comes from :func:`~henderson.apy_inverse_from_genotypes` (no k × k G or A₂₂: blending
    and tuning use Colleau's products); with a given G, from
    :func:`~henderson.relationships.apy.apy_inverse_from_dense`.

    Returns
    -------
    LazySingleStepInverse
        ``info`` as eager's, with ``logdet`` NaN when ω ≠ 1 (module notes), ``diag`` NaN
        where unknown, ``lazy`` True and ``A22_operator`` (factor size and timings).
    """
    from .apy import ApyInverse, _means_from, apy_inverse_from_dense, apy_inverse_from_genotypes
    from .container import Relationship
    from .single_step import (
        _add_founders,
        _as_genomic,
        _check_settings,
        _chol,
        _inverse_from_chol,
        _logdet_chol,
        _means,
        _owned,
        _tune_mean,
    )

    t0 = time.perf_counter()
    _check_settings(tuning, alpha, beta, tau, omega, missing, a22_inverse)
    if a22_inverse == "dense":
        raise DataError(
            "lazy=True applies A22⁻¹ as an operator from the sparse A⁻¹ of the pruned pedigree; "
            "a22_inverse='dense' (Colleau + dense inverse) contradicts it: use a22_inverse='auto' or lazy=False"
        )
    if diag is True:
        raise DataError(
            "diag=True (diag(H) of every animal) needs the dense genotyped block: use lazy=False, "
            "or diag='auto'/False with lazy=True (diag(H) of non-genotyped animals is then NaN)"
        )
    ped = _as_pedigree(pedigree)
    notes: list[str] = []
    timings: dict[str, float] = {}

    # -- genotyped ids (G formed only when needed) ---------------------------------------------
    x = genotypes_or_G
    geno = None
    G = None
    t = time.perf_counter()
    if apy_core is not None and _is_genotypes(x):
        geno = x if isinstance(x, Genotypes) else Genotypes.from_frame(x)
        gids = np.asarray(geno.ids, dtype=object)
        g_info: dict = {}
    else:
        G, geno = _as_genomic(x, grm)
        gids = np.asarray(G.ids, dtype=object)
        g_info = {k_: v for k_, v in G.info.items() if k_ in ("method", "allele_freq", "scale", "n_snps_used")}
        timings["G_form"] = time.perf_counter() - t
    known = ped._index.get_indexer(gids) >= 0
    n_added = 0
    if not known.all():
        absent = gids[~known]
        if missing == "error":
            from ..errors import AlignmentError

            raise AlignmentError(
                f"{len(absent)} of {len(gids)} genotyped id(s) are not in the pedigree ({ped.source}): "
                f"{format_ids(absent)}; add them to the pedigree, or pass missing='add' to add them "
                "as founders (unknown parents)"
            )
        n_added = len(absent)
        msg = (
            f"{n_added} genotyped id(s) not in the pedigree were added as founders with unknown "
            f"parents: {format_ids(absent)}"
        )
        warnings.warn(msg, DataWarning, stacklevel=3)
        notes.append(msg)
        ped = _add_founders(ped, absent)
    k = len(gids)

    t = time.perf_counter()
    Ainv = pedigree_inverse(ped)
    timings["A_inverse"] = time.perf_counter() - t
    t = time.perf_counter()
    a22op = A22InverseOperator(ped, gids)
    timings["A22_operator"] = time.perf_counter() - t

    ta, tb = 0.0, 1.0
    gdiag = None
    g_keep = None
    stats: dict = {}
    hint = (
        "blend G with A22 (beta > 0, e.g. alpha=0.95, beta=0.05 as preGSf90) or tune it "
        "(tuning='mean'); VanRaden's G with current allele frequencies is always singular"
    )
    if G is None:  # APY from the genotypes: no k × k G or A22
        t = time.perf_counter()
        need_ped = beta > 0 or tuning is not None
        apy = apy_inverse_from_genotypes(
            geno,
            apy_core,
            seed=seed,
            pedigree=ped if need_ped else None,
            alpha=alpha,
            beta=beta,
            tuning=tuning,
            grm=grm,
        )
        ta, tb = apy.info["tuning_a"], apy.info["tuning_b"]
        stats = apy.info["G_stats"]
        logdet_g = apy.logdet
        ginv: np.ndarray | ApyInverse = apy
        timings["G_apy_from_genotypes"] = time.perf_counter() - t
        notes.append(
            f"APY inverse of G* with {apy.info['n_core']} core animals (Misztal 2016), from the genotypes "
            "by blocks (no k × k G or A22 formed)"
        )
    else:
        # G*: blend, then tune (as eager; A22 formed by Colleau only for blending)
        t = time.perf_counter()
        g = _owned(G.dense()) if geno is not None else np.array(G.dense(), dtype=np.float64)
        del G
        stats["G"] = _means(g)
        a22 = None
        if beta > 0:
            from .pedigree import pedigree_relationship

            a22 = _owned(pedigree_relationship(ped, gids).matrix)
            stats["A22"] = _means(a22)
        elif tuning is not None:
            from .pedigree import colleau_product

            a1, F = colleau_product(ped, gids, np.ones((k, 1)))
            stats["A22"] = _means_from(float(np.sum(1.0 + F)), float(a1.sum()), k)
        timings["A22_colleau"] = time.perf_counter() - t
        t = time.perf_counter()
        if alpha != 1.0:
            g *= alpha
        if a22 is not None:  # formed exactly when beta > 0
            for r0 in range(0, k, 1024):
                g[r0 : r0 + 1024] += beta * a22[r0 : r0 + 1024]
        if tuning == "mean":
            if a22 is not None:
                ta, tb = _tune_mean(g, a22, gids)
            else:
                ta, tb = _tune_from_means(g, stats["A22"], F, gids)
            g *= tb
            g += ta
        del a22
        stats["G_star"] = _means(g)
        gdiag = np.diag(g).copy()
        timings["G_blend_tune"] = time.perf_counter() - t
        t = time.perf_counter()
        if apy_core is not None:
            ginv = apy_inverse_from_dense(Relationship(gids, g, kind="G"), apy_core, seed=seed)
            logdet_g = ginv.logdet
            notes.append(f"APY inverse of G* with {ginv.info['n_core']} core animals (Misztal 2016)")
        else:
            what = "G" if (beta == 0 and tuning is None) else "the blended/tuned G*"
            if keep_g_inverse:
                g_keep = g.copy()
            cg = _chol(g, what, hint, overwrite=True)
            logdet_g = _logdet_chol(cg)
            ginv = _inverse_from_chol(cg, overwrite=True)
            del cg, g
        timings["G_inverse"] = time.perf_counter() - t

    block = SingleStepBlock(ginv, a22op, tau, omega)
    # log|H| = log|A| − log|A22| − log|T|, T = τG*⁻¹ + (1 − ω)A22⁻¹ (= G*/τ inverted when ω = 1)
    logdet_a = float(Ainv.info["logdet"])
    if omega == 1.0:
        logdet_h = logdet_a - a22op.logdet_a22 - (k * np.log(tau) - logdet_g)
    else:
        logdet_h = np.nan
        notes.append(
            "log|H| unknown (NaN) with lazy=True and omega != 1: it needs the dense "
            "tau G⁻¹ + (1 - omega) A22⁻¹; a direct solver forms it on demand, PCG reports no log-likelihood term"
        )
    pos = Ainv.index_of(gids)
    hdiag = np.full(Ainv.n, np.nan)
    if omega == 1.0 and gdiag is not None:
        hdiag[pos] = gdiag / tau  # diag G_APY = diag G* as well
    else:
        notes.append(
            "diag(H) of the genotyped animals not computed with lazy=True here: their reliabilities are missing"
        )
    if Ainv.n > k:
        notes.append(
            f"diag(H) of the {Ainv.n - k} non-genotyped animals not computed (lazy=True): their reliabilities "
            "are missing"
        )
    timings["total"] = time.perf_counter() - t0
    info = {
        "method": "H⁻¹ = A⁻¹ + [[0,0],[0, tau G*⁻¹ - omega A22⁻¹]] (Aguilar et al. 2010), A22⁻¹ as an operator",
        "logdet": logdet_h,
        "diag": hdiag,
        "genotyped": gids,
        "settings": {
            "tuning": tuning,
            "alpha": alpha,
            "beta": beta,
            "tau": tau,
            "omega": omega,
            "a22_inverse": "operator",
            "apy_core": None if apy_core is None else (int(apy_core) if np.ndim(apy_core) == 0 else len(apy_core)),
            "grm": grm,
            "lazy": True,
        },
        "lazy": True,
        "tuning_a": ta,
        "tuning_b": tb,
        "G_stats": stats,
        "n_added_founders": n_added,
        "inbreeding": Ainv.info["inbreeding"],
        "timings": timings,
        "notes": notes,
        "source": ped.source,
        "A22_operator": {
            "n_pruned": a22op.n_pruned,
            "n_other": a22op.n_other,
            "nnz_factor": a22op.nnz_factor,
            "timings": dict(a22op.timings),
        },
    }
    if keep_g_inverse:
        if apy_core is not None:
            info["G_star_inverse"] = block.g_inverse_dense()
        else:
            info["G_star_inverse"] = ginv
            info["G_star"] = g_keep
    if geno is not None and g_info:
        info["genotypes_info"] = g_info
    return LazySingleStepInverse(Ainv.ids, Ainv.matrix, block, pos, logdet_a=logdet_a, info=info)


def _tune_from_means(g: np.ndarray, a22_means: dict, F: np.ndarray, ids) -> tuple[float, float]:
    """a, b of G* = a + bG (as :func:`~henderson.relationships.single_step._tune_mean`),
    with A₂₂'s means from a Colleau product (no k × k A₂₂)."""
    k = g.shape[0]
    if k < 2:
        raise DataError("tuning='mean' needs at least 2 genotyped animals; use tuning=None")
    ad, ao = a22_means["mean_diag"], a22_means["mean_offdiag"]
    if np.allclose(F, 0.0, atol=1e-12) and abs(ao) <= 1e-12:
        raise DataError(
            f"tuning='mean' matches G to A22, but A22 of the {k} genotyped animals is the identity: "
            "they have no pedigree information (no known parents or relatives among them, e.g. "
            f"{format_ids(ids, 5)}). Give a pedigree that links them, or set tuning=None"
        )
    tr = float(np.trace(g))
    gd, go = tr / k, (float(g.sum()) - tr) / (k * (k - 1))
    if np.isclose(gd, go):
        raise DataError("mean diagonal and mean off-diagonal of G are equal: cannot tune (tuning=None)")
    b = (ad - ao) / (gd - go)
    return ad - b * gd, b

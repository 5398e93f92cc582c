"""A level covariance given by its inverse: a sparse matrix plus one dense block.

    K⁻¹ = S + P D P'        (n × n)

``S`` is sparse (n × n, e.g. Henderson's A⁻¹), ``D`` is dense (k × k) and ``P`` the
n × k selection of the rows ``index``. Single-step GBLUP's H⁻¹ has this form with
S = A⁻¹ and D = τG*⁻¹ − ωA₂₂⁻¹ over the genotyped animals (Aguilar et al. 2010;
Christensen & Lund 2010). Keeping the two parts apart, instead of filling the block
into one CSR matrix, lets

- H⁻¹x cost nnz(S) + k² (one sparse product and one dense GEMV/GEMM);
- the mixed-model equations take the block as a dense supernode: the k rows of D
  form a clique, which the supernodal Cholesky of :mod:`henderson.linalg` eliminates
  together in its trailing supernode(s) (rows with more than ``max(16, 10√n)``
  neighbours are ordered last outright), factored by LAPACK;
- log|K⁻¹| come from the parts.

The class is registered as a :class:`henderson.spec.levels.SparseInverseWithDenseBlock`
(there, so that relationships/ does not import spec/, which imports relationships/) and
has its methods (the level-covariance protocol: ``n_levels``, ``ids``, ``apply_inverse``, ``as_dense`` — K
itself —, ``logdet_contribution`` = log|K|, ``sparse_part``, ``block_positions``,
``dense_block``).

log-determinant (matrix determinant lemma on the block, with A = S⁻¹):

    log|S + P D P'| = log|S| + log|I_k + D A_pp|,   A_pp = (S⁻¹)[index, index].

For H⁻¹ (S = A⁻¹, D = τG*⁻¹ − ωA₂₂⁻¹): I + D A₂₂ = (τG*⁻¹ + (1 − ω)A₂₂⁻¹) A₂₂, so

    log|H⁻¹| = log|A⁻¹| + log|A₂₂| + log|τG*⁻¹ + (1 − ω)A₂₂⁻¹|,

which for τ = ω = 1 is the familiar log|H| = log|A| − log|A₂₂| + log|G*|. The
builder :func:`~henderson.relationships.single_step.single_step_inverse` knows every
term and passes the value; without one, :meth:`logdet_inverse` evaluates the lemma
with k sparse solves on S (fine for small k, or once).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..data._ids import str_ids
from ..errors import DataError, NotPositiveDefiniteError


class SparsePlusDenseInverse:
    """K⁻¹ = S + P D P': a sparse inverse with one dense symmetric block.

    Parameters
    ----------
    ids : sequence of str, length n
        Level ids, in the order of S's rows.
    sparse : scipy.sparse matrix, shape (n, n)
        Symmetric sparse part S (stored as CSR).
    block : ndarray, shape (k, k)
        Symmetric dense part D (kept as given: not copied, so the caller can hand over
        a k × k matrix without doubling memory).
    index : array of int, shape (k,)
        Rows of S that D adds to (distinct, in D's order).
    logdet : float, optional
        log|K⁻¹| when the builder knows it (see module notes); otherwise computed on
        demand by :meth:`logdet_inverse`.
    info : dict, optional
        Free-form metadata (e.g. single-step settings).
    """

    def __init__(self, ids, sparse, block, index, *, logdet: float | None = None, info: dict | None = None):
        self.ids = str_ids(ids)
        n = len(self.ids)
        S = sp.csr_matrix(sparse)
        if S.shape != (n, n):
            raise DataError(f"sparse part has shape {S.shape}, expected ({n}, {n}) for {n} ids")
        index = np.asarray(index, dtype=np.int64)
        block = np.asarray(block)
        k = len(index)
        if block.shape != (k, k):
            raise DataError(f"dense block has shape {block.shape}, expected ({k}, {k}) for {k} index rows")
        if k and (index.min() < 0 or index.max() >= n):
            raise DataError(f"dense block index out of range 0..{n - 1}: min {index.min()}, max {index.max()}")
        if len(np.unique(index)) != k:
            raise DataError("dense block index has repeated rows")
        self.sparse = S
        self.block = block
        self.index = index
        self._logdet = logdet
        self.info = dict(info or {})

    # -- protocol ---------------------------------------------------------------
    inverse = True

    @property
    def n_levels(self) -> int:
        """n, the number of levels."""
        return len(self.ids)

    def sparse_part(self) -> sp.csr_matrix:
        """S, shape (n, n)."""
        return self.sparse

    @property
    def block_positions(self) -> np.ndarray:
        """Rows (int, shape (k,)) the dense block covers."""
        return self.index

    def dense_block(self) -> np.ndarray:
        """D, shape (k, k)."""
        return self.block

    def logdet_contribution(self) -> float:
        """log|K| = −log|K⁻¹| (what −2 log L adds per variance of the term)."""
        return -self.logdet_inverse()

    def apply_inverse(self, x: np.ndarray) -> np.ndarray:
        """K⁻¹ x for x of shape (n,) or (n, r): S x + P (D x[index])."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[0] != self.n_levels:
            raise DataError(f"apply_inverse: x has {x.shape[0]} rows, expected {self.n_levels}")
        out = np.asarray(self.sparse @ x)
        out[self.index] += self.block @ x[self.index]
        return out

    def as_dense(self) -> np.ndarray:
        """K (not its inverse) as a dense (n, n) array, as the protocol has it (small n only)."""
        return np.linalg.inv(self.as_dense_inverse())

    def as_dense_inverse(self) -> np.ndarray:
        """K⁻¹ as a dense (n, n) array (small n only)."""
        out = self.sparse.toarray()
        out[np.ix_(self.index, self.index)] += self.block
        return out

    def to_sparse(self) -> sp.csr_matrix:
        """K⁻¹ as one CSR matrix with the block filled in (k² more nonzeros)."""
        n, k = self.n_levels, len(self.index)
        r = np.repeat(self.index, k)
        c = np.tile(self.index, k)
        B = sp.csr_matrix((np.ravel(self.block), (r, c)), shape=(n, n))
        out = (self.sparse + B).tocsr()
        out.sum_duplicates()
        return out

    def to_relationship(self):
        """The filled-in CSR as a :class:`~henderson.relationships.container.Relationship`
        (``inverse=True``; ``info["logdet"]`` = log|K|), what :func:`henderson.fit`'s
        ``cov_inverse=`` takes: ``fit(..., cov_inverse={"id": H})`` converts through this."""
        from .container import Relationship

        info = dict(self.info)
        info["logdet"] = -self.logdet_inverse()
        return Relationship(self.ids, self.to_sparse(), inverse=True, kind=info.get("kind", "Hinv"), info=info)

    def add_to(self, C: sp.spmatrix, offset: int, scale: float = 1.0) -> sp.csr_matrix:
        """C + scale · K⁻¹ placed at rows/columns offset .. offset + n − 1 of a sparse MME.

        The dense block lands as a k × k dense sub-matrix (a clique), which
        :class:`~henderson.linalg.SymbolicCholesky` eliminates in the trailing
        supernode(s) and factors with LAPACK (tested).

        Parameters
        ----------
        C : sparse, shape (N, N)
        offset : int
            Row of C where the first level sits.
        scale : float
            λ = σ²_e/σ²_u for the usual one-trait MME.

        Returns
        -------
        csr_matrix, shape (N, N)
        """
        N = C.shape[0]
        n, k = self.n_levels, len(self.index)
        if offset < 0 or offset + n > N:
            raise DataError(f"add_to: levels {offset}..{offset + n - 1} do not fit in an MME of order {N}")
        S = self.sparse.tocoo()
        gi = self.index + offset
        rows = np.concatenate([S.row + offset, np.repeat(gi, k)])
        cols = np.concatenate([S.col + offset, np.tile(gi, k)])
        vals = np.concatenate([S.data, np.ravel(self.block)]) * scale
        out = (sp.csr_matrix(C) + sp.csr_matrix((vals, (rows, cols)), shape=(N, N))).tocsr()
        out.sum_duplicates()
        return out

    def logdet_inverse(self) -> float:
        """log|K⁻¹| (given by the builder, or by the determinant lemma: module notes)."""
        if self._logdet is None:
            self._logdet = self._lemma_logdet()
        return float(self._logdet)

    def _lemma_logdet(self) -> float:
        from ..linalg import SymbolicCholesky

        S = self.sparse
        f = SymbolicCholesky(S).factor_matrix(S)
        logdet_s = float(f.logdet())
        k = len(self.index)
        if k == 0:
            return logdet_s
        E = np.zeros((self.n_levels, k))
        E[self.index, np.arange(k)] = 1.0
        App = f.solve(E)[self.index]  # (S⁻¹)[index, index]
        M = np.eye(k) + self.block @ App
        sign, ld = np.linalg.slogdet(M)
        if sign <= 0:
            raise NotPositiveDefiniteError("S + P D P' is not positive definite (I + D A_pp has det <= 0)")
        return logdet_s + float(ld)

    def __repr__(self) -> str:
        return (
            f"SparsePlusDenseInverse(n={self.n_levels}, nnz(sparse)={self.sparse.nnz}, "
            f"dense block {len(self.index)}×{len(self.index)})"
        )

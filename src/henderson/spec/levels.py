"""Level covariances: the known K across the levels of a random term (Var(u) = Σ ⊗ K).

One class per way K reaches the mixed model equations (Henderson's MME, Mrode 2014 ch. 3):

- :class:`Identity` — K = I (an iid term, ``(1|batch)``);
- :class:`DenseKernel` — K given (G, a dense A); the solvers use K itself (spectral) or a
  factor F with K = FF' and u = Fv, v ~ N(0, σ²I) (dense MME);
- :class:`Markers` — K = WW'/c from centred markers W (N × m), never formed (SNP-BLUP
  space: the factor is W/√c);
- :class:`SparseInverse` — K⁻¹ given (pedigree A⁻¹, APY G⁻¹); it enters the MME as the
  penalty σ⁻²K⁻¹ and −2 log L gains log|K| per variance;
- :class:`SparseInverseWithDenseBlock` — the single-step H⁻¹ = A⁻¹ + [0 0; 0 G⁻¹ − A₂₂⁻¹]:
  a sparse part and a dense block on the genotyped levels. Only the interface is defined
  here; the single-step solver path implements it.

Every class states its level ids, its number of levels, the log|K| that −2 log L of the MME
adds (:meth:`LevelCovariance.logdet_contribution`), K⁻¹x (:meth:`LevelCovariance.apply_inverse`)
and K as a dense array (:meth:`LevelCovariance.as_dense`, for tests and small problems).
Callers dispatch on the class (``isinstance``); the former string tags ("iid", "factor",
"inverse") are gone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla


class LevelCovariance(ABC):
    """K across the q levels of a random term.

    Attributes
    ----------
    ids : ndarray of str, shape (q,)
        Level ids, in the order of K's rows.
    """

    def __init__(self, ids) -> None:
        self.ids = np.asarray(ids, dtype=object)

    @property
    def n_levels(self) -> int:
        """q, the number of levels."""
        return len(self.ids)

    def logdet_contribution(self) -> float:
        """log|K| as −2 log L of the MME adds it once per variance of the term.

        0 for K = I and for a factored K (the MME are written in v with u = Fv,
        Var(v) = σ²I); log|K| for a term entering through K⁻¹.
        """
        return 0.0

    @abstractmethod
    def apply_inverse(self, x: np.ndarray) -> np.ndarray:
        """K⁻¹x for x of shape (q,) or (q, k) (the pseudo-inverse when K is singular)."""

    @abstractmethod
    def as_dense(self) -> np.ndarray:
        """K as a dense (q, q) array: for tests and small problems."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(q={self.n_levels})"


class Identity(LevelCovariance):
    """K = I: iid levels."""

    def apply_inverse(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=float)

    def as_dense(self) -> np.ndarray:
        return np.eye(self.n_levels)


class Factored(LevelCovariance):
    """A K the dense MME use through a factor F (q × r) with K = FF'."""

    @property
    @abstractmethod
    def factor(self) -> np.ndarray:
        """F, shape (q, r), K = FF'."""

    def apply_inverse(self, x: np.ndarray) -> np.ndarray:
        # K⁺x = F'⁺F⁺x through the factor: exact for a nonsingular K, the
        # pseudo-inverse otherwise (F has full column rank r)
        F = self.factor
        v = np.linalg.lstsq(F, np.asarray(x, dtype=float), rcond=None)[0]
        return np.linalg.lstsq(F.T, v, rcond=None)[0]


class DenseKernel(Factored):
    """K given as a dense (q, q) array; its factor is computed on first use.

    Parameters
    ----------
    K : ndarray, shape (q, q)
        Symmetric positive semi-definite.
    ids : array of str, shape (q,)
    name : str
        The term's name, for the error naming ids when K is not PSD.
    factor_of : callable(K, name, ids) -> F, optional
        How F is made (:func:`henderson.spec.model._factor_of`: Cholesky, else the
        eigenvectors of the positive eigenvalues).
    """

    def __init__(self, K: np.ndarray, ids, name: str = "", factor_of=None) -> None:
        super().__init__(ids)
        self.K = K
        self.name = name
        self._factor_of = factor_of
        self._factor: np.ndarray | None = None

    @property
    def factor(self) -> np.ndarray:
        """F with K = FF' (columns for positive eigenvalues only), computed once."""
        if self._factor is None:
            if self._factor_of is None:
                self._factor = np.linalg.cholesky(self.K)
            else:
                self._factor = self._factor_of(self.K, self.name, self.ids)
        return self._factor

    def as_dense(self) -> np.ndarray:
        return np.asarray(self.K, dtype=float)


class Markers(Factored):
    """K = WW'/c from markers W (q × m), never formed: the factor is W/√c.

    Parameters
    ----------
    W : ndarray, shape (q, m)
        Centred marker codes of the q levels (individuals).
    ids : array of str, shape (q,)
    scale : float
        c (e.g. 2Σpq for VanRaden's G; 1 for the SNP-BLUP space, where Var(β) = σ²I).
    """

    def __init__(self, W: np.ndarray, ids, scale: float = 1.0) -> None:
        super().__init__(ids)
        self.W = W
        self.scale = float(scale)

    @property
    def factor(self) -> np.ndarray:
        return self.W if self.scale == 1.0 else self.W / np.sqrt(self.scale)

    def as_dense(self) -> np.ndarray:
        return (self.W @ self.W.T) / self.scale


class SparseInverse(LevelCovariance):
    """K⁻¹ given (sparse, or dense when so supplied), with log|K|.

    Parameters
    ----------
    Kinv : scipy.sparse matrix or ndarray, shape (q, q)
    ids : array of str, shape (q,)
    logdet_k : float
        log|K| (= −log|K⁻¹|), known from how K⁻¹ was built (e.g. Henderson's rules).
    """

    def __init__(self, Kinv, ids, logdet_k: float) -> None:
        super().__init__(ids)
        self.Kinv = Kinv
        self.logdet_k = float(logdet_k)

    def logdet_contribution(self) -> float:
        return self.logdet_k

    def apply_inverse(self, x: np.ndarray) -> np.ndarray:
        return self.Kinv @ np.asarray(x, dtype=float)

    def as_dense(self) -> np.ndarray:
        Kinv = self.Kinv.toarray() if sp.issparse(self.Kinv) else np.asarray(self.Kinv, dtype=float)
        return sla.inv(Kinv)

    def solve(self, x: np.ndarray) -> np.ndarray:
        """Kx by one sparse factorisation of K⁻¹ (for small problems and tests)."""
        if sp.issparse(self.Kinv):
            return spla.spsolve(sp.csc_matrix(self.Kinv), np.asarray(x, dtype=float))
        return np.linalg.solve(self.Kinv, np.asarray(x, dtype=float))


class SparseInverseWithDenseBlock(LevelCovariance):
    """K⁻¹ = S + Eᵍ D Eᵍ': a sparse part and a dense block on a subset of levels.

    The single-step H⁻¹ = A⁻¹ + [0 0; 0 G⁻¹ − A₂₂⁻¹] (Aguilar et al. 2010; Legarra et al.
    2009): S = A⁻¹ (sparse, all q levels), D = G⁻¹ − A₂₂⁻¹ (dense, the g genotyped
    levels at :attr:`block_positions`). Solvers that can keep the two apart use
    :meth:`sparse_part` and :meth:`dense_block`; others may form K⁻¹ (sparse plus a
    dense g × g block). Concrete classes come with the single-step solver path.
    """

    @abstractmethod
    def sparse_part(self) -> sp.spmatrix:
        """S, shape (q, q), sparse."""

    @property
    @abstractmethod
    def block_positions(self) -> np.ndarray:
        """Positions (int, shape (g,)) of the levels the dense block covers."""

    @abstractmethod
    def dense_block(self) -> np.ndarray:
        """D, shape (g, g)."""

    @abstractmethod
    def logdet_contribution(self) -> float:
        """log|K| = −log|S + EDE'|."""

    def apply_inverse(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        out = self.sparse_part() @ x
        pos = self.block_positions
        out[pos] += self.dense_block() @ x[pos]
        return out

    def as_dense(self) -> np.ndarray:
        Kinv = self.sparse_part().toarray()
        pos = self.block_positions
        Kinv[np.ix_(pos, pos)] += self.dense_block()
        return sla.inv(Kinv)


def _register_single_step() -> None:
    """The concrete single-step H⁻¹ lives in relationships/ (which must not import spec/):
    register it here as a virtual subclass."""
    from ..relationships.h_inverse import SparsePlusDenseInverse
    from ..relationships.single_step_lazy import LazySingleStepInverse

    SparseInverseWithDenseBlock.register(SparsePlusDenseInverse)
    SparseInverseWithDenseBlock.register(LazySingleStepInverse)  # D formed on demand


_register_single_step()

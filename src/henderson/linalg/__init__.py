"""Sparse linear algebra: supernodal Cholesky with selected inverse (numba over LAPACK)."""

from .cholesky import Factor, SelectedInverse, SymbolicCholesky

__all__ = ["Factor", "SelectedInverse", "SymbolicCholesky"]

"""Moved to :mod:`henderson.linalg._tridiagonal` (shared by reml and solvers); kept so old
imports keep working."""

from ..linalg._tridiagonal import apply_q, apply_qt, tridiag_ldl_solve, tridiag_matvec  # noqa: F401

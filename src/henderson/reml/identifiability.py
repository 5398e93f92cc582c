"""Moved to :mod:`henderson.solvers.identifiability` (the solvers run these checks, and
solvers sit below reml); kept so old imports keep working."""

from ..solvers.identifiability import (  # noqa: F401
    GRAM_TOL,
    check_dense,
    check_spectral,
    confounded_error,
    dense_gram,
    identity_like,
    one_record_per_level,
    residual_at_zero_error,
    simple_confounding,
)

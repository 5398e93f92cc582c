"""Moved to :mod:`henderson.data._pedigree_kernels` (beside the Pedigree container, so that
io and relationships both depend on data); kept so old imports keep working."""

from ..data._pedigree_kernels import (  # noqa: F401
    ainv_triplets,
    ancestors_mask,
    colleau_block,
    inbreeding_lap,
    tabular_a,
    topological_generations,
)

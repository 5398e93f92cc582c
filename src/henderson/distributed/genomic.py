"""Moved to :mod:`henderson.relationships.genomic_dask` (``genomic_relationship(scheduler=)``
dispatches to it, so it belongs to the relationships tier); kept so old imports keep working."""

from ..relationships.genomic_dask import (  # noqa: F401
    distributed_relationship,
    genotype_products,
    snp_crossproducts,
)

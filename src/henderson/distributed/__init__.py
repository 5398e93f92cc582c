"""henderson on a Dask cluster: genomic products over SNP chunks, CV folds as tasks.

Everything here takes ``scheduler=``: a ``dask.distributed.Client`` or a scheduler
address (``"tcp://host:8786"``). See docs/scaling.md for what runs where.
"""

from .client import get_client
from .genomic import distributed_relationship, genotype_products, snp_crossproducts

__all__ = ["get_client", "distributed_relationship", "genotype_products", "snp_crossproducts"]

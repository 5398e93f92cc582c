"""henderson: linear mixed models for genetics and breeding.

Fit y = Xb + Σₖ Zₖuₖ + e by REML on Henderson's mixed model equations; build
pedigree and genomic relationship matrices; GBLUP, SNP-BLUP and pedigree BLUP;
cross-validation of genomic prediction.
"""

from ._version import __version__
from .errors import (
    AlignmentError,
    BoundaryWarning,
    ConvergenceWarning,
    DataError,
    DataWarning,
    GenotypeError,
    HendersonError,
    ModelError,
    PedigreeError,
)
from .relationships import Relationship
from .api import fit, prepare
from .results import FitResult
from .data.pedigree import Pedigree
from .data.genotypes import Genotypes
from .io.pedigree import read_pedigree
from .io.genotypes import read_genotypes, write_plink
from .io.qc import genotype_qc, impute_mean
from .relationships.pedigree import inbreeding, pedigree_inverse, pedigree_relationship
from .relationships.genomic import blend, genomic_relationship, relationship_diagnostics, tune_to_pedigree
from .relationships.grm_io import read_gcta_grm, read_relationship_csv, write_gcta_grm, write_relationship_csv
from .estimators import GBLUP, SNPBLUP, PedigreeBLUP
from . import datasets

__all__ = [
    "__version__", "datasets",
    # models
    "fit", "prepare", "FitResult", "GBLUP", "SNPBLUP", "PedigreeBLUP",
    # data
    "Pedigree", "Genotypes", "read_pedigree", "read_genotypes", "write_plink", "genotype_qc",
    "impute_mean",
    # relationships
    "Relationship", "inbreeding", "pedigree_inverse", "pedigree_relationship",
    "genomic_relationship", "blend", "tune_to_pedigree", "relationship_diagnostics",
    "read_gcta_grm", "write_gcta_grm", "read_relationship_csv", "write_relationship_csv",
    # errors and warnings
    "HendersonError", "DataError", "AlignmentError", "PedigreeError", "GenotypeError",
    "ModelError", "ConvergenceWarning", "BoundaryWarning", "DataWarning",
]

from .cv import CVResult, FormulaModel, cross_validate  # noqa: E402

__all__ += ["cross_validate", "CVResult", "FormulaModel"]

from .io.tables import read_phenotypes  # noqa: E402

__all__ += ["read_phenotypes"]

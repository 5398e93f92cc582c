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
    GenotypeError,
    HendersonError,
    ModelError,
    PedigreeError,
)
from .relationships import Relationship

__all__ = [
    "__version__",
    "Relationship",
    "HendersonError",
    "DataError",
    "AlignmentError",
    "PedigreeError",
    "GenotypeError",
    "ModelError",
    "ConvergenceWarning",
    "BoundaryWarning",
]

from .api import fit, prepare  # noqa: E402
from .results import FitResult  # noqa: E402

__all__ += ["fit", "prepare", "FitResult"]

from .estimators import GBLUP, SNPBLUP, PedigreeBLUP  # noqa: E402

__all__ += ["GBLUP", "SNPBLUP", "PedigreeBLUP"]

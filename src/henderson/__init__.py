"""henderson: linear mixed models for genetics and breeding.

Fit y = Xb + Σₖ Zₖuₖ + e by REML on Henderson's mixed model equations; build
pedigree and genomic relationship matrices; GBLUP, SNP-BLUP and pedigree BLUP;
cross-validation of genomic prediction.

Public names load on first use (PEP 562 module ``__getattr__``, as scipy does), so
``import henderson`` and ``henderson --help`` do not pay for numba, scikit-learn,
matplotlib or dask until a function that needs them is called.
"""

from __future__ import annotations

import importlib

from ._startup import guard as _guard_startup

_guard_startup()  # Ctrl-C while the henderson command starts up: one line, exit 130
from ._version import __version__  # noqa: E402
from .errors import (
    AlignmentError,
    BoundaryWarning,
    ConvergenceWarning,
    DataError,
    DataWarning,
    FixedParameterWarning,
    GenotypeError,
    HendersonError,
    ModelError,
    PedigreeError,
)

#: public name → module that defines it (relative to this package)
_LAZY = {
    # models
    "fit": ".api",
    "prepare": ".api",
    "FitResult": ".results",
    "GBLUP": ".estimators",
    "SNPBLUP": ".estimators",
    "PedigreeBLUP": ".estimators",
    # data
    "Pedigree": ".data.pedigree",
    "Genotypes": ".data.genotypes",
    "read_pedigree": ".io.pedigree",
    "read_genotypes": ".io.genotypes",
    "write_plink": ".io.genotypes",
    "genotype_qc": ".io.qc",
    "impute_mean": ".io.qc",
    # relationships
    "Relationship": ".relationships.container",
    "inbreeding": ".relationships.pedigree",
    "pedigree_inverse": ".relationships.pedigree",
    "pedigree_relationship": ".relationships.pedigree",
    "genomic_relationship": ".relationships.genomic",
    "blend": ".relationships.genomic",
    "tune_to_pedigree": ".relationships.genomic",
    "relationship_diagnostics": ".relationships.genomic",
    "read_gcta_grm": ".relationships.grm_io",
    "write_gcta_grm": ".relationships.grm_io",
    "read_relationship_csv": ".relationships.grm_io",
    "write_relationship_csv": ".relationships.grm_io",
    "read_phenotypes": ".io.tables",
    # cross-validation
    "cross_validate": ".cv",
    "CVResult": ".cv",
    "FormulaModel": ".cv",
    # single-step GBLUP (H⁻¹, APY)
    "single_step_inverse": ".relationships.single_step",
    "apy_inverse": ".relationships.apy",
    "apy_core_size": ".relationships.apy",
    "apy_inverse_from_genotypes": ".relationships.apy",
    "ApyInverse": ".relationships.apy",
    "apy_inverse_from_dense": ".relationships.apy",
    "LazySingleStepInverse": ".relationships.single_step_lazy",
    "SingleStepGBLUP": ".estimators",
    # likelihood-ratio tests between nested fits
    "lrt": ".inference",
    "LRTResult": ".inference",
    # association (the package is henderson.gwas, so that henderson.association is the
    # function whatever is imported first)
    "association": ".gwas",
    "genomic_control": ".gwas",
    "variance_windows": ".gwas",
}
_SUBMODULES = {
    "datasets",
    "gwas",
    "cv",
    "io",
    "relationships",
    "report",
    "spec",
    "solvers",
    "reml",
    "models",
    "data",
    "cli",
}

__all__ = [
    "__version__",
    "datasets",
    *_LAZY,
    "HendersonError",
    "DataError",
    "AlignmentError",
    "PedigreeError",
    "GenotypeError",
    "ModelError",
    "ConvergenceWarning",
    "BoundaryWarning",
    "DataWarning",
    "FixedParameterWarning",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _SUBMODULES:
        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'henderson' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)

"""Cross-validation of genomic prediction: schemes, fast fixed-variance CV, metrics, plots.

>>> import henderson
>>> from henderson.cv import cross_validate
>>> wheat = henderson.datasets.load_wheat()
>>> geno = henderson.Genotypes.from_frame(2 * wheat.markers)
>>> res = cross_validate(henderson.GBLUP(), geno, wheat.phenotypes["env1"], cv=wheat.folds)
>>> print(round(float(res.summary.loc["r", "mean"]), 3))   # predictive ability, 10 given folds
0.512
"""

from .evaluate import CVResult, cross_validate
from .fast import FixedVarianceCV
from .formula import FormulaModel
from .metrics import fold_metrics, pooled_metrics, top_overlap
from .splits import ForwardInTime, GivenFolds, GroupFolds, KFold, LeaveOneOut, Split, make_splits, resolve_scheme

__all__ = [
    "cross_validate",
    "CVResult",
    "FormulaModel",
    "FixedVarianceCV",
    "KFold",
    "LeaveOneOut",
    "GroupFolds",
    "ForwardInTime",
    "GivenFolds",
    "Split",
    "make_splits",
    "resolve_scheme",
    "fold_metrics",
    "top_overlap",
    "pooled_metrics",
]

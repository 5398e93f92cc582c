"""Cross-validation of genomic prediction: schemes, fast fixed-variance CV, metrics, plots.

>>> from henderson.cv import cross_validate
>>> res = cross_validate(GBLUP(), geno, y, cv=wheat.folds)      # doctest: +SKIP
>>> res.summary.loc["r", ["mean", "sd"]]                         # doctest: +SKIP
"""

from .evaluate import CVResult, cross_validate
from .formula import FormulaModel
from .fast import FixedVarianceCV
from .metrics import fold_metrics, pooled_metrics, top_overlap
from .splits import ForwardInTime, GivenFolds, GroupFolds, KFold, LeaveOneOut, Split, make_splits, resolve_scheme

__all__ = ["cross_validate", "CVResult", "FormulaModel", "FixedVarianceCV", "KFold", "LeaveOneOut", "GroupFolds",
           "ForwardInTime", "GivenFolds", "Split", "make_splits", "resolve_scheme", "fold_metrics",
           "top_overlap", "pooled_metrics"]

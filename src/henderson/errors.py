"""Exceptions and warnings raised by henderson.

Every error names what is wrong in the user's terms: the file, line, column or id.
Catch :class:`HendersonError` to catch them all.
"""

from __future__ import annotations

import itertools
import warnings


class HendersonError(Exception):
    """Base class of all henderson errors.

    ``parameter`` names the argument of the Python API the error concerns (``"coding"``,
    ``"missing"``, ``"formula"``...) and ``value`` the value it got; the command line maps
    the parameter to its option in one table (``cli/_errors.py``).
    """

    def __init__(self, *args, parameter: str | None = None, value=None):
        super().__init__(*args)
        self.parameter = parameter
        self.value = value


class DataError(HendersonError, ValueError):
    """Input data are malformed: missing columns, bad codes, impossible values."""


class AlignmentError(DataError):
    """Ids in one input are missing from another (records vs relationship matrix, ...)."""


class PedigreeError(DataError):
    """A pedigree is impossible: loops, conflicting duplicates, sex conflicts."""


class GenotypeError(DataError):
    """Genotype file or matrix problems: codes outside the declared coding, ..."""


class ModelError(HendersonError, ValueError):
    """The model cannot be specified or fitted as asked (formula, covariance, ...)."""

    #: set when the only problem is a residual variance at zero, which the one-kernel
    #: fit reports as a boundary estimate instead of raising
    residual_at_zero: bool = False


class NotPositiveDefiniteError(ModelError):
    """A covariance or coefficient matrix is not (semi-)definite as required."""


class UnreliableEvaluationError(ModelError):
    """The likelihood at a point cannot be computed to the required accuracy in this form
    (the C-form's equations are too ill-conditioned, e.g. a residual variance near 0);
    the optimiser treats the point as infeasible. ``solver='vform'`` is exact there."""


class HendersonWarning(UserWarning):
    """Base class of henderson warnings."""


class ConvergenceWarning(HendersonWarning):
    """REML did not converge; the warning carries the iteration log."""

    def __init__(self, message: str, log=None):
        super().__init__(message)
        self.log = log


class BoundaryWarning(HendersonWarning):
    """A variance component was estimated at its boundary (zero)."""


class FixedParameterWarning(HendersonWarning):
    """A parameter the data cannot inform was fixed (the message names it and its value)."""


class DataWarning(HendersonWarning):
    """Records were dropped or recoded; the message gives the counts."""


def format_ids(ids, limit: int = 10) -> str:
    """Format a list of ids for an error message, truncated after ``limit``."""
    if not hasattr(ids, "__len__"):
        ids = list(ids)
    head = itertools.islice(iter(ids), limit)  # only the ids shown are converted
    shown = ", ".join(repr(str(i)) for i in head)
    more = len(ids) - limit
    return shown + (f" ... and {more} more" if more > 0 else "")


#: what to do with ids absent from the matrix or pedigree they must be matched to
MISSING_MODES = ("error", "drop")


def check_missing_mode(missing: str) -> None:
    """DataError unless ``missing`` is one of :data:`MISSING_MODES`."""
    if missing not in MISSING_MODES:
        raise DataError(f"missing must be 'error' or 'drop', not {missing!r}", parameter="missing", value=missing)


def unknown_ids(message: str, missing: str, *, dropped: str, left: int | None = None, stacklevel: int = 2) -> str:
    """Ids absent from what they must be matched to: never silent.

    ``missing="error"``: an :class:`AlignmentError` with ``message`` (which names the
    ids) and the advice to pass ``missing='drop'``. ``missing="drop"``: a
    :class:`DataWarning` ``"<message>; <dropped>"`` (``dropped`` says what was dropped,
    with counts), returned for the caller's notes; an error instead when ``left`` is 0.
    ``stacklevel`` is counted from the caller, as for :func:`warnings.warn`.
    """
    check_missing_mode(missing)
    if missing == "error":
        raise AlignmentError(
            message + " (pass missing='drop' to drop them, counted)", parameter="missing", value=missing
        )
    if left == 0:
        raise AlignmentError(message + "; no id is left", parameter="missing", value=missing)
    text = f"{message}; {dropped}"
    warnings.warn(text, DataWarning, stacklevel=stacklevel + 1)
    return text

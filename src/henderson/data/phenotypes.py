"""Phenotypes as numbers: the check every model (single- and multi-trait) makes first.

Here, below the models and the multi-trait core, so both use the one rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError, format_ids


def numeric_phenotypes(y: pd.Series, ids: pd.Index, trait: str) -> pd.Series:
    """Phenotypes as float with NaN for missing; refuse text and non-finite values.

    Nothing is coerced silently: a value that is present but not a number (``"abc"``,
    a missing-value code such as ``"."``) or not finite (``inf``) is an error naming
    the ids, because dropping it would change the data without the user knowing.
    """
    raw = pd.Series(y.to_numpy(), index=ids)
    vals = pd.to_numeric(raw, errors="coerce")
    if vals.dtype == bool:
        vals = vals.astype(float)
    bad = vals.isna() & raw.notna()
    if bad.any():
        shown = ", ".join(f"id {i!r}: {v!r}" for i, v in raw[bad].iloc[:5].items())
        more = int(bad.sum()) - 5
        raise DataError(
            f"trait {trait!r} is not numeric: {int(bad.sum())} of {len(raw)} value(s) cannot be read "
            f"as numbers ({shown}{f' ... and {more} more' if more > 0 else ''}); convert the column "
            "to numbers, with missing phenotypes as NaN"
        )
    infinite = ~np.isfinite(vals.to_numpy(dtype=float)) & vals.notna().to_numpy()
    if infinite.any():
        raise DataError(
            f"trait {trait!r} has {int(infinite.sum())} non-finite value(s) (inf): ids "
            + format_ids(ids[infinite])
            + "; set them to NaN if they are missing, or correct them"
        )
    return vals.astype(float)

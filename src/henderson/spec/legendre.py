"""Normalised Legendre polynomials for random regression (``leg(x, k)``).

Kirkpatrick, Lofsvold & Bulmer (1990) and Mrode (2014, ch. 10) regress on
φⱼ(t) = √((2j + 1)/2) Pⱼ(t), j = 0..k, with x standardised to t ∈ [−1, 1] by
t = 2(x − x_min)/(x_max − x_min) − 1 over the records used. φ₀ = 1/√2 = 0.7071 is
the order-0 (intercept) column, as in Mrode's tables.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from numpy.polynomial import legendre as npleg

from ..errors import DataError, ModelError

LEG = re.compile(r"leg\(\s*([A-Za-z_.][A-Za-z0-9_.]*)\s*,\s*(\d+)\s*\)")


def legendre(x, k: int, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Normalised Legendre covariates φ₀..φ_k of x, shape (n, k + 1).

    Parameters
    ----------
    x : array, shape (n,)
    k : int
        Highest order.
    lo, hi : float, optional
        The range mapped to [−1, 1] (default: min and max of x).
    """
    x = np.asarray(x, dtype=float)
    lo = float(np.min(x)) if lo is None else lo
    hi = float(np.max(x)) if hi is None else hi
    if not hi > lo:
        raise ModelError(f"leg(): the covariate takes one value only ({lo}); nothing to regress on")
    t = 2.0 * (x - lo) / (hi - lo) - 1.0
    out = np.empty((len(x), k + 1))
    for j in range(k + 1):
        c = np.zeros(j + 1)
        c[j] = 1.0
        out[:, j] = np.sqrt((2 * j + 1) / 2.0) * npleg.legval(t, c)
    return out


def leg_columns(column: str, k: int) -> list[str]:
    """Names of the columns leg(column, k) adds: ``leg0``..``legk`` prefixed by column."""
    return [f"{column}.leg{j}" for j in range(k + 1)]


def expand_fixed(fixed: str, data: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """Replace every ``leg(x, k)`` in a fixed-effect formula by its k + 1 columns.

    formulaic cannot expand one call into several columns with missing values checked,
    so the covariates are added to a copy of the data (``x.leg0`` ...) and the formula
    names them (back-quoted). Returns the new formula text and data.
    """
    if not LEG.search(fixed):
        return fixed, data
    data = data.copy()

    def repl(m):
        col, k = m.group(1), int(m.group(2))
        if col not in data.columns:
            raise DataError(f"leg({col}, {k}): column {col!r} not found in the data")
        x = pd.to_numeric(data[col], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(x)
        names = leg_columns(col, k)
        cols = np.full((len(x), k + 1), np.nan)
        cols[ok] = legendre(x[ok], k)
        for j, nm in enumerate(names):
            data[nm] = cols[:, j]
        return "(" + " + ".join(f"`{nm}`" for nm in names) + ")"

    return LEG.sub(repl, fixed), data

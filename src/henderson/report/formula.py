"""Which columns a model formula uses, and which of them are factors (no plotting imports)."""

from __future__ import annotations

import re

import pandas as pd

#: Names in a formula that are functions or transformations, not columns.
_FUNCS = {"C", "I", "np", "log", "exp", "sqrt", "scale", "center", "poly", "bs"}


def formula_variables(formula: str) -> list[str]:
    """Column names a formula refers to, in order (function names and numbers left out)."""
    out = []
    for m in re.finditer(r"[A-Za-z_.][A-Za-z0-9_.]*", formula):
        tok = m.group(0)
        rest = formula[m.end() :].lstrip()
        if rest.startswith("(") or tok in _FUNCS or tok.startswith("np."):
            continue
        if tok not in out:
            out.append(tok)
    return out


def formula_factors(formula: str, data: pd.DataFrame, groups=()) -> tuple[list[str], list[str]]:
    """(factors, numeric covariates) of a formula's right-hand side, in formula order.

    A factor is a grouping variable of a random term (``groups``), a column wrapped in
    ``C(...)``, or a non-numeric column; the other columns are numeric covariates.
    """
    rhs = formula.split("~", 1)[1] if "~" in formula else formula
    factors, numeric = [], []
    for v in formula_variables(rhs):
        if v not in data:
            continue
        wrapped = re.search(r"\bC\(\s*" + re.escape(v) + r"\b", rhs) is not None
        if v in groups or wrapped or not pd.api.types.is_numeric_dtype(data[v]):
            factors.append(v)
        else:
            numeric.append(v)
    return factors, numeric

"""Which columns a model formula uses, and which of them are factors (no plotting imports).

The formula is read by :mod:`henderson.spec.formula` (random terms, ``cbind``) and
formulaic (the fixed part); nothing here parses text itself.
"""

from __future__ import annotations

import pandas as pd

from ..spec.formula import factor_wrapped, formula_variables, parse_formula

__all__ = ["formula_factors", "formula_variables"]


def formula_factors(formula: str, data: pd.DataFrame, groups=()) -> tuple[list[str], list[str]]:
    """(factors, numeric covariates) of a formula's right-hand side, in formula order.

    A factor is a grouping variable of a random term (``groups``), a column wrapped in
    ``C(...)``, or a non-numeric column; the other columns are numeric covariates.
    """
    if "~" in formula:
        parsed = parse_formula(formula, multitrait=True)
        responses = set(parsed.traits or (parsed.response,))
        rhs = [v for v in formula_variables(formula) if v not in responses]
        wrapped = set(factor_wrapped(parsed.fixed))
    else:
        rhs, wrapped = formula_variables(formula), set(factor_wrapped(formula))
    factors, numeric = [], []
    for v in rhs:
        if v not in data:
            continue
        if v in groups or v in wrapped or not pd.api.types.is_numeric_dtype(data[v]):
            factors.append(v)
        else:
            numeric.append(v)
    return factors, numeric

"""``cbind(y1, y2, ...) ~ fixed + (1|id)``: the multi-trait formula and its routing.

The fast path (:mod:`henderson.multitrait.spectral`) takes exactly one random term
``(1|g)`` with a dense known covariance ``cov={g: K}`` and complete records. Any other
multi-trait shape (several random terms, ``diag(1|g)``, iid or sparse-inverse terms,
missing traits) needs the general multi-trait engine and is refused by name.
"""

from __future__ import annotations

import pandas as pd

from ..errors import ModelError
from ..spec.formula import is_multitrait, parse_formula  # noqa: F401 - is_multitrait re-exported

NOT_YET = "needs the general multi-trait engine (covariance structures), not available yet"


def parse_multitrait(formula: str) -> tuple[list[str], str, list]:
    """Traits, the fixed part (formulaic syntax) and the random terms of a cbind formula."""
    parsed = parse_formula(formula, multitrait=True)
    if not parsed.traits:
        raise ModelError(
            f"cannot read the multi-trait response {formula.split('~', 1)[0].strip()!r}: write cbind(y1, y2, ...)"
        )
    if any(t.declared == "diag" for t in parsed.random):
        raise ModelError("diag(1|g) (a random term diagonal across traits) " + NOT_YET)
    return list(parsed.traits), parsed.fixed, list(parsed.random)


def fit_formula(
    formula: str,
    data: pd.DataFrame,
    cov=None,
    cov_inverse=None,
    *,
    method="reml",
    solver="auto",
    sigma=None,
    start=None,
    max_iter=500,
    pev="auto",
    fixed=None,
):
    """``henderson.fit`` for a ``cbind(...)`` response; see :func:`henderson.fit`."""
    from .fit import fit_traits

    if method.lower() != "reml":
        raise ModelError("multi-trait models are fitted by REML only (method='reml')")
    if solver not in ("auto", "spectral", "multitrait-spectral"):
        raise ModelError(
            f"solver={solver!r}: multi-trait models have only the spectral fast path so far "
            "(one dense known covariance, complete records); the general solver " + NOT_YET
        )
    traits, fixed_part, terms = parse_multitrait(formula)
    cov, cov_inverse = dict(cov or {}), dict(cov_inverse or {})
    if len(terms) != 1:
        raise ModelError(
            f"multi-trait models with {len(terms)} random terms "
            f"({', '.join(t.name for t in terms) or 'none'}) "
            + NOT_YET
            + "; the fast path takes exactly one term (1|g) with cov={g: K}"
        )
    term = terms[0]
    if len(term.columns) != 1:
        raise ModelError(f"random term (1|{term.name}) on an interaction " + NOT_YET)
    if term.name in cov_inverse:
        raise ModelError(
            f"a sparse inverse covariance for {term.name!r} (cov_inverse=, e.g. pedigree A⁻¹) "
            + NOT_YET
            + "; give the dense matrix with cov= for small pedigrees"
        )
    if term.name not in cov:
        raise ModelError(
            f"(1|{term.name}) without a known covariance (iid across levels) "
            + NOT_YET
            + f"; give cov={{{term.name!r}: K}}"
        )
    if fixed is not None:
        fixed_part = fixed  # per-trait dict overrides the formula's fixed part
    if not isinstance(data, pd.DataFrame):
        raise ModelError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    return fit_traits(
        data,
        traits,
        term.name,
        cov[term.name],
        fixed=fixed_part,
        start=start,
        max_iter=max_iter,
        sigma=sigma,
        pev=pev,
        formula=formula,
    )

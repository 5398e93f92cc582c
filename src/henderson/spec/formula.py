"""Parse lme4-style mixed-model formulas.

``"Yield ~ Env + (1|Name)"`` is split into a fixed part handed to formulaic
(``"Env"``) and a list of random terms (``(1|Name)``). Random terms follow lme4:

- ``(1|g)``: a random intercept per level of ``g``;
- ``(1|a/b)``: nested, expands to ``(1|a) + (1|a:b)``;
- ``(1|a:b)``: one random effect per combination of ``a`` and ``b``.

Random slopes (``(x|g)``) are not supported yet and are refused with a clear message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ModelError

_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")


@dataclass(frozen=True)
class RandomTermSpec:
    """One random intercept term: its display name and the grouping columns.

    ``name`` is ``"a"`` or ``"a:b"``; ``columns`` the data columns whose combination
    defines the levels.
    """

    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class ParsedFormula:
    """A formula split into response, fixed part (formulaic syntax) and random terms."""

    response: str
    fixed: str
    random: tuple[RandomTermSpec, ...]
    text: str


def _split_top_level_terms(rhs: str) -> list[str]:
    """Split ``rhs`` on ``+`` that are not inside parentheses; keeps ``-`` terms attached."""
    parts, depth, cur = [], 0, []
    for ch in rhs:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ModelError(f"unbalanced parentheses in formula right-hand side: {rhs!r}")
        if ch == "+" and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise ModelError(f"unbalanced parentheses in formula right-hand side: {rhs!r}")
    parts.append("".join(cur).strip())
    return parts


def _parse_group(group: str, term_text: str) -> list[RandomTermSpec]:
    group = group.strip()
    if "/" in group:
        pieces = [g.strip() for g in group.split("/")]
        out = []
        for i in range(len(pieces)):
            out.extend(_parse_group(":".join(pieces[: i + 1]), term_text))
        return out
    cols = tuple(c.strip() for c in group.split(":"))
    for c in cols:
        if not _NAME.match(c):
            raise ModelError(f"cannot read grouping factor {c!r} in random term {term_text!r}")
    return [RandomTermSpec(name=":".join(cols), columns=cols)]


def _parse_random(term: str) -> list[RandomTermSpec]:
    inner = term.strip()[1:-1]
    if "||" in inner:
        raise ModelError(f"uncorrelated random slopes {term!r} are not supported yet")
    lhs, group = inner.split("|", 1)
    if lhs.strip() not in ("1",):
        raise ModelError(
            f"random term {term!r}: only random intercepts (1|group) are supported so far; "
            "random slopes are planned"
        )
    return _parse_group(group, term)


def parse_formula(formula: str) -> ParsedFormula:
    """Split an lme4-style formula into response, fixed part and random terms.

    Parameters
    ----------
    formula : str
        e.g. ``"Yield ~ Env + (1|Name)"``, ``"strength ~ 1 + (1|batch/cask)"``.

    Returns
    -------
    ParsedFormula

    Examples
    --------
    >>> p = parse_formula("y ~ x + (1|a/b)")
    >>> p.fixed, [t.name for t in p.random]
    ('x', ['a', 'a:b'])
    """
    if not isinstance(formula, str) or "~" not in formula:
        raise ModelError(f"a formula needs a response and '~', e.g. 'Yield ~ Env + (1|Name)'; got {formula!r}")
    lhs, rhs = formula.split("~", 1)
    response = lhs.strip()
    if not _NAME.match(response):
        raise ModelError(
            f"the response must be a single column name, got {response!r}; transform it in the data first"
        )
    fixed_terms, random_terms = [], []
    for term in _split_top_level_terms(rhs):
        if not term:
            raise ModelError(f"empty term in formula {formula!r}")
        if term.startswith("(") and term.endswith(")") and "|" in term:
            random_terms.extend(_parse_random(term))
        else:
            fixed_terms.append(term)
    names = [t.name for t in random_terms]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ModelError(f"random term(s) given twice: {sorted(dup)}")
    fixed = " + ".join(fixed_terms) if fixed_terms else "1"
    return ParsedFormula(response=response, fixed=fixed, random=tuple(random_terms), text=formula)

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


def _split_top_level_terms(rhs: str) -> list[tuple[str, str]]:
    """Split ``rhs`` into ``(sign, term)`` pairs on ``+`` and ``-`` outside parentheses.

    ``"Env + (1|Name) - 1"`` gives ``[("+", "Env"), ("+", "(1|Name)"), ("-", "1")]``:
    lme4 lets a removal such as ``- 1`` follow a random term, so the sign has to be
    kept with each term rather than splitting on ``+`` alone. Signs inside
    parentheses (``I(x - 1)``, ``(1|a)``) belong to their term.
    """
    parts, depth, cur, sign = [], 0, [], "+"
    for ch in rhs:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ModelError(f"unbalanced parentheses in formula right-hand side: {rhs!r}")
        if ch in "+-" and depth == 0:
            text = "".join(cur).strip()
            if text or parts:  # a leading sign ("~ -1 + x") has no term before it
                parts.append((sign, text))
            sign, cur = ch, []
        else:
            cur.append(ch)
    if depth != 0:
        raise ModelError(f"unbalanced parentheses in formula right-hand side: {rhs!r}")
    parts.append((sign, "".join(cur).strip()))
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
    >>> parse_formula("y ~ x + (1|g) - 1").fixed
    'x - 1'
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
    for sign, term in _split_top_level_terms(rhs):
        if not term:
            raise ModelError(f"empty term in formula {formula!r}")
        if term.startswith("(") and term.endswith(")") and "|" in term:
            if sign == "-":
                raise ModelError(f"a random term cannot be removed with '-': {term!r} in {formula!r}")
            random_terms.extend(_parse_random(term))
        else:
            # formulaic reads the signs: "Env - 1", "0 + Env", "-1 + Env"
            fixed_terms.append(term if not fixed_terms and sign == "+" else f"{sign} {term}")
    names = [t.name for t in random_terms]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ModelError(f"random term(s) given twice: {sorted(dup)}")
    fixed = " ".join(fixed_terms) if fixed_terms else "1"
    return ParsedFormula(response=response, fixed=fixed, random=tuple(random_terms), text=formula)

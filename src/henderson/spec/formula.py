"""Parse lme4-style mixed-model formulas.

``"Yield ~ Env + (1|Name)"`` is split into a fixed part handed to formulaic
(``"Env"``) and a list of random terms (``(1|Name)``). Random terms follow lme4:

- ``(1|g)``: a random intercept per level of ``g``;
- ``(1|a/b)``: nested, expands to ``(1|a) + (1|a:b)``;
- ``(1|a:b)``: one random effect per combination of ``a`` and ``b``.

- ``(x|g)``, ``(1 + x|g)``: correlated random intercept and slope (unstructured Σ);
  ``(0 + x|g)``: slope only; ``(x||g)``: intercept and slope uncorrelated (diagonal Σ);
- ``(0 + Env|g)``, ``us(0 + Env|g)``: one effect per level of the factor Env, unstructured
  Σ across them; ``diag(...)``, ``cs(...)``, ``fa(..., d)``: diagonal, compound-symmetry
  and factor-analytic Σ (glmmTMB's names; ASReml's ``fa``);
- ``leg(x, k)``: normalised Legendre polynomials of orders 0..k of x (random regression,
  ``us(leg(dim, 2)|animal)``); it brings its own order-0 column, so no intercept is added.

Everything left of ``|`` is kept as text in :attr:`RandomTermSpec.lhs`; which columns are
factors or covariates is decided against the data (``spec/terms.py``).

A multi-trait response ``cbind(y1, y2, ...) ~ ...`` is read with ``multitrait=True``.
This module is the only formula parser: the command line, the report, cross-validation
and the multi-trait layer ask it (and formulaic, for the fixed part) which columns a
formula uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeGuard

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
    lhs: tuple[str, ...] = ("1",)
    intercept: bool = True
    structure: str = "scalar"
    d: int | None = None
    text: str = ""
    #: the structure name as written (``"us"``, ``"diag"``, ``"cs"``, ``"fa"``) or None;
    #: ``diag(1|g)`` is a scalar term here but means "diagonal across traits" to a
    #: multi-trait model
    declared: str | None = None

    @property
    def structured(self) -> bool:
        """True unless the term is a plain random intercept ``(1|g)`` (one variance)."""
        return tuple(self.lhs) != ("1",) or not self.intercept


@dataclass(frozen=True)
class ParsedFormula:
    """A formula split into response, fixed part (formulaic syntax) and random terms."""

    response: str
    fixed: str
    random: tuple[RandomTermSpec, ...]
    text: str
    #: the responses of ``cbind(y1, y2, ...)`` (``response`` is then the first); empty
    #: for a single response
    traits: tuple[str, ...] = ()


def _split_top_level_terms(rhs: str) -> list[tuple[str, str]]:
    """Split ``rhs`` into ``(sign, term)`` pairs on ``+`` and ``-`` outside parentheses.

    ``"Env + (1|Name) - 1"`` gives ``[("+", "Env"), ("+", "(1|Name)"), ("-", "1")]``:
    lme4 lets a removal such as ``- 1`` follow a random term, so the sign has to be
    kept with each term rather than splitting on ``+`` alone. Signs inside
    parentheses (``I(x - 1)``, ``(1|a)``) belong to their term.
    """
    parts: list = []
    cur: list = []
    depth, sign = 0, "+"
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


_STRUCT = re.compile(r"^(us|diag|cs|fa)\s*\((.*)\)$", re.S)
_LEG = re.compile(r"^leg\(\s*([A-Za-z_.][A-Za-z0-9_.]*)\s*,\s*(\d+)\s*\)$")


def _lhs_terms(lhs: str, term_text: str) -> tuple[tuple[str, ...], bool]:
    """Left of ``|``: the covariate/factor expressions and whether an intercept is in.

    ``"Days"`` → (("Days",), True); ``"0 + Env"`` → (("Env",), False); ``"1"`` →
    ((), True) ... returned as ("1",) for the plain intercept.
    """
    pieces = _split_top_level_terms(lhs)
    intercept, out, has_leg = None, [], False
    for sign, p in pieces:
        p = p.strip()
        if p in ("0", "-1") or (sign == "-" and p == "1"):
            intercept = False
            continue
        if p == "1":
            intercept = True if intercept is None else intercept
            continue
        if sign == "-":
            raise ModelError(f"cannot remove {p!r} in random term {term_text!r}")
        m = _LEG.match(p)
        if m:
            has_leg = True
            out.append(f"leg({m.group(1)}, {int(m.group(2))})")
            continue
        if not _NAME.match(p):
            raise ModelError(
                f"cannot read {p!r} in random term {term_text!r}: left of '|' write column "
                "names, 1 or 0 (e.g. (1 + Days|Subject), (0 + Env|Name)) or leg(x, k)"
            )
        out.append(p)
    if intercept is None:
        intercept = not has_leg  # leg() brings its own order-0 column
    if not out and not intercept:
        raise ModelError(f"random term {term_text!r} has no component (0 alone)")
    if not out:
        return ("1",), True
    return tuple(out), intercept


def _parse_random(term: str) -> list[RandomTermSpec]:
    text = term.strip()
    structure, d = None, None
    m = _STRUCT.match(text)
    if m:
        structure, inner = m.group(1), m.group(2)
        if structure == "fa":
            head, sep, tail = inner.rpartition(",")
            if not sep or "|" not in head or not tail.strip().isdigit():
                raise ModelError(f"fa needs the number of factors: fa(0 + Env|Name, 2), got {term!r}")
            inner, d = head, int(tail.strip())
    else:
        inner = text[1:-1]
    uncorrelated = "||" in inner
    if uncorrelated:
        if structure is not None:
            raise ModelError(f"{term!r}: write either '||' or a structure name, not both")
        lhs, group = inner.split("||", 1)
        structure = "diag"
    else:
        if "|" not in inner:
            raise ModelError(f"random term {term!r} needs '|' between components and group")
        lhs, group = inner.split("|", 1)
    comps, intercept = _lhs_terms(lhs, term)
    if comps == ("1",) and structure in (None, "us", "diag", "cs"):
        structure = None if structure in (None, "us", "diag") else structure
    if structure is None:
        structure = "scalar" if comps == ("1",) else "us"
    if structure == "cs" and comps == ("1",):
        raise ModelError(f"cs() in {term!r} needs several components, e.g. cs(0 + Env|Name)")
    if structure == "fa" and comps == ("1",):
        raise ModelError(f"fa() in {term!r} needs several components, e.g. fa(0 + Env|Name, 1)")
    declared = m.group(1) if m else None
    out = []
    for g in _parse_group(group, term):
        out.append(RandomTermSpec(g.name, g.columns, comps, intercept, structure, d, text, declared))
    return out


def _is_random(term: str) -> bool:
    t = term.strip()
    if _STRUCT.match(t) and "|" in t:
        return True
    return t.startswith("(") and t.endswith(")") and "|" in t


_CBIND = re.compile(r"^\s*cbind\s*\((?P<inner>[^()]*)\)\s*$")


def is_multitrait(formula) -> TypeGuard[str]:
    """True for a ``cbind(y1, y2, ...) ~ ...`` formula."""
    return isinstance(formula, str) and "~" in formula and formula.split("~", 1)[0].strip().startswith("cbind")


def response_of(formula: str) -> str:
    """The left-hand side of a formula as written (``"Yield"``, ``"cbind(y1, y2)"``)."""
    return formula.split("~", 1)[0].strip()


def _traits(lhs: str) -> tuple[str, ...]:
    m = _CBIND.match(lhs)
    if not m:
        raise ModelError(f"cannot read the multi-trait response {lhs.strip()!r}: write cbind(y1, y2, ...)")
    traits = [s.strip() for s in m.group("inner").split(",")]
    bad = [s for s in traits if not _NAME.match(s)]
    if bad or not traits:
        raise ModelError(f"cbind(...) takes column names, got {bad or traits}")
    return tuple(traits)


def parse_formula(formula: str | ParsedFormula, *, multitrait: bool = False) -> ParsedFormula:
    """Split an lme4-style formula into response, fixed part and random terms.

    Parameters
    ----------
    formula : str
        e.g. ``"Yield ~ Env + (1|Name)"``, ``"strength ~ 1 + (1|batch/cask)"``.
    multitrait : bool
        Accept a ``cbind(y1, y2, ...)`` response (then ``traits`` lists them).

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
    if isinstance(formula, ParsedFormula):  # built by the model layer: nothing to read
        return formula
    if not isinstance(formula, str) or "~" not in formula:
        raise ModelError(f"a formula needs a response and '~', e.g. 'Yield ~ Env + (1|Name)'; got {formula!r}")
    lhs, rhs = formula.split("~", 1)
    response = lhs.strip()
    traits: tuple[str, ...] = ()
    if multitrait and is_multitrait(formula):
        traits = _traits(lhs)
        response = traits[0]
    if not _NAME.match(response):
        raise ModelError(f"the response must be a single column name, got {response!r}; transform it in the data first")
    fixed_terms: list = []
    random_terms: list = []
    for sign, term in _split_top_level_terms(rhs):
        if not term:
            raise ModelError(f"empty term in formula {formula!r}")
        if _is_random(term):
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
    return ParsedFormula(response=response, fixed=fixed, random=tuple(random_terms), text=formula, traits=traits)


def random_intercept_formula(response: str, fixed: str | None, group: str) -> ParsedFormula:
    """``response ~ fixed + (1|group)`` built directly (the genetic models' one random term).

    The fixed part stays formulaic text (the user's); the random term is a
    :class:`RandomTermSpec`, not text to be read again. ``text`` is only the label the
    results print.
    """
    fixed = fixed.strip() if fixed else "1"
    term = RandomTermSpec(name=group, columns=(group,), text=f"(1|{group})")
    return ParsedFormula(response, fixed, (term,), f"{response} ~ {fixed} + (1|{group})")


def random_terms(random: str, before=()) -> tuple[RandomTermSpec, ...]:
    """The random terms written in ``random`` (``"(1|MOTHER) + diag(1|BYEAR)"``, the models'
    ``random=``), after the terms ``before``; ModelError for anything else or a term given twice."""
    terms = list(before)
    for sign, term in _split_top_level_terms(random):
        if sign == "-" or not _is_random(term):
            raise ModelError(f"random= takes random terms such as (1|MOTHER), got {term!r} in {random!r}")
        terms.extend(_parse_random(term))
    names = [t.name for t in terms]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ModelError(f"random term(s) given twice: {sorted(dup)}")
    return tuple(terms)


def add_random_terms(parsed: ParsedFormula, random: str) -> ParsedFormula:
    """``parsed`` with the random terms written in ``random`` (``"(1|MOTHER) + (1|BYEAR)"``)."""
    terms = random_terms(random, parsed.random)
    return ParsedFormula(parsed.response, parsed.fixed, terms, f"{parsed.text} + {random}", parsed.traits)


def across_trait_diagonal(terms) -> set[str]:
    """Names of the ``diag(1|g)`` terms of a multi-trait model (Σ diagonal across traits);
    ModelError when ``diag`` holds more than a random intercept."""
    declared_diag = [t for t in terms if t.declared == "diag"]
    if any(t.lhs != ("1",) or not t.intercept for t in declared_diag):
        raise ModelError("diag(...) takes a random intercept across traits: diag(1|g)")
    return {t.name for t in declared_diag}


def _by_position(names, text: str) -> list[str]:
    """``names`` in the order they first appear in ``text`` (formulaic returns a set)."""

    def where(name):
        m = re.search(r"(?<![A-Za-z0-9_.])" + re.escape(name) + r"(?![A-Za-z0-9_.])", text)
        return m.start() if m else len(text)

    return sorted((str(n) for n in names), key=lambda n: (where(n), n))


def _fixed_factors(fixed: str):
    """formulaic's factors of a fixed part (``x``, ``C(Env)``, ``np.log(z)``...)."""
    from formulaic import Formula

    try:
        return [f for term in Formula(fixed) for f in term.factors]
    except Exception as err:  # noqa: BLE001 - formulaic's parse errors have several types
        raise ModelError(
            # formulaic's first line says what is wrong; the next ones draw it with colour codes
            f"cannot read the fixed part {fixed!r} of the formula: {(str(err).splitlines() or [''])[0]}",
            parameter="formula",
            value=fixed,
        ) from err


def fixed_variables(fixed: str) -> list[str]:
    """Columns a fixed part (formulaic syntax) uses, in the order written.

    formulaic decides what is a column: function names (``C``, ``np.log``, ``I``) are not.

    Examples
    --------
    >>> fixed_variables("Env + C(Block) + np.log(dose)")
    ['Env', 'Block', 'dose']
    """
    from formulaic import Formula

    names: set = set()
    for f in _fixed_factors(fixed):
        if f.expr != "1":
            names |= set(Formula(f.expr).required_variables)
    return _by_position(names, fixed)


def factor_wrapped(fixed: str) -> list[str]:
    """Columns of a fixed part wrapped in ``C(...)`` (declared factors)."""
    from formulaic import Formula

    names: set = set()
    for f in _fixed_factors(fixed):
        if str(f.expr).replace(" ", "").startswith("C("):
            names |= set(Formula(f.expr).required_variables)
    return _by_position(names, fixed)


def _component_variables(lhs: tuple[str, ...]) -> list[str]:
    """Columns named left of ``|``: plain names, and x of ``leg(x, k)``."""
    out = []
    for c in lhs:
        m = _LEG.match(c)
        out.append(m.group(1) if m else c)
    return [c for c in out if c != "1"]


def formula_variables(formula: str) -> list[str]:
    """Column names a formula (or a fixed part alone) uses: responses, fixed part,
    random-term components and grouping columns, without repeats.

    Examples
    --------
    >>> formula_variables("Yield ~ Env + (1|Name)")
    ['Yield', 'Env', 'Name']
    >>> formula_variables("cbind(y1, y2) ~ x + (0 + Env|a/b)")
    ['y1', 'y2', 'x', 'Env', 'a', 'b']
    """
    if "~" not in formula:
        return fixed_variables(formula)
    parsed = parse_formula(formula, multitrait=True)
    out = list(parsed.traits or (parsed.response,))
    out += fixed_variables(parsed.fixed)
    for t in parsed.random:
        out += _component_variables(t.lhs) + list(t.columns)
    return list(dict.fromkeys(out))


def random_groups(formula: str) -> list[str]:
    """Grouping columns of the random terms (``(1|a/b)`` → ``["a", "b"]``)."""
    parsed = parse_formula(formula, multitrait=True)
    return list(dict.fromkeys(c for t in parsed.random for c in t.columns))


def random_term_names(formula: str) -> list[str]:
    """Names of the random terms, as ``cov=`` keys them (``(1|a/b)`` → ``["a", "a:b"]``)."""
    return [t.name for t in parse_formula(formula, multitrait=True).random]

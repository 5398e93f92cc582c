"""Random terms with components and a covariance structure; residual structures.

The general model (docs/theory.md, "Covariance structures"):

    y = Xb + Σₖ Zₖ uₖ + e,   Var(vec Uₖ) = Σₖ(θ) ⊗ Kₖ,   Var(e) = R(θ)

Term k has qₖ levels and Sₖ components. Record i loads on level ``codes[i, a]`` of
component a with the value ``z[i, a]``: 1 for an intercept, the covariate for a slope
(or a Legendre polynomial), an indicator for the levels of a factor (Env) and — for
correlated terms such as direct and maternal effects — a different level column per
component. This also holds multi-trait data in long form (one row per record × trait,
z = indicator of the trait), which is how the multi-trait path will use it.

The residual is diagonal here: R = diag(σ²_{g(i)}/wᵢ) with g(i) the residual group
of record i (one group = scalar) and wᵢ a weight. A residual covariance across the
traits of one unit (R₀ unstructured, some traits missing) is a block-diagonal R over
units; :class:`Residual` keeps ``codes`` per record so a ``unit`` array can be added
without changing the terms.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import DataError, DataWarning, ModelError, format_ids
from .covariance import Diagonal, Scalar, Structure, make_structure
from .formula import ParsedFormula, RandomTermSpec, parse_formula
from .legendre import LEG, expand_fixed, legendre
from .levels import Identity
from .model import (
    RandomTerm,
    _check_columns,
    _check_no_infinite,
    _column_labels,
    _drop_missing,
    _fixed_matrix,
    _fixed_variables,
    _group_labels,
    _iid_levels,
    _integer_covariate_notes,
    _natural_rank,
    _random_term,
    complete_response,
)


@dataclass(frozen=True, eq=False)
class StructuredTerm:
    """A random term with S components, a structure Σ(θ) and a level covariance K.

    Attributes
    ----------
    name : str
    components : tuple of str, length S
    levels : ndarray of str, shape (q,)
    codes : ndarray of int, shape (n, S)
        Level of each record for each component.
    z : ndarray, shape (n, S)
        Value each record loads with on each component (0: not at all).
    structure : Structure
    level : RandomTerm
        The level covariance (``level.covariance``: :class:`~henderson.spec.levels.Identity`,
        a factored K = FF' or a K⁻¹ given), its ids, diag(K) and log|K|, as for one-component
        terms.
    """

    name: str
    components: tuple
    levels: np.ndarray
    codes: np.ndarray
    z: np.ndarray
    structure: Structure
    level: RandomTerm

    @property
    def q(self) -> int:
        return len(self.levels)

    @property
    def size(self) -> int:
        return len(self.components)

    @property
    def n_records(self) -> np.ndarray:
        """Records loading on each level (any component), shape (q,)."""
        hit = np.zeros(self.q, dtype=np.int64)
        for a in range(self.size):
            np.add.at(hit, self.codes[self.z[:, a] != 0, a], 1)
        return hit


@dataclass(frozen=True, eq=False)
class Residual:
    """Residual covariance: var(eᵢ) = σ²_{g(i)}/wᵢ, records independent.

    Attributes
    ----------
    groups : tuple of str
        ``("Residual",)`` for one variance, else the levels of the ``residual=`` column
        (or the traits).
    codes : ndarray of int, shape (n,)
        Group (trait) of each record.
    weights : ndarray, shape (n,), or None
    structure : Structure
        Scalar, or Diagonal across the groups.
    column : str or None
    unit : ndarray of int, shape (n,), or None
        Multi-trait in long form: the unit (animal, plot) of each record. With an
        Unstructured ``structure`` across the traits, R = ⊕_units R₀[obs, obs] — each
        unit's block of R₀ restricted to the traits it has (missing traits are absent
        rows, not imputed). Reserved for the multi-trait path: the dense engine here
        fits diagonal residuals only and refuses a ``unit``.
    """

    groups: tuple
    codes: np.ndarray
    weights: np.ndarray | None
    structure: Structure
    column: str | None = None
    unit: np.ndarray | None = None

    @property
    def name(self) -> str:
        return "Residual"


@dataclass(frozen=True, eq=False)
class GeneralSpec:
    """Arrays for the general engine (``solvers/general.py``), ids attached."""

    formula: ParsedFormula
    y: np.ndarray
    X: np.ndarray
    x_names: list
    terms: tuple
    residual: Residual
    record_index: pd.Index
    n_dropped: int = 0
    dropped_by_column: dict = field(default_factory=dict)
    aliased: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def p(self) -> int:
        return self.X.shape[1]

    @property
    def structures(self) -> list:
        return [t.structure for t in self.terms] + [self.residual.structure]

    @property
    def slices(self) -> list:
        """θ slice of each term, then of the residual."""
        out, a = [], 0
        for s in self.structures:
            out.append(slice(a, a + s.n_theta))
            a += s.n_theta
        return out

    @property
    def n_theta(self) -> int:
        return sum(s.n_theta for s in self.structures)

    @property
    def theta_names(self) -> list:
        names = []
        for t in self.terms:
            names += t.structure.names(t.name)
        r = self.residual
        names += ["Residual"] if len(r.groups) == 1 else [f"Residual:{g}:{g}" for g in r.groups]
        return names


# -- components ----------------------------------------------------------------------
def _is_factor(col: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype)


def _components(spec: RandomTermSpec, data: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Component names and the (n, S) loadings z of a term's left-hand side."""
    n = len(data)
    names, cols = [], []
    if spec.intercept:
        names.append("(Intercept)")
        cols.append(np.ones(n))
    if spec.lhs != ("1",):
        for expr in spec.lhs:
            m = LEG.fullmatch(expr)
            if m:
                col, k = m.group(1), int(m.group(2))
                x = pd.to_numeric(data[col], errors="coerce").to_numpy(dtype=float)
                P = legendre(x, k)
                names += [f"leg{j}" for j in range(k + 1)]
                cols += [P[:, j] for j in range(k + 1)]
                continue
            c = data[expr]
            if _is_factor(c):
                if spec.intercept:
                    raise ModelError(
                        f"random term {spec.text!r}: {expr!r} is a text (factor) column, so it "
                        f"cannot be a slope; write (0 + {expr}|{spec.name}) for one effect per "
                        f"level of {expr} with a covariance across them"
                    )
                labels = _column_labels(c)
                rank = _natural_rank(labels)
                order = np.argsort(rank, kind="stable")
                lv = list(dict.fromkeys(labels[order]))
                for level in lv:
                    names.append(str(level))
                    cols.append((labels == level).astype(float))
            else:
                names.append(expr)
                cols.append(c.to_numpy(dtype=float))
    if len(set(names)) != len(names):
        raise ModelError(f"random term {spec.text!r} has repeated components: {names}")
    return names, np.column_stack(cols)


def _structure(spec: RandomTermSpec, components: list[str]) -> Structure:
    kind = spec.structure
    if len(components) == 1:
        return Scalar(components)
    st = make_structure(kind if kind != "scalar" else "us", components, spec.d)
    st.check(spec.name)
    return st


# -- residual ------------------------------------------------------------------------
def _weights(data: pd.DataFrame, column: str) -> np.ndarray:
    c = data[column]
    if not pd.api.types.is_numeric_dtype(c.dtype) or pd.api.types.is_bool_dtype(c.dtype):
        raise DataError(f"weights column {column!r} is not numeric")
    w = c.to_numpy(dtype=float, na_value=np.nan)
    for bad, what in (
        (np.isnan(w), "missing"),
        (np.isinf(w), "infinite"),
        (np.isfinite(w) & (w <= 0), "zero or negative"),
    ):
        if bad.any():
            raise DataError(
                f"weights column {column!r} has {int(bad.sum())} {what} value(s), at data index "
                f"{format_ids(data.index[bad])}: every weight must be a positive number "
                "(var e_i = sigma2_e / w_i); drop those records first if that is meant"
            )
    return w


# -- correlated terms ----------------------------------------------------------------
def _correlated_term(specs: list[RandomTermSpec], data: pd.DataFrame, cov, cov_inverse) -> StructuredTerm:
    """Terms on different grouping columns sharing levels, as one term with S = len(specs)."""
    names = [s.name for s in specs]
    for s in specs:
        if s.structured:
            raise ModelError(f"correlated terms must be random intercepts (1|{s.name}); got {s.text!r}")
    given = [(n, cov.get(n), cov_inverse.get(n)) for n in names if n in cov or n in cov_inverse]
    if len(given) > 1:
        raise ModelError(
            f"correlated terms {names}: give the covariance of their levels once (for {names[0]!r}), not for each"
        )
    # a missing id (unknown dam) means no effect of that component for the record: z = 0
    present = [~data[list(s.columns)].isna().any(axis=1).to_numpy() for s in specs]
    labels = [_group_labels(data, s)[0] for s in specs]
    tname = "+".join(names)
    if given:
        _, K, Kinv = given[0]
        lvl, codes = _levels_of_covariance(RandomTermSpec(tname, specs[0].columns), names, labels, present, K, Kinv)
    else:
        lvl, codes = _shared_levels(tname, names, labels, present, len(data))
    z = np.column_stack(present).astype(float)
    st = make_structure("us", names)
    return StructuredTerm(tname, tuple(names), lvl.levels, np.column_stack(codes), z, st, lvl)


def _levels_of_covariance(base: RandomTermSpec, names, labels, present, K, Kinv) -> tuple[RandomTerm, list]:
    """The levels of the covariance given, and each component's codes in them (0 where absent)."""
    ref = next(lab[ok] for lab, ok in zip(labels, present) if ok.any())
    lvl = _random_term(base, ref, [ref], K, Kinv)
    index = pd.Index(lvl.levels)
    codes = []
    for nm, lab, ok in zip(names, labels, present):
        pos = index.get_indexer(lab)
        bad = (pos < 0) & ok
        if bad.any():
            miss = pd.unique(lab[bad])
            raise ModelError(
                f"correlated terms {names} must share levels: {len(miss)} level(s) of {nm!r} "
                f"are not ids of the covariance given: " + format_ids(miss)
            )
        codes.append(np.where(ok, pos, 0))
    return lvl, codes


def _shared_levels(tname: str, names, labels, present, n_records: int) -> tuple[RandomTerm, list]:
    """Identity-covariance levels: the union of the components' ids, which must overlap."""
    kept = [lab[ok].astype(str) for lab, ok in zip(labels, present)]
    if len(np.intersect1d(kept[0], kept[1])) == 0:
        raise ModelError(
            f"correlated terms {names} share no level: their grouping columns "
            "must hold ids of the same individuals (e.g. animal and dam)"
        )
    allc = np.concatenate([lab[ok] for lab, ok in zip(labels, present)])
    lv, allcodes = _iid_levels(allc, [allc])
    index = pd.Index(lv)
    lvl = RandomTerm(
        tname,
        lv.astype(object),
        np.zeros(n_records, dtype=np.int64),
        Identity(lv.astype(object)),
        k_diag=np.ones(len(lv)),
        n_records=np.bincount(allcodes, minlength=len(lv)),
    )
    codes = [np.where(ok, index.get_indexer(lab), 0) for lab, ok in zip(labels, present)]
    return lvl, codes


def by_name_of(parsed: ParsedFormula) -> dict:
    return {t.name: t for t in parsed.random}


# -- the builder ---------------------------------------------------------------------
def build_general_spec(
    formula: str | ParsedFormula,
    data: pd.DataFrame,
    cov: dict | None = None,
    cov_inverse: dict | None = None,
    *,
    weights: str | None = None,
    residual: str | None = None,
    correlated=None,
) -> GeneralSpec:
    """A :class:`GeneralSpec` from a formula with structured terms (see ``henderson.fit``)."""
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    parsed = parse_formula(formula)
    cov, cov_inverse = dict(cov or {}), dict(cov_inverse or {})
    names = [t.name for t in parsed.random]
    _check_covariance_names(list(cov) + list(cov_inverse), names)
    groups_corr = _correlated_groups(correlated, names)
    in_corr = [n for g in groups_corr for n in g]
    fixed, data = expand_fixed(parsed.fixed, data)
    leg_vars = [m.group(1) for t in parsed.random for e in t.lhs for m in [LEG.fullmatch(e)] if m]
    comp_vars = [e for t in parsed.random for e in t.lhs if e != "1" and not LEG.fullmatch(e)]
    corr_cols = {c for t in parsed.random if t.name in in_corr for c in t.columns}
    group_cols = sorted({c for t in parsed.random for c in t.columns} - corr_cols)
    extra = [c for c in (residual,) if c]
    needed = [parsed.response] + _fixed_variables(fixed, data) + group_cols + comp_vars + leg_vars + extra
    if weights is not None:
        _check_columns(data, [weights])
    _check_columns(data, needed + sorted(corr_cols))
    needed = list(dict.fromkeys(needed))
    _check_no_infinite(data, needed)
    kept, n_dropped, by_col = _drop_missing(data, needed)
    notes = _missing_correlated_notes(parsed, groups_corr, kept)
    y = complete_response(data, kept, n_dropped, by_col, parsed.response, notes)
    if np.ptp(y) == 0:
        raise DataError(f"response {parsed.response!r} is constant ({y[0]!r}): nothing to fit")
    X, x_names, aliased = _fixed_matrix(fixed, kept)
    if aliased:
        msg = f"fixed-effect columns aliased with others and dropped: {', '.join(aliased)}"
        notes.append(msg)
        warnings.warn(msg, DataWarning, stacklevel=3)
    notes += _integer_covariate_notes(kept, x_names)
    terms = _structured_terms(parsed, groups_corr, kept, cov, cov_inverse)
    w = _weights(kept, weights) if weights is not None else None
    res = _residual_of(kept, residual, w, len(y))
    return GeneralSpec(parsed, y, X, x_names, terms, res, kept.index, n_dropped, by_col, aliased, notes)


def _check_covariance_names(keys: list[str], names: list[str]) -> None:
    """Every covariance given (``cov=``, ``cov_inverse=``) is for a random term of the formula."""
    for key in keys:
        if key not in names:
            raise ModelError(
                f"a covariance was given for {key!r}, which is not a random term of "
                f"the formula; random terms: {sorted(names) or 'none'}"
            )


def _correlated_groups(correlated, names: list[str]) -> list[tuple]:
    """``correlated=`` as pairs of random terms of the formula, each term in one pair at most."""
    groups = [tuple(g) for g in (correlated or [])]
    for g in groups:
        if len(g) != 2:
            raise ModelError(f"correlated= takes pairs of terms, e.g. [('animal', 'dam')]; got {g!r}")
        for n in g:
            if n not in names:
                raise ModelError(
                    f"correlated term {n!r} is not a random term of the formula; random terms: {sorted(names)}"
                )
    in_corr = [n for g in groups for n in g]
    if len(set(in_corr)) != len(in_corr):
        raise ModelError(f"a term appears in two correlated groups: {groups}")
    return groups


def _missing_correlated_notes(parsed: ParsedFormula, groups: list[tuple], kept: pd.DataFrame) -> list[str]:
    """Records without an id of a correlated term: counted (they have no effect of it), not dropped."""
    notes = []
    for g in groups:
        for name in g:
            cols = list(by_name_of(parsed)[name].columns)
            k = int(kept[cols].isna().any(axis=1).sum())
            if k:
                notes.append(
                    f"{k} record(s) without {name!r} (missing id): no {name!r} effect for them "
                    "in the correlated term (kept, not dropped)"
                )
    return notes


def _structured_terms(parsed: ParsedFormula, groups: list[tuple], kept: pd.DataFrame, cov, cov_inverse) -> tuple:
    """One :class:`StructuredTerm` per random term, a correlated pair as one term."""
    by_name = {t.name: t for t in parsed.random}
    terms: list = []
    done: set = set()
    for t in parsed.random:
        if t.name in done:
            continue
        grp = next((g for g in groups if t.name in g), None)
        if grp is not None:
            terms.append(_correlated_term([by_name[n] for n in grp], kept, cov, cov_inverse))
            done.update(grp)
            continue
        comps, z = _components(t, kept)
        labels, columns = _group_labels(kept, t)
        lvl = _random_term(t, labels, columns, cov.get(t.name), cov_inverse.get(t.name))
        codes = np.repeat(lvl.codes[:, None], len(comps), axis=1)
        terms.append(StructuredTerm(t.name, tuple(comps), lvl.levels, codes, z, _structure(t, comps), lvl))
        done.add(t.name)
    return tuple(terms)


def _residual_of(kept: pd.DataFrame, residual: str | None, w, n: int) -> Residual:
    """The residual: one variance, or one per level of the ``residual=`` column (diagonal)."""
    if residual is None:
        return Residual(("Residual",), np.zeros(n, dtype=np.int64), w, Scalar(("Residual",)), residual)
    if residual not in kept.columns:
        raise DataError(f"residual= column {residual!r} not found in the data")
    labels = _column_labels(kept[residual])
    lv, rcodes = _iid_levels(labels, [labels])
    rgroups = tuple(str(g) for g in lv)
    rstruct = Diagonal(rgroups) if len(rgroups) > 1 else Scalar(("Residual",))
    return Residual(rgroups, rcodes, w, rstruct, residual)

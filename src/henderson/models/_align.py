"""Phenotypes by id → the records frame a genetic model is fitted to.

Records are matched to relationship matrices and genotypes by id, never by position.
Missing phenotypes are dropped and counted; ids absent from the relationship matrix
are an error listing them (or dropped and counted when the user asks).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..data.phenotypes import numeric_phenotypes
from ..errors import DataError, check_missing_mode, format_ids, unknown_ids
from ..spec.formula import ParsedFormula, random_intercept_formula
from ..spec.model import (
    FixedDesign,
    ModelSpec,
    fixed_design,
    model_spec,
    random_term,
    record_labels,
    with_expanded_fixed,
)

ID = "id"


def trait_name(y: pd.Series) -> str:
    name = str(y.name) if y.name is not None else "y"
    return name if re.match(r"^[A-Za-z_.][A-Za-z0-9_.]*$", name) and name != ID else "y"


def with_notes(res, before=(), after=()):
    """``res`` with ``before`` + its notes + ``after``: a new result (results are frozen;
    :func:`dataclasses.replace`, never mutation)."""
    import dataclasses

    if not before and not after:
        return res
    return dataclasses.replace(res, notes=tuple(before) + tuple(res.notes) + tuple(after))


def records_frame(
    y,
    known_ids,
    *,
    fixed: str | None = None,
    data: pd.DataFrame | None = None,
    missing: str = "error",
    what: str = "relationship matrix",
) -> tuple[pd.DataFrame, ParsedFormula, str, list]:
    """Align phenotypes (and fixed-effect covariates) by id.

    Parameters
    ----------
    y : Series indexed by id
        Phenotypes; repeated ids are repeated records.
    known_ids : array of str
        Ids the model can predict (rows of G, animals of the pedigree).
    fixed : str, optional
        Fixed-effect part of a formula (``"loc + year"``), columns of ``data``.
    data : DataFrame indexed by id, optional
    missing : {"error", "drop"}
        What to do with phenotyped ids absent from ``known_ids``.

    Returns
    -------
    (frame, formula, trait, notes)
        ``formula`` is a :class:`~henderson.spec.formula.ParsedFormula`
        ``trait ~ fixed + (1|id)`` built directly (it describes the model; nothing parses
        it): :func:`genetic_spec` builds the ModelSpec from ``frame``.
    """
    if not isinstance(y, pd.Series):
        raise DataError("phenotypes must be a pandas Series indexed by id (aligned by id, not position)")
    check_missing_mode(missing)
    trait = trait_name(y)
    ids = pd.Index(y.index.astype(str))
    vals, keep, notes = _known_values(numeric_phenotypes(y, ids, trait), known_ids, trait, missing, what)
    frame = pd.DataFrame({ID: vals.index.to_numpy(dtype=object), trait: vals.to_numpy()})
    if fixed:
        frame = _with_covariates(frame, fixed, data, ids, keep)
    return frame, random_intercept_formula(trait, fixed, ID), trait, notes


def _known_values(vals: pd.Series, known_ids, trait: str, missing: str, what: str):
    """(the non-missing phenotypes of known ids, which records of y they are, notes).

    Missing phenotypes are dropped and counted; ids absent from ``known_ids`` are an
    error listing them, or dropped and counted with ``missing="drop"``.
    """
    notes = []
    keep = vals.notna().to_numpy().copy()  # which records survive, for row-wise covariates
    if vals.isna().all():
        raise DataError(f"trait {trait!r} has no non-missing value")
    n_na = int(vals.isna().sum())
    if n_na:
        notes.append(f"{n_na} of {len(vals)} phenotypes missing: those individuals are predicted, not fitted")
        vals = vals[vals.notna()]
    known = pd.Index(np.asarray(known_ids, dtype=object))
    absent = ~vals.index.isin(known)
    if absent.all():
        from ..errors import AlignmentError

        def ex(ix):
            return ", ".join(repr(str(i)) for i in pd.unique(np.asarray(ix, dtype=object))[:3])

        raise AlignmentError(
            f"no phenotyped id is in the {what}: none of the {vals.index.nunique()} phenotyped ids matches "
            f"one of its {len(known)} ids (phenotype ids: {ex(vals.index)}; ids of the {what}: {ex(known)}). "
            "Check the id column and the id format (leading zeros, prefixes)"
        )
    if absent.any():
        bad = pd.unique(vals.index[absent])
        msg = f"{len(bad)} phenotyped id(s) not in the {what}: " + format_ids(bad)
        notes.append(unknown_ids(msg, missing, dropped=f"{int(absent.sum())} record(s) dropped", stacklevel=4))
        keep[np.flatnonzero(keep)[absent]] = False
        vals = vals[~absent]
    if vals.nunique() < 2:
        raise DataError(f"trait {trait!r} is constant over the phenotyped individuals: nothing to fit")
    return vals, keep, notes


def _with_covariates(frame: pd.DataFrame, fixed: str, data, ids: pd.Index, keep: np.ndarray) -> pd.DataFrame:
    """The records frame with the fixed-effect covariates of ``data``: by id, or record by
    record when y repeats ids (``keep`` marks the records of y that are in ``frame``)."""
    if data is None:
        raise DataError(f"fixed={fixed!r} needs data= (a DataFrame indexed by id)")
    d = data.copy()
    d.index = d.index.astype(str)
    if ids.has_duplicates:
        # repeated records: covariates belong to records, not ids; require one row
        # per record carrying the same id, so every row is still matched by id
        if len(d) != len(ids) or not (d.index == ids).all():
            raise DataError(
                "y has repeated records per id, so data= must have one row per record "
                "with the same ids in the same order as y (ids are checked row by row)"
            )
        cov = d.loc[keep].reset_index(drop=True)
        return pd.concat([frame, cov.drop(columns=[c for c in cov.columns if c in frame.columns])], axis=1)
    if d.index.has_duplicates:
        raise DataError(
            "data for fixed effects has duplicated ids: " + format_ids(d.index[d.index.duplicated()].unique())
        )
    return frame.merge(d, left_on=ID, right_index=True, how="left", suffixes=("", "_data"))


def genetic_spec(frame: pd.DataFrame, formula: ParsedFormula, *, cov=None, cov_inverse=None) -> ModelSpec:
    """The :class:`~henderson.spec.model.ModelSpec` of ``trait ~ fixed + (1|id)`` from the
    records frame of :func:`records_frame`, built from its arrays: y, the fixed design, and
    the ``id`` term with K (``cov``) or K⁻¹ (``cov_inverse``) matched by id.

    Further one-variance terms in ``formula`` (pedigree BLUP's ``random=``) are iid on
    their columns of ``frame``. Nothing is written as formula text.
    """
    formula, design = genetic_design(frame, formula)
    terms = []
    for t in formula.random:
        if t.name == ID:
            labels = design.records[ID].to_numpy(dtype=object)
            terms.append(random_term(ID, labels, cov, cov_inverse))
        else:
            labels, columns = record_labels(design.records, t)
            terms.append(random_term(t.name, labels, columns=columns))
    return model_spec(formula, design, terms)


def genetic_design(frame: pd.DataFrame, formula: ParsedFormula) -> tuple[ParsedFormula, FixedDesign]:
    """The complete records of the records frame and their fixed design (``leg()`` expanded)."""
    formula, frame = with_expanded_fixed(formula, frame)
    groups = sorted({c for t in formula.random for c in t.columns})
    return formula, fixed_design(formula.response, formula.fixed, frame, groups)

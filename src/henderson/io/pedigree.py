"""Read and check a pedigree from a delimited file or a DataFrame.

Every check names what is wrong in the user's terms: the file, the line and the ids.
Sorting is Kahn's algorithm in numba (O(n)); everything else is vectorised pandas,
so a million-animal pedigree reads and sorts in seconds.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..data._pedigree_kernels import topological_generations
from ..data.pedigree import Pedigree
from ..errors import DataError, DataWarning, PedigreeError, format_ids

DEFAULT_MISSING = ("0", "NA", ".", "-", "")

#: ids that look like an undeclared missing-parent code (checked for parents without a row)
_CODE_LIKE = re.compile(r"^(-\d+|0+|\?+|\*+|x|na|n/a|nan|null|none|unknown|missing|-+)$", re.IGNORECASE)
#: a whole-number float id written by a numeric export: 12.0 is animal 12
_FLOAT_ID = re.compile(r"^([+-]?\d+)\.0+$")


def read_pedigree(
    path_or_frame,
    id: str = "id",
    sire: str = "sire",
    dam: str = "dam",
    missing=DEFAULT_MISSING,
    sep: str | None = None,
    monoecious: bool = False,
    birth_year: str | None = None,
) -> Pedigree:
    """Read, check and sort a pedigree.

    Parameters
    ----------
    path_or_frame : str, path or DataFrame
        A delimited text file with a header line (comma, tab, semicolon or
        whitespace; detected from the header unless ``sep`` is given), or a
        DataFrame with one row per animal.
    id, sire, dam : str
        Column names.
    missing : iterable of str
        Codes of an unknown parent (in addition to empty/NaN cells); default ``0``,
        ``NA``, ``.`` and ``-``. A parent without a row of its own whose id looks like
        a code (``-9``, ``00``, ``?``, ``unknown``, ...) and that has several offspring
        is refused as a likely undeclared code.
    sep : str, optional
        Delimiter; ``None`` detects it. Use ``r"\\s+"`` for any whitespace.
    monoecious : bool
        Plants and other monoecious or hermaphrodite species: an id may be the sire
        of one animal and the dam of another, and sire = dam (the same id) is a
        selfing. Default False: an id used both as sire and as dam is an error, as
        it is for animals with separate sexes. A, A⁻¹ and inbreeding handle selfing
        exactly (``a_ii = 1 + a_ss/2`` when s = d).
    birth_year : str, optional
        Column of birth years (or any number that grows with time, e.g. a date as
        YYYYMMDD): a parent born after its offspring is an error naming both.

    Notes
    -----
    Ids written as whole-number floats (``12.0``, a numeric column exported with
    missing values) are read as integers (``12``) in every column, with a
    DataWarning counting them, so that ``12.0`` as a sire is animal ``12``.

    Returns
    -------
    Pedigree
        Coded parents-before-offspring; ``input_order`` keeps the rows' order with
        added founders first.

    Raises
    ------
    DataError
        A column is missing (the message lists the present ones), or a row's id is
        empty or a missing-parent code (``0,0,0``; the line or row is named).
    PedigreeError
        Duplicated ids with different parents; an animal that is its own parent
        or its own ancestor (the loop is printed); an id used both as sire and as
        dam (unless ``monoecious=True``).

    Warns
    -----
    DataWarning
        Exact duplicate rows were dropped, or parents without a row of their own
        were added as founders (both are counted in the returned Pedigree).
    """
    frame, source, is_file = _source_frame(path_or_frame, sep)
    absent = [c for c in (id, sire, dam) + ((birth_year,) if birth_year else ()) if c not in frame.columns]
    if absent:
        raise DataError(
            f"pedigree {source}: no column {format_ids(absent)}; present columns: {format_ids(frame.columns, limit=30)}"
        )
    m = len(frame)
    # One hash pass over all three columns; everything after works on integer labels,
    # which is what makes a million rows cheap (no per-row Python string work).
    labels, names = _factorize([frame[id], frame[sire], frame[dam]], set(str(x) for x in missing), source)
    id_l, s_l, d_l = labels[:m], labels[m : 2 * m], labels[2 * m :]
    # Row position -> what the user calls it: a file line (header is line 1) or a row.
    lines = np.arange(m) + 2 if is_file else np.arange(m)
    where = f"{source} line" if is_file else "DataFrame row"
    rows = np.arange(m)
    if is_file:  # blank lines were kept so that line numbers stay exact; drop them now
        keep = ~_blank_rows(frame)
        id_l, s_l, d_l, lines, rows = id_l[keep], s_l[keep], d_l[keep], lines[keep], rows[keep]
    if (id_l < 0).any():
        _raise_bad_ids(frame[id], rows[id_l < 0], lines[id_l < 0], source, where)

    year_of = None
    if birth_year:  # by label (an exact duplicate row has the same id)
        year_of = _years_by_label(frame[birth_year], rows, lines, id_l, len(names), birth_year, source, where)
    id_l, s_l, d_l, lines, n_dup = _drop_duplicates(id_l, s_l, d_l, lines, names, source, where)
    _check_self_parent(id_l, s_l, d_l, lines, names, source, where)
    if not monoecious:
        _check_sex(s_l, d_l, names, source, has_row=np.isin(np.arange(len(names)), id_l))

    new, all_l, s_pos, d_pos = _with_founders(id_l, s_l, d_l, names, source)
    all_ids = names[all_l]
    gen = topological_generations(s_pos, d_pos)
    if (gen < 0).any():
        _raise_loop(all_ids, s_pos, d_pos, gen, np.concatenate([np.full(len(new), -1), lines]), source, where)
    if year_of is not None:
        _check_birth_years(year_of[all_l], all_ids, s_pos, d_pos, birth_year, source)

    # Stable sort by generation: parents first, ties in the user's order.
    order = np.argsort(gen, kind="stable")
    code = np.empty_like(order)
    code[order] = np.arange(len(order))
    s_code = np.where(s_pos >= 0, code[s_pos], -1)[order]
    d_code = np.where(d_pos >= 0, code[d_pos], -1)[order]
    return Pedigree(
        ids=all_ids[order],
        sire=s_code,
        dam=d_code,
        generation=gen[order],
        input_order=code,
        added_founders=tuple(names[new]),
        n_duplicates_dropped=n_dup,
        source=source,
    )


def _source_frame(path_or_frame, sep) -> tuple[pd.DataFrame, str, bool]:
    """(the rows, what to call the source in messages, whether it is a file)."""
    if isinstance(path_or_frame, pd.DataFrame):
        return path_or_frame, "<DataFrame>", False
    if isinstance(path_or_frame, (str, os.PathLike)):
        return _read_table(Path(path_or_frame), sep), str(path_or_frame), True
    raise DataError(f"read_pedigree expects a file path or a DataFrame, not {type(path_or_frame).__name__}")


def _blank_rows(frame: pd.DataFrame) -> np.ndarray:
    """Rows with every cell empty -- not "0,0,0", which is an animal called '0'."""
    blank = np.ones(len(frame), np.bool_)
    for col in frame.columns:
        blank &= (frame[col].fillna("").astype(str).str.strip() == "").to_numpy()
    return blank


def _with_founders(id_l, s_l, d_l, names, source):
    """Parents without a row become founders, placed before all rows (first-seen order).

    Returns (founder labels, the labels of every animal, sire and dam positions in that
    order, -1 unknown); warns with the founders' count.
    """
    has_row = np.zeros(len(names), np.bool_)
    has_row[id_l] = True
    parents = np.column_stack([s_l, d_l]).ravel()
    parents = parents[parents >= 0]
    new = pd.unique(parents[~has_row[parents]])
    _refuse_code_like_parents(new, parents, names, source)
    if len(new):
        warnings.warn(
            f"pedigree {source}: {len(new)} parent(s) have no row of their own and were "
            f"added as founders: {format_ids(names[new])}",
            DataWarning,
            stacklevel=3,
        )
    all_l = np.concatenate([new, id_l]).astype(np.int64)
    pos_of = np.full(len(names) + 1, -1, np.int64)  # label -1 (unknown) -> position -1
    pos_of[all_l] = np.arange(len(all_l))
    s_pos = np.concatenate([np.full(len(new), -1, np.int64), pos_of[s_l]])
    d_pos = np.concatenate([np.full(len(new), -1, np.int64), pos_of[d_l]])
    return new, all_l, s_pos, d_pos


def _years_by_label(col: pd.Series, rows, lines, id_l, n_labels, name, source, where) -> np.ndarray:
    """Birth year of each id label (NaN unknown); a non-numeric year is an error naming its line."""
    raw = col.iloc[rows]
    years = pd.to_numeric(raw, errors="coerce")
    bad = years.isna().to_numpy() & ~raw.fillna("").astype(str).str.strip().isin(["", "NA", ".", "-"]).to_numpy()
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"pedigree {source}: birth year {raw.iloc[k]!r} in column {name!r} is not a number ({where} {lines[k]})"
        )
    out = np.full(n_labels, np.nan)
    out[id_l] = years.to_numpy(dtype=float)
    return out


def _check_birth_years(year, ids, s_pos, d_pos, name, source) -> None:
    """A parent born after its offspring: an error naming both (vectorised over animals)."""
    shown, n_bad = [], 0
    for parent, role in ((s_pos, "sire"), (d_pos, "dam")):
        known = parent >= 0
        child = np.flatnonzero(known)
        py = year[parent[child]]
        bad = child[py > year[child]]  # NaN compares False: unknown years are not checked
        n_bad += len(bad)
        shown += [
            f"{role} {ids[parent[c]]!r} ({name} {year[parent[c]]:g}) of {ids[c]!r} ({name} {year[c]:g})"
            for c in bad[:5]
        ]
    if n_bad:
        raise PedigreeError(
            f"pedigree {source}: {n_bad} parent(s) born after their offspring: "
            + "; ".join(shown[:5])
            + (" ..." if n_bad > 5 else "")
            + ". Check the ids and the birth years"
        )


def _refuse_code_like_parents(new, parents, names, source, min_offspring: int = 2) -> None:
    """A parent without a row whose id looks like a missing code (-9, 00, ?, unknown) and
    that has several offspring: almost surely an undeclared missing-parent code, which
    would make all those animals (half-)sibs of one phantom founder."""
    if not len(new):
        return
    code_like = pd.Series(names[np.asarray(new)], dtype=object).astype(str).str.match(_CODE_LIKE).to_numpy(bool)
    if not code_like.any():
        return
    counts = np.bincount(parents, minlength=len(names))
    suspects = [(names[k], int(counts[k])) for k in np.asarray(new)[code_like] if counts[k] >= min_offspring]
    if suspects:
        shown = ", ".join(f"{i!r} (parent of {c} animals)" for i, c in suspects[:5])
        raise PedigreeError(
            f"pedigree {source}: {shown} {'has' if len(suspects) == 1 else 'have'} no row of its own and "
            "looks like a missing-parent code: as a parent it would make all those animals related "
            "through one phantom founder. Declare the code as missing (--missing-parent, or "
            "missing= in read_pedigree), or give the parent a row if it is a real animal"
        )


def _raise_bad_ids(id_col: pd.Series, rows, lines, source, where):
    """Rows whose id is empty or a missing-parent code: an error naming them."""
    raw = id_col.iloc[rows]
    shown = []
    for value, ln in zip(raw[:10], lines[:10]):
        text = "" if pd.isna(value) else str(value).strip()
        shown.append(f"{where} {ln}: " + (f"id {text!r}" if text else "empty id"))
    more = f" ... and {len(rows) - 10} more" if len(rows) > 10 else ""
    raise DataError(
        f"pedigree {source}: {len(rows)} row(s) have no usable id ({'; '.join(shown)}{more}). "
        "An animal cannot be called by a missing-parent code (such as '0' or 'NA') when that "
        "code means 'unknown': rename the animal, or pass missing= without that code."
    )


def _read_table(path: Path, sep: str | None) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"pedigree file not found: {path}")
    if sep is None:
        with open(path, encoding="utf-8-sig") as fh:
            header = ""
            for header in fh:
                if header.strip():
                    break
        # The header is the most reliable place to see the delimiter.
        sep = next((c for c in ("\t", ",", ";") if c in header), r"\s+")
    try:
        return pd.read_csv(
            path,
            sep=sep,
            dtype=str,
            keep_default_na=False,
            na_values=[],
            skip_blank_lines=False,
            encoding="utf-8-sig",
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"pedigree {path}: cannot parse ({err})") from err


def _factorize(cols, missing: set, source: str = "<pedigree>"):
    """Integer labels of the concatenated columns and the label -> id array.

    Ids are stripped of surrounding blanks; empty cells and ``missing`` codes get
    label -1. Integral float columns (ints holding NaN) are read as ints: "12", not "12.0".
    """
    parts = []
    for col in cols:
        if pd.api.types.is_float_dtype(col) and np.all(np.mod(col.dropna(), 1) == 0):
            col = col.astype("Int64")
        if not (pd.api.types.is_string_dtype(col) or col.dtype == object):
            col = col.astype(str).where(col.notna())
        parts.append(col.to_numpy(dtype=object, na_value=None))
    raw, uniq = pd.factorize(np.concatenate(parts))
    # Strip and recode the (few) distinct values only, never the rows.
    uniq = np.array([str(u).strip() for u in uniq], dtype=object)
    codes = list(missing | {""})
    uniq = _whole_number_ids(uniq, np.isin(uniq, codes), source)
    bad = np.isin(uniq, codes)  # again: "0.0" is the code "0"
    known = uniq.copy()
    known[bad] = None  # the missing-parent codes factorize to -1
    relabel, names = pd.factorize(known)
    relabel = np.append(relabel, -1)  # raw label -1 (NaN) stays -1
    return relabel[raw].astype(np.int64), np.asarray(names, dtype=object)


def _whole_number_ids(uniq: np.ndarray, skip: np.ndarray, source: str) -> np.ndarray:
    """Distinct ids with ``12.0`` written as ``12`` (counted in a DataWarning)."""
    whole = pd.Series(uniq, dtype=object).str.extract(_FLOAT_ID, expand=False)
    hit = whole.notna().to_numpy() & ~skip
    if not hit.any():
        return uniq
    out = uniq.copy()
    out[hit] = whole[hit].astype(int).astype(str).to_numpy(dtype=object)  # "+012.0" -> "12"
    warnings.warn(
        f"pedigree {source}: {int(hit.sum())} id(s) written as whole-number decimals read as "
        f"integers (e.g. {uniq[hit][0]!r} as {out[hit][0]!r})",
        DataWarning,
        stacklevel=4,
    )
    return out


def _drop_duplicates(id_l, s_l, d_l, lines, names, source, where):
    counts = np.bincount(id_l, minlength=len(names))
    if counts.max(initial=0) < 2:
        return id_l, s_l, d_l, lines, 0
    triple = pd.DataFrame({"id": id_l, "sire": s_l, "dam": d_l})
    exact = triple.duplicated(keep="first").to_numpy()
    n_dup = int(exact.sum())
    keep = ~exact
    id_l, s_l, d_l, lines = id_l[keep], s_l[keep], d_l[keep], lines[keep]
    conflict = pd.Series(id_l).duplicated(keep=False).to_numpy()
    if conflict.any():
        ext = np.append(names, None)  # label -1 -> None (unknown parent)
        rows = [
            f"{ext[i]!r} ({where} {ln}: sire {ext[s]!r}, dam {ext[d]!r})"
            for i, ln, s, d in zip(id_l[conflict], lines[conflict], s_l[conflict], d_l[conflict])
        ]
        bad = names[pd.unique(id_l[conflict])]
        raise PedigreeError(
            f"pedigree {source}: {len(bad)} id(s) appear more than once with different "
            f"parents: {format_ids(bad)}; rows: " + "; ".join(rows[:10])
        )
    warnings.warn(f"pedigree {source}: dropped {n_dup} exact duplicate row(s)", DataWarning, stacklevel=3)
    return id_l, s_l, d_l, lines, n_dup


def _check_self_parent(id_l, s_l, d_l, lines, names, source, where):
    own = (id_l == s_l) | (id_l == d_l)
    if own.any():
        rows = [f"{names[i]!r} ({where} {ln})" for i, ln in zip(id_l[own], lines[own])]
        raise PedigreeError(
            f"pedigree {source}: {int(own.sum())} animal(s) are their own parent: " + ", ".join(rows[:10])
        )


def _check_sex(s_l, d_l, names, source, has_row=None):
    is_sire = np.zeros(len(names), np.bool_)
    is_dam = np.zeros(len(names), np.bool_)
    is_sire[s_l[s_l >= 0]] = True
    is_dam[d_l[d_l >= 0]] = True
    both = np.flatnonzero(is_sire & is_dam)
    if len(both) and has_row is not None:
        rowless = [k for k in both if not has_row[k]]
        if rowless:
            n_off = np.bincount(np.concatenate([s_l[s_l >= 0], d_l[d_l >= 0]]), minlength=len(names))
            shown = ", ".join(f"{names[k]!r} (parent of {int(n_off[k])} animals)" for k in rowless[:5])
            raise PedigreeError(
                f"pedigree {source}: {shown} is used both as sire and as dam and has no row of its own: "
                "it looks like a missing-parent code. Declare it as missing (--missing-parent, or "
                "missing= in read_pedigree)"
            )
    if len(both):
        raise PedigreeError(
            f"pedigree {source}: {len(both)} id(s) are used both as sire and as dam: "
            + format_ids(names[both])
            + " (for plants or other monoecious species, where this and selfing are normal, "
            "pass monoecious=True)"
        )


def _raise_loop(ids, s_pos, d_pos, gen, lines, source, where):
    # Every animal left unsorted has at least one unsorted parent (else Kahn's
    # algorithm would have released it), so walking unsorted parents must revisit
    # an animal: the first revisited one closes a loop.
    stuck = np.flatnonzero(gen < 0)
    path, seen = [int(stuck[0])], {int(stuck[0]): 0}
    while True:
        j = path[-1]
        nxt = next(p for p in (s_pos[j], d_pos[j]) if p >= 0 and gen[p] < 0)
        if int(nxt) in seen:
            loop = path[seen[int(nxt)] :] + [int(nxt)]
            break
        seen[int(nxt)] = len(path)
        path.append(int(nxt))
    chain = " -> ".join(str(ids[k]) for k in loop)
    at = ", ".join(f"{ids[k]!r} {where} {lines[k]}" for k in loop[:-1] if lines[k] >= 0)
    raise PedigreeError(
        f"pedigree {source}: animal {ids[loop[0]]!r} is its own ancestor; loop "
        f"(animal -> parent): {chain} ({at}); {len(stuck)} animal(s) are in or below loops"
    )

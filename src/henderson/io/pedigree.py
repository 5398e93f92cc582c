"""Read and check a pedigree from a delimited file or a DataFrame.

Every check names what is wrong in the user's terms: the file, the line and the ids.
Sorting is Kahn's algorithm in numba (O(n)); everything else is vectorised pandas,
so a million-animal pedigree reads and sorts in seconds.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.pedigree import Pedigree
from ..errors import DataError, DataWarning, PedigreeError, format_ids
from ..relationships._pedigree_kernels import topological_generations

DEFAULT_MISSING = ("0", "NA", ".", "")


def read_pedigree(
    path_or_frame,
    id: str = "id",
    sire: str = "sire",
    dam: str = "dam",
    missing=DEFAULT_MISSING,
    sep: str | None = None,
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
        Codes of an unknown parent (in addition to empty/NaN cells).
    sep : str, optional
        Delimiter; ``None`` detects it. Use ``r"\\s+"`` for any whitespace.

    Returns
    -------
    Pedigree
        Coded parents-before-offspring; ``input_order`` keeps the rows' order with
        added founders first.

    Raises
    ------
    DataError
        A column is missing (the message lists the present ones) or an id is empty.
    PedigreeError
        Duplicated ids with different parents; an animal that is its own parent
        or its own ancestor (the loop is printed); an id used both as sire and as dam.

    Warns
    -----
    DataWarning
        Exact duplicate rows were dropped, or parents without a row of their own
        were added as founders (both are counted in the returned Pedigree).
    """
    if isinstance(path_or_frame, pd.DataFrame):
        frame = path_or_frame
        source = "<DataFrame>"
        is_file = False
    elif isinstance(path_or_frame, (str, os.PathLike)):
        source = str(path_or_frame)
        frame = _read_table(Path(path_or_frame), sep)
        is_file = True
    else:
        raise DataError(
            f"read_pedigree expects a file path or a DataFrame, not {type(path_or_frame).__name__}"
        )
    absent = [c for c in (id, sire, dam) if c not in frame.columns]
    if absent:
        raise DataError(
            f"pedigree {source}: no column {format_ids(absent)}; "
            f"present columns: {format_ids(frame.columns, limit=30)}"
        )
    missing = set(str(m) for m in missing)
    ids = _as_str(frame[id], set())
    sires = _as_str(frame[sire], missing)
    dams = _as_str(frame[dam], missing)
    # Row position -> what the user calls it: a file line (header is line 1) or a row.
    lines = np.arange(len(frame)) + 2 if is_file else np.arange(len(frame))
    where = f"{source} line" if is_file else "DataFrame row"

    if is_file:  # blank lines were kept so that line numbers stay exact; drop them now
        blank = (ids.isna() & sires.isna() & dams.isna()).to_numpy()
        if blank.any():
            keep = ~blank
            ids, sires, dams, lines = ids[keep], sires[keep], dams[keep], lines[keep]
    if ids.isna().any():
        bad = lines[ids.isna().to_numpy()]
        raise DataError(f"pedigree {source}: empty id on {where} {format_ids(bad)}")

    ids, sires, dams, lines, n_dup = _drop_duplicates(ids, sires, dams, lines, source, where)
    _check_self_parent(ids, sires, dams, lines, source, where)
    _check_sex(sires, dams, source)

    # Parents without a row become founders, placed before all rows (first-seen order).
    idx = pd.Index(ids.to_numpy(dtype=object))
    parents = np.column_stack([sires.to_numpy(dtype=object), dams.to_numpy(dtype=object)]).ravel()
    known = ~pd.isna(parents)
    new = pd.unique(parents[known][idx.get_indexer(parents[known]) < 0])
    if len(new):
        warnings.warn(
            f"pedigree {source}: {len(new)} parent(s) have no row of their own and were "
            f"added as founders: {format_ids(new)}",
            DataWarning,
            stacklevel=2,
        )
    all_ids = np.concatenate([np.asarray(new, dtype=object), idx.to_numpy()])
    full = pd.Index(all_ids)
    s_pos = full.get_indexer(sires.to_numpy(dtype=object))
    d_pos = full.get_indexer(dams.to_numpy(dtype=object))
    # Missing parents are NaN, which get_indexer maps to -1 (NaN is not an id).
    pad = np.full(len(new), -1, np.int64)
    s_pos = np.concatenate([pad, s_pos]).astype(np.int64)
    d_pos = np.concatenate([pad, d_pos]).astype(np.int64)

    gen = topological_generations(s_pos, d_pos)
    if (gen < 0).any():
        _raise_loop(all_ids, s_pos, d_pos, gen, np.concatenate([np.full(len(new), -1), lines]), source, where)

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
        added_founders=tuple(new),
        n_duplicates_dropped=n_dup,
        source=source,
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
    return pd.read_csv(
        path,
        sep=sep,
        dtype=str,
        keep_default_na=False,
        na_values=[],
        skip_blank_lines=False,
        encoding="utf-8-sig",
    )


def _as_str(col: pd.Series, missing: set) -> pd.Series:
    """Column as object strings, stripped, with ``missing`` codes as NaN."""
    if pd.api.types.is_float_dtype(col) and np.all(np.mod(col.dropna(), 1) == 0):
        col = col.astype("Int64")  # 12.0 from a NaN-holding int column must read "12"
    s = col.astype(object)
    na = s.isna().to_numpy()
    s = s.where(na, s.astype(str).str.strip())
    bad = s.isin(list(missing)).to_numpy() | na | (s == "").to_numpy()
    return pd.Series(np.where(bad, np.nan, s.to_numpy(dtype=object)), dtype=object)


def _drop_duplicates(ids, sires, dams, lines, source, where):
    dup = ids.duplicated(keep=False).to_numpy()
    if not dup.any():
        return ids, sires, dams, lines, 0
    triple = pd.DataFrame({"id": ids, "sire": sires, "dam": dams})
    exact = triple.duplicated(keep="first").to_numpy()
    n_dup = int(exact.sum())
    keep = ~exact
    ids, sires, dams, lines = ids[keep], sires[keep], dams[keep], lines[keep]
    conflict = ids.duplicated(keep=False).to_numpy()
    if conflict.any():
        rows = [
            f"{i!r} ({where} {ln}: sire {s!r}, dam {d!r})"
            for i, ln, s, d in zip(ids[conflict], lines[conflict], sires[conflict], dams[conflict])
        ]
        bad = pd.unique(ids[conflict])
        raise PedigreeError(
            f"pedigree {source}: {len(bad)} id(s) appear more than once with different "
            f"parents: {format_ids(bad)}; rows: " + "; ".join(rows[:10])
        )
    if n_dup:
        warnings.warn(
            f"pedigree {source}: dropped {n_dup} exact duplicate row(s)", DataWarning, stacklevel=3
        )
    return ids.reset_index(drop=True), sires.reset_index(drop=True), dams.reset_index(drop=True), lines, n_dup


def _check_self_parent(ids, sires, dams, lines, source, where):
    own = ((ids == sires) | (ids == dams)).to_numpy()
    if own.any():
        rows = [f"{i!r} ({where} {ln})" for i, ln in zip(ids[own], lines[own])]
        raise PedigreeError(
            f"pedigree {source}: {int(own.sum())} animal(s) are their own parent: "
            + ", ".join(rows[:10])
        )


def _check_sex(sires, dams, source):
    both = pd.Index(sires.dropna().unique()).intersection(pd.Index(dams.dropna().unique()))
    if len(both):
        raise PedigreeError(
            f"pedigree {source}: {len(both)} id(s) are used both as sire and as dam: "
            + format_ids(sorted(both))
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
            loop = path[seen[int(nxt)]:] + [int(nxt)]
            break
        seen[int(nxt)] = len(path)
        path.append(int(nxt))
    chain = " -> ".join(str(ids[k]) for k in loop)
    at = ", ".join(f"{ids[k]!r} {where} {lines[k]}" for k in loop[:-1] if lines[k] >= 0)
    raise PedigreeError(
        f"pedigree {source}: animal {ids[loop[0]]!r} is its own ancestor; loop "
        f"(animal -> parent): {chain} ({at}); {len(stuck)} animal(s) are in or below loops"
    )

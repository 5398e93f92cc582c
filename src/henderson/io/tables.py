"""Read delimited tables and a trait column without silently changing a value.

What a spreadsheet export can hide, and what each reader here does about it:

* **Missing-value codes.** Blank cells, ``NA``, ``N/A``, ``NaN`` are missing. The codes
  ``.``, ``-9``, ``-99`` and ``-999`` are common in breeding files (SAS, BLUPF90,
  PLINK phenotype files) but are also possible values, so they are never guessed:
  a ``.`` in a trait column is read as missing *and counted in a warning*; a value
  -9/-99/-999 below every other value of the trait is kept *and counted in a warning*
  that suggests ``na_values=``. Declared codes (``na_values=``, ``--na-values``) are
  missing, and counted in the result's notes.
* **Decimal commas** (``3,5``): in a semicolon- or tab-delimited file they make a
  column text; the error names the value and says ``decimal=","`` (``--decimal ,``).
  Declared, they are read as numbers.
* **Duplicated header names**: pandas would rename the second ``y`` to ``y.1``; here
  it is an error naming the columns.
* **Whitespace-delimited files** cannot show an empty field (two blanks are one
  separator), so a blank cell shifts every later value left. Every line must have as
  many fields as the header; a line with fewer is an error naming it.
"""

from __future__ import annotations

import csv
import gzip
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, DataWarning, format_ids

#: always missing, besides pandas' defaults (blank, NA, N/A, NaN, NULL, ...)
NA_VALUES = ("", "NA", "N/A", "NaN", "nan", "-")
#: missing in every column but the trait, where it is counted in a warning
DOT = "."
#: numeric codes that often mean "missing" but could be values: never guessed, warned
SUSPECT_CODES = (-9.0, -99.0, -999.0)
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d*,\d+([eE][-+]?\d+)?\s*$")
_FLOAT_ID = re.compile(r"^([+-]?\d+)\.0+$")
_TOKENIZE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _opener(path: Path):
    return (
        gzip.open(path, "rt", encoding="utf-8-sig") if path.name.endswith(".gz") else open(path, encoding="utf-8-sig")
    )


def detect_delimiter(path) -> str:
    """Tab, comma or semicolon (the most frequent in the first non-empty line); whitespace otherwise."""
    path = Path(path)
    with _opener(path) as fh:
        for line in fh:
            if line.strip():
                break
        else:
            raise DataError(f"{path}: the file is empty")
    counts = {sep: line.count(sep) for sep in ("\t", ",", ";")}
    sep, n = max(counts.items(), key=lambda kv: kv[1])
    return sep if n else r"\s+"


def header_names(path, sep: str) -> list[str]:
    """The header line's names, as written (quotes removed, blanks stripped)."""
    with _opener(Path(path)) as fh:
        for first in fh:
            if first.strip():
                break
        else:
            return []
    first = first.rstrip("\r\n")
    names = first.split() if sep == r"\s+" else next(csv.reader([first], delimiter=sep))
    return [n.strip() for n in names]


def check_unique_header(path, names) -> None:
    """DataError naming duplicated column names and their positions (1-based)."""
    idx = pd.Index(names)
    if idx.has_duplicates:
        dup = list(idx[idx.duplicated()].unique())
        cols = {d: [str(k + 1) for k, n in enumerate(names) if n == d] for d in dup}
        where = "; ".join(f"{d!r} in columns {', '.join(c)}" for d, c in cols.items())
        raise DataError(
            f"{path}: duplicated column name(s) in the header: {where}. Every column "
            "needs its own name (otherwise the second would be renamed and one of them "
            "silently used)"
        )


def _check_whitespace_fields(path: Path, n_fields: int) -> None:
    """Every data line of a whitespace-delimited file has exactly ``n_fields`` fields.

    Read as text with one spare column; a field count is the number of non-null cells
    of a row (vectorised, no loop over lines).
    """
    raw = pd.read_csv(
        path,
        sep=r"\s+",
        header=None,
        skiprows=1,
        dtype=str,
        keep_default_na=False,
        na_values=[],
        names=range(n_fields + 1),
        skip_blank_lines=True,
        encoding="utf-8-sig",
        engine="python",
    )
    counts = raw.notna().sum(axis=1).to_numpy()
    bad = np.flatnonzero(counts != n_fields)
    if not len(bad):
        return
    # line numbers: blank lines were skipped, so count them back from the file
    with _opener(path) as fh:
        nonblank = [k + 1 for k, ln in enumerate(fh) if ln.strip()][1:]
    k = int(bad[0])
    line = nonblank[k] if k < len(nonblank) else k + 2
    raise DataError(
        f"{path}: line {line} has {counts[k]} fields, the header has {n_fields} "
        f"({len(bad)} line(s) differ). In a whitespace-delimited file an empty field cannot be "
        "told from a separator, so the values after it would move to the wrong columns: write "
        "NA for a missing value, or use a tab- or comma-delimited file"
    )


def _decimal_comma_hint(sep: str) -> str:
    """Why a comma-delimited line may have too many fields: a decimal comma splits numbers."""
    if sep != ",":
        return ""
    return (
        " (a decimal comma, e.g. 3,5, in a comma-delimited file splits the number: "
        "use a semicolon- or tab-delimited file with --decimal ,)"
    )


def _raise_long_rows(path: Path, sep: str, n_fields: int) -> None:
    """Error naming the first line with more fields than the header (error path only)."""
    raw = pd.read_csv(
        path,
        sep=sep,
        header=None,
        skiprows=1,
        dtype=str,
        keep_default_na=False,
        names=range(4 * n_fields + 8),
        engine="python",
        skip_blank_lines=False,
        encoding="utf-8-sig",
    )
    counts = raw.notna().sum(axis=1).to_numpy()
    bad = np.flatnonzero(counts > n_fields)
    k = int(bad[0]) if len(bad) else 0
    raise DataError(
        f"{path}: line {k + 2} has {counts[k]} fields, the header has {n_fields} "
        f"(delimiter {sep!r}; {len(bad)} such line(s)){_decimal_comma_hint(sep)}"
    )


def read_table(path, *, str_columns=(), what: str = "table", na_values=(), decimal: str = ".") -> pd.DataFrame:
    """Read a delimited text table with a header line (see the module notes).

    Parameters
    ----------
    path : str or Path
    str_columns : iterable of str
        Columns read as text (ids: ``001`` stays ``001``).
    what : str
        What the file is, for messages ("phenotype file").
    na_values : iterable of str or numbers
        Extra missing-value codes, e.g. ``["-9"]``.
    decimal : {".", ","}
        Decimal mark of the numbers.

    Returns
    -------
    DataFrame with ``attrs["path"]``, ``attrs["sep"]``, ``attrs["na_values"]``.
    """
    p = Path(path)
    if decimal not in (".", ","):
        raise DataError(f"decimal must be '.' or ',', not {decimal!r}")
    sep = detect_delimiter(p)
    if decimal == "," and sep == ",":
        raise DataError(
            f"{p}: a comma-delimited file cannot use decimal commas; use a semicolon- or tab-delimited file"
        )
    with open(p, "rb") as fh:
        head = fh.read(4)
    if not p.name.endswith(".gz") and b"\x00" in head:
        raise DataError(f"{p}: this is a binary file, not a delimited text {what}")
    names = header_names(p, sep)
    check_unique_header(p, names)
    if sep == r"\s+":
        _check_whitespace_fields(p, len(names))
    extra = [str(v).strip() for v in na_values]
    dtype = {c: str for c in str_columns if c in names}
    frame = _parse(p, sep, dtype, extra, decimal, len(names), what)
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise DataError(f"{p}: the {what} has a header but no rows")
    frame.attrs.update(path=str(p), sep=sep, na_values=extra, decimal=decimal)
    return frame


def _parse(p: Path, sep: str, dtype: dict, extra: list, decimal: str, n_fields: int, what: str) -> pd.DataFrame:
    """pandas' reader with henderson's missing-value codes; a row with more fields than
    the header, a tokenising error or bytes that are not UTF-8 are errors naming the line."""
    try:
        # index_col=False: a row with more fields than the header must not turn the first
        # column into the index; pandas then warns (and drops the field): an error below
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            frame = pd.read_csv(
                p,
                sep=sep,
                dtype=dtype,
                na_values=list(NA_VALUES) + [DOT] + extra,
                keep_default_na=True,
                decimal=decimal,
                index_col=False,
                engine="python" if sep == r"\s+" else "c",
                encoding="utf-8-sig",
            )
        if any(issubclass(w.category, pd.errors.ParserWarning) for w in caught):
            _raise_long_rows(p, sep, n_fields)
    except pd.errors.ParserError as err:
        m = _TOKENIZE.search(str(err))
        if m:
            exp, line, saw = m.groups()
            raise DataError(
                f"{p}: line {line} has {saw} fields, the header has {exp} (delimiter {sep!r}){_decimal_comma_hint(sep)}"
            ) from err
        raise DataError(f"{p}: cannot parse as a delimited {what} ({str(err).strip()})") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{p}: not a UTF-8 text {what} (byte {err.start}: {err.reason})") from err
    return frame


def _raw_column(frame: pd.DataFrame, column: str) -> pd.Series:
    """The column's cells as written (text, nothing read as missing)."""
    p = Path(frame.attrs["path"])
    sep = frame.attrs["sep"]
    raw = pd.read_csv(
        p,
        sep=sep,
        usecols=[column],
        dtype=str,
        keep_default_na=False,
        na_values=[],
        engine="python" if sep == r"\s+" else "c",
        encoding="utf-8-sig",
    )[column]
    return raw.str.strip()


def trait_values(frame: pd.DataFrame, trait: str, ids: pd.Series) -> tuple[pd.Series, list[str]]:
    """The trait column as float (NaN = missing), and warnings about missing-value codes.

    Raises a DataError naming file, line, id and value for text that is not a number,
    with a hint when the value has a decimal comma.
    """
    src = frame.attrs.get("path", "<table>")
    declared = set(frame.attrs.get("na_values", []))
    col = frame[trait]
    y = pd.to_numeric(col, errors="coerce")
    bad = y.isna() & col.notna()
    if bad.any():
        rows = np.flatnonzero(bad.to_numpy())
        r = int(rows[0])
        value = col.iloc[r]
        hint = ""
        if _DECIMAL_COMMA.match(str(value)):
            hint = (
                f"; it looks like a decimal comma ({int(col[bad].astype(str).str.match(_DECIMAL_COMMA).sum())} "
                "such value(s)): pass --decimal , (decimal=',')"
            )
        raise DataError(
            f"{src}: non-numeric value {value!r} in column {trait!r} (line {r + 2}, id {ids.iloc[r]!r}){hint}"
        )
    notes = _missing_code_notes(frame, trait, src, declared) + _suspect_code_notes(y, trait, src)
    return y.astype(float), notes


def _missing_code_notes(frame: pd.DataFrame, trait: str, src: str, declared: set) -> list[str]:
    """How many cells of a file's trait column were read as missing: '.' and each declared code."""
    notes: list[str] = []
    if "path" in frame.attrs:
        raw = _raw_column(frame, trait)
        if len(raw) == len(frame):
            n_dot = int((raw == DOT).sum())
            if n_dot and DOT not in declared:
                notes.append(
                    f"{src}: {n_dot} value(s) '.' in column {trait!r} read as missing "
                    f"(lines {_lines(np.flatnonzero(raw.to_numpy() == DOT) + 2)})"
                )
            for code in declared:
                n = int((raw == code).sum())
                if n:
                    notes.append(
                        f"{src}: {n} value(s) {code!r} in column {trait!r} read as missing "
                        "(declared missing-value code)"
                    )
    return notes


def _suspect_code_notes(y: pd.Series, trait: str, src: str) -> list[str]:
    """Values such as -9 or 0 below every other value: common missing-value codes, kept as values."""
    notes: list[str] = []
    v = y.to_numpy(dtype=float)
    for code in SUSPECT_CODES:
        hit = v == code
        if not hit.any():
            continue
        others = v[~np.isnan(v) & ~np.isin(v, SUSPECT_CODES)]
        if others.size and code >= others.min():
            continue  # inside the range of the other values: an ordinary value
        lines = np.flatnonzero(hit) + 2
        notes.append(
            f"{src}: {int(hit.sum())} value(s) {code:g} in column {trait!r}, all below every other "
            f"value (lines {_lines(lines)}): {code:g} is a common missing-value code. "
            f"If it means missing, pass --na-values {code:g} (na_values=['{code:g}']); it is kept "
            "as a value"
        )
    return notes


def _lines(numbers, limit: int = 10) -> str:
    """Line numbers for a message: ``5, 9, 12`` (``... and k more`` past ``limit``)."""
    numbers = [str(int(x)) for x in numbers]
    more = len(numbers) - limit
    return ", ".join(numbers[:limit]) + (f" ... and {more} more" if more > 0 else "")


def repeated_ids(ids: pd.Series, y: pd.Series, src: str, trait: str) -> tuple[np.ndarray, list[str]]:
    """Keep mask and notes for ids that occur more than once in a one-record-per-id file.

    Exact repeats (same id, same value) are dropped and counted; the same id with
    different values is an error naming the ids and lines (an animal has one value in
    these models; repeated records need a permanent-environment term, e.g. ``henderson
    fit`` with ``(1|id)``).
    """
    ids = pd.Series(ids.to_numpy(dtype=object))
    keep = np.ones(len(ids), bool)
    dup = ids.duplicated(keep=False).to_numpy()
    if not dup.any():
        return keep, []
    frame = pd.DataFrame({"id": ids, "y": y.to_numpy(dtype=float), "line": np.arange(len(ids)) + 2})
    sub = frame[dup]
    n_values = sub.groupby("id", sort=False)["y"].agg(lambda v: pd.unique(v.to_numpy()).size)
    conflict = n_values[n_values > 1].index
    if len(conflict):
        shown = []
        for i in conflict[:5]:
            rows = sub[sub["id"] == i]
            shown.append(
                f"{i!r} (lines {', '.join(map(str, rows['line'][:4]))}: values "
                f"{', '.join(f'{x:g}' for x in rows['y'][:4])})"
            )
        raise DataError(
            f"{src}: {len(conflict)} id(s) have more than one record with different values of "
            f"{trait!r}: {'; '.join(shown)}{' ...' if len(conflict) > 5 else ''}. This command fits "
            "one record per individual: average the records or keep one; if they are replicates "
            "of the same line or clone, pass --repeated-records (one_record_per_id=False); with "
            "a permanent-environment effect, use henderson fit with '+ (1|pe)'"
        )
    exact = frame.duplicated(subset=["id", "y"], keep="first").to_numpy()
    keep &= ~exact
    return keep, [
        f"{src}: {int(exact.sum())} exact repeated record(s) (same id and value) dropped: "
        + format_ids(pd.unique(ids[exact]))
    ]


def read_phenotypes(
    path, trait: str, *, id_column: str = "id", na_values=(), decimal: str = ".", one_record_per_id: bool = False
) -> pd.Series:
    """A trait from a phenotype file, as a float Series indexed by id (text).

    Parameters
    ----------
    path : str or Path
        Delimited text with a header line (delimiter detected).
    trait, id_column : str
    na_values : iterable of str or numbers
        Missing-value codes, e.g. ``["-9"]``; counted in a DataWarning.
    decimal : {".", ","}
    one_record_per_id : bool
        An id repeated with different values is an error naming it; exact repeats are
        dropped and counted. Default False: repeated ids are repeated records.

    Warns
    -----
    DataWarning
        ``.`` read as missing; -9/-99/-999 below every other value (kept); declared
        codes; exact repeats dropped. Each gives the count and lines.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "pheno.csv"
    >>> _ = f.write_text("id,yield\\na,1.5\\nb,-9\\nc,2.0\\n")
    >>> y = read_phenotypes(f, "yield", na_values=["-9"])
    >>> int(y.notna().sum()), y.index.tolist()
    (2, ['a', 'b', 'c'])
    """
    y, _ = phenotype_records(
        path, trait, id_column=id_column, na_values=na_values, decimal=decimal, one_record_per_id=one_record_per_id
    )
    return y


def phenotype_records(
    path,
    trait: str,
    *,
    id_column: str = "id",
    na_values=(),
    decimal: str = ".",
    one_record_per_id: bool = False,
    option_names: dict | None = None,
):
    """(y Series by id, the file's frame restricted to the records kept); see :func:`read_phenotypes`.

    ``option_names`` maps ``id_column``/``trait`` to the command-line option naming
    them, for the missing-column message.
    """
    frame = read_table(path, str_columns=[id_column], what="phenotype file", na_values=na_values, decimal=decimal)
    src = frame.attrs["path"]
    opt = option_names or {}
    for col, key in ((id_column, "id_column"), (trait, "trait")):
        if col not in frame.columns:
            hint = f" (see {opt[key]})" if key in opt else ""
            raise DataError(f"{src}: no column {col!r}{hint}; present columns: {format_ids(frame.columns, limit=20)}")
    ids = frame[id_column]
    if ids.isna().any():
        raise DataError(
            f"{src}: missing id in column {id_column!r} on line(s) "
            f"{format_ids((np.flatnonzero(ids.isna().to_numpy()) + 2).tolist())}"
        )
    y, notes = trait_values(frame, trait, ids)
    ids = ids.astype(str).str.strip()
    whole = ids.str.extract(_FLOAT_ID, expand=False)
    if whole.notna().any():  # 12.0 is individual 12, as in pedigrees (io.pedigree)
        n = int(whole.notna().sum())
        notes.append(
            f"{src}: {n} id(s) written as whole-number decimals read as integers "
            f"(e.g. {ids[whole.notna()].iloc[0]!r} as {str(int(whole.dropna().iloc[0]))!r})"
        )
        ids = ids.where(whole.isna(), whole.dropna().astype(int).astype(str).reindex(ids.index))
    if one_record_per_id:
        keep, more = repeated_ids(ids, y, src, trait)
        notes += more
        if not keep.all():
            frame, ids, y = frame[keep], ids[keep], y[keep]
    for note in notes:
        warnings.warn(DataWarning(note), stacklevel=3)
    y = pd.Series(y.to_numpy(dtype=float), index=pd.Index(ids.to_numpy(dtype=object), name="id"), name=trait)
    return y, frame

"""Reading the command line's input files: tables (delimiter detected), genotypes,
pedigrees and relationship matrices; SHA-256 checksums of every input.

Every error names the file, and where possible the line, column and id.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from ..errors import DataError, DataWarning, HendersonError, format_ids


def sha256(path) -> str:
    """SHA-256 of a file (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def input_files(path) -> list[Path]:
    """The files behind an input: the file itself, or each file of a PLINK prefix / GCTA GRM set."""
    p = Path(path)
    if p.is_file():
        if p.suffix in (".bed", ".bim", ".fam"):  # a PLINK set named by one of its files
            return [q for q in (p.with_suffix(e) for e in (".bed", ".bim", ".fam")) if q.is_file()]
        return [p]
    return [
        q
        for q in (Path(str(p) + ext) for ext in (".bed", ".bim", ".fam", ".grm.bin", ".grm.N.bin", ".grm.id"))
        if q.is_file()
    ]


def checksums(path) -> list[dict]:
    """``[{"path", "sha256", "bytes"}]`` for every file behind an input (see :func:`input_files`)."""
    return [{"path": str(q), "sha256": sha256(q), "bytes": q.stat().st_size} for q in input_files(path)]


# ----------------------------------------------------------------------------- errors

#: Errors a third-party reader (pandas, bed-reader, cyvcf2, gzip) raises on a malformed
#: file. Raised while reading a user's file they are the file's fault, not henderson's.
_READ_ERRORS = (OSError, ValueError, EOFError, UnicodeDecodeError, pd.errors.ParserError)


def _names_file(msg: str, path: Path) -> bool:
    return str(path) in msg or path.name in msg or path.stem in msg.split("'")


def _first(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return "; ".join(lines[:3]) or type(exc).__name__


def _renamed(err: HendersonError, path: Path) -> HendersonError:
    """The same error with the file name in front of its message."""
    msg = f"{path}: {err}"
    try:
        new = type(err)(msg)
    except TypeError:  # pragma: no cover - an error class with another signature
        new = DataError(msg)
    new.__dict__.update(err.__dict__)
    return new


@contextmanager
def reading(path, what: str = "file"):
    """Every error while reading ``path`` becomes one line naming it.

    henderson's own errors get the file name in front when they lack it; a reader's
    OSError/ValueError (a truncated .bed, a VCF htslib cannot parse, an empty CSV) becomes
    a :class:`DataError` naming the file, and so does a bare ``Exception`` (cyvcf2's way of
    refusing a record). Other exception types are bugs and pass through (the CLI reports
    them as internal errors).
    """
    p = Path(path)

    def explain(err):
        text = _first(err)
        extra = getattr(err, "c_messages", None)
        return text + (f" [reported by the reader: {_joined(extra)}]" if extra else "")

    try:
        yield
    except HendersonError as err:
        if _names_file(str(err), p):
            raise
        raise _renamed(err, p) from err
    except (FileNotFoundError, IsADirectoryError, PermissionError) as err:
        if err.filename is not None:
            raise
        raise DataError(f"{p}: {what} cannot be opened: {_first(err)}") from err
    except pd.errors.EmptyDataError as err:
        raise DataError(f"{p}: the {what} is empty (no header line, no data)") from err
    except _READ_ERRORS as err:
        raise DataError(f"{p}: cannot read this {what}: {explain(err)}") from err
    except Exception as err:  # noqa: BLE001 - cyvcf2 raises bare Exception on bad records
        if type(err) is not Exception:  # any other type (TypeError, ...) is a bug: passes through
            raise
        raise DataError(f"{p}: cannot read this {what}: {explain(err)}") from err


@contextmanager
def c_stderr_to_warnings(path):
    """Capture what C libraries (htslib) write to file descriptor 2 while reading ``path``.

    htslib prints its own ``[W::...]`` lines straight to stderr, bypassing Python. After
    a successful read they become one henderson warning naming the file; if the read
    fails they are attached to the exception (``exc.c_messages``) so that
    :func:`reading` puts them in the one-line error.
    """
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):  # pytest capture, no real stderr
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    tmp = tempfile.TemporaryFile(mode="w+b")
    os.dup2(tmp.fileno(), fd)
    failed = None
    try:
        yield
    except BaseException as err:
        failed = err
        raise
    finally:
        sys.stderr.flush()
        os.dup2(saved, fd)
        os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode("utf-8", "replace")
        tmp.close()
        lines = list(dict.fromkeys(ln.strip() for ln in text.splitlines() if ln.strip()))
        if failed is not None:
            try:
                failed.c_messages = lines
            except AttributeError:  # pragma: no cover - exceptions without __dict__
                pass
        elif lines:
            warnings.warn(DataWarning(f"{Path(path)}: the VCF library reported: {_joined(lines)}"), stacklevel=3)


def _joined(lines: list[str], n: int = 3) -> str:
    return "; ".join(lines[:n]) + (f" (and {len(lines) - n} more)" if len(lines) > n else "")


def detect_delimiter(path) -> str:
    """The delimiter of a text table (see :func:`henderson.io.tables.detect_delimiter`)."""
    from ..io.tables import detect_delimiter as detect

    return detect(path)


def _need_file(path) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(2, "No such file or directory", str(p))
    if p.is_dir():
        raise IsADirectoryError(21, "Is a directory", str(p))
    return p


def read_table(path, *, str_columns=(), what: str = "table", na_values=(), decimal: str = ".") -> pd.DataFrame:
    """Read a delimited table with a header line; ``str_columns`` are read as text ids.

    The checks (duplicated header names, whitespace field counts, decimal commas,
    missing-value codes) are :func:`henderson.io.tables.read_table`'s.
    """
    from ..io.tables import read_table as read

    p = _need_file(path)
    with reading(p, what):
        return read(p, str_columns=str_columns, what=what, na_values=na_values, decimal=decimal)


def require_columns(frame: pd.DataFrame, columns, what: str = "file", option: str | None = None) -> None:
    """Error naming the missing column(s) and the present ones."""
    src = frame.attrs.get("path", what)
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        hint = f" (see {option})" if option else ""
        raise DataError(
            f"{src}: no column {format_ids(absent)}{hint}; present columns: {format_ids(frame.columns, limit=20)}"
        )


def read_phenotypes(
    path,
    trait: str,
    id_column: str = "id",
    fixed: str | None = None,
    *,
    na_values=(),
    decimal: str = ".",
    one_record_per_id: bool = False,
):
    """Phenotypes file → (y Series indexed by id, data frame indexed by id, full frame).

    Missing-value codes, decimal commas and (with ``one_record_per_id``) repeated ids
    are handled as :mod:`henderson.io.tables` describes; its DataWarnings reach the
    command's warnings. With ``one_record_per_id`` the frame keeps only the records used.
    """
    from ..io.tables import phenotype_records

    p = _need_file(path)
    with reading(p, "phenotype file"):
        y, frame = phenotype_records(
            p,
            trait,
            id_column=id_column,
            na_values=na_values,
            decimal=decimal,
            one_record_per_id=one_record_per_id,
            option_names={"id_column": "--id-column", "trait": "--trait"},
        )
    ids = pd.Series(y.index.to_numpy(dtype=object))
    data = None
    if fixed:
        from ..spec.formula import fixed_variables

        cols = [c for c in fixed_variables(fixed) if c in frame.columns]
        data = frame.drop(columns=[id_column]).copy()
        data.index = pd.Index(ids.to_numpy(dtype=object), name="id")
        data = data[cols] if cols else data
        # text columns are factors; make them plain object strings for the formula engine
        for c in data.columns:
            if not pd.api.types.is_numeric_dtype(data[c]):
                data[c] = data[c].astype(object)
    return y, data, frame


def read_genotypes_file(path, coding: str | None = None):
    """Genotypes from a PLINK prefix/.bed, VCF or CSV/TSV matrix (first column id).

    Every error names the file (see :func:`reading`): the readers check a PLINK set's
    .bed against its .bim/.fam and name duplicated ids with their lines themselves.
    """
    from contextlib import nullcontext

    from ..io.genotypes import genotype_format, read_genotypes

    p = Path(path)
    if not p.exists() and not Path(str(p) + ".bed").exists():
        raise FileNotFoundError(2, "No such file or directory", str(p))
    fmt = genotype_format(p)
    what = {"plink": "PLINK file set", "vcf": "VCF file"}.get(fmt, "genotype table")
    with reading(p, what), c_stderr_to_warnings(p) if fmt == "vcf" else nullcontext():
        return read_genotypes(p, coding=coding)


def read_pedigree_file(
    path,
    id: str = "id",
    sire: str = "sire",
    dam: str = "dam",
    selfing: bool = False,
    missing=None,
    birth_year: str | None = None,
):
    """A pedigree file (delimiter detected); columns named by the options.

    ``missing`` (--missing-parent) replaces the default unknown-parent codes;
    ``birth_year`` (--birth-year) names a column checked for parents born after their
    offspring. A column that is not in the file is an error listing the file's columns
    and naming --ped-columns (or --birth-year).

    Returns ``(pedigree, notes)``: the reader's warnings (added founders, ...) as text,
    for the command to print and keep in summary.json. The pedigree's inbreeding
    warnings (animals with F near 1) are among them.
    """
    from ..io.pedigree import DEFAULT_MISSING, read_pedigree
    from ..io.tables import detect_delimiter, header_names

    p = _need_file(path)
    with reading(p, "pedigree file"):
        names = header_names(p, detect_delimiter(p))
    absent = [c for c in (id, sire, dam) if c not in names]
    if absent:
        raise DataError(
            f"{p}: no column {format_ids(absent)} (see --ped-columns, the id,sire,dam column "
            f"names, now {id},{sire},{dam}); present columns: {format_ids(names, limit=20)}"
        )
    if birth_year and birth_year not in names:
        raise DataError(
            f"{p}: no column {birth_year!r} (see --birth-year); present columns: {format_ids(names, limit=20)}"
        )
    codes = DEFAULT_MISSING if missing is None else tuple(missing) + ("",)
    with reading(p, "pedigree file"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # --selfing is read_pedigree's monoecious=: sire = dam is a selfing, an id may be both
        ped = read_pedigree(p, id=id, sire=sire, dam=dam, monoecious=selfing, missing=codes, birth_year=birth_year)
    notes = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    return ped, notes


def read_relationship_file(path, kind: str = "K"):
    """A relationship matrix: GCTA binary (``.grm.bin`` / prefix) or a square CSV with an id column."""
    from ..relationships.grm_io import read_gcta_grm

    p = Path(path)
    if str(p).endswith(".grm.bin") or str(p).endswith(".grm") or Path(str(p) + ".grm.bin").exists():
        prefix = str(p).removesuffix(".bin").removesuffix(".grm")
        if not Path(prefix + ".grm.bin").exists():
            raise FileNotFoundError(2, "No such file or directory", prefix + ".grm.bin")
        with reading(prefix + ".grm.bin", "GCTA GRM file set"):
            return read_gcta_grm(prefix, kind=kind)
    from ..io.tables import detect_delimiter, header_names

    p = _need_file(p)
    with reading(p, "relationship matrix"):
        head = header_names(p, detect_delimiter(p))
    # the id column is text: ids 001..080 must stay 001..080 to match the header's names
    frame = read_table(p, str_columns=head[:1], what="relationship matrix")
    with reading(p, "relationship matrix"):
        return _relationship_from_frame(p, frame, kind)


def _relationship_from_frame(p: Path, frame: pd.DataFrame, kind: str):
    from ..relationships.container import Relationship

    first = frame.columns[0]
    ids = frame[first].astype(str).str.strip()
    body = frame.drop(columns=first)
    body.index = pd.Index(ids.to_numpy(dtype=object), name="id")
    body.columns = [str(c) for c in body.columns]
    nonnum = [c for c in body.columns if not pd.api.types.is_numeric_dtype(body[c])]
    if nonnum:
        c = nonnum[0]
        v = pd.to_numeric(body[c], errors="coerce")
        r = int((v.isna() & body[c].notna()).to_numpy().nonzero()[0][0]) if (v.isna() & body[c].notna()).any() else 0
        raise DataError(f"{p}: non-numeric value {body[c].iloc[r]!r} in column {c!r} (line {r + 2})")
    if body.shape[0] != body.shape[1]:
        raise DataError(
            f"{p}: a relationship matrix needs as many rows as columns after the id "
            f"column; got {body.shape[0]} rows and {body.shape[1]} columns"
        )
    if body.isna().any().any():
        r, c = [x[0] for x in body.isna().to_numpy().nonzero()]
        raise DataError(f"{p}: missing value at line {r + 2}, column {body.columns[c]!r}")
    try:
        rel = Relationship.from_frame(body, kind=kind)
    except DataError as err:
        raise DataError(f"{p}: {err}") from err
    return Relationship(rel.ids, rel.matrix, kind=kind, info={"file": str(p)})


# ----------------------------------------------------------------------------- line numbers


def file_line(frame: pd.DataFrame, row: int) -> int:
    """The line of the file (1-based) holding data row ``row`` of a frame from :func:`read_table`.

    The reader skips blank lines, so the row position plus 2 (header, 0-based) is not
    always the line a user finds in an editor: count the non-blank lines instead.
    """
    path = frame.attrs.get("path")
    if path is None:
        return row + 2
    lines = []
    from ..io.tables import _opener

    with _opener(Path(path)) as fh:
        for i, line in enumerate(fh, 1):
            if line.strip():
                lines.append(i)
                if len(lines) > row + 1:
                    return lines[row + 1]
    return row + 2


def require_numeric(frame: pd.DataFrame, column: str, option: str, id_column: str | None = None) -> None:
    """DataError naming the file, line, column and value of the first non-numeric entry."""
    col = frame[column]
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return
    bad = pd.to_numeric(col, errors="coerce").isna() & col.notna()
    if not bad.any():
        return
    r = int(bad.to_numpy().nonzero()[0][0])
    src = frame.attrs.get("path", "data")
    who = f", {id_column} {frame[id_column].iloc[r]!r}" if id_column and id_column in frame else ""
    from ..io.tables import _DECIMAL_COMMA

    hint = "; it looks like a decimal comma: pass --decimal ," if _DECIMAL_COMMA.match(str(col.iloc[r])) else ""
    raise DataError(
        f"{src}: non-numeric value {col.iloc[r]!r} in column {column!r} (line {file_line(frame, r)}"
        f"{who}; {int(bad.sum())} such value(s)); the response of {option} must be a number "
        f"or empty/NA for a missing record{hint}"
    )


def count_response_codes(frame: pd.DataFrame, column: str, id_column: str | None = None) -> None:
    """Warn (DataWarning) about '.', declared codes and -9/-99/-999 in a response column.

    The same counting as the phenotype readers (:func:`henderson.io.tables.trait_values`),
    for commands that read a general data table (``henderson fit``).
    """
    from ..io.tables import trait_values

    ids = frame[id_column] if id_column and id_column in frame else pd.Series(range(len(frame)))
    for note in trait_values(frame, column, ids.reset_index(drop=True))[1]:
        warnings.warn(DataWarning(note), stacklevel=2)


def prepare_genotypes(geno, *, maf: float | None = None, call_rate: float | None = None):
    """Genotypes ready for a model: missing calls counted, individuals without any call
    dropped (counted), and the --maf / --call-rate filters applied (counted).

    Returns ``(genotypes, report, notes)``: ``report`` is JSON-ready (summary.json's
    ``genotypes`` entry, for the report's genotype section) with the missing calls of the
    genotypes as read (:func:`henderson.io.qc.call_report`), what was removed and why;
    ``notes`` are the warnings to print.
    """
    from ..io.qc import call_report, describe_calls, genotype_qc

    calls = call_report(geno)
    report: dict = {"as_read": calls.summary, "filters": {"maf": maf, "call_rate": call_rate}}
    notes = [describe_calls(calls.summary)] if calls.summary["n_missing_calls"] else []
    none = calls.summary["individuals_without_calls"]
    if none:
        keep = geno.ids[~pd.Index(geno.ids).isin(none)]
        if not len(keep):
            raise DataError("no genotyped individual has a single call")
        geno = geno.subset(ids=keep)
        notes.append(f"{len(none)} individual(s) without any genotype call dropped: {format_ids(none)}")
    report["individuals_without_calls_dropped"] = list(none)
    if maf or call_rate:
        out = genotype_qc(
            geno,
            min_maf=maf or 0.0,
            min_call_rate=call_rate or 0.0,
            min_individual_call_rate=call_rate or 0.0,
            drop_monomorphic=bool(maf),
        )
        counts = out.genotypes.info["qc"]
        report["qc"] = counts
        removed_ind = out.individual_report.index[~out.individual_report["kept"]]
        report["individuals_removed"] = [str(i) for i in removed_ind]
        fails = ", ".join(
            f"{v} {k.removeprefix('n_snps_failed_').replace('_', ' ')}"
            for k, v in counts.items()
            if k.startswith("n_snps_failed_") and v
        )
        notes.append(
            f"genotype filters (--maf {maf or 0:g}, --call-rate {call_rate or 0:g}): removed "
            f"{counts['n_snps_removed']} of {counts['n_snps_in']} SNPs"
            + (f" ({fails})" if fails else "")
            + f" and {counts['n_individuals_removed']} of {counts['n_individuals_in']} individuals"
            + (f" ({format_ids(removed_ind)})" if len(removed_ind) else "")
        )
        geno = out.genotypes
    report["used"] = {"n_individuals": geno.n, "n_snps": geno.p}
    return geno, report, notes

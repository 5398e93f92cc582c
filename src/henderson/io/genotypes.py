"""Read genotypes from PLINK binary, VCF/BCF and numeric CSV/TSV files; write PLINK.

Counted allele (``snps.allele1``, see :mod:`henderson.data.genotypes`):

* PLINK ``.bed``: the A1 allele (5th ``.bim`` column), as PLINK 1.9 counts it
  (:mod:`henderson.io._plink`). :func:`write_plink` writes with the same convention,
  so a round trip is the identity.
* VCF/BCF: the ALT allele (:mod:`henderson.io._vcf`); ``allele2`` is REF.
* numeric matrices: whatever the file counts, in one of the codings below.

Codings of numeric matrices (``coding=``; stored as int8 counts 0/1/2 of the
counted allele, or float dosages):

============ ==================================================== ==========
coding       file values                                          stored as
============ ==================================================== ==========
``"012"``    0/1/2 copies of the counted allele                   0/1/2
``"-101"``   copies minus one: -1/0/1 (rrBLUP, sommer)            value + 1
``"01"``     inbred (homozygous) lines: 0 = homozygous for the    0/2
             other allele, 1 = homozygous for the counted allele
             (e.g. DArT presence/absence in inbred lines). A 1 is
             *not* a heterozygote.
``"dosage"`` reals in [0, 2] (imputed dosages)                    float
============ ==================================================== ==========

When ``coding`` is omitted it is detected, and the detection always says what it
chose and why (a :class:`DataWarning`; ``info["coding"]``, ``info["coding_detected"]``
and ``info["coding_evidence"]`` keep it): a -1 with no 2 means ``"-101"``; a 2 with no
-1 means ``"012"``. Values all in {0, 1} are ambiguous -- 0/1/2 counts without a
single homozygote 2, -1/0/1 without a single -1, or inbred lines coded 0/1 whose
counts are 0/2 -- and choosing wrongly halves or doubles every genomic variance, so
that case is an error asking for ``coding=``.
"""

from __future__ import annotations

import csv
import gzip
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.genotypes import MISSING, Genotypes
from ..errors import DataError, DataWarning, GenotypeError, format_ids
from ._plink import plink_prefix, read_plink, write_plink
from ._vcf import read_vcf

__all__ = ["read_genotypes", "write_plink", "CODINGS"]

#: file values allowed by each integer coding, and what they are stored as
_CODES = {"012": (0, 1, 2), "-101": (-1, 0, 1), "01": (0, 1)}
_STORE = {"012": {0: 0, 1: 1, 2: 2}, "-101": {-1: 0, 0: 1, 1: 2}, "01": {0: 0, 1: 2}}
CODINGS = ("012", "-101", "01", "dosage")
_MEANING = {
    "012": "counts 0/1/2 of the counted allele",
    "-101": "counts minus one (-1/0/1), stored as 0/1/2",
    "01": "inbred lines, 0/1 = homozygous, stored as counts 0/2",
    "dosage": "real-valued dosages in [0, 2]",
}


def genotype_format(path: Path) -> str:
    """``plink``, ``vcf`` or ``csv`` (numeric matrix), from the file name."""
    name = path.name.lower()
    if plink_prefix(path) is not None:
        return "plink"
    if name.endswith((".vcf", ".vcf.gz", ".vcf.bgz", ".bcf")):
        return "vcf"
    if name.removesuffix(".gz").endswith((".csv", ".tsv", ".txt")):
        return "csv"
    raise DataError(
        f"cannot tell the genotype format of {str(path)!r} from its name; pass format='plink', 'vcf' or 'csv'",
        parameter="format",
        value=None,
    )


def read_genotypes(path, *, format: str | None = None, coding: str | None = None, field: str = "GT") -> Genotypes:
    """Read a genotype file into :class:`Genotypes`.

    Parameters
    ----------
    path : str or Path
        PLINK prefix or ``.bed``/``.bim``/``.fam`` file; ``.vcf``, ``.vcf.gz``,
        ``.bcf``; or a numeric matrix ``.csv``/``.tsv``/``.txt`` (optionally ``.gz``):
        header line ``id,SNP1,SNP2,...``, one row per individual. Ids are read as
        text (``001`` stays ``001``).
    format : {"plink", "vcf", "csv"}, optional
        Detected from the file name when omitted.
    coding : {"012", "-101", "01", "dosage"}, optional
        Numeric matrices only; see the module notes for what each means. Detected
        (with a :class:`DataWarning` naming the coding and the evidence) when omitted;
        data holding only 0 and 1 are ambiguous and need it.
    field : {"GT", "DS"} or other FORMAT field
        VCF only: hard calls (``GT``, int8) or a dosage field (float, NaN missing).

    Returns
    -------
    Genotypes, shape (n individuals, p SNPs); ``info`` records the file, format,
    ``coding`` (and whether it was detected), counted allele, anything skipped and,
    for PLINK, ``fid`` (a Series by id).

    Raises
    ------
    GenotypeError
        A code outside the coding (naming id, SNP column and line), an ambiguous
        coding, a malformed or inconsistent file (naming the file and what is wrong).
    """
    path = Path(path)
    fmt = format or genotype_format(path)
    if coding is not None and fmt != "csv":
        raise DataError(
            f"coding= applies to numeric CSV/TSV matrices, not to {fmt} files", parameter="coding", value=coding
        )
    if fmt == "plink":
        return read_plink(path)
    if fmt == "vcf":
        return read_vcf(path, field)
    if fmt == "csv":
        return _read_matrix(path, coding)
    raise DataError(f"unknown genotype format {fmt!r}; use 'plink', 'vcf' or 'csv'")


def _header(path: Path) -> tuple[str, list[str]]:
    """Delimiter (from the header line) and the raw header names."""
    opener = gzip.open if path.name.endswith(".gz") else open
    if not path.exists():
        raise DataError(f"genotype file not found: {path}")
    try:
        with opener(path, "rt", encoding="utf-8-sig") as fh:
            first = fh.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as err:
        raise GenotypeError(f"{path}: cannot read the header line ({err})") from err
    sep = next((c for c in ("\t", ",", ";") if c in first), None)
    names = next(csv.reader([first], delimiter=sep)) if sep else first.split()
    return sep or r"\s+", [n.strip() for n in names]


def _checked_header(path: Path) -> tuple[str, list[str]]:
    """(separator, column names) of a matrix file: an id column, SNP columns, unique names."""
    sep, names = _header(path)
    if len(names) < 2:
        raise GenotypeError(f"{path}: the header line needs an id column and at least one SNP column")
    seen = pd.Index(names)
    if seen.has_duplicates:  # pandas would silently rename the second 'm1' to 'm1.1'
        dup = seen[seen.duplicated()].unique()
        cols = [str(k + 1) for k, nm in enumerate(names) if nm in set(dup)]
        raise GenotypeError(
            f"{path}: duplicated column name(s) in the header: {format_ids(dup)} "
            f"(columns {', '.join(cols[:10])}); SNP ids must be unique"
        )
    return sep, names


def _check_numeric(body: pd.DataFrame, ids, snp_ids, line, path: Path) -> None:
    """Every genotype cell is a number or missing; the first other cell is named by id, SNP and line."""
    for j, col in enumerate(body.columns):  # only non-numeric columns are inspected
        if not pd.api.types.is_numeric_dtype(body[col]):
            num = pd.to_numeric(body[col], errors="coerce")
            r = int(np.flatnonzero(num.isna().to_numpy() & body[col].notna().to_numpy())[0])
            raise GenotypeError(
                f"{path.name}: non-numeric genotype {body[col].iloc[r]!r} for id {ids[r]!r}, "
                f"SNP {snp_ids[j]!r} (line {line[r]}, column {j + 2})"
            )


def _read_matrix(path: Path, coding: str | None) -> Genotypes:
    if coding is not None and coding not in CODINGS:
        raise DataError(f"coding must be one of {', '.join(repr(c) for c in CODINGS)}, not {coding!r}")
    sep, names = _checked_header(path)
    frame, line = _rows_of(path, sep, names)
    ids = frame[names[0]].str.strip().to_numpy(dtype=object)
    dup = pd.Index(ids).duplicated(keep=False)
    if dup.any():
        shown = [f"{i!r} (line {ln})" for i, ln in zip(ids[dup][:10], line[dup][:10])]
        raise GenotypeError(f"{path.name}: duplicated individual id(s): " + ", ".join(shown))
    body = frame.drop(columns=names[0])
    snp_ids = names[1:]
    _check_numeric(body, ids, snp_ids, line, path)
    v = body.to_numpy(dtype=np.float64, na_value=np.nan)
    detected = coding is None
    evidence = "declared"
    if coding is None:
        coding, evidence = _detect_coding(v, path)
    d = _decode(v, coding, detected, ids, snp_ids, line, path)
    if detected:  # announced only once the values are known to fit the coding
        warnings.warn(
            f"{path.name}: genotype coding detected as '{coding}' ({_MEANING[coding]}): {evidence}. "
            "Pass coding= to state it.",
            DataWarning,
            stacklevel=3,
        )
    info = {
        "file": str(path),
        "format": "csv",
        "coding": coding,
        "coding_detected": detected,
        "coding_evidence": evidence,
    }
    return Genotypes(ids, snp_ids, d, info)


def _rows_of(path: Path, sep: str, names: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """The file's non-blank rows (every id present, no short row) and their line numbers."""
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            skip_blank_lines=False,
            na_values=["NA", "."],
            low_memory=False,
            dtype={names[0]: str},
            encoding="utf-8-sig",
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise GenotypeError(f"{path}: cannot parse ({err})") from err
    frame.columns = names
    id_col = names[0]
    line = np.arange(len(frame)) + 2  # header is line 1; blank lines are kept as rows
    blank = frame.isna().all(axis=1).to_numpy()
    _check_short_rows(path, sep, len(names), frame[names[-1]].isna().to_numpy() & ~blank, line)
    frame, line = frame.loc[~blank], line[~blank]
    if frame[id_col].isna().any():
        bad = line[frame[id_col].isna().to_numpy()]
        raise GenotypeError(f"{path.name}: missing individual id on line(s) {format_ids(bad)}")
    return frame, line


def _check_short_rows(path: Path, sep: str, n_fields: int, candidates: np.ndarray, line: np.ndarray) -> None:
    """A row with fewer fields than the header is an error naming its line.

    pandas fills a short row with NaN, which would read as missing calls at the last
    SNPs. Only rows whose last cell is empty can be short, so the raw lines are
    inspected only when there are such rows (no cost for a complete file).
    """
    if not candidates.any():
        return
    opener = gzip.open if path.name.endswith(".gz") else open
    want = set(line[candidates].tolist())
    with opener(path, "rt", encoding="utf-8-sig") as fh:
        for k, text in enumerate(fh, start=1):
            if k not in want:
                continue
            text = text.rstrip("\r\n")
            got = len(text.split()) if sep == r"\s+" else text.count(sep) + 1
            if got < n_fields:
                raise GenotypeError(
                    f"{path.name}: line {k} has {got} fields, the header has {n_fields} (id + "
                    f"{n_fields - 1} SNPs): the row is incomplete (write NA for a missing call)"
                )


def _detect_coding(v: np.ndarray, path: Path) -> tuple[str, str]:
    """(coding, evidence) from the values present; GenotypeError when only 0/1 occur."""
    finite = v[~np.isnan(v)]
    if finite.size and not np.array_equal(finite, np.round(finite)):
        # never guessed: real values could as well be centred or standardised scores
        return "012", "non-integer values occur"
    values = np.unique(finite).astype(np.int64)
    shown = "{" + ", ".join(str(x) for x in values[:8]) + (", ..." if len(values) > 8 else "") + "}"
    has_neg, has_two = bool((values == -1).any()), bool((values == 2).any())
    if has_neg and not has_two:
        return "-101", f"values {shown} occur: a -1 and no 2"
    if has_two and not has_neg:
        return "012", f"values {shown} occur: a 2 and no -1"
    if set(values.tolist()) <= {0, 1}:
        raise GenotypeError(
            f"{path}: the genotypes hold only the values {shown}, which is ambiguous: counts "
            "0/1/2 with no homozygote 2 (coding='012'), -1/0/1 with no -1 (coding='-101'), or "
            "inbred lines coded 0/1 = homozygous, i.e. counts 0/2 (coding='01'). The choice "
            "changes every genomic relationship and variance by a factor of up to 2: pass coding= "
            "to declare it"
        )
    # both -1 and 2, or codes outside every coding: report the first offending cell as '012'
    return "012", f"values {shown} occur"


def _decode(v, coding, detected, ids, snp_ids, line, path) -> np.ndarray:
    miss = np.isnan(v)
    if coding == "dosage":
        bad = ~miss & ((v < 0) | (v > 2))
        allowed = "reals in [0, 2]"
    else:
        bad = ~miss & ~np.isin(v, _CODES[coding])
        allowed = "/".join(str(c) for c in _CODES[coding])
    if bad.any():
        r, c = np.argwhere(bad)[0]  # first offending cell in file order
        hint = " (coding detected; pass coding= to declare it)" if detected else ""
        if detected and not np.array_equal(v[~miss], np.round(v[~miss])):
            hint = " (non-integer values: pass coding='dosage' for dosage data)"
        raise GenotypeError(
            f"{path.name}: genotype {v[r, c]:g} for id {ids[r]!r}, SNP {snp_ids[c]!r} "
            f"(line {line[r]}, column {c + 2}) is outside coding '{coding}' ({allowed}){hint}"
        )
    if coding == "dosage":
        return v
    table = _STORE[coding]
    out = np.full(v.shape, MISSING, dtype=np.int8)
    for code, stored in table.items():  # at most three vectorised passes
        out[v == code] = stored
    return out

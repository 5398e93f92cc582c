"""The :class:`Genotypes` container: a dosage matrix that carries its ids and SNP map.

Conventions (used by every reader and by :mod:`henderson.relationships.genomic`):

* ``dosages[j, i]`` is the number of copies of SNP ``i``'s **counted allele**,
  ``snps.allele1[i]``, carried by individual ``ids[j]``.  For PLINK files this is the
  A1 allele (bed-reader ``count_A1=True``, PLINK's own convention); for VCF it is the
  ALT allele; for numeric matrices it is whatever the file counted.
* Integer genotypes are stored as ``int8`` 0/1/2 with :data:`MISSING` (-127, the
  bed-reader code) for a missing call; dosage data (e.g. VCF ``DS``) are stored as
  float with ``NaN`` for missing.
* Allele frequencies are those of the counted allele over non-missing calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from ..errors import DataError, GenotypeError, format_ids
from ._ids import str_ids
from ._kernels import column_sums_int8

#: Code of a missing call in int8 genotype matrices (bed-reader's convention).
MISSING = -127

SNP_COLUMNS = ("snp", "chrom", "pos", "allele1", "allele2")


def default_block_size(n: int, bytes_per_value: int = 8, target_mb: float = 64.0) -> int:
    """SNPs per block so that an ``n x block`` float block takes about ``target_mb``."""
    return int(max(256, min(8192, target_mb * 2**20 // max(1, n * bytes_per_value))))


def _snp_table(snps, p: int) -> pd.DataFrame:
    if snps is None:
        snps = [f"snp{i + 1}" for i in range(p)]
    if not isinstance(snps, pd.DataFrame):
        snps = pd.DataFrame({"snp": str_ids(snps)})
    snps = snps.reset_index(drop=True).copy()
    if "snp" not in snps.columns:
        raise DataError(f"SNP table needs a 'snp' column, has {list(snps.columns)}")
    defaults = {"chrom": "0", "pos": 0, "allele1": "", "allele2": ""}
    for col, val in defaults.items():
        if col not in snps.columns:
            snps[col] = val
    snps["snp"] = snps["snp"].astype(str).astype(object)
    snps["chrom"] = snps["chrom"].astype(str).astype(object)
    snps["pos"] = pd.to_numeric(snps["pos"]).astype(np.int64)
    for col in ("allele1", "allele2"):
        snps[col] = snps[col].astype(str).astype(object)
    if len(snps) != p:
        raise DataError(f"SNP table has {len(snps)} rows but the dosage matrix has {p} columns")
    dup = pd.Index(snps["snp"])
    if dup.has_duplicates:
        raise DataError("duplicated SNP ids: " + format_ids(dup[dup.duplicated()].unique()))
    return snps[list(SNP_COLUMNS) + [c for c in snps.columns if c not in SNP_COLUMNS]]


#: ``info`` entries that are plain arrays by position of the ids: 1-D (n,) or 2-D (n, n).
PER_ID_INFO = ("fid", "n_snps")


def subset_info(info: dict, old_ids, new_ids) -> dict:
    """``info`` for the ids ``new_ids`` (a subset of ``old_ids``, any order).

    Per-id entries follow their ids: Series (and DataFrames) indexed by the ids are
    re-indexed by label (DataFrames with the ids as columns too), and the positional
    arrays named in :data:`PER_ID_INFO` are re-indexed by position. Everything else
    (method, counts, file names) is copied unchanged.
    """
    old = pd.Index(str_ids(old_ids))
    new = str_ids(new_ids)
    pos = old.get_indexer(new)
    out = {}
    for key, val in info.items():
        if (
            isinstance(val, (pd.Series, pd.DataFrame))
            and len(val) == len(old)
            and set(val.index.astype(str)) == set(old)
        ):
            val = val.copy()
            val.index = val.index.astype(str)
            val = val.loc[new]
            if isinstance(val, pd.DataFrame) and set(val.columns.astype(str)) == set(old):
                val.columns = val.columns.astype(str)
                val = val.loc[:, new]
        elif key in PER_ID_INFO and isinstance(val, np.ndarray) and val.shape[:1] == (len(old),):
            val = val[pos] if val.ndim == 1 else val[np.ix_(pos, pos)]
        out[key] = val
    return out


def _check_codes(d: np.ndarray, ids=None, snp_ids=None, rows: int = 1024) -> None:
    """Refuse integer codes other than 0/1/2/MISSING and floats outside [0, 2].

    Checked in row chunks so the boolean temporaries stay small for large matrices;
    the error names the individual and SNP ids of the first offending cell.
    """
    for r0 in range(0, d.shape[0], rows):
        c = d[r0 : r0 + rows]
        if c.dtype == np.int8:
            if c.max(initial=0) <= 2 and c.min(initial=0) >= 0:
                continue  # fast path: no bad code possible (and nothing missing)
            bad = (c > 2) | ((c < 0) & (c != MISSING))
            what = f"is not 0, 1, 2 or the missing code {MISSING}"
        else:
            bad = ~(np.isnan(c) | ((c >= 0) & (c <= 2)))
            what = "is outside [0, 2]"
        if bad.any():
            r, j = np.argwhere(bad)[0]
            who = f"id {ids[r0 + r]!r}" if ids is not None else f"row {r0 + r}"
            snp = f"SNP {snp_ids[j]!r}" if snp_ids is not None else f"column {j}"
            raise GenotypeError(f"genotype {c[r, j]:g} for {who}, {snp} {what}")


@dataclass(frozen=True, eq=False)
class Genotypes:
    """Genotypes of ``n`` individuals at ``p`` SNPs, with ids and SNP map.

    Parameters
    ----------
    ids : array-like of str, shape (n,)
        Individual ids, unique.
    snps : DataFrame, shape (p, >=5), or list of SNP ids
        Columns ``snp`` (unique id), ``chrom``, ``pos``, ``allele1`` (the counted
        allele), ``allele2``. Missing columns are filled with placeholders.
    dosages : ndarray, shape (n, p)
        ``int8`` counts 0/1/2 with :data:`MISSING` for missing calls, or float
        dosages in [0, 2] with ``NaN`` for missing.
    info : dict
        Provenance (file, format, counted allele, skipped sites, ...).

    Notes
    -----
    Immutable: ``copy.deepcopy`` returns the object itself, so scikit-learn's
    ``clone`` never duplicates a large genotype matrix.
    """

    ids: np.ndarray
    snps: pd.DataFrame
    dosages: np.ndarray
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        ids = str_ids(self.ids)
        d = np.asarray(self.dosages)
        if d.ndim != 2:
            raise DataError(f"dosages must be a 2-D (individuals x SNPs) array, got shape {d.shape}")
        if d.dtype != np.int8:
            if np.issubdtype(d.dtype, np.integer) or d.dtype == bool:
                raise DataError(
                    f"integer genotypes must be int8 0/1/2 with missing code {MISSING}, got {d.dtype}"
                    " (use Genotypes.from_frame to convert)"
                )
            if d.dtype not in (np.float32, np.float64):
                d = d.astype(np.float64)
        if d.shape[0] != len(ids):
            raise DataError(f"dosage matrix has {d.shape[0]} rows but {len(ids)} ids")
        dup = pd.Index(ids)
        if dup.has_duplicates:
            raise DataError("duplicated individual ids: " + format_ids(dup[dup.duplicated()].unique()))
        snps = _snp_table(self.snps, d.shape[1])
        _check_codes(d, ids, snps["snp"].to_numpy())
        d = d.view()  # a read-only view: the caller's array keeps its own flags
        d.flags.writeable = False
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "snps", snps)
        object.__setattr__(self, "dosages", d)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, snps=None, info=None) -> Genotypes:
        """Build from a DataFrame indexed by id with one column per SNP (counts 0/1/2).

        Integer-valued data become int8 (NaN -> :data:`MISSING`); anything else is
        kept as float64 dosage.
        """
        values = frame.to_numpy(dtype=np.float64, na_value=np.nan)
        miss = np.isnan(values)
        finite = values[~miss]
        if np.array_equal(finite, np.round(finite)):
            d = np.where(miss, MISSING, values).astype(np.int8)
            if not ((finite >= 0) & (finite <= 2)).all():
                _check_codes(np.where(miss, np.nan, values), frame.index.astype(str), frame.columns.astype(str))
        else:
            d = values
        if snps is None:
            snps = [str(c) for c in frame.columns]
        return cls(np.asarray(frame.index.astype(str)), snps, d, dict(info or {}))

    # immutable: share instead of copying
    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self

    @property
    def n(self) -> int:
        """Number of individuals."""
        return self.dosages.shape[0]

    @property
    def p(self) -> int:
        """Number of SNPs."""
        return self.dosages.shape[1]

    @property
    def snp_ids(self) -> np.ndarray:
        return self.snps["snp"].to_numpy(dtype=object)

    @property
    def is_integer(self) -> bool:
        """True for int8 hard calls, False for float dosages."""
        return self.dosages.dtype == np.int8

    def missing_mask(self, cols=slice(None)) -> np.ndarray:
        """Boolean (n, p_block) mask of missing calls for SNP columns ``cols``."""
        block = self.dosages[:, cols]
        return block == MISSING if self.is_integer else np.isnan(block)

    @cached_property
    def _column_stats(self) -> tuple[np.ndarray, np.ndarray]:
        if self.is_integer:  # one numba pass over the int8 codes
            return column_sums_int8(self.dosages, MISSING)
        # Blocked so that no full-size float or bool copy of the matrix is made.
        total = np.zeros(self.p)
        called = np.zeros(self.p, dtype=np.int64)
        for cols in self.block_slices():
            miss = self.missing_mask(cols)
            block = self.dosages[:, cols]
            called[cols] = self.n - miss.sum(axis=0)
            total[cols] = np.where(miss, 0, block).sum(axis=0, dtype=np.float64)
        return total, called

    @property
    def n_called(self) -> np.ndarray:
        """Number of non-missing calls per SNP, shape (p,)."""
        return self._column_stats[1]

    @property
    def call_rate(self) -> np.ndarray:
        """Fraction of non-missing calls per SNP, shape (p,)."""
        return self.n_called / max(self.n, 1)

    @cached_property
    def n_missing(self) -> int:
        """Total number of missing calls."""
        return int(self.n * self.p - self.n_called.sum())

    @property
    def allele_freq(self) -> np.ndarray:
        """Frequency of the counted allele per SNP over non-missing calls, shape (p,).

        ``NaN`` for a SNP with no call at all.
        """
        total, called = self._column_stats
        with np.errstate(invalid="ignore", divide="ignore"):
            return total / (2.0 * called)

    def block_slices(self, block_size: int | None = None) -> Iterator[slice]:
        """Slices of consecutive SNP columns, ``block_size`` SNPs each."""
        b = block_size or default_block_size(self.n)
        for start in range(0, self.p, b):
            yield slice(start, min(start + b, self.p))

    def centered(self, block_size: int | None = None, allele_freq=None) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(cols, W_block)`` with ``W = X - 2p`` (float64, shape (n, b)).

        Missing calls get ``W = 0``, i.e. they are mean-imputed at ``2p``.
        ``allele_freq`` defaults to the observed frequencies.
        """
        p = self.allele_freq if allele_freq is None else np.broadcast_to(np.asarray(allele_freq, float), (self.p,))
        for cols in self.block_slices(block_size):
            block = self.dosages[:, cols].astype(np.float64)
            w = block - 2.0 * p[cols]
            w[self.missing_mask(cols)] = 0.0
            yield cols, w

    def subset(self, ids=None, snps=None) -> Genotypes:
        """Genotypes of ``ids`` (in that order) at ``snps`` (ids, in that order).

        Raises :class:`DataError` naming every unknown individual or SNP id.
        """
        rows = slice(None) if ids is None else _positions(self.ids, ids, "individual")
        cols = slice(None) if snps is None else _positions(self.snp_ids, snps, "SNP")
        d = self.dosages[rows][:, cols] if ids is not None else self.dosages[:, cols]
        snp_table = self.snps if snps is None else self.snps.iloc[cols].reset_index(drop=True)
        new_ids = self.ids if ids is None else self.ids[rows]
        info = dict(self.info) if ids is None else subset_info(self.info, self.ids, new_ids)
        return Genotypes(new_ids, snp_table, np.ascontiguousarray(d), info)

    def to_frame(self) -> pd.DataFrame:
        """DataFrame indexed by id, one column per SNP id; missing calls as ``NaN``.

        Integer genotypes without missing calls keep ``int8``; otherwise float64.
        """
        d = self.dosages
        if self.is_integer and self.n_missing:
            d = np.where(d == MISSING, np.nan, d.astype(np.float64))
        return pd.DataFrame(d, index=pd.Index(self.ids, name="id"), columns=self.snp_ids)

    def __repr__(self) -> str:
        kind = "int8 calls" if self.is_integer else f"{self.dosages.dtype} dosages"
        return f"Genotypes(n={self.n}, p={self.p}, {kind}, missing={self.n_missing})"


def _positions(have: np.ndarray, want, what: str) -> np.ndarray:
    want = [str(w) for w in np.atleast_1d(np.asarray(want, dtype=object))]
    pos = pd.Index(have).get_indexer(want)
    if (pos < 0).any():
        unknown = [w for w, q in zip(want, pos) if q < 0]
        raise DataError(f"{len(unknown)} unknown {what} id(s): " + format_ids(unknown))
    return pos

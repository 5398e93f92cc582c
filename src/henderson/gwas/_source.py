"""Genotypes as SNP blocks: in memory (:class:`~henderson.Genotypes`) or read from PLINK.

Association tests touch every SNP once, so the genotypes need not be in memory: a
PLINK fileset is read block by block (bed-reader reads a slab of SNP columns for the
chosen individuals), and peak memory is one n × block slab whatever the number of
SNPs. Every block comes back as float64 centred counts, W = X − 2p, with missing calls
set to 0 (mean imputation, as :func:`~henderson.genomic_relationship` does).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data._ids import str_ids
from ..data.genotypes import MISSING, Genotypes, default_block_size
from ..errors import DataError, format_ids


class GenotypeSource:
    """Ids, SNP map and blocks of centred genotypes, from memory or a PLINK fileset.

    Parameters
    ----------
    genotypes : Genotypes, or str / Path of a PLINK fileset (prefix or ``.bed``)
    block_size : int, optional
        SNPs per block (default: about 64 MB of float64 per block).
    """

    def __init__(self, genotypes, block_size: int | None = None):
        self._bed: Any = None  # a bed_reader.open_bed (untyped) for a PLINK fileset
        self.geno: Genotypes | None = None
        if isinstance(genotypes, Genotypes):
            self.geno = genotypes
            self.ids = np.asarray(genotypes.ids, dtype=object)
            self.snps = genotypes.snps
            self.label = "genotypes"
        elif isinstance(genotypes, (str, Path)):
            from ..io._plink import plink_prefix

            prefix = plink_prefix(Path(genotypes))
            if prefix is None:
                raise DataError(
                    f"association streams PLINK filesets only: no {genotypes}.bed found "
                    "(read other formats with henderson.read_genotypes and pass the Genotypes)"
                )
            from bed_reader import open_bed

            self._bed = open_bed(Path(f"{prefix}.bed"), count_A1=True)
            self.ids = np.asarray(self._bed.iid, dtype=object).astype(str).astype(object)
            self.snps = pd.DataFrame(
                {
                    "snp": self._bed.sid,
                    "chrom": self._bed.chromosome,
                    "pos": self._bed.bp_position,
                    "allele1": self._bed.allele_1,
                    "allele2": self._bed.allele_2,
                }
            ).astype({"snp": str, "chrom": str, "pos": np.int64})
            self.label = f"PLINK fileset {prefix}"
        else:
            raise DataError(
                f"genotypes must be henderson.Genotypes or the path of a PLINK fileset, not {type(genotypes).__name__}"
            )
        self.block_size = block_size
        self.p = len(self.snps)

    def rows_of(self, ids, what: str) -> np.ndarray:
        """Positions of ``ids`` in the genotypes; absent ids are an error naming them."""
        ids = str_ids(ids)
        pos = pd.Index(self.ids).get_indexer(ids)
        if (pos < 0).any():
            bad = pd.unique(ids[pos < 0])
            raise DataError(
                f"{len(bad)} individual(s) of {what} are not in the {self.label}: "
                + format_ids(bad)
                + "; the genotypes must hold every individual of the model"
            )
        return pos

    def raw_blocks(
        self, rows: np.ndarray | None = None, snp_idx: np.ndarray | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(idx, codes)``: SNP positions and the (n_rows, b) calls of those SNPs.

        int8 counts with :data:`MISSING` for no call (float dosages with NaN for
        in-memory float genotypes); ``snp_idx`` (sorted positions) restricts the SNPs.
        """
        n = len(self.ids) if rows is None else len(rows)
        b = self.block_size or default_block_size(n)
        idx_all = np.arange(self.p) if snp_idx is None else np.asarray(snp_idx, dtype=np.int64)
        for start in range(0, len(idx_all), b):
            idx = idx_all[start : start + b]
            contiguous = idx.size and idx[-1] - idx[0] + 1 == idx.size
            cols = slice(int(idx[0]), int(idx[-1]) + 1) if contiguous else idx
            if self.geno is not None:
                d = self.geno.dosages
                block = d[:, cols] if rows is None else (d[rows, cols] if contiguous else d[np.ix_(rows, idx)])
            else:
                r = np.s_[:] if rows is None else rows
                block = self._bed.read(index=np.s_[r, cols], dtype="int8", order="F")
            yield idx, block

    def allele_freq(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Frequency of the counted allele over the calls of ``rows`` (default all), shape (p,).

        NaN for a SNP without calls.
        """
        if rows is not None and len(rows) == len(self.ids) and np.array_equal(rows, np.arange(len(self.ids))):
            rows = None  # every individual in file order: the stored frequencies, no pass
        if self.geno is not None and rows is None:
            return np.asarray(self.geno.allele_freq, dtype=float)
        freq = np.empty(self.p)
        for idx, block in self.raw_blocks(rows):
            called = ~np.isnan(block) if block.dtype != np.int8 else block != MISSING
            with np.errstate(invalid="ignore", divide="ignore"):
                freq[idx] = np.where(called, block, 0).sum(0) / (2.0 * called.sum(0))
        return freq

    def centred_blocks(self, rows, freq: np.ndarray, snp_idx=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(idx, W_b)``: (n_rows, b) float64 W = X − 2p of SNPs ``idx``, missing calls 0."""
        for idx, block in self.raw_blocks(rows, snp_idx):
            w = np.asarray(block, dtype=np.float64)
            miss = np.isnan(w) if block.dtype != np.int8 else block == MISSING
            w -= 2.0 * freq[idx]
            w[miss] = 0.0
            yield idx, w

    def centred_blocks32(self, rows, freq: np.ndarray, snp_idx=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """As :meth:`centred_blocks`, but W_b is float32 in Fortran order (for ``strsm`` in place).

        One pass per block (:func:`~henderson.gwas._blocks32.centre_f32`); the float32
        rounding of x − 2p (relative 6e-8) is below that of the float32 solve it feeds.
        """
        from ._blocks32 import centre_f32

        for idx, block in self.raw_blocks(rows, snp_idx):
            out = np.empty(block.shape, dtype=np.float32, order="F")
            yield idx, centre_f32(block, 2.0 * np.asarray(freq[idx], dtype=np.float64), out)

    def genotypes_of(self, snp_idx) -> Genotypes:
        """In-memory :class:`Genotypes` of all individuals at SNPs ``snp_idx`` (for kernels)."""
        snp_idx = np.asarray(snp_idx, dtype=np.int64)
        if self.geno is not None:
            return self.geno.subset(snps=self.snps["snp"].to_numpy()[snp_idx])
        d = self._bed.read(index=np.s_[:, snp_idx], dtype="int8", order="C")
        return Genotypes(self.ids, self.snps.iloc[snp_idx].reset_index(drop=True), d, {"file": self.label})

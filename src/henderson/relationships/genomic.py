"""Genomic relationship matrices (G) from SNP genotypes, and G/A22 tools.

Every function takes and returns matrices with ids (:class:`Relationship`).
Notation: ``x_ji`` is the count (0/1/2) of SNP ``i``'s counted allele in individual
``j``, ``p_i`` its frequency, ``q_i = 1 - p_i``, ``W = X - 2p`` (centred), ``m`` the
number of SNPs used.

Computation. G is accumulated over blocks of SNPs with BLAS SYRK, so peak memory is
the n x n result (plus an n x n float32 accumulator on the float32 path) and one
n x block slab; no Python loop runs over SNPs or individuals except over blocks.
Each block is filled in one numba pass (:mod:`henderson.data._kernels`) straight
from the int8 codes into a single reused scratch buffer -- centring, per-SNP
weights, dominance codes, the missing-call count and Yang's diagonal term all at
once -- so no float copy, boolean mask or gathered copy of a block is made
(tested with tracemalloc: result + 1.25 blocks for every method).

* Exact float32 path (``method="vanraden1"``, hard calls, blocks without missing
  calls): the raw integer codes' cross-product ``X_b X_b'`` is accumulated with
  ``ssyrk``. Every partial sum is a non-negative integer <= 4m, and float32
  represents integers below 2**24 exactly, so the product is *exact*; the
  accumulator is flushed into float64 before 4m could reach 2**24. Centring is then
  applied once in float64 by rank-one corrections,
  ``WW' = XX' - s1' - 1s' + (c'c)11'`` with ``c = 2p`` and ``s = Xc``; the only
  rounding is float64 rounding of these few terms, so the result equals the direct
  float64 computation to ~1e-13 (tested to 1e-10).
* float64 path: everything else (``dtype="float64"``; blocks containing missing
  calls, whose mean-imputed value 2p is not an integer; float dosages; and the
  per-SNP weighted methods ``vanraden2``/``yang``/``vitezica``, whose weights
  1/(2pq) are not representable exactly in float32). The centred/weighted block is
  formed in float64 and accumulated with ``dsyrk``.

Missing calls are mean-imputed: their centred value is 0 (``x = 2p``) and, for
``yang``'s diagonal, their term is 0. GCTA instead divides each pair by its own
count of jointly called SNPs; the two agree when nothing is missing.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.linalg import blas

from .._progress import report
from ..data._kernels import fill_codes_f32, fill_float_block, fill_table_block, mirror_lower
from ..data.genotypes import Genotypes, default_block_size
from ..errors import DataError, DataWarning, GenotypeError, format_ids
from .container import Relationship

METHODS = ("vanraden1", "vanraden2", "yang", "vitezica")
_EXACT_F32 = 2**24  # float32 integers are exact below this


def _resolve_freq(geno: Genotypes, allele_freq) -> tuple[np.ndarray, str]:
    """Allele frequencies of the counted allele, shape (p,), and their source label."""
    if allele_freq is None or (isinstance(allele_freq, str) and allele_freq == "observed"):
        return np.asarray(geno.allele_freq, dtype=np.float64), "observed"
    if isinstance(allele_freq, str):
        raise DataError(f"allele_freq must be 'observed', a number or an array, not {allele_freq!r}")
    if isinstance(allele_freq, pd.Series):
        # matched by SNP id, never by position
        idx = pd.Index(allele_freq.index.astype(str)).get_indexer(geno.snp_ids)
        if (idx < 0).any():
            raise DataError(
                f"allele_freq lacks {int((idx < 0).sum())} SNP(s) of the genotypes: "
                + format_ids(geno.snp_ids[idx < 0])
            )
        p, src = allele_freq.to_numpy(dtype=np.float64)[idx], "supplied (matched by SNP id)"
    elif np.ndim(allele_freq) == 0:
        p, src = np.full(geno.p, float(allele_freq)), f"fixed {float(allele_freq)}"
    else:
        p, src = np.asarray(allele_freq, dtype=np.float64), "supplied"
        if p.shape != (geno.p,):
            raise DataError(f"allele_freq has shape {p.shape}, expected ({geno.p},) (one per SNP)")
    bad = ~((p >= 0) & (p <= 1))
    if bad.any():
        raise DataError("allele frequencies outside [0, 1] for SNP(s): " + format_ids(geno.snp_ids[bad]))
    return p, src


def _syrk(acc: np.ndarray, block_t: np.ndarray) -> None:
    """acc += block_t' block_t in the lower triangle, in place (acc is F-ordered)."""
    if acc.dtype == np.float32:  # ssyrk ran clean at 24,000 × 1,024 (linalg.dense_safe)
        out = blas.ssyrk(1.0, block_t, beta=1.0, c=acc, trans=1, lower=1, overwrite_c=1)
    else:  # threaded dsyrk of ≥ 16k rows can segfault in OpenBLAS: split above 12k
        from ..linalg import dense_safe

        out = dense_safe.syrk_lower(block_t, trans=True, beta=1.0, c=acc)
    if out is not acc:  # f2py copied: should not happen with F-ordered acc of the right dtype
        acc[...] = out


def _finish_lower(acc: np.ndarray, acc32, s: np.ndarray, cc: float, scale: float, chunk: int = 512) -> None:
    """acc <- (acc + acc32 - s1' - 1s' + cc 11') / scale on the lower triangle, then mirror.

    Works on column chunks in place (mixed float32/float64 adds are buffered by
    numpy in small pieces), and mirrors with a tiled kernel: no n x n temporary.
    """
    n = acc.shape[0]
    for c0 in range(0, n, chunk):
        c1 = min(c0 + chunk, n)
        col = acc[:, c0:c1]
        if acc32 is not None:
            col += acc32[:, c0:c1]
        col -= s[:, None]
        col -= s[None, c0:c1]
        col += cc
        col /= scale
    mirror_lower(acc)


class _Scratch:
    """One reusable block buffer: float32 and float64 views over the same bytes.

    Keeping a single buffer (grown, never duplicated) is what bounds the peak memory
    of :func:`genomic_relationship` to the n x n result plus one block.
    """

    def __init__(self):
        self._raw = np.empty(0, np.uint8)

    def view(self, dtype, n: int, b: int) -> np.ndarray:
        nbytes = n * b * np.dtype(dtype).itemsize
        if self._raw.size < nbytes:
            self._raw = None  # free the old buffer before allocating the larger one
            self._raw = np.empty(nbytes, np.uint8)
        return self._raw[:nbytes].view(dtype).reshape(n, b)


def _code_tables(method: str, p: np.ndarray, pq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-SNP value of codes 0, 1, 2 in the block, shape (b, 3), and Yang's diagonal extra.

    vanraden1: x - 2p; vanraden2/yang: (x - 2p)/sqrt(2pq); vitezica: -2p², 2pq, -2q²
    (Vitezica et al. 2013). ``extra`` (yang only, else shape (0, 3)) is
    (x² - (1+2p)x + 2p²)/(2pq) - w², Yang et al.'s diagonal term minus the plain one.
    """
    x = np.arange(3.0)[None, :]
    pc = p[:, None]
    if method == "vitezica":
        qc = 1.0 - pc
        return np.hstack([-2.0 * pc**2, 2.0 * pc * qc, -2.0 * qc**2]), np.empty((0, 3))
    w = x - 2.0 * pc
    if method == "vanraden1":
        return w, np.empty((0, 3))
    w = w / np.sqrt(2.0 * pq[:, None])
    if method == "yang":
        t = (x * x - (1.0 + 2.0 * pc) * x + 2.0 * pc * pc) / (2.0 * pq[:, None])
        return w, t - w * w
    return w, np.empty((0, 3))


def genomic_relationship(
    geno,
    method: str = "vanraden1",
    allele_freq=None,
    block_size: int | None = None,
    dtype: str = "auto",
    scheduler=None,
    chunk_snps: int | None = None,
) -> Relationship:
    """Genomic relationship matrix of the genotyped individuals.

    Parameters
    ----------
    geno : Genotypes or DataFrame
        ``n`` individuals x ``p`` SNPs (a DataFrame is indexed by id, counts 0/1/2).
    method : {"vanraden1", "vanraden2", "yang", "vitezica"}
        * ``vanraden1`` -- G = WW' / (2 Σ p_i q_i), VanRaden (2008) method 1
          (= rrBLUP ``A.mat``).
        * ``vanraden2`` -- G_jk = (1/m) Σ_i w_ji w_ki / (2 p_i q_i), each SNP
          standardised, diagonal by the same expression; VanRaden (2008) method 2
          (= PLINK 1.9 ``--make-rel``).
        * ``yang`` -- GCTA ``--make-grm`` (Yang et al. 2010, AJHG 88:76): off-diagonal
          as ``vanraden2``; diagonal 1 + (1/m) Σ_i (x² - (1+2p)x + 2p²)/(2pq).
        * ``vitezica`` -- dominance G_D = HH' / Σ (2 p_i q_i)², h = -2q² (x=2),
          2pq (x=1), -2p² (x=0); Vitezica et al. (2013) Genetics 195:1223.
    allele_freq : None, "observed", float, array of shape (p,) or Series by SNP id
        Frequencies of the counted allele used for centring and scaling: observed
        (default), a base-population vector, or a constant such as 0.5.
    block_size : int, optional
        SNPs per block (default: about 64 MB of float64 per block).
    dtype : {"auto", "float64", "float32"}
        ``auto`` uses the exact float32 SYRK path wherever it is exact (see the
        module notes), ``float64`` never does; ``float32`` is ``auto`` but refuses
        methods for which the float32 path does not apply.
    scheduler : dask.distributed.Client or str, optional
        Compute G on a Dask cluster, one task per ``chunk_snps`` SNPs
        (:func:`henderson.distributed.distributed_relationship`); ``geno`` may then be
        a PLINK path that the workers read themselves. Default: in-process.
    chunk_snps : int, optional
        SNPs per Dask task (with ``scheduler``).

    Returns
    -------
    Relationship
        ``kind="G"``, shape (n, n), ids = ``geno.ids``; ``info`` records the method,
        frequency source, SNPs used/skipped, scale and the blocks per path.

    Notes
    -----
    SNPs with no call are skipped, and for the per-SNP scaled methods so are SNPs
    with p q = 0 (their weight is infinite); both are counted in ``info`` and
    reported with a :class:`DataWarning`. Missing calls are mean-imputed (centred
    value 0).
    """
    if scheduler is not None:
        from .genomic_dask import distributed_relationship

        return distributed_relationship(
            geno, method, allele_freq, scheduler=scheduler, chunk_snps=chunk_snps, dtype=dtype
        )
    if isinstance(geno, (str, Path)):
        from ..io.genotypes import read_genotypes

        geno = read_genotypes(geno)
    if isinstance(geno, pd.DataFrame):
        geno = Genotypes.from_frame(geno)
    _check_arguments(geno, method, dtype)
    p, freq_src = _resolve_freq(geno, allele_freq)
    pq = p * (1.0 - p)
    use, n_nocall, n_mono = _snps_used(geno, method, p, pq)
    m = int(use.sum())
    scale = _scale(method, pq, use, m)
    n = geno.n
    try_f32 = method == "vanraden1" and geno.is_integer and dtype != "float64"
    b = block_size or default_block_size(n, 4 if try_f32 else 8)
    acc, n_blocks, n_imputed = _accumulate(geno, method, p, pq, use, scale, b, try_f32)
    g = acc.T  # C-ordered view of the (symmetric) result
    info = {
        "method": method,
        "allele_freq": freq_src,
        "n_snps": geno.p,
        "n_snps_used": m,
        "snps_used": use,  # (p,) bool: which SNPs G was built from (for pair call counts)
        "n_snps_no_call": n_nocall,
        "n_snps_monomorphic_skipped": n_mono,
        "n_missing_imputed": n_imputed,
        "scale": scale,
        "block_size": b,
        "blocks": n_blocks,
    }
    for key in ("coding", "file"):
        if key in geno.info:
            info[f"genotypes_{key}"] = geno.info[key]
    fid = geno.info.get("fid")
    if isinstance(fid, pd.Series):  # PLINK family ids, by id, for write_gcta_grm
        info["fid"] = fid.reindex(pd.Index(geno.ids))
    return Relationship(geno.ids, g, kind="G", info=info)


def _check_arguments(geno: Genotypes, method: str, dtype: str) -> None:
    if method not in METHODS:
        raise DataError(f"unknown method {method!r}; choose one of {METHODS}")
    if dtype not in ("auto", "float64", "float32"):
        raise DataError(f"dtype must be 'auto', 'float64' or 'float32', not {dtype!r}")
    if dtype == "float32" and (method != "vanraden1" or not geno.is_integer):
        raise DataError("the exact float32 path applies only to method='vanraden1' on hard calls (int8)")
    if method == "vitezica" and not geno.is_integer:
        raise GenotypeError("dominance (vitezica) needs hard genotype calls, not float dosages")


def _snps_used(geno: Genotypes, method: str, p: np.ndarray, pq: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(p,) bool mask of the SNPs G is built from, and the numbers skipped for having no
    call / p q = 0 (per-SNP scaled methods: infinite weight), warned."""
    use = np.isfinite(p) & (geno.n_called > 0)
    n_nocall = int((~use).sum())
    n_mono = 0
    if method != "vanraden1":
        mono = use & (pq <= 0)
        n_mono = int(mono.sum())
        use &= ~mono
    if n_nocall or n_mono:
        warnings.warn(
            f"genomic_relationship({method}): skipped {n_nocall} SNP(s) without calls and "
            f"{n_mono} SNP(s) with p(1-p) = 0 (infinite weight); {int(use.sum())} of {geno.p} used",
            DataWarning,
            stacklevel=3,
        )
    if not use.any():
        raise GenotypeError("no usable SNP for the genomic relationship matrix")
    _refuse_no_calls(geno)
    return use, n_nocall, n_mono


def _scale(method: str, pq: np.ndarray, use: np.ndarray, m: int) -> float:
    """The denominator of G: 2Σpq (vanraden1), Σ(2pq)² (vitezica) or m (per-SNP scaled)."""
    if method == "vanraden1":
        scale = 2.0 * pq[use].sum()
    elif method == "vitezica":
        scale = float(((2.0 * pq[use]) ** 2).sum())
    else:
        scale = float(m)
    if not scale > 0:
        raise GenotypeError("all SNPs are monomorphic at the given allele frequencies: 2Σpq = 0")
    return float(scale)


def _accumulate(geno: Genotypes, method: str, p, pq, use, scale: float, b: int, try_f32: bool):
    """G in the lower triangle of an (n, n) F-ordered array, SNP block by SNP block (exact
    float32 SYRK where it is exact, float64 otherwise), progress reported per block.

    Returns (acc, blocks per path, missing calls imputed).
    """
    part = _PartialG(geno.n, method)
    part.add(geno, p, pq, use, b, try_f32, progress=True)
    return part.finish(scale), part.n_blocks, part.n_imputed


class _PartialG:
    """Unfinished G numerator over some SNPs: Σ_b W_bW_b' before centring and scaling.

    ``acc`` (float64, lower triangle, F-ordered) holds the float64 blocks' SYRK sums;
    ``acc32`` (float32) the exact integer sums X_bX_b' of the float32 blocks, with
    ``s = Σ X_b c_b`` and ``cc = Σ c_b'c_b`` for their rank-one centring; ``diag_extra``
    Yang's diagonal terms. Partials over disjoint SNP sets add term by term
    (:meth:`merge`), so a Dask worker can reduce its share of SNP chunks into one
    partial and the client add one partial per worker
    (:mod:`henderson.relationships.genomic_dask`); :meth:`finish` applies the centring
    and 1/scale. The accumulators are allocated at their first use: on the exact
    float32 path only ``acc32`` (4n² bytes) exists until :meth:`finish`.
    """

    def __init__(self, n: int, method: str):
        self.n, self.method = n, method
        self.acc: np.ndarray | None = None
        self.acc32: np.ndarray | None = None
        self.s = np.zeros(n)
        self.cc = 0.0
        self.m32 = 0  # SNPs in the current float32 accumulator (exactness bound 4m < 2**24)
        self.diag_extra = np.zeros(n)
        self.n_blocks = {"float32": 0, "float64": 0}
        self.n_imputed = 0

    def _acc64(self) -> np.ndarray:
        if self.acc is None:
            self.acc = np.zeros((self.n, self.n), order="F")  # SYRK fills the lower triangle
        return self.acc

    def add(self, geno: Genotypes, p, pq, use, b: int, try_f32: bool, progress: bool = False) -> None:
        """Add the SNPs ``use`` of ``geno`` (frequencies ``p``, ``pq``), ``b`` SNPs per block."""
        for blk in code_blocks(geno, self.method, p, pq, use, b, try_f32, self.s, self.diag_extra):
            if blk.centring is not None:
                self._add_codes(blk.values, blk.centring)
            else:
                self.n_imputed += blk.imputed
                _syrk(self._acc64(), blk.values.T)
                self.n_blocks["float64"] += 1
            if progress and blk.end is not None:
                report(blk.end, geno.p)

    def _add_codes(self, x32: np.ndarray, c: np.ndarray) -> None:
        """X_bX_b' of a float32 block of raw codes into ``acc32`` (flushed before it stops being exact)."""
        n, b = x32.shape
        if self.acc32 is not None and 4 * (self.m32 + b) >= _EXACT_F32:
            self._acc64()[...] += self.acc32  # flush before integer sums could exceed 2**24
            self.acc32[...] = 0.0
            self.m32 = 0
        if self.acc32 is None:
            self.acc32 = np.zeros((n, n), dtype=np.float32, order="F")
        _syrk(self.acc32, x32.T)  # x32 is (n, b) C-order: its transpose is F-contiguous
        self.cc += float(c @ c)
        self.m32 += b
        self.n_blocks["float32"] += 1

    def fold(self) -> None:
        """Add ``acc32`` into ``acc`` when both exist and drop it (one accumulator to send)."""
        if self.acc is not None and self.acc32 is not None:
            self.acc += self.acc32
            self.acc32, self.m32 = None, 0

    def state(self) -> dict:
        """The partial as plain arrays and numbers (what a Dask task returns)."""
        return {
            "acc": self.acc,
            "acc32": self.acc32,
            "s": self.s,
            "cc": self.cc,
            "diag_extra": self.diag_extra,
            "n_imputed": self.n_imputed,
            "n_blocks": dict(self.n_blocks),
        }

    def merge_state(self, st: dict) -> None:
        """Add a :meth:`state`'s vectors and counts (its accumulators are added by the caller)."""
        self.s += st["s"]
        self.cc += st["cc"]
        self.diag_extra += st["diag_extra"]
        self.n_imputed += st["n_imputed"]
        for k in self.n_blocks:
            self.n_blocks[k] += st["n_blocks"][k]

    def merge(self, other: _PartialG) -> None:
        """self += other (partials over disjoint SNP sets); ``other``'s arrays may be reused."""
        if other.acc is not None:
            if self.acc is None:
                self.acc = other.acc
            else:
                self.acc += other.acc
        if other.acc32 is not None:
            self._acc64()[...] += other.acc32  # integer sums, exact in float64
        self.s += other.s
        self.cc += other.cc
        self.diag_extra += other.diag_extra
        self.n_imputed += other.n_imputed
        for k in self.n_blocks:
            self.n_blocks[k] += other.n_blocks[k]

    def finish(self, scale: float) -> np.ndarray:
        """The n x n G (F-ordered, symmetric) from the partial sums; the partial is spent."""
        acc = self._acc64()
        _finish_lower(acc, self.acc32, self.s, self.cc, scale)
        if self.method == "yang":
            acc[np.diag_indices(self.n)] += self.diag_extra / scale + 1.0
        self.acc = self.acc32 = None
        return acc


def _refuse_no_calls(geno: Genotypes) -> None:
    """An individual without a single call has no genomic relationship to anyone: its
    row of G would be all zeros (every call mean-imputed), a silent nonsense."""
    if not geno.n_missing:
        return
    from ..io.qc import _row_missing

    none = geno.ids[_row_missing(geno) == geno.p]
    if len(none):
        raise GenotypeError(
            f"{len(none)} individual(s) have no genotype call at any SNP: {format_ids(none)}; "
            "remove them (genotype_qc(min_individual_call_rate=...), or --call-rate on the command line)"
        )


def _span(cols: np.ndarray, no_cols: np.ndarray) -> tuple[int, np.ndarray]:
    """(first column, offsets) for the kernels: no offsets for a contiguous run."""
    c0 = int(cols[0])
    if cols[-1] - c0 + 1 == cols.size:
        return c0, no_cols
    return c0, (cols - c0).astype(np.int64)


class CodeBlock(NamedTuple):
    """One block of SNPs as :func:`code_blocks` yields it."""

    values: np.ndarray  # (n, b): float32 raw codes, or float64 centred/weighted codes
    centring: np.ndarray | None  # c = 2p of a raw-code block; None for a centred block
    end: int | None  # SNPs passed so far, on the last piece of each block (for progress)
    imputed: int  # missing calls set to 0 in a centred block


def code_blocks(geno: Genotypes, method: str, p, pq, use, b: int, try_f32: bool, s, diag_extra) -> Iterator[CodeBlock]:
    """The SNPs ``use`` of ``geno`` as blocks ready to multiply, ``b`` SNPs per block.

    On the exact float32 path (``try_f32``) a block without missing calls comes as its
    raw integer codes X_b with its centring c_b = 2p (X_b c_b is added into ``s``); any
    other block as float64 centred (weighted) sub-blocks W_b, missing calls 0, with
    Yang's diagonal terms added into ``diag_extra``; on the float32 path these hold b/2
    SNPs so that they take the bytes of one float32 block. The arrays are views of one
    scratch buffer: use each before asking for the next.
    """
    n = geno.n
    b64 = max(1, b // 2) if try_f32 else b
    scratch = _Scratch()
    no_cols = np.empty(0, np.int64)
    for start in range(0, geno.p, b):
        cols = np.flatnonzero(use[start : start + b]) + start
        if cols.size == 0:
            continue
        end = min(start + b, geno.p)
        if try_f32:
            c = 2.0 * p[cols]
            x32 = scratch.view(np.float32, n, cols.size)
            if _fill_f32(geno.dosages, cols, no_cols, c, x32, s) == 0:
                yield CodeBlock(x32, c, end, 0)
                continue
        starts = range(0, cols.size, b64)
        for k0 in starts:
            sub = cols[k0 : k0 + b64]
            w = scratch.view(np.float64, n, sub.size)
            imputed = _fill_f64(geno, method, sub, no_cols, p, pq, w, diag_extra)
            yield CodeBlock(w, None, end if k0 == starts[-1] else None, imputed)


def _fill_f32(d, cols, no_cols, c, out, s) -> int:
    c0, offs = _span(cols, no_cols)
    return fill_codes_f32(d, c0, offs, c, out, s)


def _fill_f64(geno, method, cols, no_cols, p, pq, out, diag_extra) -> int:
    """Fill ``out`` (n, b) with the centred/weighted block; returns the missing calls."""
    c0, offs = _span(cols, no_cols)
    if geno.is_integer:
        table, extra = _code_tables(method, p[cols], pq[cols])
        return fill_table_block(geno.dosages, c0, offs, table, extra, out, diag_extra)
    pc = p[cols]
    scale = np.ones(cols.size) if method == "vanraden1" else 1.0 / np.sqrt(2.0 * pq[cols])
    return fill_float_block(geno.dosages, c0, offs, 2.0 * pc, scale, pc, method == "yang", out, diag_extra)


# G against the pedigree (A22): kept in their own module, re-exported here.
from .genomic_a22 import blend, relationship_diagnostics, tune_to_pedigree  # noqa: E402,F401

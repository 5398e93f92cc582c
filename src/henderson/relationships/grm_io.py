"""Exchange relationship matrices as CSV or GCTA binary GRM files.

GCTA binary GRM (``--make-grm``, also written by PLINK ``--make-grm-bin``):

* ``<prefix>.grm.bin`` -- float32, lower triangle including the diagonal, row by
  row: G[0,0], G[1,0], G[1,1], G[2,0], ... (n(n+1)/2 values, little-endian).
* ``<prefix>.grm.N.bin`` -- float32, the same layout: number of SNPs per pair.
* ``<prefix>.grm.id`` -- two tab-separated columns FID, IID; no header.

float32 storage rounds values to ~7 significant digits (relative 6e-8).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import DataError, DataWarning, format_ids
from .container import Relationship, as_relationship

_CHUNK = 1024  # rows per chunk: bounds the temporary index masks


TRIPLET_COLUMNS = ("id1", "id2", "value")


def write_relationship_csv(rel, path, *, format: str = "auto") -> Path:
    """Write a relationship matrix (or an inverse such as A⁻¹) as CSV.

    Parameters
    ----------
    rel : Relationship or DataFrame, shape (n, n)
        Inverses are written as they are (read them back with ``inverse=True``).
    path : str or Path
    format : {"auto", "square", "triplet"}
        ``square``: header ``id,<ids...>``, one row per id (dense matrices).
        ``triplet``: header ``id1,id2,value``, the non-zero lower triangle with
        ``id1`` the row (``id1`` at or after ``id2`` in id order), rows sorted by
        row then column, every diagonal entry written (so every id appears, in order,
        even one whose diagonal is 0) -- the long format BLUPF90 and ASReml users
        exchange A⁻¹ in, with ids instead of integer codes. ``auto``: triplet for
        sparse matrices, square for dense ones.

    Returns
    -------
    Path written.
    """
    if isinstance(rel, Relationship):
        rel = as_relationship(rel, inverse=rel.inverse)
    else:
        rel = as_relationship(rel)
    if format not in ("auto", "square", "triplet"):
        raise DataError(f"format must be 'auto', 'square' or 'triplet', not {format!r}")
    if format == "auto":
        format = "triplet" if rel.is_sparse else "square"
    path = Path(path)
    if format == "square":
        rel.to_frame().to_csv(path, float_format="%.17g")
        return path
    m = rel.matrix
    low = sp.tril(m if sp.issparse(m) else sp.csr_matrix(np.asarray(m)), format="coo")
    keep = low.data != 0
    row, col, val = low.row[keep], low.col[keep], low.data[keep]
    diag_missing = np.setdiff1d(np.arange(rel.n), row[row == col])  # explicit zeros
    row = np.concatenate([row, diag_missing])
    col = np.concatenate([col, diag_missing])
    val = np.concatenate([val, np.zeros(len(diag_missing))])
    order = np.lexsort((col, row))
    pd.DataFrame({"id1": rel.ids[row[order]], "id2": rel.ids[col[order]], "value": val[order]}).to_csv(
        path, index=False, float_format="%.17g"
    )
    return path


def read_relationship_csv(path, *, kind: str = "G", inverse: bool = False) -> Relationship:
    """Read a CSV written by :func:`write_relationship_csv` (either layout).

    A file whose header is exactly ``id1,id2,value`` is read as triplets into a
    ``scipy.sparse.csr_matrix``: ids in order of first appearance (``id1`` first),
    entries of one triangle mirrored to the other (entries given in both triangles
    must agree). Anything else is a square matrix with the ids in its first column
    and header. Ids are read as text.
    """
    head = pd.read_csv(path, nrows=0)
    if tuple(str(c).strip() for c in head.columns) == TRIPLET_COLUMNS:
        ids, mat = _read_triplets(path)
        return Relationship(ids, mat, inverse=inverse, kind=kind, info={"file": str(path)})
    frame = pd.read_csv(path, dtype={head.columns[0]: str}, index_col=0)
    frame.index = frame.index.astype(str)
    frame.columns = frame.columns.astype(str)
    rel = Relationship.from_frame(frame, inverse=inverse, kind=kind)
    return Relationship(rel.ids, rel.matrix, inverse=inverse, kind=kind, info={"file": str(path)})


def _read_triplets(path) -> tuple[np.ndarray, sp.csr_matrix]:
    t = pd.read_csv(path, dtype={"id1": str, "id2": str})
    t.columns = [str(c).strip() for c in t.columns]
    if t[["id1", "id2"]].isna().any().any():
        line = int(np.flatnonzero(t[["id1", "id2"]].isna().any(axis=1).to_numpy())[0]) + 2
        raise DataError(f"{path}: missing id on line {line}")
    val = pd.to_numeric(t["value"], errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(val).any():
        line = int(np.flatnonzero(np.isnan(val))[0]) + 2
        raise DataError(f"{path}: value {t['value'].iloc[line - 2]!r} on line {line} is not a number")
    id1, id2 = t["id1"].str.strip().to_numpy(dtype=object), t["id2"].str.strip().to_numpy(dtype=object)
    ids = pd.unique(np.concatenate([id1, id2]))
    index = pd.Index(ids)
    r, c = index.get_indexer(id1), index.get_indexer(id2)
    pair = pd.DataFrame({"r": r, "c": c})
    dup = pair.duplicated(keep=False).to_numpy()
    if dup.any():
        k = int(np.flatnonzero(dup)[0])
        same = np.flatnonzero((r == r[k]) & (c == c[k])) + 2
        raise DataError(
            f"{path}: the pair ({id1[k]!r}, {id2[k]!r}) is given more than once "
            f"(lines {', '.join(str(x) for x in same[:10])})"
        )
    n = len(ids)
    off = r != c
    # mirror pairs given in one triangle only; pairs given in both must agree
    key = np.minimum(r, c).astype(np.int64) * n + np.maximum(r, c)
    both = pd.Series(key[off]).duplicated(keep=False).to_numpy()
    if both.any():
        k_off = np.flatnonzero(off)
        vals = pd.Series(val[off]).groupby(key[off]).agg(["min", "max"])
        bad = vals.index[~np.isclose(vals["min"], vals["max"], rtol=1e-12, atol=0)]
        if len(bad):
            i, j = divmod(int(bad[0]), n)
            raise DataError(f"{path}: ({ids[j]!r}, {ids[i]!r}) and ({ids[i]!r}, {ids[j]!r}) differ: not symmetric")
        mirror = k_off[~both]
    else:
        mirror = np.flatnonzero(off)
    rows = np.concatenate([r, c[mirror]])
    cols = np.concatenate([c, r[mirror]])
    mat = sp.csr_matrix((np.concatenate([val, val[mirror]]), (rows, cols)), shape=(n, n))
    mat.sum_duplicates()
    return np.asarray(ids, dtype=object), mat


def _tril_row_major(a: np.ndarray) -> np.ndarray:
    """Lower triangle incl. diagonal, row by row, without an n x n index array."""
    n = a.shape[0]
    parts = []
    for r0 in range(0, n, _CHUNK):
        r1 = min(r0 + _CHUNK, n)
        rows = np.arange(r0, r1)[:, None]
        mask = np.arange(r1)[None, :] <= rows  # row-major boolean indexing keeps the order
        parts.append(np.asarray(a[r0:r1, :r1])[mask])
    return np.concatenate(parts)


def _from_tril(values: np.ndarray, n: int) -> np.ndarray:
    out = np.empty((n, n))
    start = 0
    for r0 in range(0, n, _CHUNK):
        r1 = min(r0 + _CHUNK, n)
        rows = np.arange(r0, r1)[:, None]
        mask = np.arange(r1)[None, :] <= rows
        cnt = int(mask.sum())
        block = np.zeros((r1 - r0, r1))
        block[mask] = values[start : start + cnt]
        start += cnt
        out[r0:r1, :r1] = block
        out[:r0, r0:r1] = block[:, :r0].T
        d = out[r0:r1, r0:r1]
        d[...] = np.tril(d) + np.tril(d, -1).T
    return out


def pair_call_counts(geno, snps=None) -> np.ndarray:
    """N_jk: the number of SNPs called in both individuals j and k, shape (n, n).

    What GCTA writes to ``.grm.N.bin``. With M the (n, m) indicator of missing calls
    over the m SNPs used, N = m − r_j − r_k + (MM')_jk, r = M1 the missing calls per
    individual; MM' is accumulated by BLAS SYRK over the SNP blocks that contain a
    missing call (float32 sums of 0/1 are exact below 2**24 SNPs).

    Parameters
    ----------
    geno : Genotypes, shape (n, p)
    snps : bool array (p,), optional
        The SNPs used (default all; ``G.info["snps_used"]`` for a G built from ``geno``).
    """
    from scipy.linalg import blas

    use = np.ones(geno.p, bool) if snps is None else np.asarray(snps, bool)
    m = int(use.sum())
    n = geno.n
    out = np.full((n, n), float(m))
    if geno.n_missing == 0:
        return out
    mm = np.zeros((n, n), dtype=np.float32, order="F")
    r = np.zeros(n)
    for cols in geno.block_slices():
        sel = np.flatnonzero(use[cols]) + cols.start
        if not sel.size:
            continue
        miss = geno.missing_mask(sel)
        if not miss.any():
            continue
        mf = np.asfortranarray(miss.T, dtype=np.float32)  # (b, n)
        mm = blas.ssyrk(1.0, mf, beta=1.0, c=mm, trans=1, lower=1, overwrite_c=1)
        r += miss.sum(axis=1)
    low = np.tril(mm.astype(np.float64))
    mm64 = low + np.tril(low, -1).T
    return out - r[:, None] - r[None, :] + mm64


def write_gcta_grm(rel, prefix, *, n_snps=None, fid=None, genotypes=None) -> Path:
    """Write ``<prefix>.grm.bin``, ``.grm.N.bin`` and ``.grm.id`` (GCTA format).

    Parameters
    ----------
    rel : Relationship or DataFrame, shape (n, n)
    prefix : str or Path
    n_snps : int or ndarray (n, n), optional
        SNPs per pair for ``.grm.N.bin``; default: from ``genotypes`` when given (the
        SNPs both individuals have called, :func:`pair_call_counts`), else
        ``rel.info["n_snps"]`` (a GRM read with :func:`read_gcta_grm`), else
        ``rel.info["n_snps_used"]`` -- only exact without missing calls, so a G with
        imputed calls written this way gets a DataWarning --, else 0.
    genotypes : Genotypes, optional
        The genotypes G was built from (same ids), for the true pair counts.
    fid : sequence of str (n,) or Series by id, optional
        Family ids; default ``rel.info["fid"]`` (G from PLINK genotypes carries the
        ``.fam`` FIDs), matched by id; FID = IID where none is known.
    """
    rel = as_relationship(rel, kind="G")
    prefix = Path(prefix)
    n = rel.n
    _tril_row_major(rel.dense()).astype("<f4").tofile(f"{prefix}.grm.bin")
    if n_snps is None and genotypes is not None:
        if list(map(str, genotypes.ids)) != list(map(str, rel.ids)):
            genotypes = genotypes.subset(ids=rel.ids)
        n_snps = pair_call_counts(genotypes, rel.info.get("snps_used"))
    if n_snps is None:
        n_snps = rel.info.get("n_snps")
        if not (isinstance(n_snps, np.ndarray) and n_snps.shape == (n, n)):
            n_snps = rel.info.get("n_snps_used", 0)
            if rel.info.get("n_missing_imputed"):
                warnings.warn(
                    f"{prefix}.grm.N.bin: G was built with {rel.info['n_missing_imputed']} "
                    f"missing calls, but without genotypes= every pair is written with "
                    f"{n_snps} SNPs (an upper bound); pass genotypes= for the true counts",
                    DataWarning,
                    stacklevel=2,
                )
    nmat = np.broadcast_to(np.asarray(n_snps, dtype=np.float64), (n, n))
    _tril_row_major(nmat).astype("<f4").tofile(f"{prefix}.grm.N.bin")
    fid = rel.info.get("fid") if fid is None else fid
    if isinstance(fid, pd.Series):  # by id: robust to any reordering of rel
        known = fid.set_axis(fid.index.astype(str)).reindex(pd.Index(rel.ids)).to_numpy(dtype=object)
        fid = np.where(pd.isna(known), rel.ids, known)
    elif fid is None:
        fid = rel.ids
    if len(fid) != n:
        raise DataError(f"fid has {len(fid)} entries for {n} ids")
    pd.DataFrame({"fid": [str(f) for f in fid], "iid": rel.ids}).to_csv(
        f"{prefix}.grm.id", sep="\t", header=False, index=False
    )
    return prefix


def read_gcta_grm(prefix, *, ids: str = "iid", kind: str = "G") -> Relationship:
    """Read a GCTA binary GRM; ids are the IIDs (``ids="fid_iid"`` for ``FID_IID``).

    ``info`` holds ``fid`` (a Series by id) and, when ``.grm.N.bin`` exists,
    ``n_snps`` (n x n).
    """
    prefix = Path(str(prefix).removesuffix(".grm.bin"))
    id_table = pd.read_csv(f"{prefix}.grm.id", sep=r"\s+", header=None, dtype=str)
    if id_table.shape[1] < 2:
        raise DataError(f"{prefix}.grm.id must have two columns FID IID")
    fids, iids = id_table[0].to_numpy(dtype=object), id_table[1].to_numpy(dtype=object)
    names = iids if ids == "iid" else np.array([f"{f}_{i}" for f, i in zip(fids, iids)], dtype=object)
    dup = pd.Index(names)
    if dup.has_duplicates:
        raise DataError(
            f"{prefix}.grm.id: duplicated ids {format_ids(dup[dup.duplicated()].unique())}"
            + ("; try ids='fid_iid'" if ids == "iid" else "")
        )
    n = len(names)
    values = np.fromfile(f"{prefix}.grm.bin", dtype="<f4")
    if values.size != n * (n + 1) // 2:
        raise DataError(f"{prefix}.grm.bin holds {values.size} values; {n} ids in .grm.id need {n * (n + 1) // 2}")
    info = {"file": f"{prefix}.grm.bin", "fid": pd.Series(fids, index=pd.Index(names, name="id"), name="fid")}
    nfile = Path(f"{prefix}.grm.N.bin")
    if nfile.exists():
        nv = np.fromfile(nfile, dtype="<f4")
        if nv.size == values.size:
            info["n_snps"] = _from_tril(nv.astype(np.float64), n)
    return Relationship(names, _from_tril(values.astype(np.float64), n), kind=kind, info=info)

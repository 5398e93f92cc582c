"""Exchange relationship matrices as CSV or GCTA binary GRM files.

GCTA binary GRM (``--make-grm``, also written by PLINK ``--make-grm-bin``):

* ``<prefix>.grm.bin`` -- float32, lower triangle including the diagonal, row by
  row: G[0,0], G[1,0], G[1,1], G[2,0], ... (n(n+1)/2 values, little-endian).
* ``<prefix>.grm.N.bin`` -- float32, the same layout: number of SNPs per pair.
* ``<prefix>.grm.id`` -- two tab-separated columns FID, IID; no header.

float32 storage rounds values to ~7 significant digits (relative 6e-8).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, format_ids
from .container import Relationship, as_relationship

_CHUNK = 1024  # rows per chunk: bounds the temporary index masks


def write_relationship_csv(rel, path) -> Path:
    """Write a relationship as CSV: header ``id,<ids...>``, first column id."""
    rel = as_relationship(rel)
    path = Path(path)
    rel.to_frame().to_csv(path, float_format="%.17g")
    return path


def read_relationship_csv(path, *, kind: str = "G", inverse: bool = False) -> Relationship:
    """Read a square CSV written by :func:`write_relationship_csv` (first column id)."""
    frame = pd.read_csv(path, dtype={0: str}, index_col=0)
    frame.index = frame.index.astype(str)
    frame.columns = frame.columns.astype(str)
    rel = Relationship.from_frame(frame, inverse=inverse, kind=kind)
    return Relationship(rel.ids, rel.matrix, inverse=inverse, kind=kind, info={"file": str(path)})


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


def write_gcta_grm(rel, prefix, *, n_snps=None, fid=None) -> Path:
    """Write ``<prefix>.grm.bin``, ``.grm.N.bin`` and ``.grm.id`` (GCTA format).

    Parameters
    ----------
    rel : Relationship or DataFrame, shape (n, n)
    prefix : str or Path
    n_snps : int or ndarray (n, n), optional
        SNPs per pair for ``.grm.N.bin``; default ``rel.info["n_snps_used"]`` or 0.
    fid : sequence of str, optional
        Family ids; default ``rel.info["fid"]`` or the individual ids (FID = IID).
    """
    rel = as_relationship(rel, kind="G")
    prefix = Path(prefix)
    n = rel.n
    _tril_row_major(rel.dense()).astype("<f4").tofile(f"{prefix}.grm.bin")
    if n_snps is None:
        n_snps = rel.info.get("n_snps_used", 0)
    nmat = np.broadcast_to(np.asarray(n_snps, dtype=np.float64), (n, n))
    _tril_row_major(nmat).astype("<f4").tofile(f"{prefix}.grm.N.bin")
    fid = rel.info.get("fid", rel.ids) if fid is None else fid
    pd.DataFrame({"fid": [str(f) for f in fid], "iid": rel.ids}).to_csv(
        f"{prefix}.grm.id", sep="\t", header=False, index=False
    )
    return prefix


def read_gcta_grm(prefix, *, ids: str = "iid", kind: str = "G") -> Relationship:
    """Read a GCTA binary GRM; ids are the IIDs (``ids="fid_iid"`` for ``FID_IID``).

    ``info`` holds ``fid`` and, when ``.grm.N.bin`` exists, ``n_snps`` (n x n).
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
        raise DataError(
            f"{prefix}.grm.bin holds {values.size} values; {n} ids in .grm.id need {n * (n + 1) // 2}"
        )
    info = {"file": f"{prefix}.grm.bin", "fid": fids}
    nfile = Path(f"{prefix}.grm.N.bin")
    if nfile.exists():
        nv = np.fromfile(nfile, dtype="<f4")
        if nv.size == values.size:
            info["n_snps"] = _from_tril(nv.astype(np.float64), n)
    return Relationship(names, _from_tril(values.astype(np.float64), n), kind=kind, info=info)

"""G, W'W, Wα and W'v over SNP chunks on a ``dask.distributed`` cluster.

G = Σ_b S_b / Σ_b s_b is a sum over SNP chunks b of an n × n numerator S_b and a
scalar scale s_b (VanRaden 1: S_b = W_bW_b', s_b = 2Σpq over the chunk; VanRaden 2 /
GCTA: per-SNP standardised products and s_b = m_b; Vitezica: dominance codes and
Σ(2pq)²), because every SNP's centring and weight depends on that SNP alone (observed
frequencies are per SNP). Each chunk is one task: the worker reads its SNPs from the
PLINK ``.bed`` itself (a path the workers can see; nothing but the path crosses the
network) or receives a scattered slice of in-memory genotypes, computes S_b with the
same kernels as :func:`~henderson.genomic_relationship` (so the in-memory result is
reproduced to round-off, ~1e-13), and the n × n parts are summed pairwise on the
workers (a tree, so no worker holds more than two parts and the sum). Only the final
n × n matrix comes back to the client.

Worker memory: about 3 n² × 8 bytes (its part, a part it adds, the sum) plus one chunk
of n × chunk int8 genotypes and the float block of the G kernels (64 MB).

Dask retries a task whose worker died (the scheduler re-runs it elsewhere), and each
task is a pure function of (file, chunk), so a lost worker changes nothing but time.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .._dask import get_client
from ..data.genotypes import MISSING, Genotypes
from ..errors import DataError, DataWarning, GenotypeError
from .container import Relationship

#: default SNPs per task
CHUNK_SNPS = 10_000


# ---------------------------------------------------------------- sources of chunks


def _plink_meta(path) -> dict:
    """ids, fid, SNP count and the .bed path of a PLINK fileset (checked as read_plink does)."""
    from bed_reader import open_bed

    from ..io._plink import _check_bed_size, _check_magic, plink_prefix

    prefix = plink_prefix(Path(path))
    if prefix is None:
        raise DataError(f"PLINK fileset {str(path)!r}: no {path}.bed found")
    bed_file = Path(f"{prefix}.bed")
    _check_magic(bed_file)
    with open_bed(bed_file, count_A1=True) as bed:
        n, p = bed.iid_count, bed.sid_count
        _check_bed_size(bed_file, n, p)
        iid, fid = np.asarray(bed.iid, dtype=object), np.asarray(bed.fid, dtype=object)
    return {"bed": str(bed_file), "ids": iid, "fid": fid, "n": n, "p": p}


def _read_chunk(bed: str, start: int, stop: int) -> Genotypes:
    """SNPs start:stop of a PLINK .bed as Genotypes (runs on a worker)."""
    from bed_reader import open_bed

    with open_bed(bed, count_A1=True) as b:
        d = b.read(index=np.s_[:, start:stop], dtype="int8", order="C")
        snps = pd.DataFrame(
            {
                "snp": b.sid[start:stop],
                "chrom": b.chromosome[start:stop],
                "pos": b.bp_position[start:stop],
                "allele1": b.allele_1[start:stop],
                "allele2": b.allele_2[start:stop],
            }
        )
        ids = b.iid
    return Genotypes(ids, snps, d, {"file": bed, "format": "plink"})


def _slice(geno: Genotypes, start: int, stop: int) -> Genotypes:
    return Genotypes(geno.ids, geno.snps.iloc[start:stop], geno.dosages[:, start:stop], {})


def _freq_chunk(allele_freq, start: int, stop: int):
    """The part of ``allele_freq`` a chunk needs (a Series by SNP id is passed whole)."""
    if allele_freq is None or isinstance(allele_freq, (str, pd.Series)) or np.ndim(allele_freq) == 0:
        return allele_freq
    return np.asarray(allele_freq, dtype=np.float64)[start:stop]


# ---------------------------------------------------------------- tasks (on workers)


def _grm_part(source, start: int, stop: int, method: str, freq, dtype: str) -> dict:
    """Numerator S_b, scale s_b and SNP counts of one chunk."""
    from .genomic import genomic_relationship

    geno = _read_chunk(source, start, stop) if isinstance(source, str) else source
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        try:
            G = genomic_relationship(geno, method=method, allele_freq=freq, dtype=dtype)
        except GenotypeError:  # nothing usable in this chunk: it adds nothing
            G = None
    called = geno.n_called > 0
    if G is None:
        used = int(called.sum()) if method == "vanraden1" else 0
        return {
            "S": None,
            "scale": 0.0,
            "m": used,
            "no_call": int((~called).sum()),
            "mono": int(called.sum()) - used,
            "imputed": 0,
            "warned": len(caught),
        }
    info = G.info
    S = np.array(G.matrix, dtype=np.float64)
    if method == "yang":
        S[np.diag_indices_from(S)] -= 1.0
    S *= info["scale"]
    return {
        "S": S,
        "scale": float(info["scale"]),
        "m": int(info["n_snps_used"]),
        "no_call": int(info["n_snps_no_call"]),
        "mono": int(info["n_snps_monomorphic_skipped"]),
        "imputed": int(info["n_missing_imputed"]),
        "warned": len(caught),
    }


def _add_parts(a: dict, b: dict) -> dict:
    if a["S"] is None:
        S = b["S"]
    elif b["S"] is None:
        S = a["S"]
    else:
        S = a["S"]
        S += b["S"]
    out = {k: a[k] + b[k] for k in ("scale", "m", "no_call", "mono", "imputed", "warned")}
    out["S"] = S
    return out


def _centred_block(geno: Genotypes, freq) -> np.ndarray:
    """W_b = X_b − 2p (missing calls → 0, i.e. mean-imputed), shape (n, b)."""
    if freq is None or isinstance(freq, str):
        p = geno.allele_freq
    elif isinstance(freq, pd.Series):  # matched by SNP id
        p = freq.reindex(pd.Index(geno.snp_ids)).to_numpy(dtype=np.float64)
    elif np.ndim(freq) == 0:
        p = np.full(geno.p, float(freq))
    else:
        p = np.asarray(freq, dtype=np.float64)
    d = geno.dosages
    W = d.astype(np.float64) - 2.0 * p[None, :]
    W[(d == MISSING) if geno.is_integer else np.isnan(W)] = 0.0
    W[:, ~np.isfinite(p)] = 0.0  # SNPs without calls carry nothing
    return W


def _products_part(source, start, stop, freq, alpha_b, v):
    geno = _read_chunk(source, start, stop) if isinstance(source, str) else source
    W = _centred_block(geno, freq)
    wa = W @ alpha_b if alpha_b is not None else None
    wtv = W.T @ v if v is not None else None
    return wa, wtv


def _add_vectors(a, b):
    return a + b


def _weighted_block(source, start, stop, freq, w):
    """(W_b, D W_b) of one chunk: the centred block and its row-weighted copy (D = diag w)."""
    geno = _read_chunk(source, start, stop) if isinstance(source, str) else source
    W = _centred_block(geno, freq)
    return W, (W if w is None else W * w[:, None])


def _cross_block(bi, bj):
    """W_i'DW_j of two chunks' blocks."""
    return bi[0].T @ bj[1]


def _cross_vector(bi, y):
    """W_i'Dy."""
    return bi[1].T @ y


# ---------------------------------------------------------------- client side


def _chunks(p: int, chunk_snps: int | None) -> list[tuple[int, int]]:
    c = int(chunk_snps or CHUNK_SNPS)
    if c < 1:
        raise DataError(f"chunk_snps must be a positive number of SNPs, not {chunk_snps!r}")
    return [(a, min(a + c, p)) for a in range(0, p, c)]


def _sources(client, geno, chunks):
    """Per chunk: the .bed path (read on the worker) or a scattered in-memory slice."""
    if isinstance(geno, Genotypes):
        return [client.scatter(_slice(geno, a, b)) for a, b in chunks]
    return [geno] * len(chunks)


def _tree_sum(client, futures, add):
    while len(futures) > 1:
        nxt = [client.submit(add, futures[i], futures[i + 1], pure=False) for i in range(0, len(futures) - 1, 2)]
        if len(futures) % 2:
            nxt.append(futures[-1])
        futures = nxt
    return futures[0]


def distributed_relationship(
    geno, method: str = "vanraden1", allele_freq=None, *, scheduler, chunk_snps: int | None = None, dtype: str = "auto"
) -> Relationship:
    """G on a Dask cluster, one task per chunk of SNPs (see the module notes).

    Parameters
    ----------
    geno : str or Path (PLINK fileset) or Genotypes
        A PLINK prefix/``.bed`` path that every worker can read (shared file system), or
        genotypes in the client's memory (their chunks are sent to the workers).
    method, allele_freq, dtype
        As :func:`~henderson.genomic_relationship`.
    scheduler : dask.distributed.Client or str
    chunk_snps : int, optional
        SNPs per task (default :data:`CHUNK_SNPS`).

    Returns
    -------
    Relationship equal to ``genomic_relationship(read_genotypes(path), ...)`` to round-off;
    ``info["distributed"]`` holds the number of chunks and the scheduler address.
    """
    from .genomic import METHODS

    if method not in METHODS:
        raise DataError(f"unknown method {method!r}; choose one of {METHODS}")
    if isinstance(geno, pd.DataFrame):
        geno = Genotypes.from_frame(geno)
    if isinstance(geno, Genotypes):
        ids, p, fid, file = geno.ids, geno.p, geno.info.get("fid"), geno.info.get("file")
    else:
        meta = _plink_meta(geno)
        ids, p, file = meta["ids"], meta["p"], meta["bed"]
        fid = pd.Series(meta["fid"], index=pd.Index(ids, name="id"), name="fid")
        geno = meta["bed"]
    if allele_freq is not None and not isinstance(allele_freq, (str, pd.Series)) and np.ndim(allele_freq):
        if np.shape(allele_freq) != (p,):
            raise DataError(f"allele_freq has shape {np.shape(allele_freq)}, expected ({p},) (one per SNP)")
    chunks = _chunks(p, chunk_snps)
    with get_client(scheduler) as client:
        sources = _sources(client, geno, chunks)
        parts = [
            client.submit(_grm_part, src, a, b, method, _freq_chunk(allele_freq, a, b), dtype, pure=False)
            for src, (a, b) in zip(sources, chunks)
        ]
        total = _tree_sum(client, parts, _add_parts).result()
        address = client.scheduler.address
    if total["m"] == 0 or not total["scale"] > 0:
        raise GenotypeError("no usable SNP for the genomic relationship matrix")
    if total["no_call"] or total["mono"]:
        warnings.warn(
            f"genomic_relationship({method}): skipped {total['no_call']} SNP(s) without calls and "
            f"{total['mono']} SNP(s) with p(1-p) = 0 (infinite weight); {total['m']} of {p} used",
            DataWarning,
            stacklevel=2,
        )
    G = total["S"] / total["scale"]
    if method == "yang":
        G[np.diag_indices_from(G)] += 1.0
    info = {
        "method": method,
        "allele_freq": "observed" if allele_freq is None else "supplied",
        "n_snps": p,
        "n_snps_used": total["m"],
        "n_snps_no_call": total["no_call"],
        "n_snps_monomorphic_skipped": total["mono"],
        "n_missing_imputed": total["imputed"],
        "scale": total["scale"],
        "distributed": {"chunks": len(chunks), "chunk_snps": chunks[0][1] - chunks[0][0], "scheduler": address},
    }
    if file:
        info["genotypes_file"] = file
    if isinstance(fid, pd.Series):
        info["fid"] = fid.reindex(pd.Index(ids))
    return Relationship(ids, G, kind="G", info=info)


def genotype_products(geno, alpha=None, v=None, allele_freq=None, *, scheduler, chunk_snps: int | None = None) -> dict:
    """SNP-BLUP products with the centred genotypes W = X − 2p on a Dask cluster.

    Parameters
    ----------
    geno : str or Path (PLINK fileset) or Genotypes
    alpha : array (p,), optional
        SNP effects: returns ``W_alpha`` = Wα, shape (n,) (genomic values ĝ = Wβ̂).
    v : array (n,), optional
        A vector over individuals: returns ``Wt_v`` = W'v, shape (p,) (e.g. β̂ = W'α/2Σpq
        from GBLUP's dual coefficients).
    allele_freq : None, float, array (p,) or Series by SNP id
        Centring frequencies (default observed per SNP); missing calls count as 2p.
    scheduler, chunk_snps
        As :func:`distributed_relationship`.
    """
    if alpha is None and v is None:
        raise DataError("genotype_products needs alpha (for Wα) or v (for W'v)")
    if isinstance(geno, pd.DataFrame):
        geno = Genotypes.from_frame(geno)
    if isinstance(geno, Genotypes):
        n, p = geno.n, geno.p
    else:
        meta = _plink_meta(geno)
        n, p, geno = meta["n"], meta["p"], meta["bed"]
    if alpha is not None and np.shape(alpha) != (p,):
        raise DataError(f"alpha has shape {np.shape(alpha)}, expected ({p},) (one per SNP)")
    if v is not None and np.shape(v) != (n,):
        raise DataError(f"v has shape {np.shape(v)}, expected ({n},) (one per individual)")
    chunks = _chunks(p, chunk_snps)
    with get_client(scheduler) as client:
        sources = _sources(client, geno, chunks)
        vf = client.scatter(np.asarray(v, dtype=np.float64), broadcast=True) if v is not None else None
        parts = [
            client.submit(
                _products_part,
                src,
                a,
                b,
                _freq_chunk(allele_freq, a, b),
                None if alpha is None else np.asarray(alpha, dtype=np.float64)[a:b],
                vf,
                pure=False,
            )
            for src, (a, b) in zip(sources, chunks)
        ]
        out = {}
        if v is not None:
            outs = client.gather([client.submit(lambda t: t[1], f, pure=False) for f in parts])
            out["Wt_v"] = np.concatenate(outs)
        if alpha is not None:
            was = [client.submit(lambda t: t[0], f, pure=False) for f in parts]
            out["W_alpha"] = _tree_sum(client, was, _add_vectors).result()
    return out


def snp_crossproducts(
    geno, y=None, weights=None, allele_freq=None, *, scheduler, chunk_snps: int | None = None
) -> dict:
    """SNP-BLUP's normal-equation products W'DW and W'Dy on a Dask cluster.

    The SNP-BLUP MME (Meuwissen et al. 2001) need W'R⁻¹W (p × p) and W'R⁻¹y with
    R⁻¹ = D/σ²ₑ, D = diag(weights) (I by default). With chunks b = 1..B of SNPs,
    W'DW is the B × B grid of blocks W_i'DW_j: one task per chunk builds W_b (read from
    the .bed on the worker, or a scattered in-memory slice) and one task per pair i <= j
    multiplies two of them, so a worker holds two n × chunk float blocks and one
    chunk × chunk result; the blocks are gathered and assembled on the client, which must
    hold p² × 8 bytes (checked before anything is submitted).

    Parameters
    ----------
    geno : str or Path (PLINK fileset) or Genotypes
    y : array (n,), optional
        Returns ``Wt_y`` = W'Dy, shape (p,).
    weights : array (n,), optional
        Record weights (diagonal of D), e.g. the effective numbers of daughters behind
        de-regressed proofs.
    allele_freq, scheduler, chunk_snps
        As :func:`genotype_products`.

    Returns
    -------
    dict with ``WtW`` (p, p) and, with ``y``, ``Wt_y`` (p,); ``chunks`` (their count).
    Equal to the in-memory W'DW (W from :func:`henderson.models.snpblup.centred_markers`)
    to round-off.
    """
    from .._memory import available_bytes

    if isinstance(geno, pd.DataFrame):
        geno = Genotypes.from_frame(geno)
    if isinstance(geno, Genotypes):
        n, p = geno.n, geno.p
    else:
        meta = _plink_meta(geno)
        n, p, geno = meta["n"], meta["p"], meta["bed"]
    for name, vec in (("y", y), ("weights", weights)):
        if vec is not None and np.shape(vec) != (n,):
            raise DataError(f"{name} has shape {np.shape(vec)}, expected ({n},) (one per individual)")
    if weights is not None and not np.all(np.isfinite(weights) & (np.asarray(weights) >= 0)):
        bad = np.flatnonzero(~(np.isfinite(weights) & (np.asarray(weights) >= 0)))
        raise DataError(f"weights must be finite and >= 0; bad at individuals {bad[:5].tolist()}")
    need = 8 * p * p * 2  # the gathered blocks and the assembled matrix
    if need > available_bytes():
        raise MemoryError(
            f"W'W for {p} SNPs needs {need / 2**30:.1f} GiB on the client and {available_bytes() / 2**30:.1f} GiB "
            "is available: use products with vectors instead (genotype_products: Wα and W'v, as PCG on the "
            "SNP-BLUP equations needs) or GBLUP (distributed_relationship, n × n)"
        )
    chunks = _chunks(p, chunk_snps)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    with get_client(scheduler) as client:
        sources = _sources(client, geno, chunks)
        wf = client.scatter(w, broadcast=True) if w is not None else None
        blocks = [
            client.submit(_weighted_block, src, a, b, _freq_chunk(allele_freq, a, b), wf, pure=False)
            for src, (a, b) in zip(sources, chunks)
        ]
        pairs = [(i, j) for i in range(len(chunks)) for j in range(i, len(chunks))]
        futs = [client.submit(_cross_block, blocks[i], blocks[j], pure=False) for i, j in pairs]
        yv = None
        if y is not None:
            yf = client.scatter(np.asarray(y, dtype=np.float64), broadcast=True)
            yv = [client.submit(_cross_vector, b, yf, pure=False) for b in blocks]
        WtW = np.empty((p, p))
        for (i, j), part in zip(pairs, client.gather(futs)):
            (a, b), (c, d) = chunks[i], chunks[j]
            WtW[a:b, c:d] = part
            if i != j:
                WtW[c:d, a:b] = part.T
        out = {"WtW": WtW, "chunks": len(chunks)}
        if yv is not None:
            out["Wt_y"] = np.concatenate(client.gather(yv))
    return out

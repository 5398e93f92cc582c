"""G, W'W, Wα and W'v over SNP chunks on a ``dask.distributed`` cluster.

G = Σ_b S_b / Σ_b s_b is a sum over SNP chunks b of an n × n numerator S_b and a
scalar scale s_b (VanRaden 1: S_b = W_bW_b', s_b = 2Σpq over the chunk; VanRaden 2 /
GCTA: per-SNP standardised products and s_b = m_b; Vitezica: dominance codes and
Σ(2pq)²), because every SNP's centring and weight depends on that SNP alone (observed
frequencies are per SNP).

Memory-bounded reduction: the chunks are split into one contiguous share per worker,
and each share is one task that reads its chunks one after another (from the PLINK
``.bed`` itself, a path the workers can see, or from a slice of in-memory genotypes
scattered to it) and adds each into **one** unfinished numerator in place
(:class:`~henderson.relationships.genomic._PartialG`, the in-memory path's own
accumulator: exact float32 SYRK of the integer codes with rank-one centring, or float64
SYRK of the centred block, so the result equals the in-memory path to round-off). The
client adds the workers' partials one at a time as they arrive and centres/scales once.

Memory per worker: one accumulator (4n² bytes on the exact float32 path, 8n² on the
float64 path, 12n² while both kinds of blocks meet in one share) + one chunk of int8
genotypes (n × chunk bytes) + one float block of the G kernels (about 64 MB).
Client: the n × n result (8n² bytes) plus two column slabs of a worker's partial in
flight (64 MB each: the partials are pulled slab by slab, lower triangle only, and added
in place), checked before any task is submitted.

Dask retries a task whose worker died (the scheduler re-runs it elsewhere), and each
task is a pure function of (file, chunks), so a lost worker changes nothing but time.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._dask import get_client
from ..data.genotypes import MISSING, Genotypes
from ..errors import DataError, DataWarning, GenotypeError, format_ids
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


def _read_chunk(bed: str, start: int, stop: int, dims: tuple | None = None) -> Genotypes:
    """SNPs start:stop of a PLINK .bed as Genotypes (runs on a worker).

    With ``dims = (ids, p)`` from the client the .fam/.bim are not parsed (bed-reader
    would read every SNP's row of the .bim for each chunk: 0.2 s at 100,000 SNPs) and the
    chunk's SNPs get positional names; without it the real SNP table is read (needed to
    match frequencies given by SNP id).
    """
    from bed_reader import open_bed

    if dims is not None:
        ids, p = dims
        with open_bed(bed, count_A1=True, iid_count=len(ids), sid_count=p) as b:
            d = b.read(index=np.s_[:, start:stop], dtype="int8", order="C")
        snps = pd.DataFrame({"snp": np.char.add("snp", np.arange(start + 1, stop + 1).astype(str)).astype(object)})
        return Genotypes(ids, snps, d, {"file": bed, "format": "plink"})
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


def _grm_share(source, offset: int, chunks, method: str, allele_freq, dtype: str, dims=None) -> dict:
    """One worker's share: its chunks reduced into one unfinished G numerator (in place).

    ``source`` is the .bed path (chunks read here) or in-memory genotypes holding SNPs
    ``offset:`` of the whole set. Returns the partial, the scale and SNP counts, and
    the number of calls per individual (an individual without any call is refused on
    the client, where all shares are known). ``dims`` as :func:`_read_chunk`.
    """
    from ..data.genotypes import default_block_size
    from ..io.qc import _row_missing
    from .genomic import _PartialG, _resolve_freq

    part = None
    out: dict[str, Any] = {"scale": 0.0, "m": 0, "no_call": 0, "mono": 0, "calls": None}
    for a, b in chunks:
        if isinstance(source, str):
            geno = _read_chunk(source, a, b, None if isinstance(allele_freq, pd.Series) else dims)
        else:
            geno = _slice(source, a - offset, b - offset)
        if part is None:
            part = _PartialG(geno.n, method)
            out["calls"] = np.zeros(geno.n, dtype=np.int64)
        p, _ = _resolve_freq(geno, _freq_chunk(allele_freq, a, b))
        pq = p * (1.0 - p)
        use = np.isfinite(p) & (geno.n_called > 0)
        out["no_call"] += int((~use).sum())
        if method != "vanraden1":
            mono = use & (pq <= 0)
            out["mono"] += int(mono.sum())
            use &= ~mono
        m = int(use.sum())
        out["m"] += m
        if method == "vanraden1":
            out["scale"] += 2.0 * pq[use].sum()
        elif method == "vitezica":
            out["scale"] += float(((2.0 * pq[use]) ** 2).sum())
        else:
            out["scale"] += m
        out["calls"] += geno.p - _row_missing(geno) if geno.n_missing else geno.p
        try_f32 = method == "vanraden1" and geno.is_integer and dtype != "float64"
        part.add(geno, p, pq, use, default_block_size(geno.n, 4 if try_f32 else 8), try_f32)
        del geno
    if part is None:  # pragma: no cover - the client gives every worker at least one chunk
        raise ValueError("a worker's share of the genomic relationship holds no SNP chunks")
    part.fold()
    # plain arrays, not the object: dask sends arrays without a pickled copy of them
    out.update(part.state())
    return out


def _share_meta(r: dict) -> dict:
    """A share's result without its n × n accumulators (which accumulators it has)."""
    return {k: (v is not None if k in _ACCS else v) for k, v in r.items()}


def _share_slab(r: dict, key: str, c0: int, c1: int) -> np.ndarray:
    """Rows c0: of columns c0:c1 of a share's accumulator (its lower triangle's part)."""
    return np.array(r[key][c0:, c0:c1], order="F")


_ACCS = ("acc", "acc32")
#: bytes of one column slab sent to the client (bounds the client's transient memory)
SLAB_BYTES = 64 * 2**20


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


def _read_rows(bed: str, r0: int, r1: int, n: int, p: int) -> np.ndarray:
    """Individuals r0:r1 at every SNP of a PLINK .bed, int8 (n_rows, p) (runs on a worker)."""
    from bed_reader import open_bed

    with open_bed(bed, count_A1=True, iid_count=n, sid_count=p) as b:
        return b.read(index=np.s_[r0:r1, :], dtype="int8", order="C")


def _crossproducts_share(source, offset: int, r0: int, r1: int, freq, w, y, rows: int, n: int) -> dict:
    """One worker's share of individuals r0:r1 reduced into one p × p W'DW (lower
    triangle, float64 DSYRK of √D W_r per block of ``rows`` individuals) and W'Dy."""
    from ..data._kernels import fill_float_block, fill_table_block
    from ..linalg import dense_safe  # dsyrk of ≥ 16k SNPs split (OpenBLAS threaded-dsyrk crash)

    p = freq.shape[0]
    centre = 2.0 * np.where(np.isfinite(freq), freq, 0.0)
    keep = np.isfinite(freq).astype(np.float64)  # SNPs without calls carry nothing
    # value of codes 0, 1, 2 per SNP (int8 genotypes), built once for every block of rows
    table = (np.arange(3.0)[None, :] - centre[:, None]) * keep[:, None]
    no_extra = np.empty((0, 3))
    acc = np.zeros((p, p), order="F")
    wty = np.zeros(p) if y is not None else None
    buf = np.empty(0)
    no_cols = np.empty(0, np.int64)
    for a in range(r0, r1, rows):
        b = min(a + rows, r1)
        if isinstance(source, str):
            d = _read_rows(source, a, b, n, p)
        else:
            d = source.dosages[a - offset : b - offset]
        if buf.size < d.size:
            buf = np.empty(d.size)
        W = buf[: d.size].reshape(d.shape)
        if d.dtype == np.int8:
            fill_table_block(d, 0, no_cols, table, no_extra, W, np.zeros(d.shape[0]))
        else:
            fill_float_block(d, 0, no_cols, centre, keep, freq, False, W, np.zeros(d.shape[0]))
        if wty is not None:
            wty += W.T @ (y[a:b] if w is None else w[a:b] * y[a:b])
        if w is not None:
            W *= np.sqrt(w[a:b])[:, None]
        out = dense_safe.syrk_lower(W.T, beta=1.0, c=acc)  # W.T is F-ordered; dsyrk split above 12k rows
        if out is not acc:
            acc[...] = out
    return {"WtW": acc, "Wt_y": wty}


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


def _shares(client, chunks) -> list[tuple[str | None, list[tuple[int, int]]]]:
    """Contiguous shares of the chunks, one per worker (as equal in chunks as can be)."""
    workers = sorted(client.nthreads())
    k = max(1, min(len(workers), len(chunks)))
    bounds = np.linspace(0, len(chunks), k + 1).round().astype(int)
    return [(workers[i] if workers else None, chunks[bounds[i] : bounds[i + 1]]) for i in range(k)]


def _share_bytes(n: int, chunk: int, method: str, dtype: str, is_integer: bool) -> int:
    """Peak bytes of one share's task: accumulator(s) + one int8 chunk + one float block."""
    if method == "vanraden1" and is_integer and dtype != "float64":
        acc = 12 * n * n  # float32 accumulator, and a float64 one once a block has missing calls
    else:
        acc = 8 * n * n
    return acc + n * chunk + 64 * 2**20


def _check_memory(client, n: int, chunk: int, method: str, dtype: str, is_integer: bool) -> None:
    """Refuse before submitting anything when the client or a worker cannot hold its part."""
    from .._memory import available_bytes

    gib = 2**30
    need = 8 * n * n + 2 * SLAB_BYTES  # the result + two slabs of a worker's partial in flight
    have = available_bytes()
    if need > have:
        raise MemoryError(
            f"G for {n} individuals on a cluster needs {need / gib:.1f} GiB on the client (the {n} x {n} result, "
            f"8n² bytes, and two {SLAB_BYTES // 2**20} MB slabs of a worker's partial sum) and {have / gib:.1f} GiB "
            "is available: run the client on a machine with more memory, or use SNP-BLUP products "
            "(genotype_products)"
        )
    per_worker = _share_bytes(n, chunk, method, dtype, is_integer)
    info = client.scheduler_info(n_workers=-1).get("workers", {})
    small = {a: w["memory_limit"] for a, w in info.items() if w.get("memory_limit") and w["memory_limit"] < per_worker}
    if small:
        addr, limit = next(iter(sorted(small.items())))
        raise MemoryError(
            f"G for {n} individuals needs {per_worker / gib:.1f} GiB per worker (one n x n accumulator, "
            f"one chunk of {chunk} SNPs and one block) and worker {addr} has a memory limit of {limit / gib:.1f} GiB "
            f"({len(small)} worker(s) too small): start workers with a larger --memory-limit, or pass a smaller "
            "chunk_snps"
        )


def _pull_lower(client, fut, key: str, acc: np.ndarray) -> None:
    """acc[c0:, c0:c1] += the share's accumulator there, slab by slab (two in flight), so
    the client never holds more than the result and two slabs of SLAB_BYTES."""
    n = acc.shape[0]
    width = max(1, SLAB_BYTES // (8 * n))
    starts = list(range(0, n, width))
    # on the worker that holds the partial: left free, the scheduler may move the whole
    # partial to an idle worker to cut a slab there (measured: a second accumulator)
    holder = list(client.who_has(fut).get(fut.key, ()))
    where = {"workers": holder, "allow_other_workers": True} if holder else {}

    def ask(c0):
        return client.submit(_share_slab, fut, key, c0, min(c0 + width, n), pure=False, **where)

    nxt = ask(starts[0])
    for i, c0 in enumerate(starts):
        cur, nxt = nxt, (ask(starts[i + 1]) if i + 1 < len(starts) else None)
        acc[c0:, c0 : c0 + width] += cur.result()  # float32 integer sums are exact in float64
        cur.release()


def distributed_relationship(
    geno, method: str = "vanraden1", allele_freq=None, *, scheduler, chunk_snps: int | None = None, dtype: str = "auto"
) -> Relationship:
    """G on a Dask cluster: each worker reduces its share of SNP chunks into one n × n
    accumulator, the client adds one per worker (see the module notes).

    Parameters
    ----------
    geno : str or Path (PLINK fileset) or Genotypes
        A PLINK prefix/``.bed`` path that every worker can read (shared file system), or
        genotypes in the client's memory (each worker's share is sent to it).
    method, allele_freq, dtype
        As :func:`~henderson.genomic_relationship`.
    scheduler : dask.distributed.Client or str
    chunk_snps : int, optional
        SNPs read at a time by a worker (default :data:`CHUNK_SNPS`); a worker holds one
        chunk of int8 genotypes (n × chunk_snps bytes) beside its accumulator.

    Returns
    -------
    Relationship equal to ``genomic_relationship(read_genotypes(path), ...)`` to round-off;
    ``info["distributed"]`` holds the numbers of chunks and shares and the scheduler address.

    Raises
    ------
    MemoryError
        Before anything is submitted, when the client cannot hold 8n² bytes + 128 MB or a
        worker's memory limit is below its share's peak.
    """
    geno, ids, n, p, fid, file, is_integer = _genotype_source(geno, method, dtype, allele_freq)
    chunks = _chunks(p, chunk_snps)
    with get_client(scheduler) as client:
        _check_memory(client, n, chunks[0][1] - chunks[0][0], method, dtype, is_integer)
        shares = _shares(client, chunks)
        futures = _submit_shares(client, geno, shares, method, allele_freq, dtype, (ids, p))
        total, out, calls = _gather_shares(client, futures, n, method)
        del futures
        address = client.scheduler.address
    _check_gathered(calls, ids, out, method, p)
    G = total.finish(out["scale"]).T  # C-ordered view of the symmetric result
    info = {
        "method": method,
        "allele_freq": "observed" if allele_freq is None else "supplied",
        "n_snps": p,
        "n_snps_used": out["m"],
        "n_snps_no_call": out["no_call"],
        "n_snps_monomorphic_skipped": out["mono"],
        "n_missing_imputed": total.n_imputed,
        "scale": out["scale"],
        "blocks": total.n_blocks,
        "distributed": {
            "chunks": len(chunks),
            "chunk_snps": chunks[0][1] - chunks[0][0],
            "shares": len(shares),
            "scheduler": address,
        },
    }
    info |= {"genotypes_file": file} if file else {}
    info |= {"fid": fid.reindex(pd.Index(ids))} if isinstance(fid, pd.Series) else {}
    return Relationship(ids, G, kind="G", info=info)


def _genotype_source(geno, method: str, dtype: str, allele_freq):
    """(source, ids, n, p, fid, file, is_integer): in-memory genotypes checked, or a .bed's
    metadata (the source is then the .bed path, read by the workers); ``allele_freq``
    checked against the number of SNPs."""
    from .genomic import METHODS, _check_arguments

    if method not in METHODS:
        raise DataError(f"unknown method {method!r}; choose one of {METHODS}")
    if isinstance(geno, pd.DataFrame):
        geno = Genotypes.from_frame(geno)
    if isinstance(geno, Genotypes):
        _check_arguments(geno, method, dtype)
        ids, n, p, fid, file, is_integer = (
            geno.ids,
            geno.n,
            geno.p,
            geno.info.get("fid"),
            geno.info.get("file"),
            geno.is_integer,
        )
    else:
        meta = _plink_meta(geno)
        ids, n, p, file, is_integer = meta["ids"], meta["n"], meta["p"], meta["bed"], True
        fid = pd.Series(meta["fid"], index=pd.Index(ids, name="id"), name="fid")
        geno = meta["bed"]
        if dtype not in ("auto", "float64", "float32"):
            raise DataError(f"dtype must be 'auto', 'float64' or 'float32', not {dtype!r}")
        if dtype == "float32" and method != "vanraden1":
            raise DataError("the exact float32 path applies only to method='vanraden1' on hard calls (int8)")
    if allele_freq is not None and not isinstance(allele_freq, (str, pd.Series)) and np.ndim(allele_freq):
        if np.shape(allele_freq) != (p,):
            raise DataError(f"allele_freq has shape {np.shape(allele_freq)}, expected ({p},) (one per SNP)")
    return geno, ids, n, p, fid, file, is_integer


def _submit_shares(client, geno, shares, method: str, allele_freq, dtype: str, dims) -> list:
    """One :func:`_grm_share` task per worker's share of SNP chunks (in-memory chunks scattered to it)."""
    futures = []
    for worker, share in shares:
        a0, b0 = share[0][0], share[-1][1]
        where = {} if worker is None else {"workers": [worker], "allow_other_workers": True}
        src = geno if isinstance(geno, str) else client.scatter(_slice(geno, a0, b0), workers=where.get("workers"))
        futures.append(client.submit(_grm_share, src, a0, share, method, allele_freq, dtype, dims, pure=False, **where))
        del src
    return futures


def _gather_shares(client, futures: list, n: int, method: str):
    """The shares added as they finish, one at a time (accumulators pulled in column slabs):
    (the summed partial G, the SNP counts and scale, the calls per individual)."""
    from distributed import as_completed

    from .genomic import _PartialG

    total = _PartialG(n, method)
    total.acc = np.zeros((n, n), order="F")  # the result; filled in its lower triangle
    out = {"scale": 0.0, "m": 0, "no_call": 0, "mono": 0}
    calls = np.zeros(n, dtype=np.int64)
    done = as_completed(futures)
    futures.clear()  # the finished futures are released one by one below
    for fut in done:
        meta = client.submit(_share_meta, fut, pure=False).result()
        for k in out:
            out[k] += meta[k]
        calls += meta["calls"]
        total.merge_state(meta)
        for key in _ACCS:
            if meta[key]:
                _pull_lower(client, fut, key, total.acc)
        fut.release()
        del fut
    return total, out, calls


def _check_gathered(calls: np.ndarray, ids, out: dict, method: str, p: int) -> None:
    """Errors for individuals without any call and for no usable SNP; a warning for skipped SNPs."""
    if (calls == 0).any():
        none = pd.Index(ids)[calls == 0]
        raise GenotypeError(
            f"{len(none)} individual(s) have no genotype call at any SNP: {format_ids(none)}; "
            "remove them (genotype_qc(min_individual_call_rate=...), or --call-rate on the command line)"
        )
    if out["m"] == 0 or not out["scale"] > 0:
        raise GenotypeError("no usable SNP for the genomic relationship matrix")
    if out["no_call"] or out["mono"]:
        warnings.warn(
            f"genomic_relationship({method}): skipped {out['no_call']} SNP(s) without calls and "
            f"{out['mono']} SNP(s) with p(1-p) = 0 (infinite weight); {out['m']} of {p} used",
            DataWarning,
            stacklevel=3,
        )


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


def _freq_part(source, start: int, stop: int) -> np.ndarray:
    """Observed frequencies of SNPs start:stop (runs on a worker)."""
    geno = _read_chunk(source, start, stop) if isinstance(source, str) else source
    return np.asarray(geno.allele_freq, dtype=np.float64)


def _snp_ids(bed: str) -> np.ndarray:
    from bed_reader import open_bed

    with open_bed(bed, count_A1=True) as b:
        return np.asarray(b.sid, dtype=str)


def snp_crossproducts(
    geno,
    y=None,
    weights=None,
    allele_freq=None,
    *,
    scheduler,
    chunk_snps: int | None = None,
    chunk_individuals: int | None = None,
) -> dict:
    """SNP-BLUP's normal-equation products W'DW and W'Dy on a Dask cluster.

    The SNP-BLUP MME (Meuwissen et al. 2001) need W'R⁻¹W (p × p) and W'R⁻¹y with
    R⁻¹ = D/σ²ₑ, D = diag(weights) (I by default). W'DW = Σ_r W_r'D_rW_r is a sum over
    sets r of individuals, so it is reduced like G: the individuals are split into one
    contiguous share per worker, and each worker adds its individuals, ``chunk_individuals``
    at a time (read from the .bed, or from its share of in-memory genotypes), into
    **one** p × p accumulator in place (float64 DSYRK of √D W_r); the client adds one
    accumulator per worker. The centring frequencies come first (observed: one task per
    chunk of ``chunk_snps`` SNPs returns its p-vector), so every share centres alike.
    Memory per worker: 8p² bytes + one block of individuals (about 128 MB); client:
    16p² bytes (the result and one incoming accumulator), checked before anything is
    submitted.

    Parameters
    ----------
    geno : str or Path (PLINK fileset) or Genotypes
    y : array (n,), optional
        Returns ``Wt_y`` = W'Dy, shape (p,).
    weights : array (n,), optional
        Record weights (diagonal of D, >= 0), e.g. the effective numbers of daughters
        behind de-regressed proofs.
    allele_freq : None, float, array (p,) or Series by SNP id
        Centring frequencies (default observed per SNP); missing calls count as 2p.
    scheduler : dask.distributed.Client or str
    chunk_snps : int, optional
        SNPs per frequency task (default :data:`CHUNK_SNPS`).
    chunk_individuals : int, optional
        Individuals per DSYRK block on a worker (default: about 128 MB of float64).

    Returns
    -------
    dict with ``WtW`` (p, p) and, with ``y``, ``Wt_y`` (p,); ``chunks`` (the SNP chunks of
    the frequency pass) and ``shares`` (accumulators, one per worker). Equal to the
    in-memory W'DW (W from :func:`henderson.models.snpblup.centred_markers`) to round-off.
    """
    from .._memory import available_bytes
    from ..data._kernels import mirror_lower

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
    need = 8 * p * p * 2  # the result and one incoming accumulator
    if need > available_bytes():
        raise MemoryError(
            f"W'W for {p} SNPs needs {need / 2**30:.1f} GiB on the client and {available_bytes() / 2**30:.1f} GiB "
            "is available: use products with vectors instead (genotype_products: Wα and W'v, as PCG on the "
            "SNP-BLUP equations needs) or GBLUP (distributed_relationship, n × n)"
        )
    if chunk_individuals is not None and int(chunk_individuals) < 1:
        raise DataError(f"chunk_individuals must be a positive number, not {chunk_individuals!r}")
    rows = int(chunk_individuals or max(16, 2**27 // (8 * max(p, 1))))
    chunks = _chunks(p, chunk_snps)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    yv = None if y is None else np.asarray(y, dtype=np.float64)
    with get_client(scheduler) as client:
        per_worker = 8 * p * p + 9 * rows * p
        info = client.scheduler_info(n_workers=-1).get("workers", {})
        small = sorted(a for a, wk in info.items() if wk.get("memory_limit") and wk["memory_limit"] < per_worker)
        if small:
            raise MemoryError(
                f"W'W for {p} SNPs needs {per_worker / 2**30:.1f} GiB per worker (one p x p accumulator and one "
                f"block of {rows} individuals) and worker {small[0]} has a memory limit of "
                f"{info[small[0]]['memory_limit'] / 2**30:.1f} GiB: start workers with a larger --memory-limit"
            )
        freq = _resolve_client_freq(client, geno, chunks, allele_freq, p)
        workers = sorted(client.nthreads())
        k = max(1, min(len(workers), n))
        bounds = np.linspace(0, n, k + 1).round().astype(int)
        futures = []
        for i in range(k):
            r0, r1 = int(bounds[i]), int(bounds[i + 1])
            where = {"workers": [workers[i]], "allow_other_workers": True} if workers else {}
            if isinstance(geno, str):
                src = geno
            else:
                src = client.scatter(
                    Genotypes(geno.ids[r0:r1], geno.snps, geno.dosages[r0:r1], {}), workers=where.get("workers")
                )
            futures.append(
                client.submit(_crossproducts_share, src, r0, r0, r1, freq, w, yv, rows, n, pure=False, **where)
            )
            del src
        from distributed import as_completed

        done = as_completed(futures)
        del futures
        WtW, Wty = None, None
        for fut in done:  # one accumulator at a time
            r = fut.result()
            fut.release()
            del fut
            if WtW is None:
                WtW, Wty = r["WtW"], r["Wt_y"]
            else:
                WtW += r["WtW"]
                if Wty is not None:
                    Wty += r["Wt_y"]
            del r
    mirror_lower(WtW)
    out = {"WtW": WtW, "chunks": len(chunks), "shares": k}
    if y is not None:
        out["Wt_y"] = Wty
    return out


def _resolve_client_freq(client, geno, chunks, allele_freq, p: int) -> np.ndarray:
    """The (p,) centring frequencies on the client: observed (one task per SNP chunk),
    a constant, an array or a Series matched by SNP id; NaN for SNPs without calls."""
    if allele_freq is None or (isinstance(allele_freq, str) and allele_freq == "observed"):
        sources = _sources(client, geno, chunks)
        parts = [client.submit(_freq_part, src, a, b, pure=False) for src, (a, b) in zip(sources, chunks)]
        return np.concatenate(client.gather(parts))
    if isinstance(allele_freq, str):
        raise DataError(f"allele_freq must be 'observed', a number or an array, not {allele_freq!r}")
    if isinstance(allele_freq, pd.Series):
        ids = geno.snp_ids if isinstance(geno, Genotypes) else _snp_ids(geno)
        idx = pd.Index(allele_freq.index.astype(str)).get_indexer(ids)
        if (idx < 0).any():
            raise DataError(
                f"allele_freq lacks {int((idx < 0).sum())} SNP(s) of the genotypes: {format_ids(ids[idx < 0])}"
            )
        freq = allele_freq.to_numpy(dtype=np.float64)[idx]
    elif np.ndim(allele_freq) == 0:
        freq = np.full(p, float(allele_freq))
    else:
        freq = np.asarray(allele_freq, dtype=np.float64)
        if freq.shape != (p,):
            raise DataError(f"allele_freq has shape {freq.shape}, expected ({p},) (one per SNP)")
    return freq

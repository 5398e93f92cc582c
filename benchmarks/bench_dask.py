"""G on a 2-worker Dask LocalCluster vs the in-memory path, scaling with chunks, peak memory.

A seeded PLINK fileset (``simulate_genotypes`` → ``write_plink``) is read by the
workers chunk by chunk (``genomic_relationship(path, scheduler=client,
chunk_snps=...)``): each worker reduces its share of the chunks into one n × n
accumulator and the client adds one per worker. In the same run:

* the in-memory path (read the whole file, then G; 2 BLAS threads);
* the bare SYRK floor of the same arithmetic: ``ssyrk`` of n × b float32 blocks into an
  n × n float32 accumulator (b = the in-memory block size, 2 BLAS threads), timed on
  ``--floor-blocks`` blocks and scaled to all p SNPs (the time is linear in blocks);
* per chunk count, a fresh 2-worker LocalCluster (processes, 1 thread each): seconds,
  the peak RSS of the client and of each worker (VmHWM, reset before each run through
  /proc/<pid>/clear_refs, after a tiny G has loaded the imports and kernels on the
  workers), and max |ΔG| / max |G| against the in-memory G (kept on disk,
  compared in row slabs so the client's peak is not inflated).

``--part crossproducts``: SNP-BLUP's W'W (p × p) by ``snp_crossproducts(path,
scheduler=client)`` on a fresh 2-worker LocalCluster (each worker DSYRKs its share of the
individuals into one p × p float64 accumulator, the client adds them) against the
in-memory path in the same run (read the file, W = centred markers, one float64 DSYRK of
W, 2 BLAS threads): seconds, peak RSS of the client and the workers, max |ΔW'W| / max |W'W|.

Usage::

    flock /tmp/henderson-bench.lock .venv/bin/python benchmarks/bench_dask.py \
        --n 20000 --p 100000 --chunks 4 [--out results/dask.md] [--append]
    flock /tmp/henderson-bench.lock .venv/bin/python benchmarks/bench_dask.py \
        --part crossproducts --n 20000 --p 8000 --append
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import tempfile
import time
import warnings
from pathlib import Path

GIB = 2**30


def _reset_peak() -> int:
    """Reset this process's VmHWM to its current RSS; return the current RSS in bytes."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _status("VmRSS")


def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _peak() -> int:
    return _status("VmHWM")


def _max_rel_diff(G, ref_path, slab: int = 1000) -> float:
    import numpy as np

    ref = np.load(ref_path, mmap_mode="r")
    diff, big = 0.0, 0.0
    for r in range(0, ref.shape[0], slab):
        a = np.asarray(ref[r : r + slab])
        diff = max(diff, float(np.abs(G[r : r + slab] - a).max()))
        big = max(big, float(np.abs(a).max()))
    return diff / big


def _syrk_floor(n: int, p: int, blocks: int) -> tuple[float, int]:
    """Seconds of ssyrk for p SNPs in the in-memory block size (scaled from ``blocks``)."""
    import numpy as np
    from scipy.linalg import blas

    from henderson.data.genotypes import default_block_size

    b = default_block_size(n, 4)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, size=(n, b)).astype(np.float32)
    acc = np.zeros((n, n), dtype=np.float32, order="F")
    blas.ssyrk(1.0, x.T, beta=1.0, c=acc, trans=1, lower=1, overwrite_c=1)  # warm-up
    t0 = time.perf_counter()
    for _ in range(blocks):
        blas.ssyrk(1.0, x.T, beta=1.0, c=acc, trans=1, lower=1, overwrite_c=1)
    t = time.perf_counter() - t0
    return t * p / (blocks * b), b


def crossproducts(a) -> str:
    """W'W on a 2-worker LocalCluster against the in-memory DSYRK (see the module notes)."""
    import numpy as np
    from distributed import Client, LocalCluster
    from scipy.linalg import blas

    import henderson as h
    from henderson._testing.genotypes import simulate_genotypes
    from henderson.models.snpblup import centred_markers
    from henderson.relationships.genomic_dask import snp_crossproducts

    tmp = Path(tempfile.mkdtemp(prefix="henderson-bench-dask-"))
    try:
        prefix = tmp / "g"
        geno = simulate_genotypes(a.n, a.p, seed=a.seed)
        h.write_plink(prefix, geno)
        h.write_plink(tmp / "tiny", simulate_genotypes(50, 200, seed=a.seed))
        del geno
        gc.collect()
        centred_markers(h.read_genotypes(str(tmp / "tiny")))  # reader kernels loaded before timing
        base = _reset_peak()
        t0 = time.perf_counter()
        W, _ = centred_markers(h.read_genotypes(str(prefix)))
        ref = blas.dsyrk(1.0, W, trans=1, lower=1)  # W'W, lower triangle
        t_mem = time.perf_counter() - t0
        mem_peak = _peak() - base
        del W
        ref = np.tril(ref) + np.tril(ref, -1).T
        gc.collect()
        print(f"in-memory {t_mem:.1f} s, client peak +{mem_peak / GIB:.2f} GiB", flush=True)
        with (
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl,
            Client(cl) as c,
        ):
            snp_crossproducts(str(tmp / "tiny"), scheduler=c)  # imports and kernels loaded on the workers
            w_base = c.run(_reset_peak)
            base = _reset_peak()
            t0 = time.perf_counter()
            WtW = snp_crossproducts(str(prefix), scheduler=c)["WtW"]
            t = time.perf_counter() - t0
            c_peak = _peak() - base
            w_peak = {w: c.run(_peak, workers=[w])[w] - w_base[w] for w in w_base}
        diff = float(np.abs(WtW - ref).max() / np.abs(ref).max())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    wtxt = " / ".join(f"{v / GIB:.2f}" for v in w_peak.values())
    lines = [
        f"## SNP-BLUP W'W (`snp_crossproducts`), {a.n:,} individuals × {a.p:,} SNPs (seed {a.seed})",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}; run "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average at the end {os.getloadavg()[0]:.1f}. "
        f"8p² (one float64 p × p) = {8 * a.p * a.p / GIB:.2f} GiB.",
        "",
        "| path | seconds | × in-memory | client peak RSS above start (GiB) | worker peak RSS above start "
        "(GiB, each) | max abs Δ / max abs W'W |",
        "|---|---|---|---|---|---|",
        f"| in-memory (read, centre, one float64 DSYRK, 2 BLAS threads) | {t_mem:.1f} | 1.00 | "
        f"{mem_peak / GIB:.2f} |  | 0.0e+00 |",
        f"| 2-worker LocalCluster (1 thread each), individuals split per worker | {t:.1f} | {t / t_mem:.2f} | "
        f"{c_peak / GIB:.2f} | {wtxt} | {diff:.1e} |",
        "",
    ]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["grm", "crossproducts"], default="grm")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--p", type=int, default=20000)
    ap.add_argument("--chunks", type=int, nargs="+", default=[4, 16, 64])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--floor-blocks", type=int, default=8)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "dask.md"))
    ap.add_argument("--append", action="store_true", help="add this run's section to --out")
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    if a.part == "crossproducts":
        text = crossproducts(a)
        out = Path(a.out)
        if a.append and out.exists():
            out.write_text(out.read_text().rstrip("\n") + "\n\n" + text)
        else:
            out.write_text(text)
        print(text)
        return
    import numpy as np
    from distributed import Client, LocalCluster

    import henderson as h
    from henderson._testing.genotypes import simulate_genotypes

    tmp = Path(tempfile.mkdtemp(prefix="henderson-bench-dask-"))
    try:
        prefix = tmp / "g"
        t0 = time.perf_counter()
        geno = simulate_genotypes(a.n, a.p, seed=a.seed)
        h.write_plink(prefix, geno)
        h.write_plink(tmp / "tiny", simulate_genotypes(50, 200, seed=a.seed))  # warms the workers up
        del geno
        gc.collect()
        print(f"simulated + written in {time.perf_counter() - t0:.1f} s", flush=True)

        h.genomic_relationship(h.read_genotypes(str(tmp / "tiny")))  # kernels loaded before timing
        base = _reset_peak()
        t0 = time.perf_counter()
        ref = h.genomic_relationship(h.read_genotypes(str(prefix)))
        t_mem = time.perf_counter() - t0
        mem_peak = _peak() - base
        np.save(tmp / "ref.npy", ref.dense())
        del ref
        gc.collect()
        print(f"in-memory {t_mem:.1f} s, client peak +{mem_peak / GIB:.2f} GiB", flush=True)

        t_floor, b = _syrk_floor(a.n, a.p, a.floor_blocks)
        gc.collect()
        print(f"ssyrk floor {t_floor:.1f} s (block {b})", flush=True)

        rows = [("in-memory (read + G, 2 BLAS threads)", "", "", t_mem, mem_peak, None, 0.0)]
        for k in a.chunks:
            chunk = -(-a.p // k)
            with (
                LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl,
                Client(cl) as c,
            ):
                # imports, numba kernels and bed-reader loaded before the peaks are reset and the clock starts
                h.genomic_relationship(str(tmp / "tiny"), scheduler=c, chunk_snps=50)
                w_base = c.run(_reset_peak)
                base = _reset_peak()
                t0 = time.perf_counter()
                G = h.genomic_relationship(str(prefix), scheduler=c, chunk_snps=chunk).dense()
                t = time.perf_counter() - t0
                c_peak = _peak() - base
                w_peak = {w: c.run(_peak, workers=[w])[w] - w_base[w] for w in w_base}
            diff = _max_rel_diff(G, tmp / "ref.npy")
            del G
            gc.collect()
            rows.append((f"2-worker LocalCluster (1 thread each), {k} chunks", k, chunk, t, c_peak, w_peak, diff))
            print(rows[-1], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    import dask
    import numpy
    import scipy

    n2 = 8 * a.n * a.n
    lines = [
        f"## {a.n:,} individuals × {a.p:,} SNPs (VanRaden 1, seed {a.seed})",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {numpy.__version__}, scipy {scipy.__version__}, dask {dask.__version__}; "
        f"run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average at the end "
        f"{os.getloadavg()[0]:.1f}.",
        "",
        f"Bare SYRK floor of the same arithmetic (ssyrk of {b}-SNP float32 blocks, 2 BLAS threads, "
        f"{a.floor_blocks} blocks scaled to {a.p:,} SNPs): **{t_floor:.1f} s**. "
        f"8n² (one float64 n × n) = {n2 / GIB:.2f} GiB.",
        "",
        "| path | chunks | SNPs per chunk | seconds | × in-memory | × SYRK floor | client peak RSS above "
        "start (GiB) | worker peak RSS above start (GiB, each) | max abs ΔG / max abs G |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, k, chunk, t, cp, wp, diff in rows:
        wtxt = "" if wp is None else " / ".join(f"{v / GIB:.2f}" for v in wp.values())
        lines.append(
            f"| {name} | {k} | {chunk} | {t:.1f} | {t / t_mem:.2f} | {t / t_floor:.2f} | {cp / GIB:.2f} | "
            f"{wtxt} | {diff:.1e} |"
        )
    lines.append("")
    text = "\n".join(lines)
    out = Path(a.out)
    if a.append and out.exists():
        out.write_text(out.read_text().rstrip("\n") + "\n\n" + text)
    else:
        out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""Benchmark: read PLINK genotypes and build G (VanRaden 1) on simulated data.

Usage::

    .venv/bin/python benchmarks/bench_grm.py                 # 5,000 x 50,000
    .venv/bin/python benchmarks/bench_grm.py --n 1000 --p 5000 --out -   # quick check

Measures, in one process:

* simulate + write PLINK (bed-reader ``to_bed``), read back (bed-reader);
* ``genomic_relationship(method="vanraden1")`` on the exact float32 SSYRK path and
  on the float64 DSYRK path (time, tracemalloc peak of numpy allocations);
* the machine's SYRK throughput on a random matrix of the same shape (one
  ``ssyrk``/``dsyrk`` call), so that the achieved fraction is meaningful;
* ``plink1.9 --make-rel square bin`` on the same files, if ``plink1.9`` is on the
  PATH, compared with ``genomic_relationship(method="vanraden2")``.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import scipy
from scipy.linalg import blas

from henderson._testing.genotypes import simulate_genotypes
from henderson.io.genotypes import read_genotypes, write_plink
from henderson.relationships.genomic import genomic_relationship


def timed(fn, *args, **kw):
    tracemalloc.start()
    t = time.perf_counter()
    out = fn(*args, **kw)
    el = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, el, peak / 2**20


def syrk_seconds(n, p, dtype):
    rng = np.random.default_rng(0)
    a = rng.random((n, p), dtype=dtype).T  # F-contiguous (p, n): the layout G passes to BLAS
    c = np.zeros((n, n), dtype=dtype, order="F")
    f = blas.ssyrk if dtype == np.float32 else blas.dsyrk
    f(1.0, a[:256], beta=0.0, c=c, trans=1, lower=1, overwrite_c=1)  # warm up threads
    t = time.perf_counter()
    f(1.0, a, beta=0.0, c=c, trans=1, lower=1, overwrite_c=1)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--p", type=int, default=50000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "grm.md"))
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    n, p = args.n, args.p
    load0 = os.getloadavg()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="henderson_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []

    t = time.perf_counter()
    sim = simulate_genotypes(n, p, seed=args.seed)
    rows.append(("simulate_genotypes", time.perf_counter() - t, None))
    t = time.perf_counter()
    bed = write_plink(work / "sim", sim)
    rows.append(("write_plink (bed-reader to_bed)", time.perf_counter() - t, None))
    del sim

    geno, el, peak = timed(read_genotypes, bed)
    rows.append(("read_genotypes (bed-reader, int8)", el, peak))
    # warm-up on a tiny set: loads the numba kernels from cache (about 0.5-1 s once per
    # process), which is not part of the throughput being measured
    tiny = simulate_genotypes(20, 64, seed=2)
    for dt in ("float32", "float64"):
        genomic_relationship(tiny, "vanraden1", dtype=dt)
    genomic_relationship(tiny, "vanraden2")

    G32, t32, peak32 = timed(genomic_relationship, geno, "vanraden1", dtype="float32")
    rows.append((f"G vanraden1, exact float32 SSYRK path (block {G32.info['block_size']})", t32, peak32))
    g32 = np.array(G32.matrix)
    del G32
    G64, t64, peak64 = timed(genomic_relationship, geno, "vanraden1", dtype="float64")
    rows.append((f"G vanraden1, float64 DSYRK path (block {G64.info['block_size']})", t64, peak64))
    maxdiff = float(np.abs(np.asarray(G64.matrix) - g32).max())
    del G64, g32

    s_syrk = syrk_seconds(n, p, np.float32)
    d_syrk = syrk_seconds(n, p, np.float64)
    flops = float(n) * n * p  # SYRK: n(n+1)/2 dot products of length p, 2 flops each
    rows.append((f"reference ssyrk, random float32 {n}x{p}", s_syrk, None))
    rows.append((f"reference dsyrk, random float64 {n}x{p}", d_syrk, None))

    plink = shutil.which("plink1.9")
    plink_line = "plink1.9 not found on PATH"
    if plink:
        G2, t2, peak2 = timed(genomic_relationship, geno, "vanraden2")
        rows.append(("G vanraden2 (float64 DSYRK path)", t2, peak2))
        cmd = [
            plink,
            "--bfile",
            str(work / "sim"),
            "--make-rel",
            "square",
            "bin",
            "--allow-no-sex",
            "--threads",
            str(os.cpu_count()),
            "--out",
            str(work / "plink_rel"),
        ]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        tp = time.perf_counter() - t
        rows.append(("plink1.9 --make-rel square bin (wall, incl. process start)", tp, None))
        rel = np.fromfile(work / "plink_rel.rel.bin", dtype=np.float64).reshape(n, n)
        pdiff = float(np.abs(rel - np.asarray(G2.matrix)).max())
        plink_line = f"`{' '.join(cmd)}`; max |plink − henderson vanraden2| = {pdiff:.3g}"
        del G2, rel

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines = [
        "# Benchmark: genomic relationship matrix (VanRaden 1)",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_grm.py --n {n} --p {p} --seed {args.seed}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"numpy {np.__version__}, scipy {scipy.__version__}, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '-')}. "
        f"Data: simulate_genotypes({n}, {p}, seed={args.seed}), no missing calls, written as PLINK.",
        "",
        "| step | seconds | peak numpy memory (MiB, tracemalloc) |",
        "|---|---|---|",
    ]
    for name, sec, pk in rows:
        lines.append(f"| {name} | {sec:.2f} | {'' if pk is None else f'{pk:.0f}'} |")
    lines += [
        "",
        f"- SYRK work n²p = {flops:.3g} flops: machine SSYRK {flops / s_syrk / 1e9:.1f} GFLOP/s, "
        f"DSYRK {flops / d_syrk / 1e9:.1f} GFLOP/s.",
        f"- Achieved fraction of machine throughput: float32 path {s_syrk / t32:.0%} of SSYRK "
        f"({flops / t32 / 1e9:.1f} GFLOP/s); float64 path {d_syrk / t64:.0%} of DSYRK "
        f"({flops / t64 / 1e9:.1f} GFLOP/s). The float32 path is {t64 / t32:.2f}x faster than float64.",
        f"- max |G float32 path − G float64 path| = {maxdiff:.3g}.",
        f"- Result n×n float64 = {n * n * 8 / 2**20:.0f} MiB; float32 accumulator "
        f"{n * n * 4 / 2**20:.0f} MiB; genotypes int8 {n * p / 2**20:.0f} MiB.",
        f"- Process max RSS over the whole run (includes the {p}x{n} random float64 SYRK "
        f"reference matrix): {rss:.0f} MiB.",
        f"- PLINK: {plink_line}.",
        f"- Load average (1, 5, 15 min) at start {load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f}, at end "
        "{:.1f}/{:.1f}/{:.1f}: other processes share this 2-core machine, so timings are noisy.".format(
            *os.getloadavg()
        ),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out != "-":
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

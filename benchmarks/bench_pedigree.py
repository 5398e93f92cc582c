"""Benchmark: read, sort, inbreeding and A⁻¹ of a simulated 1,000,000-animal pedigree.

Usage::

    .venv/bin/python benchmarks/bench_pedigree.py [--n 1000000] [--generations 10]
        [--a22 2000] [--write benchmarks/results/pedigree.md]

The parent process simulates the pedigree and writes it as CSV to a temporary
directory; a fresh child process then times each step, so that its peak resident
memory (``ru_maxrss``) counts only the pedigree work (plus imports), not the
simulation. Numba kernels are compiled (or loaded from cache) on a tiny pedigree
before timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_mb() -> float:
    # Linux reports ru_maxrss in KiB: the process's peak resident set so far.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(path: str, a22: int) -> dict:
    import pandas as pd

    from henderson.io.pedigree import read_pedigree
    from henderson.relationships.pedigree import inbreeding, pedigree_inverse, pedigree_relationship

    warm = read_pedigree(pd.DataFrame({"id": ["a", "b", "c"], "sire": [None, None, "a"], "dam": [None, None, "b"]}))
    pedigree_inverse(warm), pedigree_relationship(warm), pedigree_relationship(warm, ids=["c"])
    out = {"rss_after_imports_mb": rss_mb()}

    t, c = time.perf_counter(), time.process_time()
    ped = read_pedigree(path)
    out["read_file_check_sort_s"] = (time.perf_counter() - t, time.process_time() - c)
    out["rss_after_read_mb"] = rss_mb()

    t, c = time.perf_counter(), time.process_time()
    F = inbreeding(ped)
    out["inbreeding_s"] = (time.perf_counter() - t, time.process_time() - c)
    out["rss_after_inbreeding_mb"] = rss_mb()

    ped2 = read_pedigree(path)  # a fresh Pedigree, so A⁻¹ also computes F (not cached)
    t, c = time.perf_counter(), time.process_time()
    Ainv = pedigree_inverse(ped2)
    out["ainv_with_inbreeding_s"] = (time.perf_counter() - t, time.process_time() - c)
    out["rss_after_ainv_mb"] = rss_mb()
    t, c = time.perf_counter(), time.process_time()
    pedigree_inverse(ped)  # F already cached on ped: the rules and CSR assembly only
    out["ainv_rules_only_s"] = (time.perf_counter() - t, time.process_time() - c)
    out["rss_peak_mb"] = rss_mb()

    t, c = time.perf_counter(), time.process_time()
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    out["pandas_read_csv_s"] = (time.perf_counter() - t, time.process_time() - c)
    t, c = time.perf_counter(), time.process_time()
    read_pedigree(frame)
    out["check_code_sort_from_frame_s"] = (time.perf_counter() - t, time.process_time() - c)

    if a22:
        ids = ped.ids[-a22:]  # youngest animals, as genotyped candidates would be
        t, c = time.perf_counter(), time.process_time()
        pedigree_relationship(ped, ids=ids)
        out[f"colleau_A22_{a22}_s"] = (time.perf_counter() - t, time.process_time() - c)

    out.update(
        n=len(ped),
        generations=int(ped.generation[-1]) + 1,
        founders=ped.n_founders,
        nnz_ainv=int(Ainv.matrix.nnz),
        mean_F=float(F.mean()),
        max_F=float(F.max()),
        share_inbred=float((F > 0).mean()),
        logdet_A=Ainv.info["logdet"],
        rss_final_mb=rss_mb(),
    )
    return out


def fmt(wall_cpu) -> str:
    wall, cpu = wall_cpu
    return f"{wall:.2f} s | {cpu:.2f} s"


def report(res: dict, cmd: str, sim_s: float, write_s: float, file_mb: float) -> str:
    import numba
    import numpy
    import pandas
    import scipy

    rows = [
        ("simulate (not part of the target)", f"{sim_s:.2f} s | "),
        ("write CSV (not part of the target)", f"{write_s:.2f} s ({file_mb:.0f} MB) | "),
        ("`read_pedigree(path)`: read CSV + checks + coding + sort", fmt(res["read_file_check_sort_s"])),
        ("  of which `pandas.read_csv` alone", fmt(res["pandas_read_csv_s"])),
        ("  checks + coding + sort from a DataFrame", fmt(res["check_code_sort_from_frame_s"])),
        ("`inbreeding(ped)` (Meuwissen & Luo)", fmt(res["inbreeding_s"])),
        ("`pedigree_inverse(ped)` incl. inbreeding", fmt(res["ainv_with_inbreeding_s"])),
        ("`pedigree_inverse(ped)`, inbreeding cached", fmt(res["ainv_rules_only_s"])),
    ]
    rows += [
        (f"`pedigree_relationship(ped, ids=<{k.split('_')[2]} youngest>)` (Colleau)", fmt(v))
        for k, v in res.items()
        if k.startswith("colleau_")
    ]
    rows += [
        ("peak RSS after imports + warm-up", f"{res['rss_after_imports_mb']:.0f} MB | "),
        ("peak RSS after read", f"{res['rss_after_read_mb']:.0f} MB | "),
        ("peak RSS after inbreeding", f"{res['rss_after_inbreeding_mb']:.0f} MB | "),
        ("peak RSS after A⁻¹ (two Pedigrees held)", f"{res['rss_peak_mb']:.0f} MB | "),
    ]
    lines = [
        "# Pedigree benchmark",
        "",
        f"Command: `{cmd}`",
        "",
        f"Pedigree: {res['n']:,} animals, {res['generations']} generation levels, "
        f"{res['founders']:,} founders (simulated: `henderson._testing.pedigree.simulate_pedigree`, "
        f"5 % of males used as sires, 5 % unknown parents); A⁻¹ has {res['nnz_ainv']:,} non-zeros; "
        f"mean F = {res['mean_F']:.2e}, max F = {res['max_F']:.4f}, "
        f"{100 * res['share_inbred']:.1f} % inbred; log|A| = {res['logdet_A']:.2f}.",
        "",
        "| step | wall | CPU (this process) |",
        "|---|---|---|",
        *[f"| {a} | {b} |" for a, b in rows],
        "",
        "Target: inbreeding and A⁻¹ under 30 s and 2 GB. Peak RSS is `ru_maxrss` of a fresh",
        "child process (imports included); single run. Wall time is inflated when other jobs share the",
        "2 cores; CPU time of the benchmark process is the steadier figure.",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {numpy.__version__}, scipy {scipy.__version__}, pandas {pandas.__version__}, "
        f"numba {numba.__version__}. Load average at the end: {os.getloadavg()[0]:.1f} "
        + ("(other jobs shared the machine)." if os.getloadavg()[0] > 1.5 else "(a quiet machine)."),
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--generations", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--a22", type=int, default=0, help="also time Colleau's A for this many youngest animals")
    ap.add_argument("--write", type=Path, default=None, help="write the markdown report here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.a22)))
        return

    from henderson._testing.pedigree import simulate_pedigree

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        df = simulate_pedigree(args.n, args.generations, seed=args.seed, shuffle=True)
        sim_s = time.perf_counter() - t
        path = Path(tmp) / "pedigree.csv"
        t = time.perf_counter()
        df.to_csv(path, index=False, na_rep="0")
        write_s = time.perf_counter() - t
        del df
        file_mb = path.stat().st_size / 2**20
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(path), "--a22", str(args.a22)],
            check=True,
            capture_output=True,
            text=True,
        )
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    cmd = "python benchmarks/bench_pedigree.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report(res, cmd.strip(), sim_s, write_s, file_mb)
    print(text)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text)


if __name__ == "__main__":
    main()

"""Peak memory of exact sparse AI-REML against the size of its Cholesky factor.

Model and data as part 2 of benchmarks/bench_sparse.py (``y ~ 1 + (1|id)`` with A⁻¹,
every animal recorded, seeded). Each run is a child process: peak RSS (ru_maxrss)
before ``fit`` (kernels compiled on a 2,000-animal fit, data and A⁻¹ built) and after it; the increment is set against the
factor's value array (8 bytes × storage of L), the floor any factor-based REML needs.
With ``--baseline REV`` the same child runs on git revision REV's ``src/`` (extracted
with ``git archive``), so before and after are measured in the same run.

Usage::

    .venv/bin/python benchmarks/bench_sparse_memory.py --sizes 100000 --baseline 1defa3b
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(n: int) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_sparse import simulate_animal_model

    import henderson as h
    from henderson.solvers.sparse import SparseMME
    from henderson.spec.model import build_spec

    warnings.simplefilter("ignore")
    # compile (or load from numba's cache) every kernel on a small model first: a tree
    # extracted by --baseline has no cache, and JIT time and memory are not the fit's
    small, small_inv = simulate_animal_model(2000)
    h.fit("y ~ 1 + (1|id)", small, cov_inverse={"id": small_inv})
    data, Ainv = simulate_animal_model(n)
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    res = h.fit("y ~ 1 + (1|id)", data, cov_inverse={"id": Ainv})
    fit_s = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    an = SparseMME(build_spec("y ~ 1 + (1|id)", data, cov_inverse={"id": Ainv})).analysis([True])
    fac = an.symbolic.size * 8 / 2**20
    return dict(
        n=n,
        rss_before=r0,
        rss_after=r1,
        increment=r1 - r0,
        factor_mib=fac,
        sigma2=res.sigma2.tolist(),
        iterations=res.iterations,
        fit_s=fit_s,
    )


def run(n: int, src: str) -> dict:
    env = dict(os.environ, PYTHONPATH=src)
    p = subprocess.run([sys.executable, __file__, "--child", str(n)], capture_output=True, text=True, env=env)
    if p.returncode:
        return {"n": n, "error": p.stderr.strip().splitlines()[-1:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    ap.add_argument("--baseline")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "sparse_memory.md"))
    ap.add_argument("--child", type=int)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        trees = [("now", str(ROOT / "src"))]
        if a.baseline:
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", a.baseline, "src"], capture_output=True, check=True
            )
            subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
            trees.insert(0, (a.baseline, str(Path(tmp) / "src")))
        for n in a.sizes:
            for label, src in trees:
                r = run(n, src) | {"tree": label}
                print(r, flush=True)
                rows.append(r)
    lines = [
        "# Exact sparse AI-REML: peak memory against the factor",
        "",
        "`y ~ 1 + (1|id)` with A⁻¹, every animal recorded (benchmarks/bench_sparse.py's simulator). Peak RSS",
        "(ru_maxrss) of a child process before and after `fit` (numba kernels compiled first on a 2,000-animal",
        "fit, in both trees); `× factor` = increment / factor MiB; `fit s` = seconds of that fit.",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| animals | code | AI iterations | σ² (id, residual) | factor MiB | RSS before → after MiB | increment MiB | × factor | fit s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['n']:,} | {r['tree']} | error: {r['error']} | | | | | | |")
            continue
        lines.append(
            f"| {r['n']:,} | {r['tree']} | {r['iterations']} | {r['sigma2'][0]:.4f}, {r['sigma2'][1]:.4f} | "
            f"{r['factor_mib']:.0f} | {r['rss_before']:.0f} → {r['rss_after']:.0f} | {r['increment']:.0f} | "
            f"{r['increment'] / r['factor_mib']:.1f} | {r['fit_s']:.1f} |"
        )
    lines.append("")
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

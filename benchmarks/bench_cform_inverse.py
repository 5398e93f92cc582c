"""Benchmark: the SPD inverse from a Cholesky factor, dpotri against dtrtri + dsyrk.

Usage (from the repo root, under the benchmark lock)::

    flock /tmp/henderson-bench.lock timeout 600 env PYTHONPATH=src .venv/bin/python benchmarks/bench_cform_inverse.py

Both routes of :func:`henderson.solvers._spd.inverse_from_cholesky` (shared by the dense
C-form for C⁻¹ and the V-form for V⁻¹) on a seeded SPD matrix A = BB'/k + I of order m
(``--sizes``, default 2,000 and 5,000), under the engines' BLAS thread rule
(``blas_threads_for(m)``: one thread below 2,000 rows, all above). The floor is one
``dpotrf`` of the same matrix in the same run; each route is reported as seconds and as
a ratio to it, and dpotri as a ratio to dsyrk. Best of ``--repeats`` (default 3).
Both inverses are checked equal (1e-10 relative) before timing counts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.linalg import lapack

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_engine import machine_info  # noqa: E402

from henderson._threads import blas_threads_for  # noqa: E402
from henderson.solvers._spd import default_route, inverse_from_cholesky  # noqa: E402


def _best(f, repeats):
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        out.append(time.perf_counter() - t)
    return min(out)


def run(m: int, repeats: int) -> dict:
    rng = np.random.default_rng(m)
    B = rng.normal(size=(m, m // 2))
    A = np.asfortranarray(B @ B.T / (m // 2) + np.eye(m))
    del B
    with blas_threads_for(m):
        t_chol = _best(lambda: lapack.dpotrf(A, lower=1, clean=0), repeats)
        L, info = lapack.dpotrf(A, lower=1, clean=0)
        assert info == 0
        a = inverse_from_cholesky(L, "dpotri")
        b = inverse_from_cholesky(L, "dsyrk")
        err = float(np.max(np.abs(a - b)) / np.max(np.abs(a)))
        assert err < 1e-10, err
        del a, b
        t_potri = _best(lambda: inverse_from_cholesky(L, "dpotri"), repeats)
        t_syrk = _best(lambda: inverse_from_cholesky(L, "dsyrk"), repeats)
    return dict(m=m, chol=t_chol, potri=t_potri, syrk=t_syrk, err=err, default=default_route(m))


def report(rows, args) -> str:
    out = [
        "# SPD inverse from a Cholesky factor: dpotri against dtrtri + dsyrk",
        "",
        "Command: `flock /tmp/henderson-bench.lock timeout 600 env PYTHONPATH=src "
        f"/work/main/.venv/bin/python benchmarks/bench_cform_inverse.py --sizes {' '.join(map(str, args.sizes))} "
        f"--repeats {args.repeats}`",
        "",
        *machine_info(),
        "",
        "Best of the repeats; floor: one `dpotrf` of the same matrix in the same run and thread setting.",
        "",
        "| m | dpotrf (floor) s | dpotri s | dtrtri+dsyrk s | dpotri / floor | dsyrk / floor "
        "| dpotri / dsyrk | V-form default route | max rel. diff |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['m']:,} | {r['chol']:.3f} | {r['potri']:.3f} | {r['syrk']:.3f} | {r['potri'] / r['chol']:.2f}× "
            f"| {r['syrk'] / r['chol']:.2f}× | {r['potri'] / r['syrk']:.2f}× | {r['default']} | {r['err']:.1e} |"
        )
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results" / "cform_inverse.md"))
    args = ap.parse_args(argv)
    rows = []
    for m in args.sizes:
        rows.append(run(m, args.repeats))
        print(rows[-1], flush=True)
    text = report(rows, args)
    if args.out == "-":
        print(text)
    else:
        Path(args.out).write_text(text)
        print(text)


if __name__ == "__main__":
    main()

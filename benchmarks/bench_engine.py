"""Benchmark: ``henderson.fit`` (dense MME + AI-REML) against lme4 on ``y ~ x + (1|g)``.

Usage::

    .venv/bin/python benchmarks/bench_engine.py                       # cases a, b, c
    .venv/bin/python benchmarks/bench_engine.py --cases a --repeats 3 --out -   # quick
    .venv/bin/python benchmarks/bench_engine.py --profile b           # cProfile only

Simulates seeded data y = 1 + 0.5 x + u_g + e with u ~ N(0, σ²_g = 1), e ~ N(0, σ²_e = 2),
balanced-ish random assignment of records to levels, and for each case

* times ``henderson.fit("y ~ x + (1|g)", df)`` (median of ``--repeats`` fits after one
  warm-up fit; the import is excluded), reporting ``timings`` (spec / prepare /
  optimise), REML iterations, calls to ``DenseMME.evaluate`` and optimise seconds per
  iteration;
* writes the data to CSV under ``benchmarks/_work/`` and times lme4
  ``lmer(y ~ x + (1|g), REML = TRUE)`` via ``Rscript`` (``system.time`` around the lmer
  call only, elapsed; median of the same number of repeats after one warm-up);
* compares σ² (relative difference) and the REML log-likelihood with lme4's.

``--profile CASE`` runs cProfile on one fit and prints the top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import scipy

import henderson
from henderson.solvers.dense import DenseMME

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work"
CASES = {"a": (2_000, 200), "b": (10_000, 1_000), "c": (50_000, 5_000)}
TRUE = {"g": 1.0, "residual": 2.0}
FORMULA = "y ~ x + (1|g)"


def simulate(n: int, q: int, seed: int = 20240601) -> pd.DataFrame:
    rng = np.random.default_rng(seed + n)
    g = rng.integers(0, q, size=n)
    g[:q] = np.arange(q)  # every level observed
    u = rng.normal(0.0, np.sqrt(TRUE["g"]), size=q)
    x = rng.normal(size=n)
    y = 1.0 + 0.5 * x + u[g] + rng.normal(0.0, np.sqrt(TRUE["residual"]), size=n)
    return pd.DataFrame({"y": y, "x": x, "g": pd.Categorical([f"L{i:05d}" for i in g])})


class EvalCounter:
    """Count calls to DenseMME.evaluate (line-search trials cost extra evaluations)."""

    def __enter__(self):
        self.n = 0
        self._orig = DenseMME.evaluate
        orig = self._orig

        def counted(obj, *a, **kw):
            self.n += 1
            return orig(obj, *a, **kw)

        DenseMME.evaluate = counted
        return self

    def __exit__(self, *exc):
        DenseMME.evaluate = self._orig


def bench_henderson(df: pd.DataFrame, repeats: int, warmup: bool = True) -> dict:
    if warmup:
        henderson.fit(FORMULA, df)  # warm-up (lazy imports, numba, BLAS threads)
    runs = []
    for _ in range(repeats):
        with EvalCounter() as cnt:
            t = time.perf_counter()
            res = henderson.fit(FORMULA, df)
            wall = time.perf_counter() - t
        runs.append((wall, res, cnt.n))
    runs.sort(key=lambda r: r[0])
    wall, res, nev = runs[len(runs) // 2]
    tm = res.timings
    # peak memory of one more fit, untimed: numpy/scipy allocations traced by tracemalloc
    tracemalloc.start()
    henderson.fit(FORMULA, df)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {
        "peak_mib": peak,
        "wall": wall,
        "walls": [r[0] for r in runs],
        "timings": dict(tm),
        "iterations": int(res.iterations),
        "evaluations": nev,
        "per_iter": tm["optimise"] / max(res.iterations, 1),
        "sigma2": {k: float(v) for k, v in res.sigma2.items()},
        "loglik": float(res.loglik),
        "solver": res.solver,
    }


R_SCRIPT = r"""
suppressMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1]); d$g <- factor(d$g)
reps <- as.integer(args[2])
m <- lmer(y ~ x + (1|g), data = d, REML = TRUE)  # warm-up
el <- numeric(reps)
for (i in seq_len(reps)) {
  st <- system.time(m <- lmer(y ~ x + (1|g), data = d, REML = TRUE))
  el[i] <- st[["elapsed"]]
}
vc <- as.data.frame(VarCorr(m))
cat(sprintf('{"elapsed": [%s], "g": %.12g, "residual": %.12g, "loglik": %.12g, "lme4": "%s", "R": "%s", "blas": "%s"}\n',
    paste(sprintf("%.4f", el), collapse = ", "), vc$vcov[vc$grp == "g"],
    vc$vcov[vc$grp == "Residual"], as.numeric(logLik(m)), packageVersion("lme4"),
    paste(R.version$major, R.version$minor, sep = "."), extSoftVersion()[["BLAS"]]))
"""


def bench_lme4(csv: Path, repeats: int) -> dict | None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    script = WORK / "lmer_bench.R"
    script.write_text(R_SCRIPT)
    out = subprocess.run([rscript, str(script), str(csv), str(repeats)], capture_output=True, text=True, check=True)
    line = [s for s in out.stdout.splitlines() if s.startswith("{")][-1]
    r = json.loads(line)
    r["median"] = float(np.median(r["elapsed"]))
    return r


def profile(df: pd.DataFrame, top: int = 25) -> str:
    henderson.fit(FORMULA, df)  # warm-up
    pr = cProfile.Profile()
    pr.enable()
    res = henderson.fit(FORMULA, df)
    pr.disable()
    s = io.StringIO()
    st = pstats.Stats(pr, stream=s).sort_stats("tottime")
    st.print_stats(top)
    s.write("\n--- cumulative ---\n")
    pstats.Stats(pr, stream=s).sort_stats("cumulative").print_stats(top)
    return f"iterations={res.iterations} timings={res.timings}\n" + s.getvalue()


def machine_info() -> list[str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lines = [
        f"- `nproc`: {os.cpu_count()}; CPU: {cpu}; {platform.platform()}",
        f"- Python {platform.python_version()}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, pandas {pd.__version__}, "
        f"henderson {getattr(henderson, '__version__', '?')}",
    ]
    try:
        from threadpoolctl import threadpool_info

        for p in threadpool_info():
            lines.append(
                f"- numpy/scipy BLAS (threadpoolctl): {p.get('internal_api')} "
                f"{p.get('version')}, {p.get('num_threads')} threads, "
                f"arch {p.get('architecture')} ({Path(p.get('filepath', '')).name})"
            )
    except ImportError:
        lines.append("- threadpoolctl not installed")
    return lines


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="abc", help="subset of 'abc'")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--repeats-c", type=int, default=1, help="repeats for case c (no warm-up fit when case a or b ran first)"
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="limit numpy/scipy BLAS threads (threadpoolctl); default: BLAS default",
    )
    ap.add_argument("--no-r", action="store_true", help="skip lme4")
    ap.add_argument("--profile", metavar="CASE", help="cProfile one fit of CASE and exit")
    ap.add_argument("--out", default=str(HERE / "results" / "engine.md"), help="markdown output ('-' for stdout only)")
    a = ap.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    if a.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(a.threads)

    if a.profile:
        n, q = CASES[a.profile]
        print(profile(simulate(n, q)))
        return 0

    rows, detail = [], []
    for c in a.cases:
        n, q = CASES[c]
        reps = a.repeats_c if c == "c" else a.repeats
        df = simulate(n, q)
        csv = WORK / f"engine_{c}_{n}x{q}.csv"
        df.to_csv(csv, index=False)
        h = bench_henderson(df, reps, warmup=not (c == "c" and rows))
        print(f"[{c}] henderson {h['wall']:.3f}s {h['iterations']} it {h}", file=sys.stderr)
        r = None if a.no_r else bench_lme4(csv, reps)
        print(f"[{c}] lme4 {r}", file=sys.stderr)
        hs = h["sigma2"]
        row = {
            "case": f"({c}) {n:,} × {q:,}",
            "h_fit": h["wall"],
            "h_opt": h["timings"]["optimise"],
            "h_prep": h["timings"]["spec"] + h["timings"]["prepare"],
            "iters": h["iterations"],
            "evals": h["evaluations"],
            "per_iter": h["per_iter"],
            "peak": h["peak_mib"],
            "sg": hs["g"],
            "se": hs["Residual"],
            "ll": h["loglik"],
        }
        if r is not None:
            row.update(
                r_fit=r["median"],
                ratio=h["wall"] / r["median"],
                dg=rel(hs["g"], r["g"]),
                de=rel(hs["Residual"], r["residual"]),
                dll=h["loglik"] - r["loglik"],
                r_sg=r["g"],
                r_se=r["residual"],
                r_ll=r["loglik"],
            )
        rows.append(row)
        detail.append((c, h, r))

    md = [
        "# Engine benchmark: `y ~ x + (1|g)`, henderson (dense MME, AI-REML) vs lme4",
        "",
        "Simulated (seeded): y = 1 + 0.5x + u_g + e, σ²_g = 1, σ²_e = 2, records assigned "
        "to levels uniformly at random (every level observed).",
        "",
        "Command (from the repo root):",
        "",
        "```",
        "python benchmarks/bench_engine.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "```",
        "",
        "| case (n × q) | henderson fit s | optimise s | spec+prepare s | iterations "
        "(evaluate calls) | s / REML iteration | peak MiB (tracemalloc) | lme4 lmer s | henderson / lme4 | "
        "σ²_g (h) | σ²_e (h) | rel. diff σ²_g | rel. diff σ²_e | logLik (h) | Δ logLik (h − lme4) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rr = f"{r['r_fit']:.3f} | {r['ratio']:.1f}× | " if "r_fit" in r else "– | – | "
        cmp_ = (
            f"{r['dg']:.1e} | {r['de']:.1e} | {r['ll']:.4f} | {r['dll']:+.1e} |"
            if "dg" in r
            else f"– | – | {r['ll']:.4f} | – |"
        )
        md.append(
            f"| {r['case']} | {r['h_fit']:.3f} | {r['h_opt']:.3f} | {r['h_prep']:.3f} | "
            f"{r['iters']} ({r['evals']}) | {r['per_iter']:.3f} | {r['peak']:.1f} | "
            + rr
            + f"{r['sg']:.4f} | {r['se']:.4f} | "
            + cmp_
        )
    md += [
        "",
        "Timings: henderson = median wall time of `henderson.fit` over the repeats after "
        "one warm-up fit in the same process (import excluded); `timings` columns are from the "
        'median run. lme4 = median `system.time(lmer(...))["elapsed"]` over the same number '
        "of repeats after one warm-up call in the same R session (CSV read and package load "
        "excluded).",
        "",
    ]
    if any(r is not None for _, _, r in detail):
        r0 = next(r for _, _, r in detail if r is not None)
        md += [
            f"lme4 {r0['lme4']} on R {r0['R']}, BLAS: `{r0['blas']}` — **R uses Debian's "
            "reference (netlib) BLAS/LAPACK here**, not OpenBLAS. lme4's dense work is small "
            "for this model (its sparse Cholesky of Λ'Z'ZΛ + I is via CHOLMOD), so the BLAS "
            "matters less for lme4 than for henderson's dense MME.",
            "",
        ]
        md += [
            "lme4 estimates: "
            + "; ".join(
                f"({c}) σ²_g = {r['g']:.6f}, σ²_e = {r['residual']:.6f}, logLik = {r['loglik']:.6f}"
                for c, _, r in detail
                if r is not None
            ),
            "",
        ]
    md += (
        [
            "Per-run henderson wall times (s): "
            + "; ".join(f"({c}) " + ", ".join(f"{w:.3f}" for w in h["walls"]) for c, h, _ in detail),
            "",
            "henderson solver: " + ", ".join(sorted({h["solver"] for _, h, _ in detail})),
            "",
            "## Machine",
            "",
        ]
        + machine_info()
        + [""]
    )
    text = "\n".join(md)
    print(text)
    if a.out != "-":
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        if Path(a.out).exists():
            old = Path(a.out).read_text()
            marker = "\n**Caveat on timings"
            if marker in old:  # keep the hand-written notes (caveat, profile) below the generated part
                text += old[old.index(marker) :]
        Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

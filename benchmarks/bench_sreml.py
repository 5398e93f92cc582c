"""Stochastic REML (Monte Carlo AI-REML with PCG) on the animal model, up to 1,000,000 animals.

Model and data as benchmarks/bench_pcg.py: y ~ sex + (1|herd) + (1|id), A⁻¹ for id, one
record per animal, seeded simulator with σ² = (herd 0.5, animal 1.0, residual 2.0).
Each size runs in its own child process (peak RSS is its own). Reported per size:

- ``sreml s``: the whole estimation (all chains) and its AI rounds per chain;
- ``floor s``: one PCG solve at the true σ² to 1e-10 in the same process — the unit
  the estimation is measured in (``ratio`` = sreml s / floor s), so the figure can be
  compared across loads of the shared machine;
- ``baseline s`` (with ``--baseline REV``): the stochastic REML of git revision REV
  (its ``henderson/reml/stochastic.py`` loaded beside the current package) on the same
  data, same samples and chains, same process;
- estimates ± Monte Carlo SE against the simulating values.

Usage::

    flock /tmp/henderson-bench.lock .venv/bin/python benchmarks/bench_sreml.py \
        --sizes 30000 100000 1000000 --samples 20 20 5 [--baseline 1defa3b --baseline-max 30000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

SIGMA2 = [0.5, 1.0, 2.0]
FORMULA = "y ~ sex + (1|herd) + (1|id)"
ROOT = Path(__file__).resolve().parents[1]


def _baseline_module(rev: str):
    """The stochastic REML module of git revision ``rev``, importing the current package."""
    import types

    src = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:src/henderson/reml/stochastic.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    src = src.replace("from ..", "from henderson.")
    mod = types.ModuleType("stochastic_baseline")
    exec(compile(src, f"{rev}:stochastic.py", "exec"), mod.__dict__)
    return mod


def child(n: int, samples: int, chains: int, baseline: str | None) -> dict:

    from henderson._testing.animal_model import simulate_animal_model
    from henderson.reml.stochastic import stochastic_reml
    from henderson.solvers.pcg import PCGMME
    from henderson.spec.model import build_spec

    t0 = time.perf_counter()
    sim = simulate_animal_model(n, generations=10, seed=1, herds=max(2, n // 200))
    spec = build_spec(FORMULA, sim["records"], cov_inverse={"id": sim["ainv"]})
    t1 = time.perf_counter()
    state = PCGMME(spec, SIGMA2)
    state.solve(tol=1e-2)  # load the numba kernels
    t2 = time.perf_counter()
    _, info = state.solve(tol=1e-10)
    floor = time.perf_counter() - t2
    t3 = time.perf_counter()
    r = stochastic_reml(spec, n_samples=samples, chains=chains, seed=1)
    t4 = time.perf_counter()
    out = {
        "n": n,
        "samples": samples,
        "chains": chains,
        "setup_s": t1 - t0,
        "floor_s": floor,
        "floor_rounds": info.rounds,
        "sreml_s": t4 - t3,
        "ai_rounds": r["iterations"],
        "pcg_rounds": [sum(a + b for _, _, a, b in c) for c in r["pcg_rounds"]],
        "estimates": r["sigma2"].tolist(),
        "mc_se": r["mc_se"].tolist(),
        "true": SIGMA2,
        "converged": r["converged"],
    }
    if baseline:
        old = _baseline_module(baseline)
        t5 = time.perf_counter()
        rb = old.stochastic_reml(spec, n_samples=samples, chains=chains, seed=1)
        out["baseline_s"] = time.perf_counter() - t5
        out["baseline_estimates"] = rb["sigma2"].tolist()
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run(n, samples, chains, baseline) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, __file__, "--child", str(n), str(samples), str(chains), baseline or ""]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        return {"n": n, "error": p.stderr.strip().splitlines()[-1:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[30_000, 100_000, 1_000_000])
    ap.add_argument("--samples", type=int, nargs="+", default=[20, 20, 5])
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--baseline")
    ap.add_argument("--baseline-max", type=int, default=30_000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "sreml.md"))
    ap.add_argument("--child", nargs=4)
    ap.add_argument("--from-log", help="write the table from a log of this script's printed rows")
    a = ap.parse_args()
    if a.from_log:
        import ast

        rows = [ast.literal_eval(x) for x in Path(a.from_log).read_text().splitlines() if x.startswith("{")]
        write(rows, a.out)
        return
    if a.child:
        n, s, c, b = a.child
        print(json.dumps(child(int(n), int(s), int(c), b or None)))
        return
    samples = a.samples + [a.samples[-1]] * (len(a.sizes) - len(a.samples))
    rows = []
    for n, s in zip(a.sizes, samples):
        r = run(n, s, a.chains, a.baseline if a.baseline and n <= a.baseline_max else None)
        print(r, flush=True)
        rows.append(r)
    write(rows, a.out)


def write(rows: list, out: str) -> None:
    """The results table of ``rows`` (child outputs) to ``out``."""
    import numpy
    import scipy

    lines = [
        "# Stochastic REML (Monte Carlo AI-REML, PCG solves): animal model",
        "",
        f"`{FORMULA}`, A⁻¹ for id, one record per animal, simulated σ² = {SIGMA2} (herd, animal, residual).",
        "`floor s`: one PCG solve to 1e-10 at the true σ² in the same process; `ratio` = sreml s / floor s.",
        "`PCG rounds`: total lockstep PCG rounds of each chain (data + samples, and AI solves).",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} cores (shared with other sessions), Python "
        f"{platform.python_version()}, numpy {numpy.__version__}, scipy {scipy.__version__}; run "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| animals | samples × chains | AI rounds | PCG rounds | sreml s | floor s | ratio | baseline s | "
        "σ² herd | σ² animal | σ² residual | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['n']:,} | error: {r['error']} |" + " |" * 10)
            continue
        est = [f"{e:.3f} ± {m:.3f}" for e, m in zip(r["estimates"], r["mc_se"])]
        base = f"{r['baseline_s']:.1f}" if "baseline_s" in r else ""
        lines.append(
            f"| {r['n']:,} | {r['samples']} × {r['chains']} | {r['ai_rounds']} | {r['pcg_rounds']} | "
            f"{r['sreml_s']:.1f} | {r['floor_s']:.2f} | {r['sreml_s'] / r['floor_s']:.0f} | {base} | "
            f"{est[0]} | {est[1]} | {est[2]} | {r['peak_rss_mib']:.0f} |"
        )
    lines += ["", "Estimates are ± Monte Carlo SE (SD of the chains / √chains); true values " + str(SIGMA2) + "."]
    for r in rows:
        if "baseline_estimates" in r:
            lines.append(
                f"Baseline at {r['n']:,}: {[round(x, 4) for x in r['baseline_estimates']]} "
                f"(new {[round(x, 4) for x in r['estimates']]}): speed-up {r['baseline_s'] / r['sreml_s']:.1f}×."
            )
    lines.append("")
    Path(out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""PCG (iteration on data) vs the sparse direct solve, animal model at given variances.

Model: y ~ sex + (1|herd) + (1|id) with the pedigree's A⁻¹ for id, one record per
animal, simulated by henderson._testing.animal_model (seeded). For each size, each
solver runs in its own child process so that its peak RSS (ru_maxrss) is its own:

- ``pcg``: build the spec, then PCG to ‖r − Cx‖/‖r‖ <= 1e-10 (rounds reported);
- ``direct``: build the spec, then one SuperLU factorisation and solve of the same
  MME (``SparseMME.evaluate`` at the same σ², no derivatives).

Timings split the set-up (simulation and A⁻¹: not the solvers' cost) from the
solve. BLUPF90's published figure is printed beside ours: about 90 PCG rounds for
a 1.1-million-animal Finnish dairy animal model (Lidauer, Strandén, Mäntysaari,
Pösö & Kettunen 1999, J Dairy Sci 82:2788).

Usage::

    flock /tmp/henderson-bench.lock .venv/bin/python benchmarks/bench_pcg.py \
        [--sizes 10000 100000 1000000] [--direct-max 300000] [--out results/pcg.md]
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

SIGMA2 = [0.5, 1.0, 2.0]  # herd, animal, residual (h² = 1/3.5 of the non-herd variance)
FORMULA = "y ~ sex + (1|herd) + (1|id)"


def child(n: int, solver: str) -> dict:
    import numpy as np

    from henderson._testing.animal_model import simulate_animal_model
    from henderson.spec.model import build_spec

    t0 = time.perf_counter()
    sim = simulate_animal_model(n, generations=10, seed=1, herds=max(2, n // 200))
    t1 = time.perf_counter()
    spec = build_spec(FORMULA, sim["records"], cov_inverse={"id": sim["ainv"]})
    t2 = time.perf_counter()
    out = {"n": n, "solver": solver, "records": spec.n, "simulate_s": t1 - t0, "spec_s": t2 - t1}
    if solver == "pcg":
        from henderson.solvers.pcg import PCGMME

        state = PCGMME(spec, SIGMA2)
        state.precondition(state.matvec(np.zeros(state.m)))  # load the numba kernels (cached JIT)
        t3 = time.perf_counter()
        x, info = state.solve(tol=1e-10)
        t4 = time.perf_counter()
        u = state.term_values(x, 1)
        out.update(
            prepare_s=t3 - t2, solve_s=t4 - t3, rounds=info.rounds, rel_residual=info.rel_residual, equations=state.m
        )
    elif solver == "sreml":
        from henderson.reml.stochastic import stochastic_reml
        from henderson.solvers.pcg import PCGMME

        t3 = time.perf_counter()
        r = stochastic_reml(spec, n_samples=20, chains=4, seed=1)
        t4 = time.perf_counter()
        state = PCGMME(spec, r["sigma2"])
        x, info = state.solve(tol=1e-10)
        u = state.term_values(x, 1)
        true = sim["sigma2"]
        out.update(
            prepare_s=0.0,
            solve_s=t4 - t3,
            rounds=f"{max(r['iterations'])} AI rounds",
            equations=state.m,
            estimates=r["sigma2"].tolist(),
            mc_se=r["mc_se"].tolist(),
            true=[true["herd"], true["a"], true["e"]],
        )
    else:
        from henderson.solvers.sparse import SparseMME

        state = SparseMME(spec)
        t3 = time.perf_counter()
        ev = state.evaluate(SIGMA2)
        t4 = time.perf_counter()
        a, b = ev.spans[1]
        u = ev.solution[a:b]
        out.update(prepare_s=t3 - t2, solve_s=t4 - t3, equations=len(ev.index))
    bv = sim["bv"].to_numpy()
    out["accuracy"] = float(np.corrcoef(u, bv)[0, 1])  # cor(EBV, true BV), a sanity check
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["solver_total_s"] = out["spec_s"] + out["prepare_s"] + out["solve_s"]
    return out


def run(n: int, solver: str) -> dict:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, __file__, "--child", str(n), solver], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        return {"n": n, "solver": solver, "error": p.stderr.strip().splitlines()[-1:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--direct-max", type=int, default=300_000)
    ap.add_argument("--sreml-max", type=int, default=100_000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "pcg.md"))
    ap.add_argument("--child", nargs=2)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(int(a.child[0]), a.child[1])))
        return
    rows = []
    for n in a.sizes:
        for solver in ("pcg", "direct", "sreml"):
            if (solver == "direct" and n > a.direct_max) or (solver == "sreml" and n > a.sreml_max):
                continue
            r = run(n, solver)
            print(r, flush=True)
            rows.append(r)
    import numpy
    import scipy

    lines = [
        "# PCG vs sparse direct solve: animal model at given variances",
        "",
        f"`{FORMULA}`, A⁻¹ for id, one record per animal, σ² = {SIGMA2} (herd, animal, residual);",
        "seeded simulator `henderson._testing.animal_model` (10 generations, herds of ~200).",
        "Each row is its own child process (peak RSS is that process's, Python and data included).",
        "`solver s` = spec + prepare + solve; `solve s` the PCG iterations or the SuperLU factor + solve.",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {numpy.__version__}, scipy {scipy.__version__}; run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| animals | records | equations | solver | rounds | solve s | solver s | simulate+A⁻¹ s | peak RSS MiB | cor(EBV, BV) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['n']:,} | | | {r['solver']} | error: {r['error']} | | | | | |")
            continue
        lines.append(
            f"| {r['n']:,} | {r['records']:,} | {r['equations']:,} | {r['solver']} | {r.get('rounds', '')} | "
            f"{r['solve_s']:.2f} | {r['solver_total_s']:.2f} | {r['simulate_s']:.1f} | {r['peak_rss_mib']:.0f} | "
            f"{r['accuracy']:.3f} |"
        )
    for r in rows:
        if r.get("solver") == "sreml" and "error" not in r:
            est = ", ".join(f"{e:.3f} ± {m:.3f}" for e, m in zip(r["estimates"], r["mc_se"]))
            lines += [
                "",
                f"Stochastic REML (sreml row: Monte Carlo AI-REML, 20 samples per round, 4 chains) at "
                f"{r['n']:,} animals: σ² (herd, animal, residual) = {est} (± MC SE); simulated values "
                f"{r['true']}. `solve s` is the whole estimation.",
            ]
    lines += [
        "",
        "BLUPF90 (published): about 90 PCG rounds for a 1.1-million-animal Finnish dairy "
        "animal model (Lidauer, Strandén, Mäntysaari, Pösö & Kettunen 1999, J Dairy Sci 82:2788); different model and data, "
        "quoted for the order of magnitude of the rounds.",
        "",
    ]
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

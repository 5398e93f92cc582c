"""Benchmark: the dense C-form on genomic METs whose residual variance goes to 0, before and after.

Usage (from the repo root, under the benchmark lock; ``--base`` is a checkout of the code
to compare with, e.g. ``git worktree add /tmp/cform-base main``)::

    flock /tmp/henderson-bench.lock timeout 600 env PYTHONPATH=src .venv/bin/python \\
        benchmarks/bench_cform_boundary.py --base /tmp/cform-base

Ten seeded genomic METs (``simulate``: ``--lines`` lines × ``--envs`` environments, 60 %
of the cells observed once, VanRaden G of 500 simulated SNPs + 0.001 I, Σ = ΛΛ' + Ψ,
y = env mean + u with no residual noise), fitted by ML with ``y ~ Env + us(0 + Env|Name)``,
``cov={"Name": G}``: the optimum has σ²ₑ on its boundary 0, where the C-form's equations
(R⁻¹ = 1/σ²ₑ) become ill-conditioned. Each code in its own process (``PYTHONPATH``):

- ``base``: the C-form (``solver="dense"``) of the ``--base`` checkout;
- ``after``: the C-form of this checkout;
- ``vform``: the V-form (``solver="vform"``) of this checkout, the reference: it works
  with V = ZGZ' + R, well conditioned as σ²ₑ → 0, and is exact there.

Per fit: ConvergenceWarnings, logLik − the V-form's, σ²ₑ, iterations, seconds; seconds
are reported as a ratio to the V-form's in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def simulate(seed: int, lines: int = 150, envs: int = 4, observed: float = 0.6, snps: int = 500):
    """(data, G): a seeded genomic MET without residual noise (module notes)."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.5, snps)
    M = rng.binomial(2, p, size=(lines, snps)).astype(float)
    pc = M.mean(0) / 2
    keep = (pc > 0) & (pc < 1)
    W = M[:, keep] - 2 * pc[keep]
    G = W @ W.T / (2 * np.sum(pc[keep] * (1 - pc[keep]))) + 1e-3 * np.eye(lines)
    lam = rng.uniform(0.5, 1.5, (envs, 2)) * rng.choice([1, -1, 1], size=(envs, 2))
    Sigma = lam @ lam.T + np.diag(rng.uniform(0.2, 0.6, envs))
    U = np.linalg.cholesky(G) @ rng.normal(size=(lines, envs)) @ np.linalg.cholesky(Sigma).T
    names = np.array([f"L{i:04d}" for i in range(lines)])
    envn = np.array([f"E{j}" for j in range(envs)])
    cells = np.argwhere(rng.random((lines, envs)) < observed)
    y = rng.normal(50, 5, envs)[cells[:, 1]] + U[cells[:, 0], cells[:, 1]]
    d = pd.DataFrame({"Name": names[cells[:, 0]], "Env": envn[cells[:, 1]], "y": y})
    return d, pd.DataFrame(G, index=names, columns=names)


WORKER = r"""
import json, sys, time, warnings
sys.path.insert(0, sys.argv[1])
from bench_cform_boundary import simulate
import henderson as h
solver, lines, envs = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for seed in map(int, sys.argv[5].split(",")):
    d, G = simulate(seed, lines, envs)
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            r = h.fit("y ~ Env + us(0 + Env|Name)", d, cov={"Name": G}, method="ml", solver=solver)
            out = dict(loglik=float(r.loglik), resid=float(r.variance_components["estimate"].iloc[-1]),
                       iterations=int(r.iterations), converged=bool(r.converged))
        except Exception as exc:
            out = dict(error=f"{type(exc).__name__}: {exc}"[:200])
    out.update(seed=seed, seconds=time.perf_counter() - t, n=len(d),
               warnings=sum(issubclass(x.category, h.ConvergenceWarning) for x in w))
    print(json.dumps(out), flush=True)
"""


def run(src: Path, solver: str, seeds, args) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src))
    cmd = [sys.executable, "-c", WORKER, str(HERE), solver, str(args.lines), str(args.envs), ",".join(map(str, seeds))]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return {r["seed"]: r for r in rows}


def _commit(path: Path) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "?"


def report(res, seeds, args) -> str:
    sys.path.insert(0, str(HERE))
    from bench_engine import machine_info

    base_c, here_c = _commit(Path(args.base)), _commit(ROOT)
    L = [
        "# Dense C-form with the residual variance going to 0: before and after",
        "",
        "Command: `flock /tmp/henderson-bench.lock timeout 600 env PYTHONPATH=src /work/main/.venv/bin/python "
        f"benchmarks/bench_cform_boundary.py --base {args.base} --lines {args.lines} --envs {args.envs}`",
        "",
        f"- base: C-form at {base_c} (`--base`); after: C-form at {here_c} (+ working tree); "
        "reference: V-form of the after code",
        f"- {len(seeds)} seeded METs, {args.lines} lines × {args.envs} environments, ML, "
        "`y ~ Env + us(0 + Env|Name)`, G; no residual noise (σ²ₑ on its boundary)",
        *machine_info(),
        "",
        "| seed | n | base: warnings | base: logLik − V-form | base σ²ₑ | base iter | after: warnings "
        "| after: logLik − V-form | after σ²ₑ | after iter | V-form iter | base s / V-form s | after s / V-form s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(r, key, fmt):
        return "error" if "error" in r else format(r[key], fmt)

    tot = {"base": [0, []], "after": [0, []]}
    for s in seeds:
        b, a, v = res["base"][s], res["after"][s], res["vform"][s]
        gaps = {}
        for tag, r in (("base", b), ("after", a)):
            tot[tag][0] += r["warnings"]
            gaps[tag] = r["loglik"] - v["loglik"] if "error" not in r else float("nan")
            tot[tag][1].append(abs(gaps[tag]))
        L.append(
            f"| {s} | {v['n']} | {b['warnings']} | {gaps['base']:+.2e} | {cell(b, 'resid', '.1e')} "
            f"| {cell(b, 'iterations', 'd')} | {a['warnings']} | {gaps['after']:+.2e} | {cell(a, 'resid', '.1e')} "
            f"| {cell(a, 'iterations', 'd')} | {v['iterations']} | {b['seconds'] / v['seconds']:.1f}× "
            f"| {a['seconds'] / v['seconds']:.1f}× |"
        )
    L += [
        "",
        f"ConvergenceWarnings: base {tot['base'][0]} / {len(seeds)}, after {tot['after'][0]} / {len(seeds)}. "
        f"Largest |logLik − V-form|: base {max(tot['base'][1]):.2e}, after {max(tot['after'][1]):.2e}.",
        "",
    ]
    return "\n".join(L)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="checkout of the code to compare with (its src/ is used)")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--lines", type=int, default=150)
    ap.add_argument("--envs", type=int, default=4)
    ap.add_argument("--timeout", type=int, default=500)
    ap.add_argument("--out", default=str(HERE / "results" / "cform_boundary.md"))
    args = ap.parse_args(argv)
    seeds = list(range(args.seeds))
    res = {
        "base": run(Path(args.base) / "src", "dense", seeds, args),
        "after": run(ROOT / "src", "dense", seeds, args),
        "vform": run(ROOT / "src", "vform", seeds, args),
    }
    text = report(res, seeds, args)
    if args.out == "-":
        print(text)
    else:
        Path(args.out).write_text(text)
        print(text)


if __name__ == "__main__":
    main()

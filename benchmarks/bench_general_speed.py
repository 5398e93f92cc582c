"""Before/after timing of the dense general engine on the genomic MET simulator.

Usage (from the repo root; ``--base`` is a ``src`` folder of the code before the change,
e.g. ``git archive <commit> src | tar -x -C /tmp/base``)::

    flock /tmp/henderson-bench.lock .venv/bin/python benchmarks/bench_general_speed.py \
        --base /tmp/base/src --sizes 300x4,500x6

Each (code, size) fits ``y ~ 0 + Env + us(0 + Env|Name)`` with ``cov={"Name": G}`` in its own
process (``simulate_met`` of bench_general_sparse.py, seeded), and evaluates −2 log L, score,
AI and C⁻¹ at the default start θ, so the two codes are compared at a fixed θ as well as at
their optima. Floor: one dense Cholesky of the m × m equations, timed in the same process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, sys, time, warnings
import numpy as np, scipy.linalg as sla
sys.path.insert(0, sys.argv[2])
from bench_general_sparse import simulate_met
import henderson as h
from henderson.api import _general_state
lines, envs = map(int, sys.argv[1].split("x"))
d, G, _ = simulate_met(lines, envs, 0.6)
t = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    r = h.fit("y ~ 0 + Env + us(0 + Env|Name)", d, cov={"Name": G})
fit_s = time.perf_counter() - t
out = dict(fit_s=fit_s, iterations=int(r.iterations), loglik=float(r.loglik), solver=r.solver,
           theta=[float(v) for v in r.variance_components["estimate"]])
np.save(sys.argv[3] + ".npy", np.array(out["theta"]))
print(json.dumps(out))
"""


def run(src: str, size: str, tag: str) -> dict:
    env = dict(os.environ, PYTHONPATH=src)
    p = subprocess.run(
        [sys.executable, "-c", CHILD, size, str(HERE), f"/tmp/_gspeed_{tag}_{size}"],
        capture_output=True,
        text=True,
        env=env,
    )
    if p.returncode:
        raise RuntimeError(p.stderr[-2000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def floor(m: int) -> float:
    import time

    rng = np.random.default_rng(1)
    A = rng.normal(size=(m, m))
    A = A @ A.T + m * np.eye(m)
    t = time.perf_counter()
    np.linalg.cholesky(A)
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="src folder of the code before the change")
    ap.add_argument("--sizes", default="300x4,500x6")
    args = ap.parse_args(argv)
    head = str(HERE.parent / "src")
    rows = []
    for size in args.sizes.split(","):
        lines, envs = (int(v) for v in size.split("x"))
        fl = floor(lines * envs + envs)
        b = run(args.base, size, "before")
        a = run(head, size, "after")
        dth = float(np.max(np.abs(np.array(a["theta"]) - np.array(b["theta"])) / np.max(np.abs(b["theta"]))))
        rows.append(
            f"| {size} | {lines * envs + envs} | {fl:.3f} | {b['fit_s']:.1f} ({b['iterations']} it) | "
            f"{a['fit_s']:.1f} ({a['iterations']} it) | {b['fit_s'] / a['fit_s']:.2f}× | "
            f"{abs(a['loglik'] - b['loglik']):.1e} | {dth:.1e} |"
        )
    print(
        "| lines×envs | m | floor: one Cholesky of m, s | before fit s | after fit s | speed-up |"
        " |Δ logLik| | max |Δθ|/max θ |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

"""Benchmark: cross-validation of GBLUP (henderson.cv).

Usage::

    flock /tmp/henderson-bench.lock .venv/bin/python benchmarks/bench_cv.py
    .venv/bin/python benchmarks/bench_cv.py --n 1500 --p 3000 --out -      # quick check

Measures, in one process (after one warm-up fit, which pays numba's JIT compilation):

1. wheat ``env1`` (599 lines), the 10 given folds, GBLUP with variance components
   re-estimated by REML in every fold (target < 3 s), with n_jobs 1 and 2; the same
   at held full-data variances (fast path); SNP-BLUP refitted per fold.
2. simulated n individuals (``simulate_genotypes(n, p)``, G VanRaden 1, y = g + e with
   h² = 0.5): one REML GBLUP fit, vs 10-fold CV at those fixed variance components
   through :class:`~henderson.cv.fast.FixedVarianceCV` (target < 2× one fit), with
   the time split into V/Cholesky/inverse/P and the folds (under the same BLAS thread
   rule as ``cross_validate``: one thread below 2,000 records); plus one brute-force
   fold fit at fixed variances for reference.

Cross-validation fits every fold with ``pev=False`` (no PEV stage), GBLUP and SNP-BLUP
alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy

import henderson as h
from henderson._testing.genotypes import simulate_genotypes
from henderson._threads import blas_threads_for
from henderson.cv import FixedVarianceCV, cross_validate
from henderson.cv._fastpath import record_design
from henderson.data.genotypes import Genotypes
from henderson.datasets import load_wheat
from henderson.relationships.genomic import genomic_relationship


def timed(f, repeat=1):
    best, out = np.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t)
    return best, out


def wheat_part(lines):
    w = load_wheat()
    geno = Genotypes.from_frame(2 * w.markers.astype(int))
    y = w.phenotypes["env1"]
    G = genomic_relationship(geno)
    t_warm, _ = timed(lambda: h.GBLUP(pev=False).fit(G, y))
    t_fit, m = timed(lambda: h.GBLUP(pev=False).fit(G, y), repeat=3)
    lines.append("## wheat env1 (599 lines, 1,279 markers), the 10 given folds\n")
    lines.append(
        f"- warm-up fit (numba JIT compile): {t_warm:.2f} s; one REML GBLUP fit afterwards "
        f"(best of 3): {t_fit:.3f} s = " + ", ".join(f"{k} {v:.3f}" for k, v in m.result_.timings.items())
    )
    rows = []
    for label, kw, model in [
        ("GBLUP, REML in every fold, n_jobs=1", dict(n_jobs=1), h.GBLUP()),
        ("GBLUP, REML in every fold, n_jobs=2", dict(n_jobs=2), h.GBLUP()),
        ("GBLUP, full-data variances (fast path)", dict(refit_variances=False), h.GBLUP()),
        ("SNP-BLUP, REML in every fold, n_jobs=1", dict(n_jobs=1), h.SNPBLUP()),
        ("SNP-BLUP, full-data variances (fast path)", dict(refit_variances=False), h.SNPBLUP()),
    ]:
        t, res = timed(lambda model=model, kw=kw: cross_validate(model, geno, y, cv=w.folds, **kw), repeat=2)
        rows.append((label, t, res.summary.loc["r", "mean"], res.summary.loc["r", "sd"], res.settings["path"]))
    lines.append("\n| run | seconds (best of 2) | mean r ± SD over folds | path |\n|---|---|---|---|")
    lines += [f"| {a} | {t:.2f} | {r:.4f} ± {s:.4f} | {p} |" for a, t, r, s, p in rows]
    return rows


def sim_part(lines, n, p, seed):
    t_sim, geno = timed(lambda: simulate_genotypes(n, p, seed=seed))
    t_G, G = timed(lambda: genomic_relationship(geno))
    rng = np.random.default_rng(seed)
    Gd = G.dense()
    lam, Q = np.linalg.eigh(Gd)
    g = Q @ (np.sqrt(np.clip(lam, 0, None)) * rng.standard_normal(n))
    y = pd.Series(g + rng.normal(0, np.sqrt(np.var(g)), n), index=geno.ids, name="y")
    t_fit, m = timed(lambda: h.GBLUP(pev=False).fit(G, y))
    s2 = tuple(float(v) for v in m.variance_components_["variance"])
    t_fixed, _ = timed(lambda: h.GBLUP(sigma2=s2, pev=False).fit(G, y))
    t_cv, res = timed(lambda: cross_validate(h.GBLUP(sigma2=s2), G, y, cv=10, seed=seed), repeat=2)
    # breakdown of the fast path
    yv, X, rec, _ = record_design(h.GBLUP(), G.ids, y, None)[:4]
    pos = G.index_of(rec)
    t_kr, Kr = timed(lambda: Gd[np.ix_(pos, pos)])
    with blas_threads_for(len(rec)):  # as cross_validate's fast path runs it
        t_build, st = timed(lambda: FixedVarianceCV.build(yv, X, Kr, *s2))
        folds = [np.flatnonzero(res.predictions["fold"].to_numpy() == f) for f in map(str, range(1, 11))]
        order = pd.Index(rec).get_indexer(res.predictions["id"])
        t_folds, _ = timed(lambda: [st.fold(order[f]) for f in folds])
    t_ref, _ = timed(lambda: cross_validate(h.GBLUP(), G, y, cv=10, seed=seed, refit_variances=False))
    lines.append(f"\n## simulated n = {n:,}, p = {p:,} SNPs, 10-fold at fixed variance components\n")
    lines.append("| step | seconds |\n|---|---|")
    for a, t in [
        ("simulate_genotypes", t_sim),
        ("G (VanRaden 1)", t_G),
        ("one REML GBLUP fit (pev=False)", t_fit),
        ("one GBLUP fit at fixed variances (pev=False)", t_fixed),
        ("**10-fold CV at fixed variances** (`cross_validate(GBLUP(sigma2=...), cv=10)`, best of 2)", t_cv),
        ("  of which: K_r = G[rec, rec]", t_kr),
        ("  of which: V, Cholesky, inverse, P (FixedVarianceCV.build)", t_build),
        ("  of which: the 10 folds (P_FF Cholesky + products)", t_folds),
        ("10-fold CV, refit_variances=False (full-data REML fit + fast path)", t_ref),
    ]:
        lines.append(f"| {a} | {t:.2f} |")
    lines.append(
        f"\n- CV at fixed variances / one REML fit = **{t_cv / t_fit:.2f}×** (target < 2×); "
        f"brute force would be about 10 × {t_fixed:.2f} = {10 * t_fixed:.1f} s."
    )
    lines.append(
        f"- REML estimates: σ²_g = {s2[0]:.4f}, σ²_e = {s2[1]:.4f}; mean r over folds "
        f"{res.summary.loc['r', 'mean']:.4f}."
    )
    return t_cv, t_fit


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--p", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "cv.md"))
    a = ap.parse_args()
    load0 = os.getloadavg()
    lines = [
        "# Benchmark: cross-validation (henderson.cv)\n",
        f"Command: `flock /tmp/henderson-bench.lock .venv/bin/python benchmarks/bench_cv.py "
        f"--n {a.n} --p {a.p} --seed {a.seed}`\n",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; numpy {np.__version__}, "
        f"scipy {scipy.__version__}, pandas {pd.__version__}.\n",
    ]
    wheat_part(lines)
    sim_part(lines, a.n, a.p, a.seed)
    load1 = os.getloadavg()
    lines.append(
        f"- Load average (1, 5, 15 min) at start {load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f}, "
        f"at end {load1[0]:.1f}/{load1[1]:.1f}/{load1[2]:.1f}: other processes share this "
        "2-core machine, so timings are noisy."
    )
    text = "\n".join(lines) + "\n"
    if a.out == "-":
        print(text)
    else:
        Path(a.out).write_text(text)
        print(text)


if __name__ == "__main__":
    main()

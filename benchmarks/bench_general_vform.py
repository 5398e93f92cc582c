"""Benchmark: the V-form general engine on the genomic MET, against the C-form, sommer and a BLAS floor.

Usage (from the repo root)::

    flock /tmp/henderson-bench.lock .venv/bin/python benchmarks/bench_general_vform.py
    .venv/bin/python benchmarks/bench_general_vform.py --sizes 120x3 --out -

The genomic MET of ``bench_general_sparse.py`` (same seeded simulator ``simulate_met``:
VanRaden G of 2,000 simulated SNPs + 0.001 I, Σ_g = ΛΛ' + Ψ, ``--observed`` of the
line × environment cells), ``y ~ 0 + Env + us(0 + Env|Name)`` with ``cov={"Name": G}``,
at each of ``--sizes`` (default 300 × 4 and 1,000 × 8). In one run, each program in its
own process (wall time and peak RSS from ``/usr/bin/time``):

- henderson with ``solver="vform"`` (the V-form, solvers/general_vform.py);
- henderson with ``solver="dense"`` (the C-form general engine) at sizes of at most
  ``--cform-max-records`` records (default 1,000: the 1,000 × 8 C-form fit took 1,607 s
  in an earlier run, over this run's budget; it is cited, not rerun, unless raised);
- sommer 4.3.7 ``mmer`` (``vsr(usr(Env), Name, Gu = G)``) at sizes of at most
  ``--sommer-max-records`` records (default 1,000: it ran out of memory at 1,000 × 8);
- the BLAS floor of one V-form evaluation with derivatives: one ``dpotrf`` and one inverse
  of an n × n SPD matrix (both ``dpotri``, which the engine uses, and ``dtrtri`` + ``dsyrk``),
  same n, same process kind, same BLAS thread rule as the engine. The V-form's optimisation seconds per AI iteration are
  reported as a ratio to it (one accepted iteration = one dpotrf for the trial point +
  one inverse for its derivatives, plus O(S n²) traces and the n² n_θ AI product).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work" / "general_vform"
sys.path.insert(0, str(HERE))
from bench_engine import machine_info  # noqa: E402
from bench_general_sparse import SOMMER_MET, _timed, simulate_met  # noqa: E402

FIT = """
import json, sys, time, warnings
import pandas as pd, numpy as np
import henderson as h
d = pd.read_csv(sys.argv[1], dtype={"Name": str, "Env": str})
G = pd.read_csv(sys.argv[2], index_col=0)
G.index = G.index.astype(str)
t = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    r = h.fit("y ~ 0 + Env + us(0 + Env|Name)", d, cov={"Name": G}, solver=sys.argv[4])
el = time.perf_counter() - t
S = r.covariances["Name"]
json.dump(dict(seconds=el, timings=r.timings, loglik=float(r.loglik), solver=r.solver,
               iterations=int(r.iterations), converged=bool(r.converged),
               theta=r.variance_components["estimate"].tolist(), sigma=S.to_numpy().tolist(),
               resid=float(r.variance_components["estimate"].iloc[-1]),
               blup=r.blups["Name"]["blup"].tolist(), pev=r.blups["Name"]["pev"].tolist()),
          open(sys.argv[3], "w"))
"""

FLOOR = """
import json, sys, time
import numpy as np
from scipy.linalg import blas, lapack
from henderson._threads import blas_threads_for
n = int(sys.argv[1])
ctx = blas_threads_for(n)  # the engine's rule: one BLAS thread below 2,000 rows
ctx.__enter__()
rng = np.random.default_rng(1)
A = rng.normal(size=(n, n // 2))
V = np.asfortranarray(A @ A.T / n + np.eye(n))
out = {}
for rep in range(2):
    t = time.perf_counter(); L, _ = lapack.dpotrf(V, lower=1, clean=1); a = time.perf_counter() - t
    t = time.perf_counter(); lapack.dpotri(L, lower=1); b = time.perf_counter() - t
    t = time.perf_counter(); Li, _ = lapack.dtrtri(L, lower=1); blas.dsyrk(1.0, Li, trans=1, lower=1)
    c = time.perf_counter() - t
    for k, v in (("dpotrf", a), ("dpotri", b), ("dtrtri_dsyrk", c)):
        out[k] = min(out.get(k, np.inf), v)
json.dump(out, open(sys.argv[2], "w"))
"""


def _henderson(dpath, gpath, solver, tag, env, timeout=None) -> dict:
    script = WORK / "fit.py"
    script.write_text(FIT)
    out = WORK / f"fit_{tag}.json"
    if out.exists():
        out.unlink()
    wall, mib, err = _timed([sys.executable, str(script), str(dpath), str(gpath), str(out), solver], env, timeout)
    if err:
        return dict(error=err, wall=wall, rss_mib=mib)
    return json.loads(out.read_text()) | dict(wall=wall, rss_mib=mib)


def run_size(lines, envs, args) -> dict:
    WORK.mkdir(parents=True, exist_ok=True)
    d, G, Sigma = simulate_met(lines, envs, args.observed)
    dpath, gpath = WORK / "met.csv", WORK / "met_G.csv"
    d.to_csv(dpath, index=False)
    G.to_csv(gpath)
    n = len(d)
    res: dict = dict(lines=lines, envs=envs, records=n, observed=args.observed)
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "src"))
    fl = WORK / "floor.json"
    (WORK / "floor.py").write_text(FLOOR)
    _, mib, err = _timed([sys.executable, str(WORK / "floor.py"), str(n), str(fl)], env)
    res["floor"] = json.loads(fl.read_text()) | dict(rss_mib=mib) if not err else dict(error=err)
    res["vform"] = _henderson(dpath, gpath, "vform", "vform", env)
    if n <= args.cform_max_records:
        res["cform"] = _henderson(dpath, gpath, "dense", "cform", env, args.cform_timeout)
    if n <= args.sommer_max_records:
        rs, sj = WORK / "sommer.R", WORK / "sommer.json"
        rs.write_text(SOMMER_MET)
        if sj.exists():
            sj.unlink()
        wall, mib, err = _timed(
            ["Rscript", str(rs), str(dpath), str(gpath), str(sj)], dict(os.environ, R_LIBS="/tmp/rlib"), 900
        )
        res["sommer"] = (dict(error=err) if err else json.loads(sj.read_text())) | dict(wall=wall, rss_mib=mib)
    return res


def _section(r: dict) -> list:
    L = [
        f"## {r['lines']:,} lines × {r['envs']} environments, {r['observed']:.0%} of cells "
        f"observed: n = {r['records']:,} records, {r['lines'] * r['envs']:,} random equations",
        "",
        "| program | wall s | fit s | per AI iteration s | peak RSS MiB | iterations | logLik |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, label in (("vform", "henderson V-form"), ("cform", "henderson C-form (dense general)")):
        h = r.get(key)
        if h is None:
            continue
        if "error" in h:
            L.append(f"| {label} | {h['wall']:.1f} (failed/stopped) | | | {h['rss_mib']} | | |")
            continue
        per = h["timings"]["optimise"] / max(h["iterations"], 1)
        L.append(
            f"| {label} ({h['solver']}) | {h['wall']:.1f} | {h['seconds']:.2f} | {per:.3f} | {h['rss_mib']} | "
            f"{h['iterations']} | {h['loglik']:.8f} |"
        )
    so = r.get("sommer")
    if so is not None:
        if "error" in so:
            L.append(f"| sommer 4.3.7 mmer | {so['wall']:.1f} (failed/stopped) | | | {so['rss_mib']} | | |")
        else:
            L.append(
                f"| sommer 4.3.7 mmer | {so['wall']:.1f} | {so['seconds']:.2f} | — | {so['rss_mib']} | "
                f"{so['iters']} | {so['llik']:.6f} (sommer's scale) |"
            )
    L.append("")
    fl, v = r["floor"], r.get("vform", {})
    if "error" not in fl:
        L.append(
            f"BLAS floor at n = {r['records']:,} (best of 2, own process, peak {fl['rss_mib']} MiB): dpotrf "
            f"{fl['dpotrf']:.3f} s, dpotri {fl['dpotri']:.3f} s, dtrtri + dsyrk {fl['dtrtri_dsyrk']:.3f} s."
        )
        if "error" not in v:
            per = v["timings"]["optimise"] / max(v["iterations"], 1)
            f1 = fl["dpotrf"] + fl["dpotri"]
            f2 = fl["dpotrf"] + fl["dtrtri_dsyrk"]
            from henderson.solvers._spd import default_route

            uses = "dpotri" if default_route(r["records"]) == "dpotri" else "dtrtri + dsyrk"
            L.append(
                f"V-form seconds per AI iteration / floor: **{per / f1:.2f}×** (dpotrf + dpotri), "
                f"{per / f2:.2f}× (dpotrf + dtrtri + dsyrk); the engine calls dpotrf + {uses} at this n."
            )
    c = r.get("cform")
    if c is not None and "error" not in c and "error" not in v:
        th_v, th_c = np.array(v["theta"]), np.array(c["theta"])
        Sv = np.array(v["sigma"])
        L += [
            "",
            f"C-form / V-form fit time: **{c['seconds'] / v['seconds']:.1f}×**; logLik V-form − C-form = "
            f"{v['loglik'] - c['loglik']:+.2e}; max |Δθ| / max diag Σ̂ = "
            f"{np.max(np.abs(th_v - th_c)) / np.max(np.diag(Sv)):.1e}; max |Δ BLUP| = "
            f"{np.max(np.abs(np.array(v['blup']) - np.array(c['blup']))):.1e}; smallest eigenvalue of Σ̂: "
            f"V-form {np.linalg.eigvalsh(Sv)[0]:.3g}, C-form {np.linalg.eigvalsh(np.array(c['sigma']))[0]:.3g}.",
        ]
    elif c is None and "error" not in v:
        L += [
            "",
            "C-form not rerun at this size (over `--cform-max-records`): the recorded dense general engine fit "
            "of this seeded data set took **1,607 s** (14 AI iterations, peak 4.5 GB, load ≈ 10; "
            "results/general_sparse.md, logLik −10138.120498): "
            f"**{1607 / v['seconds']:.0f}×** this run's V-form (different runs: an estimate). "
            f"logLik V-form − recorded C-form = {v['loglik'] + 10138.120498:+.2e}.",
        ]
    if so is not None and "error" not in so and "error" not in v:
        L += [
            "",
            f"sommer / V-form fit time: **{so['seconds'] / v['seconds']:.1f}×**; memory "
            f"{so['rss_mib'] / max(v['rss_mib'], 1):.1f}×; max |Σ̂_V − Σ̂_sommer| / max diag = "
            f"{np.max(np.abs(np.array(v['sigma']) - np.array(so['sigma']))) / np.max(np.diag(np.array(v['sigma']))):.1e}.",
        ]
    L.append("")
    return L


def report(results: list, args) -> str:
    L = ["# V-form general engine: genomic MET", "", "Command (from the repo root):", "", "```"]
    L += [f"python {' '.join(sys.argv)}", "```", ""]
    if args.note:
        L += [args.note, ""]
    for r in results:
        L += _section(r)
    L += [
        f"Load average at the end of the run: {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
        "(2 cores shared with other jobs: compare ratios within the run, not the seconds).",
        "",
    ]
    L += machine_info()
    return "\n".join(L) + "\n"


def main(argv=None):
    global WORK
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="300x4,1000x8")
    ap.add_argument("--observed", type=float, default=0.6)
    ap.add_argument("--cform-max-records", type=int, default=1000)
    ap.add_argument("--cform-timeout", type=float, default=600)
    ap.add_argument("--sommer-max-records", type=int, default=1000)
    ap.add_argument("--work", default=None)
    ap.add_argument("--note", default="")
    ap.add_argument("--out", default=str(HERE / "results" / "general_vform.md"))
    args = ap.parse_args(argv)
    if args.work:
        WORK = Path(args.work)
    results: list = []
    for size in args.sizes.split(","):
        lines, envs = (int(v) for v in size.lower().split("x"))
        results.append(run_size(lines, envs, args))
        text = report(results, args)
        if args.out != "-":
            Path(args.out).write_text(text)  # after each size: a long run leaves what it measured
    print(report(results, args))


if __name__ == "__main__":
    main()

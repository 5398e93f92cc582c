"""Benchmark: the sparse general engine (Σ ⊗ K on a sparse Cholesky) and a genomic MET race.

Usage (from the repo root)::

    flock /tmp/henderson-bench.lock .venv/bin/python benchmarks/bench_general_sparse.py
    .venv/bin/python benchmarks/bench_general_sparse.py --sizes 120x3 --skip maternal --out -

(a) Maternal gryphon animal model, ``BWT ~ 1 + SEX + (1|BYEAR) + (1|ANIMAL) + (1|MOTHER)``
    with ANIMAL and MOTHER correlated (unstructured 2 × 2 Σ ⊗ A, A⁻¹ from the pedigree):
    the REML fit on the sparse general engine vs the dense general engine, same run, same
    optimiser (the two must give the same −2 log L and θ).
(b) Simulated genomic multi-environment trial (seeded): genotyped lines × environments
    (``--sizes``, default 300 × 4 and 1,000 × 8), ``--observed`` of the cells observed, ``us(0 + Env|Name)``
    with ``cov={"Name": G}`` (G VanRaden from simulated markers): henderson.fit (the
    dense general engine: G is dense) vs sommer ``mmer`` with
    ``vsr(usr(Env), Name, Gu = G)`` (its documented G×E call; stopped after ``--sommer-timeout`` s)
    in the same run. Wall time and peak resident memory of each in its own process
    (``/usr/bin/time -f %M``), the ratio, and the agreement of Σ̂ (largest difference
    relative to the largest variance) and of the log-likelihood.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work" / "general_sparse"
sys.path.insert(0, str(HERE))
from bench_engine import machine_info  # noqa: E402


# -- (a) maternal gryphon ---------------------------------------------------------------
def maternal(repeats: int = 1) -> dict:
    import henderson as h
    from henderson.datasets import load_gryphon

    g = load_gryphon()
    Ainv = h.pedigree_inverse(g.pedigree)
    f = "BWT ~ 1 + SEX + (1|BYEAR) + (1|ANIMAL) + (1|MOTHER)"
    kw = dict(cov_inverse={"ANIMAL": Ainv}, correlated=[("ANIMAL", "MOTHER")])
    out = {}
    for solver in ("sparse", "dense"):
        times, res = [], None
        for _ in range(repeats if solver == "sparse" else 1):
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = h.fit(f, g.records, solver=solver, **kw)
            times.append(time.perf_counter() - t)
        vc = res.variance_components["estimate"]
        out[solver] = dict(
            seconds=float(np.median(times)),
            runs=times,
            iterations=int(res.iterations) if hasattr(res, "iterations") else None,
            loglik=float(res.loglik),
            theta={k: float(v) for k, v in vc.items()},
            solver=res.solver,
        )
    return out


# -- (b) genomic MET ----------------------------------------------------------------------
def simulate_met(lines: int, envs: int, observed: float, snps: int = 2000, seed: int = 2026):
    """Seeded genomic MET: markers → VanRaden G; Σ_g = ΛΛ' + Ψ (2 factors); y = env mean +
    u[line, env] + e on a random ``observed`` fraction of the line × env cells."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.5, snps)
    M = rng.binomial(2, p, size=(lines, snps)).astype(float)
    pc = M.mean(0) / 2
    keep = (pc > 0) & (pc < 1)
    W = M[:, keep] - 2 * pc[keep]
    G = W @ W.T / (2 * np.sum(pc[keep] * (1 - pc[keep])))
    G += 1e-3 * np.eye(lines)  # VanRaden G is singular after centring: the usual small ridge
    lam = rng.uniform(0.5, 1.5, (envs, 2)) * rng.choice([1, -1, 1], size=(envs, 2))
    Sigma = lam @ lam.T + np.diag(rng.uniform(0.2, 0.6, envs))
    Lg = np.linalg.cholesky(G)
    U = Lg @ rng.normal(size=(lines, envs)) @ np.linalg.cholesky(Sigma).T
    names = np.array([f"L{i:04d}" for i in range(lines)])
    envn = np.array([f"E{j}" for j in range(envs)])
    cells = np.argwhere(rng.random((lines, envs)) < observed)
    mu = rng.normal(50, 5, envs)
    y = mu[cells[:, 1]] + U[cells[:, 0], cells[:, 1]] + rng.normal(0, 1.5, len(cells))
    d = pd.DataFrame({"Name": names[cells[:, 0]], "Env": envn[cells[:, 1]], "y": y})
    return d, pd.DataFrame(G, index=names, columns=names), Sigma


HENDERSON_MET = """
import json, sys, time, warnings
import pandas as pd, numpy as np
import henderson as h
d = pd.read_csv(sys.argv[1], dtype={"Name": str, "Env": str})
G = pd.read_csv(sys.argv[2], index_col=0)
G.index = G.index.astype(str)
t = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    r = h.fit("y ~ 0 + Env + us(0 + Env|Name)", d, cov={"Name": G})
el = time.perf_counter() - t
S = r.covariances["Name"]
json.dump(dict(seconds=el, loglik=float(r.loglik), solver=r.solver, iterations=int(r.iterations),
               sigma=S.to_numpy().tolist(), envs=list(S.index), resid=float(r.variance_components["estimate"].iloc[-1])),
          open(sys.argv[3], "w"))
"""

SOMMER_MET = r"""
suppressMessages(library(sommer))
a <- commandArgs(TRUE)
d <- read.csv(a[1], colClasses = c(Name = "character", Env = "character"))
G <- as.matrix(read.csv(a[2], row.names = 1, check.names = FALSE))
d$Env <- factor(d$Env); d$Name <- factor(d$Name, levels = rownames(G))
t0 <- proc.time()[["elapsed"]]
m <- mmer(y ~ Env - 1, random = ~ vsr(usr(Env), Name, Gu = G), rcov = ~ units, data = d,
          verbose = FALSE, date.warning = FALSE)
el <- proc.time()[["elapsed"]] - t0
envs <- levels(d$Env); k <- length(envs)
S <- matrix(0, k, k)
for (i in 1:k) for (j in 1:i) {
  nm <- if (i == j) paste0(envs[i], ":Name") else paste0(envs[i], ":", envs[j], ":Name")
  S[i, j] <- S[j, i] <- as.numeric(m$sigma[[nm]])
}
cat(jsonlite::toJSON(list(seconds = el, sigma = S, envs = envs, resid = as.numeric(m$sigma[["units"]]),
    llik = as.numeric(tail(m$monitor[1, ], 1)), iters = ncol(m$monitor)), digits = 12, auto_unbox = TRUE),
    file = a[3])
"""


def _timed(cmd, env=None, timeout=None) -> tuple[float, int, str]:
    """(wall s, peak RSS MiB, stderr tail) of one process, via /usr/bin/time; a process
    still running after ``timeout`` s is stopped (SIGTERM by coreutils timeout)."""
    t = time.perf_counter()
    pre = ["timeout", str(int(timeout))] if timeout else []  # inside time: it kills the program itself
    p = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M"] + pre + cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    rss = [ln for ln in p.stderr.splitlines() if ln.startswith("MAXRSS")]
    mib = int(rss[-1].split()[1]) // 1024 if rss else -1
    if p.returncode != 0:
        return wall, mib, p.stderr[-2000:]
    return wall, mib, ""


def met(lines: int, envs: int, observed: float, sommer: bool = True, timeout: float = 900) -> dict:
    WORK.mkdir(parents=True, exist_ok=True)
    d, G, Sigma = simulate_met(lines, envs, observed)
    dpath, gpath = WORK / "met.csv", WORK / "met_G.csv"
    d.to_csv(dpath, index=False)
    G.to_csv(gpath)
    out: dict = dict(records=len(d), lines=lines, envs=envs, observed=observed, sigma_true=Sigma.tolist())
    script = WORK / "met_henderson.py"
    script.write_text(HENDERSON_MET)
    hj = WORK / "met_henderson.json"
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "src"))
    wall, mib, err = _timed([sys.executable, str(script), str(dpath), str(gpath), str(hj)], env)
    out["henderson"] = json.loads(hj.read_text()) | dict(wall=wall, rss_mib=mib) if not err else dict(error=err)
    if sommer:
        rs = WORK / "met_sommer.R"
        rs.write_text(SOMMER_MET)
        sj = WORK / "met_sommer.json"
        renv = dict(os.environ, R_LIBS="/tmp/rlib")
        if sj.exists():
            sj.unlink()
        wall, mib, err = _timed(["Rscript", str(rs), str(dpath), str(gpath), str(sj)], renv, timeout)
        if err and wall >= timeout:
            err = f"did not finish in {timeout:.0f} s (stopped)"
        out["sommer"] = dict(error=err) if err else json.loads(sj.read_text())
        out["sommer"] |= dict(wall=wall, rss_mib=mib)
    return out


def loglik_at_sommer(lines: int, envs: int, observed: float, metr: dict) -> dict:
    """henderson's REML log-likelihood at sommer's Σ̂ and σ̂²_e (same data, same
    function), against its own maximum: which program stopped nearer the optimum."""
    import henderson as h

    d, G, _ = simulate_met(lines, envs, observed)
    hh, so = metr["henderson"], metr["sommer"]
    S, k = np.array(so["sigma"]), len(so["sigma"])
    theta = [S[i, j] for i in range(k) for j in range(i + 1)] + [so["resid"]]
    eig = np.linalg.eigvalsh(S)
    out = dict(h=hh["loglik"], min_eig_sommer=float(eig[0]), min_eig_h=float(np.linalg.eigvalsh(hh["sigma"])[0]))
    if eig[0] <= 0:  # outside the parameter space: REML is not defined there
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = h.prepare("y ~ 0 + Env + us(0 + Env|Name)", d, cov={"Name": G})
        out["at_sommer"] = -0.5 * float(state.evaluate(np.array(theta)).m2ll)
    return out


def _met_section(metr: dict) -> list:
    L: list = []
    hh, so = metr["henderson"], metr.get("sommer")
    L += [
        f"## (b) Genomic MET: {metr['lines']:,} lines × {metr['envs']} environments, "
        f"{metr['observed']:.0%} of cells observed ({metr['records']:,} records)",
        "",
    ]
    L += [
        "`y ~ 0 + Env + us(0 + Env|Name)`, `cov={'Name': G}` (VanRaden G of 2,000 simulated "
        "SNPs + 0.001 I), seeded simulator `simulate_met` (Σ_g = ΛΛ' + Ψ, 2 factors). Each "
        "program in its own process; wall time includes reading the CSV files and G.",
        "",
    ]
    L += ["| program | wall s | fit s | peak RSS MiB | iterations | logLik |", "|---|---|---|---|---|---|"]
    if "error" in hh:
        L.append(f"| henderson | failed: {hh['error'][-300:]!r} | | | | |")
    else:
        L.append(
            f"| henderson ({hh['solver']}) | {hh['wall']:.1f} | {hh['seconds']:.1f} | {hh['rss_mib']} | "
            f"{hh['iterations']} | {hh['loglik']:.6f} |"
        )
    if so is not None:
        if "error" in so:
            L.append(
                f"| sommer 4.3.7 mmer | {so['wall']:.1f} (failed/stopped) | — | {so['rss_mib']} (at stop) | — | — |"
            )
            L += ["", "```", so["error"][-1500:], "```"]
        else:
            L.append(
                f"| sommer 4.3.7 mmer | {so['wall']:.1f} | {so['seconds']:.1f} | {so['rss_mib']} | "
                f"{so['iters']} | {so['llik']:.6f} (sommer's scale) |"
            )
    if so is not None and "error" not in so and "error" not in hh:
        Sh, Ss = np.array(hh["sigma"]), np.array(so["sigma"])
        L += [
            "",
            f"Ratio sommer / henderson (fit time): **{so['seconds'] / hh['seconds']:.1f}×**; "
            f"(wall incl. start-up and reading: {so['wall'] / hh['wall']:.1f}×); "
            f"memory sommer / henderson: {so['rss_mib'] / max(hh['rss_mib'], 1):.1f}×.",
            "",
            f"Σ̂ agreement: max |Σ̂_h − Σ̂_sommer| / max diag Σ̂_h = "
            f"{np.max(np.abs(Sh - Ss)) / np.max(np.diag(Sh)):.1e}; residual "
            f"{hh['resid']:.6g} (h) vs {so['resid']:.6g} (sommer). sommer's default "
            "tolerance stops earlier than henderson's, so agreement is to sommer's accuracy.",
        ]
    if "at_sommer" in metr:
        a = metr["at_sommer"]
        L += [
            "",
            f"Smallest eigenvalue of Σ̂: henderson {a['min_eig_h']:.3g}, sommer {a['min_eig_sommer']:.3g}.",
        ]
        if "at_sommer" in a:
            L += [
                "",
                f"henderson's REML log-likelihood at sommer's estimates: {a['at_sommer']:.6f}, at its own: "
                f"{a['h']:.6f} (Δ = {a['h'] - a['at_sommer']:+.2e}: the higher is nearer the optimum).",
            ]
        else:
            L += [
                "",
                "sommer's Σ̂ is not positive semi-definite (outside the parameter space, where the "
                "REML likelihood is not defined); henderson's is, on the boundary (rank-deficient).",
            ]
    if "error" not in hh:
        St = np.array(metr["sigma_true"])
        L += [
            "",
            f"Σ̂_h vs the simulated Σ_g: max |Δ| / max diag = "
            f"{np.max(np.abs(np.array(hh['sigma']) - St)) / np.max(np.diag(St)):.2f} (sampling error).",
        ]
    L.append("")
    return L


def report(mat: dict | None, mets: list, args) -> str:
    L = ["# Sparse general engine and the genomic MET race", ""]
    L += [
        "Command (from the repo root):",
        "",
        "```",
        f"python {' '.join(sys.argv)}",
        "```",
        "",
    ]
    if args.note:
        L += [args.note, ""]
    if mat:
        s, dn = mat["sparse"], mat["dense"]
        L += ["## (a) Maternal gryphon model, sparse vs dense general engine (same run)", ""]
        L += [
            "`BWT ~ 1 + SEX + (1|BYEAR) + (1|ANIMAL) + (1|MOTHER)`, ANIMAL and MOTHER correlated "
            "(us 2 × 2 Σ ⊗ A, A⁻¹ of 1,309 animals), 854 records, REML from the default start.",
            "",
        ]
        L += ["| engine | fit s | AI iterations | logLik |", "|---|---|---|---|"]
        for k, v in (("sparse-general", s), ("dense-general", dn)):
            L.append(f"| {k} | {v['seconds']:.2f} | {v['iterations']} | {v['loglik']:.8f} |")
        ths, thd = np.array(list(s["theta"].values())), np.array(list(dn["theta"].values()))
        L += [
            "",
            f"Speed-up sparse / dense: **{dn['seconds'] / s['seconds']:.0f}×**; "
            f"|Δ logLik| = {abs(s['loglik'] - dn['loglik']):.1e}; "
            f"max |Δθ| / max θ = {np.max(np.abs(ths - thd)) / np.max(np.abs(thd)):.1e}.",
            "",
        ]
        L.append("θ̂ (sparse): " + ", ".join(f"{k} {v:.6g}" for k, v in s["theta"].items()))
        L.append("")
        L.append("sparse per-run s: " + ", ".join(f"{x:.2f}" for x in s["runs"]))
        L.append("")
    for metr in mets:
        L += _met_section(metr)
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
    ap.add_argument("--sizes", default="300x4,1000x8", help="MET sizes: lines x environments, comma-separated")
    ap.add_argument("--sommer-timeout", type=float, default=900)
    ap.add_argument("--work", default=None, help="folder for the data files and scripts of (b)")
    ap.add_argument("--note", default="", help="a sentence on how the run was made, printed under the command")
    ap.add_argument("--observed", type=float, default=0.6)
    ap.add_argument("--repeats", type=int, default=3, help="sparse-engine repeats of (a) (dense: 1)")
    ap.add_argument("--skip", choices=["maternal", "met", "sommer"], action="append", default=[])
    ap.add_argument("--out", default=str(HERE / "results" / "general_sparse.md"))
    args = ap.parse_args(argv)
    if args.work:
        WORK = Path(args.work)

    def write(mat, mets):  # after each part: a long run still leaves what it measured
        text = report(mat, mets, args)
        if args.out != "-":
            Path(args.out).write_text(text)
        return text

    mat = None if "maternal" in args.skip else maternal(args.repeats)
    mets: list = []
    write(mat, mets)
    if "met" not in args.skip:
        for size in args.sizes.split(","):
            lines, envs = (int(v) for v in size.lower().split("x"))
            mets.append(met(lines, envs, args.observed, "sommer" not in args.skip, args.sommer_timeout))
            m = mets[-1]
            if "error" not in m["henderson"] and "error" not in m.get("sommer", {"error": 1}):
                m["at_sommer"] = loglik_at_sommer(lines, envs, args.observed, m)
            write(mat, mets)
    print(write(mat, mets))


if __name__ == "__main__":
    main()

"""Multi-trait GBLUP benchmark: 3 traits vs single-trait GBLUP vs GEMMA mvLMM, same run.

Usage (from the repo root, under the shared benchmark lock)::

    flock /tmp/henderson-bench.lock .venv/bin/python benchmarks/bench_multitrait.py [--n 5000 --m 50000]
    flock /tmp/henderson-bench.lock .venv/bin/python benchmarks/bench_multitrait.py --animal [--sommer]
    flock /tmp/henderson-bench.lock .venv/bin/python benchmarks/bench_multitrait.py --missing 0.3 --n 1000

``--missing FRAC`` (:func:`missing_part`, results in ``benchmarks/results/multitrait_missing.md``):
the same simulation with each trait value masked with probability FRAC (seed 2); the
3-trait fit on the complete data (rotated fast path) as the floor, the masked data on the
observation-space engine (``multitrait-vform``, new), the cost of one AI iteration of the
new and of the old engine (dense MME, up to ``--old-max`` individuals) at the same θ, the
old engine's full fit with ``--old-full``, and GEMMA's two ways with missing phenotypes
(see :func:`gemma_missing`), all in one run.

``--animal``: the gryphon bivariate animal model ``cbind(BWT, TARSUS) ~ 1 + SEX +
(1|ANIMAL)`` with the pedigree A⁻¹ (1,309 animals) on the general multi-trait MME
(sparse back end): (a) all records (BWT missing on 230, TARSUS on 401: 854 records have
a trait, 171 of their 1,708 values missing; no record with a trait dropped); (b) the 683
records with both traits; (c) (b) with 30 % of the values masked at random. Floor, same run:
the single-trait BWT animal model (sparse MME). ``--sommer``: sommer 4.3.7's ``mmer``
on (b) with the dense A (sommer cannot leave a trait missing), under a time limit.

Data: ``simulate_genotypes(n, m, seed=1)``; three traits with genetic correlations
(0.5, 0.3, −0.2), h² (0.5, 0.3, 0.4), complete records. G = VanRaden 1 built once
(timed, shared by both fits). Timed, in this order, in one process:

1. single-trait ``GBLUP(pev=True).fit(G, y1)`` (spectral solver);
2. three-trait ``GBLUP(traits=[y1, y2, y3], pev=True).fit(G, Y)`` (REML on the tridiagonal
   reduction alone; PEV forms the eigenvectors once: MRRR on T + dormtr);
3. the same two with ``pev=False`` (both on the tridiagonal reduction, no eigenvectors);
4. the floor: the bare LAPACK ``dsytrd`` of G (optimal workspace, same BLAS threads);
5. GEMMA 0.98.5 (Debian ``gemma``): ``-gk 1`` on the full PLINK file, then
   ``-lmm 1 -n 1 2 3 -k`` on a 10-SNP PLINK file, so that its time is the mvLMM null
   model (eigendecomposition + REML), not 50,000 association tests.

GEMMA's K is XcXc'/m (-gk 1), ours G = XcXc'/(2Σpq): GEMMA's Vg = ours × m/(2Σpq);
its Vg and Ve are compared after that rescaling. Results go to
``benchmarks/results/multitrait.md`` (appended, with the date and machine).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import henderson as hd  # noqa: E402
from henderson._testing.genotypes import simulate_genotypes  # noqa: E402

WORK = ROOT / "benchmarks" / "_work" / "multitrait"
RESULTS = ROOT / "benchmarks" / "results" / "multitrait.md"


def simulate(n, m, seed=1):
    geno = simulate_genotypes(n, m, seed=seed)
    rng = np.random.default_rng(seed)
    X = geno.dosages.astype(np.float64)
    W = X - X.mean(0)
    Rg = np.array([[1, 0.5, 0.3], [0.5, 1, -0.2], [0.3, -0.2, 1.0]])
    B = rng.normal(size=(m, 3)) @ np.linalg.cholesky(Rg).T
    g = W @ B
    g = (g - g.mean(0)) / g.std(0)
    h2 = np.array([0.5, 0.3, 0.4])
    e = rng.normal(size=(n, 3))
    Y = 10 + g * np.sqrt(h2) + e * np.sqrt(1 - h2)
    del X, W
    return geno, pd.DataFrame(Y, index=geno.ids, columns=["y1", "y2", "y3"])


def dsytrd_floor(G) -> float:
    """Seconds of the bare tridiagonal reduction of G (what both spectral fits start with)."""
    from scipy.linalg import lapack

    from henderson._threads import blas_threads_for

    K = np.asarray(G.dense(), dtype=np.float64)
    n = K.shape[0]
    lwork = int(lapack.dsytrd_lwork(n, lower=1)[0])
    t0 = time.perf_counter()
    Kf = np.array(K.T, order="F") if K.flags.c_contiguous else np.array(K, order="F")
    with blas_threads_for(n):
        info = lapack.dsytrd(Kf, lower=1, lwork=max(lwork, 1), overwrite_a=1)[-1]
    assert info == 0
    return time.perf_counter() - t0


def run_gemma(geno, Y, workdir: Path):
    if shutil.which("gemma") is None:
        return None
    workdir.mkdir(parents=True, exist_ok=True)
    full, small = workdir / "full", workdir / "small"
    hd.write_plink(full, geno)
    hd.write_plink(small, geno.subset(snps=geno.snps["snp"].iloc[:10].tolist()))
    np.savetxt(workdir / "pheno.txt", Y.to_numpy(), fmt="%.10g")
    out = {}
    t0 = time.perf_counter()
    subprocess.run(
        [
            "gemma",
            "-bfile",
            str(full),
            "-p",
            str(workdir / "pheno.txt"),
            "-gk",
            "1",
            "-o",
            "kin",
            "-outdir",
            str(workdir),
        ],
        check=True,
        capture_output=True,
        cwd=workdir,
    )
    out["gk"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = subprocess.run(
        [
            "gemma",
            "-bfile",
            str(small),
            "-p",
            str(workdir / "pheno.txt"),
            "-k",
            str(workdir / "kin.cXX.txt"),
            "-lmm",
            "1",
            "-n",
            "1",
            "2",
            "3",
            "-o",
            "mv",
            "-outdir",
            str(workdir),
        ],
        capture_output=True,
        text=True,
        cwd=workdir,
    )
    out["mvlmm"] = time.perf_counter() - t0
    out["returncode"] = r.returncode
    log = (workdir / "mv.log.txt").read_text() if (workdir / "mv.log.txt").exists() else ""
    out["log"] = log
    out["stdout"] = r.stdout[-3000:]
    return out


def gemma_matrices(text: str):
    """Vg and Ve printed by GEMMA's mvLMM log ("## REMLE estimate for Vg" blocks)."""

    def block(label):
        m = re.search(label + r"[^\n]*\n((?:[ \t]*[-0-9.eE+]+(?:[ \t]+[-0-9.eE+]+)*[ \t]*\n)+)", text)
        if not m:
            return None
        rows = [list(map(float, ln.split())) for ln in m.group(1).strip().splitlines()]
        t = len(rows)
        S = np.zeros((t, t))
        for i, r in enumerate(rows):  # GEMMA prints the lower triangle
            S[i, : len(r)] = r
        return np.tril(S) + np.tril(S, -1).T

    return block(r"REMLE estimate for Vg"), block(r"REMLE estimate for Ve")


SOMMER_R = r"""
suppressMessages(library(sommer))
d <- read.csv(Sys.getenv("DATA"), colClasses = c(ANIMAL = "character", SEX = "character"))
A <- as.matrix(read.csv(gzfile(Sys.getenv("AMAT")), row.names = 1, check.names = FALSE))
A <- A[unique(d$ANIMAL), unique(d$ANIMAL)]
d$ANIMAL <- factor(d$ANIMAL, levels = rownames(A))
t0 <- proc.time()[["elapsed"]]
m <- mmer(cbind(BWT, TARSUS) ~ SEX, random = ~ vsr(ANIMAL, Gu = A, Gtc = unsm(2)),
          rcov = ~ vsr(units, Gtc = unsm(2)), data = d, verbose = FALSE, tolParConvLL = 1e-6)
el <- proc.time()[["elapsed"]] - t0
cat("SOMMER_SECONDS", el, "\n")
print(m$sigma)
"""


def animal(a):
    """Gryphon bivariate animal model with A⁻¹ (see the module docstring)."""
    import warnings

    g = hd.datasets.load_gryphon()
    rec = g.records
    Ainv = hd.pedigree_inverse(g.pedigree)
    f2 = "cbind(BWT, TARSUS) ~ 1 + SEX + (1|ANIMAL)"
    both = rec.dropna(subset=["BWT", "TARSUS"])
    # 30 % of the trait values of the complete records masked at random (seed 1); a record
    # whose two values were both drawn keeps BWT
    rng = np.random.default_rng(1)
    mask = rng.random((len(both), 2)) < 0.30
    mask[mask.all(axis=1), 0] = False
    masked = both.copy()
    masked.loc[mask[:, 0], "BWT"] = np.nan
    masked.loc[mask[:, 1], "TARSUS"] = np.nan
    # warm-up (numba compilation of the supernodal kernels; imports)
    hd.fit("BWT ~ 1 + SEX + (1|ANIMAL)", rec.dropna(subset=["BWT"]), cov_inverse={"ANIMAL": Ainv})
    hd.fit(f2, both, cov_inverse={"ANIMAL": Ainv})
    reps = 5
    out = {}
    for label, frame, formula in (
        ("floor: single-trait BWT (sparse MME)", rec.dropna(subset=["BWT"]), "BWT ~ 1 + SEX + (1|ANIMAL)"),
        ("bivariate, all records (854 with a trait; 171 of 1,708 values missing)", rec, f2),
        ("bivariate, complete records", both, f2),
        (f"bivariate, complete records with {mask.mean():.0%} of values masked", masked, f2),
    ):
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = hd.fit(formula, frame, cov_inverse={"ANIMAL": Ainv})
            ts.append(time.perf_counter() - t0)
        out[label] = (min(ts), res)
    floor = out["floor: single-trait BWT (sparse MME)"][0]
    lines = [
        f"\n## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, gryphon bivariate animal model "
        f"(BWT, TARSUS; A⁻¹ of 1,309 animals), {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores (shared); best of {reps}{'; ' + a.note if a.note else ''}\n",
        "| fit | solver | records / values | AI iterations | seconds | ratio to floor |",
        "|---|---|---|---|---|---|",
    ]
    for label, (t, res) in out.items():
        solver = getattr(res, "solver", "")
        nrec = res.n_obs
        nval = int(res.n_records.sum()) if hasattr(res, "n_records") else nrec
        it = getattr(res, "iterations", "")
        lines.append(f"| {label} | {solver} | {nrec} / {nval} | {it} | {t:.3f} | {t / floor:.2f} |")
    for label in list(out)[1:]:
        res = out[label][1]
        vc = res.variance_components["estimate"]
        lines.append(f"\n{label}: " + ", ".join(f"{k} {v:.5g}" for k, v in vc.items()) + f"; logLik {res.loglik:.6f}")
    if a.sommer:
        work = WORK / "gryphon"
        work.mkdir(parents=True, exist_ok=True)
        both[["ANIMAL", "SEX", "BWT", "TARSUS"]].to_csv(work / "both.csv", index=False)
        (work / "sommer.R").write_text(SOMMER_R)
        env = dict(os.environ, R_LIBS="/tmp/rlib", DATA=str(work / "both.csv"))
        env["AMAT"] = str(ROOT / "tests" / "data" / "refs" / "A_gryphon.csv.gz")
        t0 = time.perf_counter()
        try:
            p = subprocess.run(
                ["Rscript", str(work / "sommer.R")], env=env, capture_output=True, text=True, timeout=a.sommer_limit
            )
            wall = time.perf_counter() - t0
            m = re.search(r"SOMMER_SECONDS\s+([0-9.]+)", p.stdout)
            if m:
                ts = float(m.group(1))
                t_c = out["bivariate, complete records"][0]
                lines.append(
                    f"\nsommer 4.3.7 mmer (complete records, dense A, R reference BLAS): {ts:.2f} s "
                    f"(wall {wall:.1f} s incl. reading A); henderson {t_c:.3f} s = {ts / t_c:.0f}× faster\n"
                    "```\n" + p.stdout.strip()[-1500:] + "\n```"
                )
            else:
                lines.append(f"\nsommer failed (rc {p.returncode}): {p.stderr.strip()[-800:]}")
        except subprocess.TimeoutExpired:
            lines.append(f"\nsommer mmer did not finish within {a.sommer_limit} s (killed)")
    text = "\n".join(lines) + "\n"
    print(text)
    with RESULTS.open("a") as f:
        f.write(text)


# -- missing traits (--missing FRAC) ------------------------------------------------------------
MISSING_RESULTS = ROOT / "benchmarks" / "results" / "multitrait_missing.md"


def mask_values(Y: pd.DataFrame, frac: float, seed: int = 2) -> pd.DataFrame:
    """Each trait value missing with probability ``frac`` (independently, fixed seed);
    individuals left with no trait keep none (they are predicted, not fitted)."""
    rng = np.random.default_rng(seed)
    return Y.mask(rng.random(Y.shape) < frac)


def gemma_missing(geno, Ym: pd.DataFrame, workdir: Path, limit: float):
    """GEMMA 0.98.5 on the masked phenotypes (NA): (a) ``-lmm 1 -n 1 2 3`` directly — GEMMA's
    mvLMM drops every individual missing any trait (param.cpp: indicator_idv = 0 when a
    trait is missing); (b) ``-predict -n 1 2 3`` (mvLMM REML on the complete individuals,
    then each missing value replaced by its conditional normal mean given the observed ones,
    gemma.cpp a_mode 43 / PRDT::MvnormPrdt), then ``-lmm 1`` on the imputed file, which
    treats imputed values as data. -lmm runs on a 10-SNP file: the time is the null model."""
    if shutil.which("gemma") is None:
        return None
    workdir.mkdir(parents=True, exist_ok=True)
    full, small = workdir / "full", workdir / "small"
    hd.write_plink(full, geno)
    hd.write_plink(small, geno.subset(snps=geno.snps["snp"].iloc[:10].tolist()))
    ph = workdir / "pheno_na.txt"
    Ym.to_csv(ph, sep=" ", header=False, index=False, na_rep="NA", float_format="%.10g")
    cvt = workdir / "intercept.txt"  # -predict counts individuals through the covariate file
    np.savetxt(cvt, np.ones(len(Ym)), fmt="%d")
    out = {}

    def run(args, key):
        t0 = time.perf_counter()
        try:
            r = subprocess.run(["gemma", *args], capture_output=True, text=True, cwd=workdir, timeout=limit)
            out[key] = time.perf_counter() - t0
            out[key + "_rc"] = r.returncode
            out[key + "_out"] = r.stdout[-4000:]
        except subprocess.TimeoutExpired:
            out[key] = None
            out[key + "_rc"] = f"stopped after {limit:.0f} s"
            out[key + "_out"] = ""

    run(["-bfile", str(full), "-p", str(ph), "-gk", "1", "-o", "kin", "-outdir", str(workdir)], "gk")
    kin = str(workdir / "kin.cXX.txt")
    run(
        ["-bfile", str(small), "-p", str(ph), "-k", kin, "-lmm", "1", "-n", "1", "2", "3", "-o", "mvna"]
        + ["-outdir", str(workdir)],
        "lmm_drop",
    )
    log = workdir / "mvna.log.txt"
    out["lmm_drop_log"] = log.read_text() if log.exists() else ""
    run(
        ["-bfile", str(small), "-p", str(ph), "-c", str(cvt), "-k", kin, "-predict", "1", "-n", "1", "2", "3"]
        + ["-o", "prdt"]
        + ["-outdir", str(workdir)],
        "predict",
    )
    prdt = workdir / "prdt.prdt.txt"
    if prdt.exists():
        run(
            ["-bfile", str(small), "-p", str(prdt), "-k", kin, "-lmm", "1", "-n", "1", "2", "3", "-o", "mvimp"]
            + ["-outdir", str(workdir)],
            "lmm_imputed",
        )
        log = workdir / "mvimp.log.txt"
        out["lmm_imputed_log"] = log.read_text() if log.exists() else ""
    return out


def engine_iteration_times(masked, G, res, old: bool) -> dict:
    """Seconds of one AI iteration (a −2logL-only trial plus an evaluation with score and
    AI at the accepted point) of the V-form and, if ``old``, of the dense MME engine, both
    at the V-form's REML estimate: the per-iteration cost independent of how many
    iterations a boundary optimum takes."""
    from henderson.multitrait.fit import check_traits
    from henderson.multitrait.general import MultiTraitMME, build_terms, trait_designs_observed
    from henderson.multitrait.vform import MultiTraitVForm

    traits = ["y1", "y2", "y3"]
    kept, _ = check_traits(masked, traits, "id", allow_missing=True)
    Xs, *_ = trait_designs_observed(kept, traits, "1")
    Yk = kept[traits].to_numpy(dtype=float)
    out = {}
    engines = [("vform", lambda: MultiTraitVForm(Yk, Xs, build_terms(kept, [("id", False)], {"id": G}, {})))]
    if old:
        engines.append(
            ("mme", lambda: MultiTraitMME(Yk, Xs, build_terms(kept, [("id", False)], {"id": G}, {}), backend="dense"))
        )
    for name, make in engines:
        st = make()
        theta = st.pack([res.covariances["id"].to_numpy()], res.covariances["Residual"].to_numpy())
        # the fit's estimate can sit on the boundary: shrink correlations 1 % so every engine evaluates
        Sgs, Se = st.unpack(theta)
        Sg = Sgs[0]
        shrink = [np.sqrt(np.outer(np.diag(S), np.diag(S))) * 0.01 * np.eye(3) + 0.99 * S for S in (Sg, Se)]
        theta = st.pack([shrink[0]], shrink[1])
        from henderson._threads import blas_threads_for

        with blas_threads_for(st.N if name == "vform" else st.dim):  # as the fit does
            t0 = time.perf_counter()
            st.evaluate(theta)
            st.evaluate(theta, derivatives=True)
            out[name] = time.perf_counter() - t0
        print(f"one iteration, {name}: {out[name]:.2f} s")
    return out


def missing_part(a):
    """3-trait GBLUP with ``a.missing`` of the values masked: the V-form (new) against the
    dense MME (old, n ≤ ``a.old_max``), the complete-data fit (rotated) and GEMMA."""
    geno, Y = simulate(a.n, a.m)
    Ym = mask_values(Y, a.missing)
    t0 = time.perf_counter()
    G = hd.genomic_relationship(geno, method="vanraden1")
    t_g = time.perf_counter() - t0
    form = "cbind(y1, y2, y3) ~ 1 + (1|id)"
    full = Y.rename_axis("id").reset_index()
    masked = Ym.rename_axis("id").reset_index()
    fits = {}

    def timed(label, frame, **kw):
        t0 = time.perf_counter()
        r = hd.fit(form, frame, cov={"id": G}, **kw)
        fits[label] = (time.perf_counter() - t0, r)
        print(f"{label}: {fits[label][0]:.2f} s, {r.solver}, {r.iterations} iterations, logL {r.loglik:.10f}")

    # warm-up, untimed: compiled kernels (numba) and imports of every path on 60 individuals
    warm = G.subset(list(full["id"].iloc[:60]))
    for frame, kw in ((full, {}), (masked, {}), (masked, {"solver": "dense"})):
        hd.fit(form, frame.iloc[:60], cov={"id": warm}, **kw)
    timed("complete", full)
    if a.iteration_only:  # too large for a full fit in the time allowed: one iteration, extrapolated
        per_it = engine_iteration_times(masked, G, fits["complete"][1], old=False)
        t_c, r_c = fits["complete"]
        n_obs = int(Ym.notna().to_numpy().sum())
        text = (
            f"\n## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, n = {a.n}, m = {a.m}, "
            f"{a.missing:.0%} of trait values missing, one AI iteration only{'; ' + a.note if a.note else ''}\n\n"
            f"{n_obs} of {3 * a.n} values observed. G {t_g:.2f} s; complete-data 3-trait fit "
            f"({r_c.solver}, {r_c.iterations} it.) {t_c:.2f} s; one AI iteration of the V-form on the masked data "
            f"at the complete-data estimate: {per_it['vform']:.2f} s = {per_it['vform'] / t_c:.2f}× the complete-data "
            f"fit (a fit takes 10–15 such iterations at an interior optimum, plus PEV).\n"
        )
        print(text)
        if not MISSING_RESULTS.exists():
            MISSING_RESULTS.write_text(
                "# Multi-trait GBLUP with missing trait values (benchmarks/bench_multitrait.py --missing)\n"
            )
        with MISSING_RESULTS.open("a") as f:
            f.write(text)
        return
    timed("new", masked)
    if a.n <= a.old_max and a.old_full:
        timed("old", masked, solver="dense")
    per_it = engine_iteration_times(masked, G, fits["new"][1], old=a.n <= a.old_max)
    gem = None if a.no_gemma else gemma_missing(geno, Ym, WORK / f"missing_{a.n}", limit=900.0)
    n_obs = int(Ym.notna().to_numpy().sum())
    complete_rows = int(Ym.notna().all(axis=1).sum())
    t_c, r_c = fits["complete"]
    t_n, r_n = fits["new"]
    lines = [
        f"\n## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, n = {a.n}, m = {a.m}, "
        f"{a.missing:.0%} of trait values missing, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores (shared){'; ' + a.note if a.note else ''}\n",
        f"{n_obs} of {3 * a.n} values observed; {complete_rows} individuals with all three traits; "
        f"{int(Ym.isna().all(axis=1).sum())} with none (predicted, not fitted). PEV computed in every fit.\n",
        "| step | seconds | ratio to the complete-data fit |",
        "|---|---|---|",
        f"| G (VanRaden 1, shared) | {t_g:.2f} | |",
        f"| 3-trait fit, complete data ({r_c.solver}, {r_c.iterations} it.) | {t_c:.2f} | 1.00 |",
        f"| 3-trait fit, {a.missing:.0%} missing, new ({r_n.solver}, {r_n.iterations} it.) | {t_n:.2f} | "
        f"{t_n / t_c:.2f} |",
    ]
    lines += [
        f"| one AI iteration at the new fit's optimum, new engine ({k}: −2logL + derivatives) | {v:.2f} | |"
        for k, v in per_it.items()
        if k.startswith("vform")
    ]
    if "mme" in per_it:
        lines.append(
            f"| one AI iteration at the same θ, old engine (dense MME: −2logL + derivatives) | {per_it['mme']:.2f} | "
            f"old/new {per_it['mme'] / per_it['vform']:.1f}× |"
        )
    if "old" in fits:
        t_o, r_o = fits["old"]
        lines.append(
            f"| 3-trait fit, {a.missing:.0%} missing, old ({r_o.solver}, {r_o.iterations} it.) | {t_o:.2f} | "
            f"{t_o / t_c:.2f} (old/new {t_o / t_n:.1f}×) |"
        )
    if gem is not None:

        def sec(k):
            return f"{gem[k]:.2f}" if gem.get(k) is not None else str(gem.get(k + "_rc"))

        def rat(k):
            return f"{gem[k] / t_c:.2f}" if gem.get(k) is not None else ""

        lines += [
            f"| GEMMA -gk 1 (kinship) | {sec('gk')} | |",
            f"| GEMMA -lmm 1 -n 1 2 3 on the masked file (drops incomplete individuals) | {sec('lmm_drop')} | "
            f"{rat('lmm_drop')} |",
            f"| GEMMA -predict -n 1 2 3 (impute missing values) | {sec('predict')} | {rat('predict')} |",
            f"| GEMMA -lmm 1 -n 1 2 3 on the imputed file | {sec('lmm_imputed')} | {rat('lmm_imputed')} |",
        ]
    lines.append("")
    if "old" in fits:
        r_o = fits["old"][1]
        d = max(
            float(np.abs(r_n.covariances[k].to_numpy() - r_o.covariances[k].to_numpy()).max())
            for k in ("id", "Residual")
        )
        lines.append(
            f"New vs old: |Δ logL| {abs(r_n.loglik - r_o.loglik):.2e}, max |Δ Σ| {d:.2e}, "
            f"max |Δ BLUP| {np.abs(r_n.blups['id']['blup'].to_numpy() - r_o.blups['id']['blup'].to_numpy()).max():.2e}."
        )
    lines.append(
        f"Genetic covariance (new): {np.round(r_n.covariances['id'].to_numpy(), 4).tolist()}; "
        f"complete data: {np.round(r_c.covariances['id'].to_numpy(), 4).tolist()}."
    )
    if gem is not None:
        for key, what in (("lmm_drop_log", "masked file"), ("lmm_imputed_log", "imputed file")):
            txt = gem.get(key, "")
            keep = [ln for ln in txt.splitlines() if "number of analyzed" in ln or "log-likelihood" in ln]
            vg, _ = gemma_matrices(txt)
            lines.append(f"GEMMA on the {what}: " + "; ".join(ln.strip("# ") for ln in keep[:4]))
            if vg is not None:
                p = geno.allele_freq
                vg = np.array(vg) * (2 * float(np.sum(p * (1 - p))) / a.m)
                lines.append(f"  its Vg (rescaled to G = XcXc'/2Σpq): {np.round(vg, 4).tolist()}")
    lines.append("\nhenderson timings of the new fit: " + ", ".join(f"{k} {v:.2f} s" for k, v in r_n.timings.items()))
    text = "\n".join(lines) + "\n"
    print(text)
    if not MISSING_RESULTS.exists():
        MISSING_RESULTS.write_text(
            "# Multi-trait GBLUP with missing trait values (benchmarks/bench_multitrait.py --missing)\n"
        )
    with MISSING_RESULTS.open("a") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--m", type=int, default=50000)
    ap.add_argument("--no-gemma", action="store_true")
    ap.add_argument("--animal", action="store_true", help="gryphon bivariate animal model with A⁻¹ only")
    ap.add_argument("--sommer", action="store_true", help="with --animal: race sommer's mmer")
    ap.add_argument("--sommer-limit", type=float, default=600.0)
    ap.add_argument("--note", default="", help="a note for the results header (e.g. not under the lock)")
    ap.add_argument("--missing", type=float, default=0.0, help="fraction of trait values masked (missing part)")
    ap.add_argument("--old-max", type=int, default=1000, help="with --missing: largest n for the old MME engine")
    ap.add_argument("--old-full", action="store_true", help="with --missing: also the full REML fit on the old engine")
    ap.add_argument("--iteration-only", action="store_true", help="with --missing: one V-form iteration, no full fit")
    a = ap.parse_args()
    if a.animal:
        animal(a)
        return
    if a.missing > 0:
        missing_part(a)
        return
    geno, Y = simulate(a.n, a.m)
    t0 = time.perf_counter()
    G = hd.genomic_relationship(geno, method="vanraden1")
    t_g = time.perf_counter() - t0
    # warm-up on 300 individuals (numba kernels compiled or loaded from cache, imports),
    # so that neither timed fit pays for it
    import warnings

    few = list(G.ids[:300])
    for pev in (True, False):
        with warnings.catch_warnings():  # a boundary on 300 individuals is of no interest here
            warnings.simplefilter("ignore")
            hd.GBLUP(pev=pev).fit(G.subset(few), Y.loc[few, "y1"])
            hd.GBLUP(traits=["y1", "y2", "y3"], pev=pev).fit(G.subset(few), Y.loc[few])
    times = {}
    for pev in (True, False):
        t0 = time.perf_counter()
        hd.GBLUP(pev=pev).fit(G, Y["y1"])
        times[("st", pev)] = time.perf_counter() - t0
        t0 = time.perf_counter()
        mt = hd.GBLUP(traits=["y1", "y2", "y3"], pev=pev).fit(G, Y)
        times[("mt", pev)] = time.perf_counter() - t0
        if pev:
            res = mt.result_
    t_st, t_mt = times[("st", True)], times[("mt", True)]
    t_st0, t_mt0 = times[("st", False)], times[("mt", False)]
    t_floor = dsytrd_floor(G)
    print(res.summary()[:1500])
    gem = None if a.no_gemma else run_gemma(geno, Y, WORK)
    p = geno.allele_freq
    two_pq = 2 * float(np.sum(p * (1 - p)))
    lines = [
        f"\n## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, n = {a.n}, m = {a.m}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared)"
        f"{'; ' + a.note if a.note else ''}\n",
        "| step | seconds | ratio to single-trait fit |",
        "|---|---|---|",
        f"| G (VanRaden 1, shared by both fits) | {t_g:.2f} | |",
        f"| single-trait GBLUP fit (spectral, PEV) | {t_st:.2f} | 1.00 |",
        f"| floor: bare dsytrd of G (LAPACK, optimal workspace) | {t_floor:.2f} | {t_floor / t_st:.2f} |",
        f"| 3-trait GBLUP fit (tridiagonal REML, PEV via MRRR + dormtr; {res.iterations} AI iterations) | "
        f"{t_mt:.2f} | {t_mt / t_st:.2f} |",
        f"| end to end incl. G: single / 3-trait | {t_g + t_st:.2f} / {t_g + t_mt:.2f} | "
        f"{(t_g + t_mt) / (t_g + t_st):.2f} |",
        f"| without PEV: single-trait fit (tridiagonal) | {t_st0:.2f} | 1.00 |",
        f"| without PEV: 3-trait fit (tridiagonal, no eigenvectors) | {t_mt0:.2f} | {t_mt0 / t_st0:.2f} |",
        f"| ratios to the dsytrd floor: single / 3-trait with PEV; single / 3-trait without | | "
        f"{t_st / t_floor:.2f} / {t_mt / t_floor:.2f}; {t_st0 / t_floor:.2f} / {t_mt0 / t_floor:.2f} |",
        f"| without PEV, end to end incl. G: single / 3-trait | {t_g + t_st0:.2f} / {t_g + t_mt0:.2f} | "
        f"{(t_g + t_mt0) / (t_g + t_st0):.2f} |",
    ]
    if gem is not None:
        lines += [
            f"| GEMMA -gk 1 (kinship) | {gem['gk']:.2f} | |",
            f"| GEMMA -lmm 1 -n 1 2 3 (mvLMM null model + 10 SNP tests) | {gem['mvlmm']:.2f} | "
            f"{gem['mvlmm'] / t_st:.2f} |",
            f"| 3-trait henderson vs GEMMA mvLMM | | {t_mt / gem['mvlmm']:.2f} |",
        ]
        vg, ve = gemma_matrices(gem["log"] + gem["stdout"])
        lines.append("")
        lines.append(f"GEMMA return code {gem['returncode']}.")
        if vg is not None:
            Sg = res.covariances["genetic"].to_numpy()
            vg = np.array(vg) * (two_pq / a.m)  # to the scale of G = XcXc'/(2Σpq)
            lines.append(
                f"Genetic covariance, henderson: {np.round(Sg, 5).tolist()}; GEMMA (rescaled): "
                f"{np.round(vg, 5).tolist()}; max |diff| {np.abs(Sg - vg).max():.2e}"
            )
        if ve is not None:
            Se = res.covariances["Residual"].to_numpy()
            lines.append(
                f"Residual covariance, henderson: {np.round(Se, 5).tolist()}; GEMMA: "
                f"{np.round(np.array(ve), 5).tolist()}; max |diff| {np.abs(Se - np.array(ve)).max():.2e}"
            )
        tail = [ln for ln in gem["log"].splitlines() if "log-likelihood" in ln or "time" in ln.lower()]
        lines += ["", "GEMMA log lines:", "```"] + tail[:12] + ["```"]
    lines.append(
        "\nhenderson timings of the 3-trait fit: " + ", ".join(f"{k} {v:.2f} s" for k, v in res.timings.items())
    )
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if not RESULTS.exists():
        RESULTS.write_text("# Multi-trait GBLUP benchmark (benchmarks/bench_multitrait.py)\n")
    with RESULTS.open("a") as f:
        f.write(text)


if __name__ == "__main__":
    main()

"""Benchmark: henderson on the reference data sets, next to the R packages' recorded times.

Usage::

    .venv/bin/python benchmarks/bench_refdata.py            # writes benchmarks/results/refdata.md
    .venv/bin/python benchmarks/bench_refdata.py --out -    # print only

For each fit whose reference (``tests/data/refs/*.json``) records the R package's elapsed
seconds, times the same model in henderson (median of ``--repeats`` runs after one warm-up,
import excluded) and prints both, with the agreement of the estimates. The R figures come
from the reference run (R 4.2.2 with reference BLAS/LAPACK, Debian 12, recorded with the
references) — not from this process — so they are the packages' own cost on the same data,
not a same-run race; where R can be run here (lme4) ``bench_engine.py`` races it directly.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np

import henderson as h
from henderson.datasets import load_lme4, load_potato, load_wheat

HERE = Path(__file__).resolve().parent
REFS = HERE.parent / "tests" / "data" / "refs"


def _median_time(f, repeats):
    f()  # warm-up: numba cache, first BLAS call
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = f()
        t.append(time.perf_counter() - t0)
    return float(np.median(t)), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=str(HERE / "results" / "refdata.md"))
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    dt = json.loads((REFS / "dt_example.json").read_text())
    rr = json.loads((REFS / "wheat_rrblup.json").read_text())
    so = json.loads((REFS / "wheat_sommer.json").read_text())
    l4 = json.loads((REFS / "lme4_datasets.json").read_text())
    wheat = load_wheat()
    geno = h.Genotypes.from_frame(2 * wheat.markers)
    y = wheat.phenotypes["env1"]
    potato = load_potato()
    rows = []

    t, res = _median_time(lambda: h.fit("Yield ~ Env + (1|Name)", potato), a.repeats)
    s = res.sigma2["Name"]
    rows += [
        ("potato `Yield ~ Env + (1|Name)`, REML", "lme4 `lmer`", dt["lme4"]["elapsed_s"], t, f"σ²_Name {s:.6f}"),
        ("", "sommer `mmer` (tight)", dt["sommer"]["tight"]["elapsed_s"], t, ""),
        ("", "rrBLUP `mixed.solve`", dt["rrBLUP"]["elapsed_s"], t, ""),
    ]
    for name, formula in [
        ("Penicillin", "diameter ~ 1 + (1|plate) + (1|sample)"),
        ("Pastes", "strength ~ 1 + (1|batch/cask)"),
    ]:
        d = load_lme4(name)
        t, res = _median_time(lambda d=d, f=formula: h.fit(f, d), a.repeats)
        rows.append((f"{name} `{formula}`, REML", "lme4 `lmer`", l4[name]["reml"]["elapsed_s"], t, ""))

    t, m = _median_time(lambda: h.GBLUP().fit(geno, y), a.repeats)
    vc = m.variance_components_["variance"]
    rows += [
        (
            "wheat env1 GBLUP from markers (G, REML, GEBVs, PEV)",
            "rrBLUP `A.mat` + `mixed.solve`",
            rr["grm"]["elapsed_s"] + rr["gblup"]["elapsed_s"],
            t,
            f"σ²_g {vc.iloc[0]:.7f}, σ²_e {vc.iloc[1]:.7f}",
        ),
        ("", "sommer `mmer` (default tolerance)", so["gblup_default"]["elapsed_s"], t, ""),
    ]
    t, m = _median_time(lambda: h.SNPBLUP().fit(geno, y), a.repeats)
    rows.append(
        (
            "wheat env1 SNP-BLUP, REML (centred markers)",
            "rrBLUP `mixed.solve(Z = markers)`",
            rr["snpblup_centred"]["elapsed_s"],
            t,
            f"σ²_β {m.sigma2_beta_:.9f}",
        )
    )
    t, m = _median_time(lambda: h.GBLUP().fit(wheat.A, y), a.repeats)
    rows.append(("wheat env1 pedigree BLUP (K = A)", "rrBLUP `mixed.solve(K = A)`", rr["pblup"]["elapsed_s"], t, ""))
    rows.append(("", "sommer `mmer` (tight)", so["pblup_tight"]["elapsed_s"], t, ""))

    L = [
        "# henderson on the reference data sets, next to the R packages",
        "",
        "Command: `.venv/bin/python benchmarks/bench_refdata.py` "
        f"(median of {a.repeats} fits after a warm-up; import excluded).",
        "",
        f"henderson {h.__version__}, Python {platform.python_version()}, numpy {np.__version__}, on this "
        "project's machine (2 cores). R figures: the elapsed seconds recorded with the references "
        "(`tests/data/refs/*.json`: R 4.2.2, reference BLAS/LAPACK, Debian 12), i.e. each package's "
        "own cost on the same data and model — not timed in this process.",
        "",
        "| model | R package | R seconds | henderson seconds | ratio | henderson estimate |",
        "|---|---|---|---|---|---|",
    ]
    for model, pkg, tr, th, est in rows:
        L.append(f"| {model} | {pkg} | {tr:.3f} | {th:.4f} | {tr / th:.1f}× | {est} |")
    L += [
        "",
        "The estimates equal the references to the tolerances of the tests "
        "(`tests/test_engine_references.py`, `tests/models/test_models.py`).",
    ]
    text = "\n".join(L) + "\n"
    if a.out != "-":
        Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()

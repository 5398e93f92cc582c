"""Benchmark: the sparse MME (supernodal Cholesky + selected inverse) on animal models.

Usage::

    flock /tmp/henderson-bench.lock .venv/bin/python benchmarks/bench_sparse.py
    ... --parts gryphon            # only the gryphon part
    ... --sizes 25000 50000 100000 # sizes of the simulated animal models

Parts, each figure next to a floor or a peer measured in the same run:

1. gryphon ``BWT ~ 1 + SEX + (1|ANIMAL) + (1|BYEAR) + (1|MOTHER)`` (1,309 animals,
   854 records), REML with SEs, BLUPs and PEVs, on both paths — sparse A⁻¹
   (``cov_inverse``) and dense A (``cov``) — median of ``--repeats`` after a warm-up;
   against the previous implementations run in this process: the dense MME (what
   ``solver="auto"`` ran before for both paths) and the SuperLU sparse solver with a
   central-difference score and unit-vector PEVs (loaded from git history, commit
   ``PREVIOUS``). sommer (14 s) and lme4 (47 s) are the figures recorded for issue #9
   with R's reference BLAS, not run here.
2. simulated animal models ``y ~ 1 + (1|id)`` with A⁻¹ (seeded pedigree simulator,
   every animal recorded, h² = 0.4): REML, time per AI iteration against the floor of
   one numeric factorisation of the same C in the same run; peak resident memory of
   a child process per size against the factor's own size; SuperLU (scipy, MMD
   ordering) on the same C as a peer factorisation.
3. scaling of the selected inverse with the size: factor and Takahashi times, |L|.
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
import types
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FORMULA = "BWT ~ 1 + SEX + (1|ANIMAL) + (1|BYEAR) + (1|MOTHER)"
#: the last commit with the SuperLU / central-difference sparse solver
PREVIOUS = "1a3b447"


def _median(f, repeats):
    f()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = f()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), out


def _previous_sparse_module():
    src = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{PREVIOUS}:src/henderson/solvers/sparse.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    src = src.replace("from ..errors", "from henderson.errors").replace(
        "from ..spec.model", "from henderson.spec.model"
    )
    # that code read the level-covariance tag `t.kind` ("iid", "factor", "inverse"), which the
    # spec no longer has: give it the same answer from the covariance's class
    src = src.replace("t.kind", "_kind_of(t)")
    src += (
        "\n\ndef _kind_of(t):\n"
        "    from henderson.spec.levels import Factored, Identity\n"
        "    c = t.covariance\n"
        "    return 'iid' if isinstance(c, Identity) else 'factor' if isinstance(c, Factored) else 'inverse'\n"
    )
    mod = types.ModuleType("henderson_previous_sparse")
    sys.modules[mod.__name__] = mod  # dataclasses look their module up
    exec(compile(src, "previous_sparse.py", "exec"), mod.__dict__)
    return mod


def _fit_previous(spec):
    from henderson import assemble
    from henderson.reml.optimize import optimise
    from henderson.solvers.protocol import Prepared

    prepared = Prepared.of(_previous_sparse_module().SparseMME(spec))
    opt = optimise(prepared)
    run = assemble.Run(prepared.state.name, "reml", opt.iterations, opt.converged, opt.log, opt.boundary)
    return assemble.fit_result(spec, prepared.with_pev(opt.evaluation), run)


def part_gryphon(repeats):
    import henderson as h
    from henderson.datasets import load_gryphon
    from henderson.spec.model import build_spec

    g = load_gryphon()
    rec = g.records
    Ainv = h.pedigree_inverse(g.pedigree)
    A = h.pedigree_relationship(g.pedigree)
    t_sp, a = _median(lambda: h.fit(FORMULA, rec, cov_inverse={"ANIMAL": Ainv}), repeats)
    t_dn, b = _median(lambda: h.fit(FORMULA, rec, cov={"ANIMAL": A}), repeats)
    t0 = time.perf_counter()
    c = h.fit(FORMULA, rec, cov_inverse={"ANIMAL": Ainv}, solver="dense")
    t_old_dense_ainv = time.perf_counter() - t0
    t0 = time.perf_counter()
    d = h.fit(FORMULA, rec, cov={"ANIMAL": A}, solver="dense")
    t_old_dense_a = time.perf_counter() - t0
    spec = build_spec(FORMULA, rec.dropna(subset=["BWT"]), cov_inverse={"ANIMAL": Ainv})
    t0 = time.perf_counter()
    e = _fit_previous(spec)
    t_old_superlu = time.perf_counter() - t0
    agree = {
        "dense A vs sparse A⁻¹ (σ², rel)": float(np.max(np.abs(b.sigma2 - a.sigma2) / a.sigma2)),
        "dense MME vs sparse (σ², rel)": float(np.max(np.abs(c.sigma2 - a.sigma2) / a.sigma2)),
        "dense MME vs sparse (PEV ANIMAL, rel)": float(
            np.max(np.abs(c.blups["ANIMAL"]["pev"] - a.blups["ANIMAL"]["pev"]) / a.blups["ANIMAL"]["pev"])
        ),
        "previous SuperLU vs sparse (σ², rel)": float(np.max(np.abs(e.sigma2 - a.sigma2) / a.sigma2)),
        "logL sparse − dense MME": float(a.loglik - c.loglik),
    }
    rows = [
        ("sparse A⁻¹, auto (now: sparse MME)", t_sp, a.iterations, a.solver),
        ("dense A, auto (now: K⁻¹ then sparse MME)", t_dn, b.iterations, b.solver),
        ("previous: sparse A⁻¹ with auto = dense MME", t_old_dense_ainv, c.iterations, c.solver),
        ("previous: dense A with auto = dense MME", t_old_dense_a, d.iterations, d.solver),
        ("previous: SuperLU sparse, central-difference score", t_old_superlu, e.iterations, "superlu"),
    ]
    return {"rows": rows, "agree": agree, "sigma2": a.sigma2.to_dict()}


def simulate_animal_model(n, seed=1):
    import pandas as pd

    import henderson as h
    from henderson._testing.pedigree import simulate_pedigree

    ped = simulate_pedigree(n, 10, seed=seed)
    rng = np.random.default_rng(seed)
    idx = {k: i for i, k in enumerate(ped["id"])}
    s = ped["sire"].map(idx).fillna(-1).astype(int).to_numpy()
    d = ped["dam"].map(idx).fillna(-1).astype(int).to_numpy()
    a = np.zeros(n)
    z = rng.standard_normal(n)
    for i in range(n):  # parents precede offspring; Mendelian sampling ignoring inbreeding
        known = (s[i] >= 0) + (d[i] >= 0)
        mean = 0.5 * ((a[s[i]] if s[i] >= 0 else 0.0) + (a[d[i]] if d[i] >= 0 else 0.0))
        a[i] = mean + z[i] * np.sqrt(1.0 - 0.25 * known) * np.sqrt(0.4)
    y = 10 + a + rng.standard_normal(n) * np.sqrt(0.6)
    data = pd.DataFrame({"id": ped["id"].to_numpy(), "y": y})
    return data, h.pedigree_inverse(ped)


def one_size(n):
    """Child process body: REML on n animals; JSON on stdout."""
    import scipy.sparse.linalg as spla

    import henderson as h
    from henderson._threads import _blas_controller
    from henderson.solvers.sparse import SparseMME
    from henderson.spec.model import build_spec

    warnings.simplefilter("ignore")
    data, Ainv = simulate_animal_model(n)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    res = h.fit("y ~ 1 + (1|id)", data, cov_inverse={"id": Ainv})
    t_fit = time.perf_counter() - t0
    rss_fit = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # the same C at the optimum: floors measured now
    spec = build_spec("y ~ 1 + (1|id)", data, cov_inverse={"id": Ainv})
    st = SparseMME(spec)
    s = res.sigma2.to_numpy()
    t0 = time.perf_counter()
    an = st.analysis(s[:-1] > 0)
    t_symbolic = time.perf_counter() - t0
    lam = {0: s[-1] / s[0]}
    with _blas_controller().limit(limits=1, user_api="blas"):
        fac_t, sel_t = [], []
        for _ in range(3):
            x = an.assemble(lam)
            t0 = time.perf_counter()
            F = an.symbolic.factor(x)
            fac_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            F.selected_inverse()
            sel_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        st.evaluate(s, derivatives=True)
        t_eval = time.perf_counter() - t0
    out = dict(
        n=n,
        iterations=res.iterations,
        fit_s=t_fit,
        optimise_s=res.timings["optimise"],
        per_iteration_s=res.timings["optimise"] / max(res.iterations, 1),
        evaluation_s=t_eval,
        symbolic_s=t_symbolic,
        factor_s=float(np.median(fac_t)),
        selinv_s=float(np.median(sel_t)),
        nnz_L=an.symbolic.nnz,
        storage=an.symbolic.size,
        supernodes=an.symbolic.n_supernodes,
        flops=an.symbolic.flops,
        ordering=an.symbolic.ordering,
        factor_mib=an.symbolic.size * 8 / 2**20,
        peak_rss_before_fit_mib=rss0 / 1024,
        peak_rss_fit_mib=rss_fit / 1024,
        sigma2=[float(v) for v in s],
        se=[float(v) for v in res.variance_components["se"]],
    )
    if n <= 100_000:
        import scipy.sparse as sp

        pen = sp.block_diag([lam[0] * sp.csc_matrix(Ainv.matrix), sp.csc_matrix((spec.p, spec.p))])
        C = (st.TtT + pen).tocsc()
        t0 = time.perf_counter()
        spla.splu(C.tocsc(), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
        out["superlu_s"] = time.perf_counter() - t0
    print(json.dumps(out))


def part_sizes(sizes):
    out = []
    for n in sizes:
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        r = subprocess.run(
            [sys.executable, __file__, "--child", str(n)], capture_output=True, text=True, env=env, timeout=3600
        )
        if r.returncode:
            raise RuntimeError(r.stderr)
        out.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(out[-1], flush=True)
    return out


def machine():
    import numpy as np
    import scipy
    from threadpoolctl import threadpool_info

    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads)" for i in threadpool_info()]
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f}; Python {platform.python_version()}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}; BLAS: {', '.join(blas)}"
    )


def write(gry, sizes, path):
    lines = [
        "# Sparse MME benchmark (`benchmarks/bench_sparse.py`)",
        "",
        f"Machine: {machine()}.",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "Sparse Cholesky: henderson.linalg (numba supernodal over scipy's OpenBLAS LAPACK, "
        "METIS nested dissection via pymetis), BLAS single-threaded.",
        "",
    ]
    if gry:
        t_sp = gry["rows"][0][1]
        lines += [
            "## Gryphon `" + FORMULA + "` (1,309 animals, 854 records), REML + SEs + BLUPs + PEVs",
            "",
            "| path | seconds | × the sparse A⁻¹ path | iterations | solver |",
            "|---|---|---|---|---|",
        ]
        for name, t, it, solver in gry["rows"]:
            lines.append(f"| {name} | {t:.3f} | {t / t_sp:.1f} | {it} | {solver} |")
        lines += [
            f"| sommer `mmer` (recorded for issue #9, R reference BLAS; not run here) | 14 | {14 / t_sp:.0f} | | |",
            f"| lme4 (recorded for issue #9, R reference BLAS; not run here) | 47 | {47 / t_sp:.0f} | | |",
            "",
            "Agreement: " + "; ".join(f"{k} {v:.1e}" for k, v in gry["agree"].items()),
            "",
        ]
    if sizes:
        lines += [
            "## Simulated animal models `y ~ 1 + (1|id)` with A⁻¹, every animal recorded",
            "",
            "| animals | AI iterations | s / iteration | one factorisation (floor) | iteration / factorisation "
            "| selected inverse | SuperLU factorisation (peer) | symbolic (once) | nnz(L) | factor MiB "
            "| peak RSS MiB (before fit → after) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sizes:
            lines.append(
                f"| {r['n']:,} | {r['iterations']} | {r['per_iteration_s']:.2f} | {r['factor_s']:.2f} | "
                f"{r['per_iteration_s'] / r['factor_s']:.1f} | {r['selinv_s']:.2f} | "
                f"{r.get('superlu_s', float('nan')):.2f} | {r['symbolic_s']:.2f} | {r['nnz_L']:,} | "
                f"{r['factor_mib']:.0f} | {r['peak_rss_before_fit_mib']:.0f} → {r['peak_rss_fit_mib']:.0f} |"
            )
        lines += [
            "",
            "σ² estimates (true 0.4, 0.6): "
            + "; ".join(
                f"{r['n']:,}: {r['sigma2'][0]:.3f} ± {r['se'][0]:.3f}, {r['sigma2'][1]:.3f} ± {r['se'][1]:.3f}"
                for r in sizes
            ),
            "",
        ]
    text = "\n".join(lines) + "\n"
    if path == "-":
        print(text)
    else:
        Path(path).write_text(text)
        print(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", nargs="+", default=["gryphon", "sizes"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[12500, 25000, 50000, 100000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(HERE / "results" / "sparse.md"))
    ap.add_argument("--child", type=int)
    a = ap.parse_args()
    if a.child:
        return one_size(a.child)
    warnings.simplefilter("ignore")
    gry = part_gryphon(a.repeats) if "gryphon" in a.parts else None
    if gry:
        print(json.dumps(gry, default=str), flush=True)
    sizes = part_sizes(a.sizes) if "sizes" in a.parts else None
    write(gry, sizes, a.out)


if __name__ == "__main__":
    main()

"""GBLUP benchmark: end to end from PLINK, side by side with peers, BLAS floor, profile.

Usage (from the repo root; wrap timing runs in the benchmark lock)::

    flock /tmp/henderson-bench.lock .venv/bin/python benchmarks/bench_gblup.py --parts e2e,floor,side,profile
    .venv/bin/python benchmarks/bench_gblup.py --report       # JSON -> benchmarks/results/gblup.md tables

Parts (each configuration runs in a fresh subprocess, so its peak RSS is its own):

* ``e2e``: n x p in {5,000 x 50,000 (pev False / True), 10,000 x 50,000}; PLINK files
  written first (not timed), then read_genotypes -> genomic_relationship ->
  GBLUP.fit(G, y) -> GEBVs, stage timers and ``ru_maxrss``.
* ``side``: henderson, a plain numpy GBLUP (below) and the PyPI peers (fastlmm,
  glimix-core, pyrrblup) on the same simulated data, passed as .npy files, file load
  excluded. Peers run with ``benchmarks/_work/peers-venv/bin/python`` (this same file,
  ``--child peer``), which must not import henderson.
* ``floor``: one ``ssyrk`` on a 5,000 x 50,000 float32 matrix and one ``dsytrd`` of
  a 5,000 x 5,000 matrix.
* ``profile``: cProfile of the 5,000 x 50,000 end to end plus a step-by-step replay
  of the spectral solver's set-up (the gather, layout copy, dsytrd, Q'y, dsterf).

Data: simulate_genotypes(n, p, seed); SNP effects beta ~ N(0, 1), g = W beta
(W centred by observed frequencies) scaled to variance 1, e ~ N(0, 1), y = 10 + g + e
(true h^2 = 0.5).
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

import numpy as np
import scipy.linalg as sla
from scipy.optimize import minimize_scalar

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work" / "gblup"
PEER_PY = ROOT / "benchmarks" / "_work" / "peers-venv" / "bin" / "python"
RESULTS = ROOT / "benchmarks" / "results" / "gblup.md"
SIDE_SIZES = [(1000, 10000), (2000, 20000), (5000, 50000)]
PEERS = ["numpy", "fastlmm", "glimix-core", "pyrrblup"]


def rss_mb() -> float:
    """Peak RSS of this process image in MiB: VmHWM, else ru_maxrss.

    Linux keeps ``ru_maxrss`` across execve, so a child started from a big parent
    would report the parent's peak; VmHWM belongs to the exec'd image only.
    """
    try:
        for ln in open("/proc/self/status"):
            if ln.startswith("VmHWM:"):
                return int(ln.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


# ----------------------------------------------------------------------------------------
# data
def simulate(n, p, seed):
    from henderson._testing.genotypes import simulate_genotypes

    geno = simulate_genotypes(n, p, seed=seed)
    rng = np.random.default_rng(seed + 1000)
    beta = rng.standard_normal(p)
    freq = geno.allele_freq
    d = geno.dosages
    g = np.zeros(n)
    for s in range(0, p, 5000):
        g += (d[:, s : s + 5000] - 2.0 * freq[s : s + 5000]) @ beta[s : s + 5000]
    g = (g - g.mean()) / g.std()
    y = 10.0 + g + rng.standard_normal(n)
    return geno, y


def write_data(n, p, seed, plink=True):
    """PLINK files + y.npy (+ geno.npy for the side-by-side) under WORK; not timed."""
    from henderson import write_plink

    out = WORK / f"sim_{n}x{p}_s{seed}"
    out.mkdir(parents=True, exist_ok=True)
    if (out / "y.npy").exists() and (not plink or (out / "sim.bed").exists()):
        return out
    geno, y = simulate(n, p, seed)
    np.save(out / "y.npy", y)
    np.save(out / "geno.npy", np.asarray(geno.dosages))
    if plink:
        write_plink(out / "sim", geno)
    return out


# ----------------------------------------------------------------------------------------
# children
def child_e2e(a):
    t_imp = time.perf_counter()
    import pandas as pd

    import henderson
    from henderson import GBLUP, genomic_relationship, read_genotypes

    # warm-up: numba kernels (cached on disk) and first-call overheads, tiny problem
    from henderson._testing.genotypes import simulate_genotypes

    gw = simulate_genotypes(60, 200, seed=1)
    GBLUP(pev=a.pev).fit(gw, pd.Series(np.random.default_rng(0).standard_normal(60), index=gw.ids))
    t_warm = time.perf_counter() - t_imp
    rss_warm = rss_mb()
    d = Path(a.data)
    y_arr = np.load(d / "y.npy")
    prof = None
    if a.profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t0 = time.perf_counter()
    geno = read_genotypes(d / "sim")
    t1 = time.perf_counter()
    y = pd.Series(y_arr, index=geno.ids, name="y")
    G = genomic_relationship(geno, method="vanraden1")
    t2 = time.perf_counter()
    m = GBLUP(pev=a.pev).fit(G, y)
    gebv = m.gebv_["gebv"].to_numpy()
    t3 = time.perf_counter()
    if prof is not None:
        prof.disable()
        import io
        import pstats

        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(30)
        s2 = io.StringIO()
        pstats.Stats(prof, stream=s2).sort_stats("tottime").print_stats(20)
        (WORK / f"profile_{geno.n}x{geno.p}.txt").write_text(s.getvalue() + "\n\n" + s2.getvalue())
    out = dict(
        n=geno.n,
        p=geno.p,
        pev=a.pev,
        read=t1 - t0,
        G=t2 - t1,
        fit=t3 - t2,
        total=t3 - t0,
        timings=m.result_.timings,
        h2=m.h2_,
        sigma2=m.variance_components_["variance"].tolist(),
        gebv_head=gebv[:3].tolist(),
        warmup_incl_import=t_warm,
        rss_after_warmup_mb=rss_warm,
        peak_rss_mb=rss_mb(),
        henderson=henderson.__version__,
        profiled=bool(a.profile),
        load_end=load(),
    )
    if a.replay:
        out["replay"] = replay_spectral(G, m, geno.n)
    print(json.dumps(out))


def replay_spectral(G, m, n):
    """Time the spectral solver's set-up steps one by one, as the library runs them."""
    import scipy.linalg as sla
    from scipy.linalg import lapack

    from henderson.linalg._tridiagonal import apply_q, apply_qt

    K = G.matrix
    codes = np.arange(n)
    r = {}
    t = time.perf_counter()
    Kr_c = K[np.ix_(codes, codes)]
    r["gather K[ix_(codes, codes)] (n x n copy, C order)"] = time.perf_counter() - t
    t = time.perf_counter()
    Kr = np.asfortranarray(Kr_c, dtype=np.float64)
    r["asfortranarray (2nd n x n copy, transposing)"] = time.perf_counter() - t
    del Kr_c
    t = time.perf_counter()
    Kt = np.array(K.T, order="F")  # what one copy of the F-ordered transpose costs
    r["alternative: one F-order copy of K.T (symmetric)"] = time.perf_counter() - t
    del Kt
    t = time.perf_counter()
    c, dd, e, tau, info = lapack.dsytrd(Kr, lower=1, overwrite_a=1)
    r["dsytrd"] = time.perf_counter() - t
    y = np.ascontiguousarray(np.column_stack([np.ones(n), np.ones(n)]))
    t = time.perf_counter()
    apply_qt(c, tau, y)
    r["apply_qt (Q'[y X], numba)"] = time.perf_counter() - t
    t = time.perf_counter()
    lapack.dsterf(dd.copy(), e.copy())
    r["dsterf (eigenvalues of T)"] = time.perf_counter() - t
    t = time.perf_counter()
    apply_q(c, tau, np.ascontiguousarray(y[:, :1]))
    r["apply_q (Py back-rotation)"] = time.perf_counter() - t
    used = np.arange(n)
    v = np.ones(n)
    t = time.perf_counter()
    K[:, used] @ v
    r["solve(): K[:, used] @ v (fancy-index n x n copy + gemv)"] = time.perf_counter() - t
    t = time.perf_counter()
    K @ v
    r["alternative: K @ v"] = time.perf_counter() - t
    t = time.perf_counter()
    np.diag(K).copy()
    sym = K.T
    for i in range(0, n, 512):
        np.abs(K[i : i + 512] - sym[i : i + 512]).max()
    r["symmetry check (row blocks, as spec/model.py)"] = time.perf_counter() - t
    t = time.perf_counter()
    sla.cholesky(K + np.eye(n), lower=True, check_finite=False)
    r["dpotrf n x n (pev=True's Cholesky), incl. K + I"] = time.perf_counter() - t
    return r


def child_floor(a):
    from scipy.linalg import blas, lapack

    n, p = a.n, a.p
    rng = np.random.default_rng(0)
    A = rng.random((n, p), dtype=np.float32).T  # F-contiguous (p, n), as G passes blocks
    C = np.zeros((n, n), dtype=np.float32, order="F")
    blas.ssyrk(1.0, A[:256], beta=0.0, c=C, trans=1, lower=1, overwrite_c=1)
    t = time.perf_counter()
    blas.ssyrk(1.0, A, beta=0.0, c=C, trans=1, lower=1, overwrite_c=1)
    t_syrk = time.perf_counter() - t
    del A
    M = np.asfortranarray(C.astype(np.float64) / p)  # symmetric, lower filled
    M = np.asfortranarray(np.tril(M) + np.tril(M, -1).T)
    del C
    # scipy's dsytrd wrapper defaults to the minimal lwork (= n), with which LAPACK
    # runs the unblocked dsytd2 (all level-2 BLAS); the blocked code needs lwork = n*nb.
    lw = int(lapack.dsytrd_lwork(n, lower=1)[0])
    t = time.perf_counter()
    lapack.dsytrd(M.copy(order="F"), lower=1, lwork=lw, overwrite_a=1)
    t_trd = time.perf_counter() - t
    t = time.perf_counter()
    lapack.dsytrd(M, lower=1, overwrite_a=1)
    t_trd_default = time.perf_counter() - t
    print(
        json.dumps(
            dict(
                n=n,
                p=p,
                ssyrk=t_syrk,
                ssyrk_gflops=n * n * p / t_syrk / 1e9,
                dsytrd=t_trd,
                dsytrd_lwork=lw,
                dsytrd_default_lwork=t_trd_default,
                peak_rss_mb=rss_mb(),
                load_end=load(),
            )
        )
    )


def child_threads(a):
    """dsytrd of n x n (and ssyrk n x p/10) with OpenBLAS limited to 1 and to 2 threads."""
    from scipy.linalg import blas, lapack
    from threadpoolctl import threadpool_limits

    n = a.n
    rng = np.random.default_rng(0)
    A = rng.random((n, a.p // 10), dtype=np.float32).T
    C = np.zeros((n, n), dtype=np.float32, order="F")
    blas.ssyrk(1.0, A, beta=0.0, c=C, trans=1, lower=1, overwrite_c=1)
    M0 = np.asfortranarray(C.astype(np.float64))
    out = {}
    for k in (1, 2, 1, 2):
        with threadpool_limits(k):
            t = time.perf_counter()
            blas.ssyrk(1.0, A, beta=0.0, c=C, trans=1, lower=1, overwrite_c=1)
            out.setdefault(f"ssyrk {n}x{a.p // 10} threads={k}", []).append(time.perf_counter() - t)
            M = M0.copy(order="F")
            t = time.perf_counter()
            lapack.dsytrd(M, lower=1, overwrite_a=1)
            out.setdefault(f"dsytrd {n} threads={k}", []).append(time.perf_counter() - t)
            out.setdefault("load", []).append(load())
    print(json.dumps(dict(n=n, times=out, load_end=load())))


def child_henderson_side(a, model="GBLUP"):
    """henderson on the side part's data: GBLUP, or SNP-BLUP (REML on σ²_β, where cheaper)."""
    import pandas as pd

    import henderson
    from henderson._testing.genotypes import simulate_genotypes
    from henderson.data.genotypes import Genotypes

    Est = getattr(henderson, model)
    gw = simulate_genotypes(60, 200, seed=1)  # warm-up: numba cache, first BLAS calls
    Est(pev=False).fit(gw, pd.Series(np.random.default_rng(0).standard_normal(60), index=gw.ids))
    d = Path(a.data)
    X = np.load(d / "geno.npy")
    y_arr = np.load(d / "y.npy")
    n, p = X.shape
    geno = Genotypes([f"ind{i + 1}" for i in range(n)], [f"snp{j + 1}" for j in range(p)], X)
    y = pd.Series(y_arr, index=geno.ids)
    t = time.perf_counter()
    m = Est(pev=False).fit(geno, y)
    gebv = m.gebv_["gebv"].to_numpy()
    el = time.perf_counter() - t
    name = "henderson" if model == "GBLUP" else "henderson-snpblup"
    np.save(d / f"gebv_{name}.npy", gebv)
    extra = {"space": m.space_} if model == "SNPBLUP" else {"timings": m.result_.timings}
    print(json.dumps(dict(peer=name, seconds=el, h2=m.h2_, peak_rss_mb=rss_mb(), load_end=load(), **extra)))


def numpy_G(X):
    """G = WW'/(2 sum pq) in float64, W = X - 2p, over blocks of 5,000 SNPs (numpy SYRK)."""
    n, p = X.shape
    freq = X.mean(axis=0, dtype=np.float64) / 2.0
    G = np.zeros((n, n))
    for s in range(0, p, 5000):
        W = X[:, s : s + 5000].astype(np.float64)
        W -= 2.0 * freq[s : s + 5000]
        G += W @ W.T
    G /= 2.0 * np.sum(freq * (1.0 - freq))
    return G


def numpy_gblup(G, y):
    """Plain REML GBLUP: eigh(G) (evd) then a 1-D profiled REML over h^2 on the spectrum."""
    n = len(y)
    s, U = sla.eigh(G, driver="evd", overwrite_a=True, check_finite=False)
    s = np.maximum(s, 0.0)
    uy, ux = U.T @ y, U.T @ np.ones(n)

    def parts(h2):
        w = 1.0 / (h2 * s + (1.0 - h2))
        xvx = np.sum(w * ux * ux)
        b = np.sum(w * ux * uy) / xvx
        r = uy - ux * b
        return w, xvx, b, r, np.sum(w * r * r)

    def m2ll(h2):
        w, xvx, b, r, ypy = parts(h2)
        return (n - 1) * np.log(ypy / (n - 1)) - np.sum(np.log(w)) + np.log(xvx)

    opt = minimize_scalar(m2ll, bounds=(1e-6, 1 - 1e-6), method="bounded", options={"xatol": 1e-10})
    h2 = float(opt.x)
    w, xvx, b, r, ypy = parts(h2)
    gebv = U @ (h2 * s * w * r)  # g = h2 G (h2 G + (1-h2) I)^-1 (y - 1b)
    return h2, gebv


def child_peer(a):
    """Runs with either interpreter; never imports henderson."""
    d = Path(a.data)
    X = np.load(d / "geno.npy")
    y = np.load(d / "y.npy")
    n = len(y)
    info = {}
    if a.peer == "numpy":
        import scipy

        info["version"] = f"numpy {np.__version__}, scipy {scipy.__version__}"
        t = time.perf_counter()
        G = numpy_G(X)
        tg = time.perf_counter()
        h2, gebv = numpy_gblup(G, y)
    elif a.peer == "fastlmm":
        from importlib.metadata import version

        from fastlmm.inference import FastLMM
        from pysnptools.kernelreader import KernelData
        from pysnptools.kernelstandardizer import Identity as KIdentity
        from pysnptools.snpreader import SnpData

        info["version"] = f"fastlmm {version('fastlmm')}"
        iid = np.array([[f"ind{i + 1}", f"ind{i + 1}"] for i in range(n)])
        pheno = SnpData(iid=iid, sid=["y"], val=y[:, None])
        t = time.perf_counter()
        G = numpy_G(X)
        tg = time.perf_counter()
        K = KernelData(iid=iid, val=G)
        model = FastLMM(GB_goal=4, kernel_standardizer=KIdentity()).fit(K0_train=K, y=pheno)
        h2raw = float(model.h2raw)
        # GEBVs from the fitted state (its eigendecomposition of K): g = h2 K V^-1 (y - Xb)
        U, S = model.U, model.S
        r = model.y - model.X @ model.beta
        gebv = U @ (h2raw * S / (h2raw * S + 1.0 - h2raw) * (U.T @ r))
        # fastlmm rescales a full-rank kernel to trace n (DiagKtoN) whatever
        # kernel_standardizer says, so h2raw refers to c G, c = n / tr G; on G's scale:
        c = n / np.trace(G)
        h2 = h2raw * c / (h2raw * c + 1.0 - h2raw)
        info["h2_raw_fastlmm"] = h2raw
        info["note"] = "G by numpy_G; FastLMM(kernel_standardizer=Identity).fit(K0_train=KernelData(G))"
    elif a.peer == "glimix-core":
        from importlib.metadata import version

        from glimix_core.lmm import LMM
        from numpy_sugar.linalg import economic_qs

        info["version"] = f"glimix-core {version('glimix-core')}"
        t = time.perf_counter()
        G = numpy_G(X)
        tg = time.perf_counter()
        QS = economic_qs(G)
        lmm = LMM(y, np.ones((n, 1)), QS, restricted=True)
        lmm.fit(verbose=False)
        v0, v1 = float(lmm.v0), float(lmm.v1)
        h2 = v0 / (v0 + v1)
        Q0, S0 = QS[0][0], QS[1]
        r = y - float(np.asarray(lmm.beta).ravel()[0])
        gebv = Q0 @ (v0 * S0 / (v0 * S0 + v1) * (Q0.T @ r))
        info["note"] = "G by numpy_G; economic_qs(G) + LMM(restricted=True).fit()"
    elif a.peer == "pyrrblup":
        import pandas as pd
        import pyrrblup

        info["version"] = f"pyrrblup {pyrrblup.__version__}"
        ids = [f"ind{i + 1}" for i in range(n)]
        M = pd.DataFrame(X.astype(np.float64) - 1.0, index=ids)  # rrBLUP's -1/0/1 coding
        t = time.perf_counter()
        G = pyrrblup.amat(M).matrix.to_numpy()
        tg = time.perf_counter()
        res = pyrrblup.mixed_solve(y, K=G)
        h2 = res.Vu / (res.Vu + res.Ve)
        gebv = np.asarray(res.u).ravel()
        info["note"] = "pyrrblup.amat (A.mat, -1/0/1) + mixed_solve(y, K=G)"
    else:
        raise SystemExit(f"unknown peer {a.peer}")
    el = time.perf_counter() - t
    np.save(d / f"gebv_{a.peer}.npy", gebv)
    print(
        json.dumps(
            dict(peer=a.peer, seconds=el, G_seconds=tg - t, h2=h2, peak_rss_mb=rss_mb(), load_end=load(), **info)
        )
    )


# ----------------------------------------------------------------------------------------
# orchestration
def run_child(args, python=None, timeout=3600):
    cmd = [str(python or sys.executable), str(Path(__file__).resolve())] + args
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout} s", "cmd": " ".join(cmd)}
    wall = time.perf_counter() - t
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"error": (p.stderr or p.stdout)[-1500:], "rc": p.returncode, "cmd": " ".join(cmd)}
    out = json.loads(lines[-1])
    out["process_wall"] = wall
    return out


def save(name, obj):
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / f"{name}.json").write_text(json.dumps(obj, indent=1))


def part_e2e(a):
    res = []
    for n, p, pev in [(5000, 50000, False), (5000, 50000, True), (10000, 50000, False)]:
        d = write_data(n, p, a.seed)
        la = load()
        r = run_child(["--child", "e2e", "--data", str(d)] + (["--pev"] if pev else []))
        r.update(config=f"{n}x{p} pev={pev}", load_start=la)
        print(json.dumps(r), flush=True)
        res.append(r)
        save("e2e", res)


def part_profile(a):
    d = write_data(5000, 50000, a.seed)
    la = load()
    r = run_child(["--child", "e2e", "--data", str(d), "--profile", "--replay"])
    r["load_start"] = la
    print(json.dumps(r), flush=True)
    save("profile", r)


def part_floor(a):
    la = load()
    r = run_child(["--child", "floor", "--n", "5000", "--p", "50000"])
    r["load_start"] = la
    print(json.dumps(r), flush=True)
    save("floor", r)


def part_threads(a):
    la = load()
    r = run_child(["--child", "threads", "--n", "5000", "--p", "50000"])
    r["load_start"] = la
    print(json.dumps(r), flush=True)
    save("threads", r)


def part_side(a):
    out = []
    sizes = [tuple(map(int, x.split("x"))) for x in a.side_sizes.split(",")] if a.side_sizes else SIDE_SIZES
    for n, p in sizes:
        d = write_data(n, p, a.seed, plink=False)
        rows = []
        la = load()
        h = run_child(["--child", "henderson", "--data", str(d)])
        h["load_start"] = la
        rows.append(h)
        print(json.dumps(h), flush=True)
        g_ref = np.load(d / "gebv_henderson.npy") if "error" not in h else None
        la = load()
        hs = run_child(["--child", "henderson-snpblup", "--data", str(d)])
        hs["load_start"] = la
        if "error" not in hs and g_ref is not None:
            g = np.load(d / "gebv_henderson-snpblup.npy")
            hs["max_abs_gebv_diff"] = float(np.max(np.abs(g - g_ref)))
            hs["gebv_corr"] = float(np.corrcoef(g, g_ref)[0, 1])
            hs["h2_diff"] = hs["h2"] - h["h2"]
        print(json.dumps(hs), flush=True)
        rows.append(hs)
        for peer in PEERS:
            py = sys.executable if peer == "numpy" else PEER_PY
            if peer == "pyrrblup" and n > a.pyrrblup_max_n:
                rows.append({"peer": peer, "error": f"skipped above n = {a.pyrrblup_max_n}"})
                continue
            la = load()
            r = run_child(["--child", "peer", "--peer", peer, "--data", str(d)], python=py)
            r.update(peer=peer, load_start=la)
            if "error" not in r and g_ref is not None:
                g = np.load(d / f"gebv_{peer}.npy")
                r["max_abs_gebv_diff"] = float(np.max(np.abs(g - g_ref)))
                r["gebv_corr"] = float(np.corrcoef(g, g_ref)[0, 1])
                r["h2_diff"] = r["h2"] - h["h2"]
            print(json.dumps(r), flush=True)
            rows.append(r)
        out.append(dict(n=n, p=p, rows=rows))
        save("side", out)


def _j(name):
    p = WORK / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def report():
    """Markdown tables from the JSON results under benchmarks/_work/gblup (printed)."""
    L = []
    m = _j("machine")
    if m:
        L += [
            f"- CPU: {m['cpu']}, {m['cores']} cores, {m['mem_gb']} GiB; {m['platform']}",
            f"- Python {m['python']}, numpy {m['numpy']}, scipy {m['scipy']}; OPENBLAS_CORETYPE={m['OPENBLAS_CORETYPE']}",
        ]
        L += [f"- BLAS (threadpoolctl): {b}" for b in m["blas"]]
        L += [f"- load average (1/5/15 min) at start: {m['load_start']}", ""]
    fl = _j("floor")
    if fl and "error" not in fl:
        L += [
            "| floor | seconds | note | load start / end |",
            "|---|---|---|---|",
            f"| ssyrk 5,000 x 50,000 float32 | {fl['ssyrk']:.2f} | {fl['ssyrk_gflops']:.0f} GFLOP/s | {fl['load_start']} / {fl['load_end']} |",
            f"| dsytrd 5,000 x 5,000, blocked (lwork = {fl.get('dsytrd_lwork', '?')} from dsytrd_lwork) | {fl['dsytrd']:.2f} | | |",
            f"| dsytrd 5,000 x 5,000, scipy default lwork (unblocked dsytd2; henderson passes the optimal lwork) | {fl.get('dsytrd_default_lwork', float('nan')):.2f} | | |",
            "",
        ]
    e = _j("e2e")
    if e:
        L += [
            "| n x p | pev | read | G | fit: spec | prepare (sytrd) | optimise (REML) | results (BLUP/PEV) | end to end | peak RSS MiB | h2 | import+warm-up | load start / end |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in e:
            if "error" in r:
                L.append(f"| {r['config']} | error: {r['error'][-200:]!r} |")
                continue
            t = r["timings"]
            L.append(
                f"| {r['n']:,} x {r['p']:,} | {r['pev']} | {r['read']:.2f} | {r['G']:.2f} | {t['spec']:.2f} | {t['prepare']:.2f} | "
                f"{t['optimise']:.3f} | {t['results']:.2f} | **{r['total']:.2f}** | {r['peak_rss_mb']:.0f} | {r['h2']:.6f} | "
                f"{r['warmup_incl_import']:.1f} | {r['load_start']} / {r['load_end']} |"
            )
        L.append("")
    sd = _j("side")
    if sd:
        L += [
            "| n x p | implementation | seconds | of which G | ratio to henderson | h2 | h2 - h2(henderson) | max abs GEBV diff | 1 - corr | peak RSS MiB | load start / end |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for blk in sd:
            h = next(r for r in blk["rows"] if r.get("peer") == "henderson")
            for r in blk["rows"]:
                name = r.get("version", r.get("peer"))
                if "error" in r:
                    L.append(
                        f"| {blk['n']:,} x {blk['p']:,} | {r.get('peer')} | failed: {r['error'][-160:]!r} | | | | | | | | |"
                    )
                    continue
                hs = h.get("seconds")
                ratio = r["seconds"] / hs if hs else float("nan")
                g = f"{r['G_seconds']:.2f}" if "G_seconds" in r else ""
                if r.get("peer") == "henderson":
                    name, diff = "henderson GBLUP", ("", "", "")
                elif r.get("peer") == "henderson-snpblup":
                    name = f"henderson SNP-BLUP ({r.get('space')} space)"
                    diff = (f"{r['h2_diff']:+.1e}", f"{r['max_abs_gebv_diff']:.1e}", f"{1 - r['gebv_corr']:.1e}")
                else:
                    diff = (f"{r['h2_diff']:+.1e}", f"{r['max_abs_gebv_diff']:.1e}", f"{1 - r['gebv_corr']:.1e}")
                L.append(
                    f"| {blk['n']:,} x {blk['p']:,} | {name} | {r['seconds']:.2f} | {g} | {ratio:.2f} | {r['h2']:.6f} | "
                    f"{diff[0]} | {diff[1]} | {diff[2]} | {r['peak_rss_mb']:.0f} | {r['load_start']} / {r['load_end']} |"
                )
        L.append("")
    pr = _j("profile")
    if pr and "replay" in pr:
        L += ["| step (replayed on the same G, 5,000) | seconds |", "|---|---|"]
        L += [f"| {k} | {v:.3f} |" for k, v in pr["replay"].items()]
        L += [
            "",
            f"profiled run: read {pr['read']:.2f}, G {pr['G']:.2f}, fit {pr['fit']:.2f} "
            f"({json.dumps({k: round(v, 3) for k, v in pr['timings'].items()})}), total {pr['total']:.2f} s; "
            f"load {pr['load_start']} / {pr['load_end']}",
            "",
        ]
    print("\n".join(L))


def machine_info():
    import scipy
    from threadpoolctl import threadpool_info

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    blas = [
        f"{d.get('internal_api')} {d.get('version')}, {d.get('num_threads')} threads, arch "
        f"{d.get('architecture')} ({Path(d.get('filepath', '')).name})"
        for d in threadpool_info()
    ]
    return dict(
        cpu=cpu,
        cores=os.cpu_count(),
        python=platform.python_version(),
        numpy=np.__version__,
        scipy=scipy.__version__,
        blas=blas,
        OPENBLAS_CORETYPE=os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
        platform=platform.platform(),
        mem_gb=round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="")
    ap.add_argument("--child")
    ap.add_argument("--data")
    ap.add_argument("--peer")
    ap.add_argument("--pev", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--replay", action="store_true")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--p", type=int, default=50000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--side-sizes", default="")
    ap.add_argument("--pyrrblup-max-n", type=int, default=5000)
    ap.add_argument("--report", action="store_true")
    a = ap.parse_args()
    if a.report:
        report()
        return
    if a.child:
        {
            "e2e": child_e2e,
            "floor": child_floor,
            "threads": child_threads,
            "henderson": child_henderson_side,
            "henderson-snpblup": lambda a: child_henderson_side(a, "SNPBLUP"),
            "peer": child_peer,
        }[a.child](a)
        return
    info = machine_info()
    info["load_start"] = load()
    save("machine", info)
    print(json.dumps(info), flush=True)
    for part in [x for x in a.parts.split(",") if x]:
        {"e2e": part_e2e, "floor": part_floor, "side": part_side, "profile": part_profile, "threads": part_threads}[
            part
        ](a)


if __name__ == "__main__":
    main()

"""Benchmark: single-step H⁻¹ set-up, A22⁻¹ routes, APY set-up and a 100,000-animal solve.

Usage::

    OPENBLAS_NUM_THREADS=1 flock /tmp/henderson-bench.lock .venv/bin/python \
        benchmarks/bench_single_step.py [--n 200000 --k 5000 --m 50000] \
        [--routes-n 50000 --routes-k 3000] [--apy-k 8000 --apy-core 2000 --apy-m 5000] \
        [--solve-n 100000 --solve-k 2000 --solve-m 10000] [--parts routes,apy,apy_blocks,solve,hinv] \
        [--write benchmarks/results/single_step.md]

Every part runs in a fresh child process (its peak resident memory, ``ru_maxrss``,
then counts only that part), on seeded simulations (``henderson._testing``): a
pedigree of ``n`` animals whose ``k`` youngest are genotyped at ``m`` SNPs (genotypes
drawn independently of the pedigree: the timings do not depend on their values).
Set ``BENCH_PROGRESS=file`` to log each timed step as it ends.

Parts and the floor or peer each is compared with *in the same process*:

- ``hinv``: :func:`single_step_inverse` with preGSf90's defaults (G from the genotypes,
  A22 by Colleau, blend 0.95/0.05, tunedG 2, A22⁻¹, G*⁻¹, assembly; diag(H) off) against
  the floor "form G from the genotypes and invert it" (genomic_relationship + dense
  Cholesky inverse of G + 0.01 I).
- ``routes``: A22⁻¹ by the sparse partition of the pruned A⁻¹ against Colleau + dense
  Cholesky inverse.
- ``apy``: APY G⁻¹ set-up (Misztal 2016) with a random core against the full dense
  inverse of the same G.
- ``apy_blocks``: APY G⁻¹ from the genotypes by blocks (:func:`apy_inverse_from_genotypes`,
  never the k × k G) against the floor "the float32 SYRK/GEMM that forms G_CC and G_CN"
  on the same genotypes and SNP blocks.
- ``lazy``: :func:`single_step_inverse` with ``lazy=True`` (A₂₂⁻¹ as an operator: a
  sparse Cholesky of the pruned pedigree's A⁻¹₁₁, never formed) against the explicit H⁻¹
  (``as_blocks=True``) and the floor "form G and invert it", all three in one process on
  the same genotypes (``--lazy-n/--lazy-k/--lazy-m``); then one product with each block.
- ``a22op`` / ``a22dense``: the A₂₂⁻¹ operator's set-up and one product, against Colleau's
  A₂₂ plus its dense Cholesky inverse, on the same pedigree (``--a22-n/--a22-k``; two
  child processes, each its own peak memory). At 1,000,000 / 20,000 run it with
  ``OPENBLAS_NUM_THREADS=1``: with 2 OpenBLAS threads the supernodal factorisation of
  A⁻¹₁₁ (a trailing supernode 18,586 columns wide) ended in a segmentation fault, twice
  (2026-12-05; benchmarks/results/single_step.md).
- ``solve``: ssGBLUP at given variances (BLUP, the BLUPF90 workflow) on a pedigree of
  ``solve-n`` animals with the sparse direct solver, against pedigree BLUP (A⁻¹ only)
  of the same records; its H⁻¹ set-up includes diag(H) (k sparse solves).

On a shared, oversubscribed machine run with ``OPENBLAS_NUM_THREADS=1``: threaded BLAS
calls then wait on busy cores and small dense factorisations take seconds.
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


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(f, *a, **k):
    t = time.perf_counter()
    out = f(*a, **k)
    dt = time.perf_counter() - t
    _progress(f"{getattr(f, '__name__', f)}: {dt:.2f} s")
    return out, dt


def _progress(msg: str) -> None:
    """One line per step to $BENCH_PROGRESS (if set), to follow a long run."""
    path = os.environ.get("BENCH_PROGRESS")
    if path:
        with open(path, "a") as fh:
            fh.write(time.strftime("%H:%M:%S ") + msg + "\n")


def _sim(n, k, m, seed=1):
    import numpy as np
    import pandas as pd

    from henderson._testing.genotypes import simulate_genotypes
    from henderson._testing.pedigree import simulate_pedigree
    from henderson.data.genotypes import Genotypes
    from henderson.io.pedigree import read_pedigree

    frame = simulate_pedigree(n, 10, seed=seed)
    ped = read_pedigree(frame)
    ids = frame["id"].to_numpy()[-k:]  # youngest animals, as genotyped candidates are
    g = simulate_genotypes(k, m, seed=seed + 1) if m else None
    if g is not None:
        g = Genotypes(np.asarray(ids, dtype=object), g.snps, g.dosages, {})
    return ped, ids, g, pd


def part_floor(k, m) -> dict:
    """The floor: form G from the genotypes and invert it (own process: own peak memory)."""
    import numpy as np
    import scipy.linalg as sla

    from henderson._testing.genotypes import simulate_genotypes
    from henderson.relationships.genomic import genomic_relationship

    t = time.perf_counter()
    geno = simulate_genotypes(k, m, seed=2)
    out = {"k": k, "m": m, "simulate_genotypes_s": time.perf_counter() - t, "rss_after_simulation_mb": rss_mb()}
    _progress(f"floor: genotypes simulated in {out['simulate_genotypes_s']:.1f} s")
    t, c0 = time.perf_counter(), time.process_time()
    G = genomic_relationship(geno)
    out["floor_form_G_s"] = time.perf_counter() - t
    out["floor_form_G_cpu_s"] = time.process_time() - c0
    _progress(f"floor: G formed in {out['floor_form_G_s']:.1f} s")
    g = G.matrix
    del G
    g.flags.writeable = True
    g[np.diag_indices(k)] += 0.01  # a 1 % ridge so VanRaden's (singular) G is PD
    f = g.T if g.flags.c_contiguous else g  # Fortran view: LAPACK in place
    t, c0 = time.perf_counter(), time.process_time()
    c, _ = sla.lapack.dpotrf(f, lower=1, overwrite_a=1)
    inv, _ = sla.lapack.dpotri(c, lower=1, overwrite_c=1)
    out["floor_invert_G_s"] = time.perf_counter() - t
    out["floor_invert_G_cpu_s"] = time.process_time() - c0
    _progress(f"floor: G inverted in {out['floor_invert_G_s']:.1f} s")
    out["in_place"] = bool(np.shares_memory(inv, g))
    out["floor_s"] = out["floor_form_G_s"] + out["floor_invert_G_s"]
    out["floor_cpu_s"] = out["floor_form_G_cpu_s"] + out["floor_invert_G_cpu_s"]
    out["load_avg_end"] = os.getloadavg()
    out["rss_peak_mb"] = rss_mb()
    return out


def part_hinv(n, k, m) -> dict:
    """H⁻¹ set-up with preGSf90's defaults, kept as A⁻¹ + dense block (``as_blocks``)."""
    from henderson.relationships.single_step import single_step_inverse

    t = time.perf_counter()
    ped, ids, geno, _ = _sim(n, k, m)
    out = {"n": n, "k": k, "m": m, "simulate_s": time.perf_counter() - t, "rss_after_simulation_mb": rss_mb()}
    _progress(f"hinv: simulated in {out['simulate_s']:.1f} s")
    c0 = time.process_time()
    H, dt = _timed(single_step_inverse, ped, geno, diag=False, as_blocks=True)
    out["hinv_setup_s"] = dt
    out["hinv_setup_cpu_s"] = time.process_time() - c0
    out["load_avg_end"] = os.getloadavg()
    out["hinv_parts_s"] = {kk: round(v, 3) for kk, v in H.info["timings"].items()}
    out["hinv_sparse_nnz"] = int(H.sparse.nnz)
    out["hinv_block"] = list(H.block.shape)
    out["rss_peak_mb"] = rss_mb()
    del H
    return out


def _warm_up() -> None:
    """Compile the numba kernels (cached) and touch every code path on a tiny problem, so
    no timed step pays a first-call cost the others do not."""
    from henderson.relationships.single_step import single_step_inverse

    ped, _, geno, _ = _sim(2000, 100, 200, seed=11)
    single_step_inverse(ped, geno, diag=False, as_blocks=True)
    L = single_step_inverse(ped, geno, lazy=True)
    import numpy as np

    L.block_operator() @ np.ones(100)
    L.block_operator().diagonal()


def _floor_on(geno) -> dict:
    """The floor on these genotypes: form G and invert it (dpotrf/dpotri in place, 1 % ridge)."""
    import numpy as np
    import scipy.linalg as sla

    from henderson.relationships.genomic import genomic_relationship

    out = {}
    t, c0 = time.perf_counter(), time.process_time()
    G = genomic_relationship(geno)
    out["floor_form_G_s"], out["floor_form_G_cpu_s"] = time.perf_counter() - t, time.process_time() - c0
    g = G.matrix
    del G
    g.flags.writeable = True
    g[np.diag_indices(g.shape[0])] += 0.01
    f = g.T if g.flags.c_contiguous else g
    t, c0 = time.perf_counter(), time.process_time()
    c, _ = sla.lapack.dpotrf(f, lower=1, overwrite_a=1)
    sla.lapack.dpotri(c, lower=1, overwrite_c=1)
    out["floor_invert_G_s"], out["floor_invert_G_cpu_s"] = time.perf_counter() - t, time.process_time() - c0
    out["floor_s"] = out["floor_form_G_s"] + out["floor_invert_G_s"]
    out["floor_cpu_s"] = out["floor_form_G_cpu_s"] + out["floor_invert_G_cpu_s"]
    _progress(f"lazy: floor {out['floor_s']:.1f} s ({out['floor_cpu_s']:.1f} s CPU)")
    return out


def part_lazy(n, k, m) -> dict:
    """Lazy H⁻¹ (A₂₂⁻¹ as an operator) against explicit H⁻¹ (``as_blocks``) and the floor,
    all in this process on the same simulated genotypes, preGSf90 defaults, diag(H) off;
    then one product with each genomic block and the lazy preconditioner diagonal."""
    import numpy as np

    from henderson.relationships.single_step import single_step_inverse

    _warm_up()
    t = time.perf_counter()
    ped, ids, geno, _ = _sim(n, k, m)
    out = {"n": n, "k": k, "m": m, "simulate_s": time.perf_counter() - t}
    _progress(f"lazy: simulated in {out['simulate_s']:.1f} s")
    out.update(_floor_on(geno))
    t, c0 = time.perf_counter(), time.process_time()
    E = single_step_inverse(ped, geno, diag=False, as_blocks=True)
    out["explicit_s"], out["explicit_cpu_s"] = time.perf_counter() - t, time.process_time() - c0
    out["explicit_parts_s"] = {kk: round(v, 3) for kk, v in E.info["timings"].items()}
    _progress(f"lazy: explicit H⁻¹ {out['explicit_s']:.1f} s ({out['explicit_cpu_s']:.1f} s CPU)")
    t, c0 = time.perf_counter(), time.process_time()
    L = single_step_inverse(ped, geno, lazy=True)
    out["lazy_s"], out["lazy_cpu_s"] = time.perf_counter() - t, time.process_time() - c0
    out["lazy_parts_s"] = {kk: round(v, 3) for kk, v in L.info["timings"].items()}
    out["a22_operator"] = {
        kk: (round(v, 3) if isinstance(v, float) else v) for kk, v in L.info["A22_operator"].items() if kk != "timings"
    }
    out["a22_operator"]["timings_s"] = {kk: round(v, 3) for kk, v in L.info["A22_operator"]["timings"].items()}
    _progress(f"lazy: lazy H⁻¹ {out['lazy_s']:.1f} s ({out['lazy_cpu_s']:.1f} s CPU)")
    for key in ("explicit", "lazy"):
        out[f"ratio_{key}_to_floor"] = out[f"{key}_s"] / out["floor_s"]
        out[f"ratio_{key}_to_floor_cpu"] = out[f"{key}_cpu_s"] / out["floor_cpu_s"]
    v = np.random.default_rng(0).standard_normal(k)
    pos = E.block_positions
    assert np.array_equal(pos, L.block_positions)
    blk = L.block_operator()
    t, c0 = time.perf_counter(), time.process_time()
    lv = blk @ v
    out["lazy_product_s"], out["lazy_product_cpu_s"] = time.perf_counter() - t, time.process_time() - c0
    t, c0 = time.perf_counter(), time.process_time()
    ev = E.block @ v
    out["dense_product_s"], out["dense_product_cpu_s"] = time.perf_counter() - t, time.process_time() - c0
    out["product_max_abs_diff"] = float(np.max(np.abs(lv - ev)))
    t, c0 = time.perf_counter(), time.process_time()
    blk.diagonal()
    out["lazy_diagonal_s"], out["lazy_diagonal_cpu_s"] = time.perf_counter() - t, time.process_time() - c0
    out["lazy_diagonal_method"] = blk.a22.diag_method
    out["load_avg_end"] = os.getloadavg()
    out["rss_peak_mb"] = rss_mb()
    return out


def part_a22op(n, k) -> dict:
    """A₂₂⁻¹ operator set-up (prune, A⁻¹ of the pruned pedigree, sparse Cholesky of A⁻¹₁₁)
    and one product, on a pedigree of n animals whose k youngest are genotyped."""
    import numpy as np

    from henderson.relationships.single_step_lazy import A22InverseOperator

    _warm_up()
    t = time.perf_counter()
    ped, ids, _, _ = _sim(n, k, 0)
    out = {"n": n, "k": k, "simulate_s": time.perf_counter() - t}
    _progress(f"a22op: simulated in {out['simulate_s']:.1f} s")
    t, c0 = time.perf_counter(), time.process_time()
    op = A22InverseOperator(ped, ids)
    out["a22op_setup_s"], out["a22op_setup_cpu_s"] = time.perf_counter() - t, time.process_time() - c0
    out["a22op_parts_s"] = {kk: round(v, 3) for kk, v in op.timings.items()}
    out["n_pruned"], out["n_other"], out["nnz_factor"] = op.n_pruned, op.n_other, op.nnz_factor
    _progress(f"a22op: set-up {out['a22op_setup_s']:.1f} s, factor nnz {op.nnz_factor}")
    v = np.random.default_rng(0).standard_normal(k)
    t, c0 = time.perf_counter(), time.process_time()
    op @ v
    out["a22op_product_s"], out["a22op_product_cpu_s"] = time.perf_counter() - t, time.process_time() - c0
    out["load_avg_end"] = os.getloadavg()
    out["rss_peak_mb"] = rss_mb()
    return out


def part_a22dense(n, k) -> dict:
    """The explicit route the operator replaces: A₂₂ by Colleau, then its dense Cholesky
    inverse (dpotrf/dpotri in place), on the same pedigree as ``a22op``."""
    import numpy as np
    import scipy.linalg as sla

    from henderson.relationships.pedigree import pedigree_relationship

    _warm_up()
    t = time.perf_counter()
    ped, ids, _, _ = _sim(n, k, 0)
    out = {"n": n, "k": k, "simulate_s": time.perf_counter() - t}
    t, c0 = time.perf_counter(), time.process_time()
    a = np.array(pedigree_relationship(ped, ids).matrix, order="F")
    out["colleau_s"], out["colleau_cpu_s"] = time.perf_counter() - t, time.process_time() - c0
    _progress(f"a22dense: Colleau {out['colleau_s']:.1f} s")
    t, c0 = time.perf_counter(), time.process_time()
    c, _ = sla.lapack.dpotrf(a, lower=1, overwrite_a=1)
    sla.lapack.dpotri(c, lower=1, overwrite_c=1)
    out["dense_inverse_s"], out["dense_inverse_cpu_s"] = time.perf_counter() - t, time.process_time() - c0
    _progress(f"a22dense: inverse {out['dense_inverse_s']:.1f} s")
    v = np.random.default_rng(0).standard_normal(k)
    t, c0 = time.perf_counter(), time.process_time()
    c @ v  # the dense product (the lower triangle's GEMV, k² flops as the full block's)
    out["dense_product_s"], out["dense_product_cpu_s"] = time.perf_counter() - t, time.process_time() - c0
    out["load_avg_end"] = os.getloadavg()
    out["rss_peak_mb"] = rss_mb()
    return out


def part_routes(n, k) -> dict:
    """A22⁻¹ by the sparse partition of the pruned A⁻¹ vs Colleau + dense Cholesky inverse."""
    import numpy as np
    import scipy.linalg as sla

    from henderson.relationships.pedigree import pedigree_relationship
    from henderson.relationships.single_step import a22_inverse_sparse

    ped, ids, _, _ = _sim(n, k, 0)
    out = {"n": n, "k": k}
    _, out["a22inv_sparse_partition_s"] = _timed(a22_inverse_sparse, ped, ids)

    def colleau_dense():
        a = np.array(pedigree_relationship(ped, ids).matrix)
        c, _ = sla.lapack.dpotrf(a, lower=1, overwrite_a=1)
        return sla.lapack.dpotri(c, lower=1, overwrite_c=1)

    _, out["a22inv_colleau_plus_dense_s"] = _timed(colleau_dense)
    _, out["a22_colleau_only_s"] = _timed(pedigree_relationship, ped, ids)
    out["ratio_sparse_to_dense"] = out["a22inv_sparse_partition_s"] / out["a22inv_colleau_plus_dense_s"]
    out["rss_peak_mb"] = rss_mb()
    return out


def part_apy(k, c, m) -> dict:
    import numpy as np
    import scipy.linalg as sla

    from henderson._testing.genotypes import simulate_genotypes
    from henderson.relationships.apy import apy_inverse
    from henderson.relationships.container import Relationship
    from henderson.relationships.genomic import genomic_relationship

    geno = simulate_genotypes(k, m, seed=3)
    G = genomic_relationship(geno)
    g = np.array(G.matrix)
    g[np.diag_indices(k)] += 0.01
    G = Relationship(G.ids, g, kind="G")
    out = {"k": k, "core": c, "m": m}
    inv, out["apy_setup_s"] = _timed(apy_inverse, G, c, seed=1)
    out["apy_nnz"] = int(inv.matrix.nnz)
    del inv

    def full():
        cc, _ = sla.lapack.dpotrf(g, lower=1, overwrite_a=0)
        return sla.lapack.dpotri(cc, lower=1, overwrite_c=1)

    _, out["full_inverse_s"] = _timed(full)
    out["ratio_apy_to_full"] = out["apy_setup_s"] / out["full_inverse_s"]
    out["rss_peak_mb"] = rss_mb()
    return out


def part_apy_blocks(k, c, m) -> dict:
    """APY inverse from genotypes by blocks against the floor of its GEMM/SYRK.

    Floor, in the same process and on the same genotypes: per SNP block (the builder's
    block size), the int8 codes converted to float32, gathered into core and non-core
    rows, and X_C X_C' (ssyrk) + X_C X_N' (sgemm) accumulated: the arithmetic that
    forms G_CC and G_CN, with nothing else (no centring, no factor, no m).
    """
    import numpy as np
    from scipy.linalg import blas

    from henderson._testing.genotypes import simulate_genotypes
    from henderson.data.genotypes import default_block_size
    from henderson.relationships.apy import apy_inverse_from_genotypes, choose_core

    t = time.perf_counter()
    geno = simulate_genotypes(k, m, seed=3)
    out = {"k": k, "core": c, "m": m, "simulate_s": time.perf_counter() - t, "rss_after_simulation_mb": rss_mb()}
    _progress(f"apy_blocks: genotypes simulated in {out['simulate_s']:.1f} s")
    core = choose_core(geno.ids, c, seed=1)
    cpos = np.sort(np.flatnonzero(np.isin(geno.ids, core)))
    npos = np.setdiff1d(np.arange(k), cpos)
    b = default_block_size(k, 4, target_mb=256.0)  # the builder's block size
    t, c0 = time.perf_counter(), time.process_time()
    t_blas = 0.0
    acc_cc = np.zeros((c, c), np.float32, order="F")
    acc_cn = np.zeros((c, k - c), np.float32, order="F")
    for s0 in range(0, m, b):
        x = geno.dosages[:, s0 : s0 + b].astype(np.float32)
        xc, xn = x[cpos], x[npos]
        tb = time.perf_counter()
        acc_cc = blas.ssyrk(1.0, xc.T, beta=1.0, c=acc_cc, trans=1, lower=1, overwrite_c=1)
        acc_cn = blas.sgemm(1.0, xc.T, xn.T, beta=1.0, c=acc_cn, trans_a=1, overwrite_c=1)
        t_blas += time.perf_counter() - tb
    out["floor_s"] = time.perf_counter() - t
    out["floor_cpu_s"] = time.process_time() - c0
    out["floor_blas_only_s"] = t_blas
    out["block_snps"] = b
    _progress(f"apy_blocks: floor {out['floor_s']:.1f} s")
    del acc_cc, acc_cn, x, xc, xn
    out["rss_after_floor_mb"] = rss_mb()
    t, c0 = time.perf_counter(), time.process_time()
    inv = apy_inverse_from_genotypes(geno, core)
    out["apy_setup_s"] = time.perf_counter() - t
    out["apy_setup_cpu_s"] = time.process_time() - c0
    out["apy_parts_s"] = {kk: round(v, 3) for kk, v in inv.info["timings"].items()}
    _progress(f"apy_blocks: set-up {out['apy_setup_s']:.1f} s")
    v = np.random.default_rng(0).normal(size=k)
    t = time.perf_counter()
    inv @ v
    out["apy_product_s"] = time.perf_counter() - t
    out["ratio_setup_to_floor"] = out["apy_setup_s"] / out["floor_s"]
    out["ratio_setup_to_floor_cpu"] = out["apy_setup_cpu_s"] / out["floor_cpu_s"]
    out["load_avg_end"] = os.getloadavg()
    out["rss_peak_mb"] = rss_mb()
    return out


def part_solve(n, k, m) -> dict:
    import numpy as np

    from henderson.api import fit
    from henderson.relationships.pedigree import pedigree_inverse
    from henderson.relationships.single_step import single_step_inverse

    ped, ids, geno, pd = _sim(n, k, m, seed=5)
    rng = np.random.default_rng(9)
    all_ids = ped.ids_in_input_order
    rec = all_ids[len(all_ids) // 3 :]  # the younger two thirds have one record each
    frame = pd.DataFrame({"id": rec, "y": rng.normal(size=len(rec))})
    out = {"n": n, "k": k, "m": m, "records": len(rec)}
    H, out["hinv_setup_s"] = _timed(single_step_inverse, ped, geno)
    A, out["ainv_s"] = _timed(pedigree_inverse, ped)
    s2 = (0.5, 1.0)
    # solver="sparse": the supernodal Cholesky of henderson.linalg (auto would pick PCG
    # above 100,000 equations at given variances)
    res, out["ssgblup_solve_s"] = _timed(
        fit, "y ~ 1 + (1|id)", frame, cov_inverse={"id": H}, sigma2=s2, solver="sparse"
    )
    out["ssgblup_solver"] = res.solver
    _, out["pblup_solve_s"] = _timed(fit, "y ~ 1 + (1|id)", frame, cov_inverse={"id": A}, sigma2=s2, solver="sparse")
    out["ratio_ssgblup_to_pblup"] = out["ssgblup_solve_s"] / out["pblup_solve_s"]
    out["hinv_nnz"], out["ainv_nnz"] = int(H.matrix.nnz), int(A.matrix.nnz)
    out["rss_peak_mb"] = rss_mb()
    return out


def machine() -> dict:
    import numpy as np
    import scipy

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--part", choices=["floor", "hinv", "routes", "apy", "apy_blocks", "solve", "lazy", "a22op", "a22dense"]
    )
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--k", type=int, default=5_000)
    ap.add_argument("--m", type=int, default=50_000)
    ap.add_argument("--routes-n", type=int, default=50_000)
    ap.add_argument("--routes-k", type=int, default=3_000)
    ap.add_argument("--apy-k", type=int, default=8_000)
    ap.add_argument("--apy-core", type=int, default=2_000)
    ap.add_argument("--apy-m", type=int, default=5_000)
    ap.add_argument("--solve-n", type=int, default=100_000)
    ap.add_argument("--solve-k", type=int, default=2_000)
    ap.add_argument("--solve-m", type=int, default=10_000)
    ap.add_argument("--lazy-n", type=int, default=200_000)
    ap.add_argument("--lazy-k", type=int, default=5_000)
    ap.add_argument("--lazy-m", type=int, default=20_000)
    ap.add_argument("--a22-n", type=int, default=1_000_000)
    ap.add_argument("--a22-k", type=int, default=20_000)
    ap.add_argument("--parts", default="routes,apy,solve,floor,hinv")
    ap.add_argument("--write", type=Path)
    a = ap.parse_args()
    if a.part:
        f = {
            "floor": lambda: part_floor(a.k, a.m),
            "hinv": lambda: part_hinv(a.n, a.k, a.m),
            "routes": lambda: part_routes(a.routes_n, a.routes_k),
            "apy": lambda: part_apy(a.apy_k, a.apy_core, a.apy_m),
            "apy_blocks": lambda: part_apy_blocks(a.apy_k, a.apy_core, a.apy_m),
            "solve": lambda: part_solve(a.solve_n, a.solve_k, a.solve_m),
            "lazy": lambda: part_lazy(a.lazy_n, a.lazy_k, a.lazy_m),
            "a22op": lambda: part_a22op(a.a22_n, a.a22_k),
            "a22dense": lambda: part_a22dense(a.a22_n, a.a22_k),
        }[a.part]
        print(json.dumps(f()))
        return
    results = {"machine": machine()}
    for part in a.parts.split(","):
        cmd = [sys.executable, __file__, "--part", part] + [
            x for x in sys.argv[1:] if not x.startswith("--parts") and x != a.parts
        ]
        if a.write:
            cmd = [c for c in cmd if c not in ("--write", str(a.write))]
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            print(r.stderr, file=sys.stderr)
            raise SystemExit(f"part {part} failed")
        results[part] = json.loads(r.stdout.strip().splitlines()[-1])
        results[part]["wall_s"] = time.perf_counter() - t
        if part == "a22dense" and "a22op" in results:
            results[part]["ratio_a22op_setup_to_dense_inverse_cpu"] = (
                results["a22op"]["a22op_setup_cpu_s"] / results[part]["dense_inverse_cpu_s"]
            )
            results[part]["ratio_a22op_setup_to_colleau_plus_dense_inverse_cpu"] = results["a22op"][
                "a22op_setup_cpu_s"
            ] / (results[part]["dense_inverse_cpu_s"] + results[part]["colleau_cpu_s"])
        if part == "hinv" and "floor" in results:
            results[part]["ratio_hinv_to_floor"] = results[part]["hinv_setup_s"] / results["floor"]["floor_s"]
            results[part]["ratio_hinv_to_floor_cpu"] = (
                results[part]["hinv_setup_cpu_s"] / results["floor"]["floor_cpu_s"]
            )
        print(part, json.dumps(results[part], indent=1), flush=True)
        if a.write:  # after every part, so a long run keeps what it has measured
            a.write.write_text(
                "# single-step benchmark\n\nCommand: `"
                + " ".join(sys.argv)
                + "`"
                + f" (OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')})"
                + "\n\n```json\n"
                + json.dumps(results, indent=1)
                + "\n```\n"
            )


if __name__ == "__main__":
    main()

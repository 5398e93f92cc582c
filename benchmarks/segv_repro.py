"""Reproducer: one huge dense supernode through henderson.linalg's numeric kernel.

Builds the supernodal arrays of a dense SPD matrix of n = w + m rows split, as
``SymbolicCholesky(pattern, last=m)`` would, into supernode 0 (w columns, nr = n rows,
leading dimension n) and supernode 1 (m columns), without a sparse matrix or an
ordering, so that the size of the BLAS/LAPACK calls matches the 1M/20k single-step
run (w = 18,586, nr = 20,167) at a fraction of its memory. Modes:

- ``linalg``: ``_numeric.factorize`` (dpotrf, dtrsm, dsyrk/dgemm panels, scatter);
- ``potrf``: only the dpotrf of supernode 0 through the numba wrapper (lda = nr);
- ``scipy``: ``scipy.linalg.lapack.dpotrf`` on a w × w Fortran array (same OpenBLAS
  as the numba wrappers: scipy's own ``scipy.libs/libscipy_openblas``).

Run each in a child process: a segfault shows as exit status −11 / 139.

    OPENBLAS_NUM_THREADS=2 python benchmarks/segv_repro.py linalg 18586 1581
"""

from __future__ import annotations

import sys
import time

import numpy as np


def dense_blocks(w: int, m: int):
    n = w + m
    first = np.array([0, w, n], np.int64)
    rptr = np.array([0, n, n + m], np.int64)
    rows = np.concatenate([np.arange(n), np.arange(w, n)]).astype(np.int64)
    off = np.array([0, n * w, n * w + m * m], np.int64)
    snode = np.concatenate([np.zeros(w, np.int64), np.ones(m, np.int64)])
    x = np.empty(int(off[-1]))
    # A = 0.5·11' + n·I (SPD, diagonally dominant); lower triangles only are read
    x.fill(0.5)
    b0 = x[: n * w].reshape(w, n)  # column c of supernode 0 is row c of this view
    b0[np.arange(w), np.arange(w)] = float(n)
    b1 = x[n * w :].reshape(m, m)
    b1[np.arange(m), np.arange(m)] = float(n)
    return x, first, rptr, rows, off, snode


def main() -> None:
    mode, w, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    import scipy.linalg.lapack as lp
    from threadpoolctl import threadpool_info

    info = [(d["filepath"].rsplit("/", 1)[-1], d["version"], d["num_threads"]) for d in threadpool_info()]
    print(f"mode={mode} w={w} m={m} blas={info}", flush=True)
    t0 = time.perf_counter()
    if mode == "scipy":
        a = np.full((w, w), 0.5, order="F")
        a[np.arange(w), np.arange(w)] = float(w + m)
        t0 = time.perf_counter()
        c, inf = lp.dpotrf(a, lower=1, overwrite_a=1, clean=0)
        print(f"scipy dpotrf info={inf} L00={c[0, 0]:.6g} time={time.perf_counter() - t0:.1f}s", flush=True)
        return
    from henderson.linalg import _lapack as LA
    from henderson.linalg import _numeric as K

    x, first, rptr, rows, off, snode = dense_blocks(w, m)
    n = w + m
    print(
        f"value array {x.size:,} doubles ({x.nbytes / 2**30:.2f} GiB), 2^31 bytes exceeded: {x.nbytes > 2**31}",
        flush=True,
    )
    t0 = time.perf_counter()
    if mode == "potrf":
        inf = LA.potrf_lower(x, 0, w, n)
        print(f"potrf info={inf} time={time.perf_counter() - t0:.1f}s", flush=True)
        return
    work = np.empty(K.panel_workspace(np.array([m, 0])))
    relmap = np.empty(n, np.int64)
    nb = int(sys.argv[4]) if len(sys.argv) > 4 else K.POTRF_BLOCK  # w + 1: one dpotrf call (old code)
    bad = K.factorize(x, first, rptr, rows, off, snode, work, relmap, nb)
    # check log|A| = log|(n − 0.5)·I + 0.5·11'| = (n − 1) log(n − 0.5) + log(n − 0.5 + 0.5 n)
    ld = K.logdet(x, first, rptr, off, n)
    ref = (n - 1) * np.log(n - 0.5) + np.log(n - 0.5 + 0.5 * n)
    print(
        f"factorize nb={nb} bad={bad} logdet rel.err={abs(ld - ref) / abs(ref):.2e} time={time.perf_counter() - t0:.1f}s",
        flush=True,
    )


if __name__ == "__main__":
    main()

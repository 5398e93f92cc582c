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

- ``guard-syrk n k`` / ``guard-potrf n`` / ``guard-potri n``: the guarded dense kernels of
  :mod:`henderson.linalg.dense_safe` (threads as set by the environment), timed beside
  the plain scipy call with one thread (the reference of the relative error; for
  ``guard-potri`` the reference is the closed-form inverse of a·I + b·11');
- ``plain-syrk n k`` / ``plain-potri n``: the unguarded scipy call (crash check).

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
    if mode.startswith(("guard-", "plain-")):
        dense_mode(mode, w, m)
        return
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


def _abi(n: int, a: float | None = None, b: float = 0.5):
    """a·I + b·11' (Fortran order), a = n by default; its inverse is (I − b/(a + nb)·11')/a."""
    a = float(n) if a is None else a
    x = np.full((n, n), b, order="F")
    x[np.arange(n), np.arange(n)] += a
    return x, a, b


def dense_mode(mode: str, n: int, k: int) -> None:
    import scipy.linalg.blas as bl
    import scipy.linalg.lapack as lp
    from threadpoolctl import threadpool_limits

    from henderson.linalg import dense_safe as D

    def rel(x, ref):
        x, ref = np.tril(x), np.tril(ref)
        return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))

    if mode == "plain-syrk":
        a = np.asfortranarray(np.random.default_rng(0).standard_normal((n, k)))
        t0 = time.perf_counter()
        bl.dsyrk(1.0, a, lower=1)
        print(f"plain dsyrk n={n} k={k} ok {time.perf_counter() - t0:.1f}s", flush=True)
    elif mode == "guard-syrk":
        a = np.asfortranarray(np.random.default_rng(0).standard_normal((n, k)))
        t0 = time.perf_counter()
        c = D.syrk_lower(a)
        tg = time.perf_counter() - t0
        with threadpool_limits(1):
            t0 = time.perf_counter()
            ref = bl.dsyrk(1.0, a, lower=1)
            t1 = time.perf_counter() - t0
        print(f"guarded syrk n={n} k={k}: {tg:.1f}s; plain 1 thread {t1:.1f}s; rel.err {rel(c, ref):.1e}", flush=True)
    elif mode == "guard-potrf":
        x, _, _ = _abi(n)
        t0 = time.perf_counter()
        c, info = D.potrf(x)
        tg = time.perf_counter() - t0
        with threadpool_limits(1):
            t0 = time.perf_counter()
            ref, info1 = lp.dpotrf(x, lower=1, clean=0, overwrite_a=1)
            t1 = time.perf_counter() - t0
        print(
            f"guarded potrf n={n} info={info}: {tg:.1f}s; plain 1 thread {t1:.1f}s; rel.err {rel(c, ref):.1e}",
            flush=True,
        )
    elif mode in ("guard-potri", "plain-potri"):
        x, a, b = _abi(n)
        t0 = time.perf_counter()
        c, info = D.potrf(x, overwrite=True)
        tf = time.perf_counter() - t0
        t1 = None
        if mode == "guard-potri" and k:  # k ≠ 0: also time the plain dpotri with 1 thread
            c1 = c.copy(order="F")
            with threadpool_limits(1):
                t0 = time.perf_counter()
                lp.dpotri(c1, lower=1, overwrite_c=1)
                t1 = time.perf_counter() - t0
            del c1
        t0 = time.perf_counter()
        if mode == "plain-potri":
            inv, info = lp.dpotri(c, lower=1, overwrite_c=1)
        else:
            inv, info = D.potri(c, overwrite=True)
        tg = time.perf_counter() - t0
        del c, x
        ref = np.full((n, n), -b / (a + n * b) / a)
        ref[np.arange(n), np.arange(n)] += 1.0 / a
        plain = f"; plain dpotri 1 thread {t1:.1f}s" if t1 is not None else ""
        print(
            f"{mode} n={n} info={info}: factor {tf:.1f}s, inverse {tg:.1f}s{plain}; "
            f"rel.err vs closed form {rel(inv, ref):.1e}",
            flush=True,
        )
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()

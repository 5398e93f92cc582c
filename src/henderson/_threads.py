"""BLAS thread control for small problems.

Below a couple of thousand rows, multi-threaded OpenBLAS gains little on LAPACK's
level-2-heavy routines (dsytrd, small dpotrf), and on a busy machine its spinning
threads can make them hundreds of times slower (measured: a 540-row dsytrd took 6 s
with 2 threads under load, 14 ms with 1). Small problems therefore run on one thread.
"""

from __future__ import annotations

from contextlib import nullcontext

from threadpoolctl import threadpool_limits

#: problems of fewer rows than this run BLAS single-threaded
SINGLE_THREAD_BELOW = 2000


def blas_threads_for(n: int):
    """Context manager: one BLAS thread for an n-row problem below the threshold."""
    return threadpool_limits(1) if n < SINGLE_THREAD_BELOW else nullcontext()

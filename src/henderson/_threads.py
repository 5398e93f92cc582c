"""BLAS thread control for small problems.

Below a couple of thousand rows, multi-threaded OpenBLAS gains little on LAPACK's
level-2-heavy routines (dsytrd, small dpotrf), and on a busy machine its spinning
threads can make them hundreds of times slower (measured: a 540-row dsytrd took 6 s
with 2 threads under load, 14 ms with 1). Small problems therefore run on one thread.

``threadpoolctl.threadpool_limits`` finds the BLAS libraries by scanning the process's
loaded libraries on every call (about 3 ms here): on small models, called once per REML
evaluation, that was 45 % of a fit. One :class:`threadpoolctl.ThreadpoolController` is
therefore made on first use and reused; its ``limit`` only sets and restores the counts.
"""

from __future__ import annotations

from contextlib import nullcontext

from threadpoolctl import ThreadpoolController

#: problems of fewer rows than this run BLAS single-threaded
SINGLE_THREAD_BELOW = 2000

_controller: ThreadpoolController | None = None


def _blas_controller() -> ThreadpoolController:
    global _controller
    if _controller is None:  # numpy and scipy (and their BLAS) are loaded by now
        _controller = ThreadpoolController()
    return _controller


def blas_threads_for(n: int):
    """Context manager: one BLAS thread for an n-row problem below the threshold."""
    if n >= SINGLE_THREAD_BELOW:
        return nullcontext()
    return _blas_controller().limit(limits=1, user_api="blas")

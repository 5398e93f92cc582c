"""Progress reporting for long steps, without threading callbacks through every API.

Long loops (SNP blocks of G, REML iterations) call :func:`report`; it does nothing
unless a caller has installed a callback with :func:`reporting` — the command line does,
to drive its progress bars. The callback lives in a :class:`contextvars.ContextVar`, so
it is scoped to the ``with`` block (and to the thread or task that set it) and never
changes a result.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar

_callback: ContextVar[Callable | None] = ContextVar("henderson_progress", default=None)


@contextmanager
def reporting(callback: Callable | None):
    """Within the block, :func:`report` calls ``callback(done, total)``."""
    token = _callback.set(callback)
    try:
        yield
    finally:
        _callback.reset(token)


def report(done: int, total: int | None = None) -> None:
    """Tell the installed callback (if any) that ``done`` of ``total`` units are done."""
    cb = _callback.get()
    if cb is not None:
        cb(done, total)

"""Cross-validation folds as Dask tasks (``cross_validate(..., scheduler=...)``).

The fold task (model, X such as G, y, splits' positions) is scattered to the workers
once; each fold is one task that fits and predicts, exactly the code of the
in-process path (:class:`henderson.cv.evaluate._Task`), so the results are the same
numbers. BLAS threads inside a task are those the task object carries.
"""

from __future__ import annotations

from .._dask import get_client


def _run(task, i, split):
    return i, task.run(split)


def run_folds_on_cluster(task, splits, scheduler, on_done=None) -> list[dict]:
    """One task per split; results in split order; ``on_done(done, i)`` as folds finish."""
    from distributed import as_completed

    outs: list = [None] * len(splits)
    with get_client(scheduler) as client:
        shared = client.scatter(task, broadcast=True)
        futures = [client.submit(_run, shared, i, s, pure=False) for i, s in enumerate(splits)]
        for done, fut in enumerate(as_completed(futures), start=1):
            i, out = fut.result()
            outs[i] = out
            if on_done is not None:
                on_done(done, i)
    return outs

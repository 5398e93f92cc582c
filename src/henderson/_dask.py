"""The one way henderson gets a ``dask.distributed`` client from ``scheduler=`` (used by
relationships.genomic_dask and distributed.cv)."""

from __future__ import annotations

from contextlib import contextmanager

from .errors import DataError


def _distributed():
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError("scheduler= needs dask.distributed: pip install 'henderson[dask]'") from exc
    return distributed


@contextmanager
def get_client(scheduler):
    """Yield a Client for ``scheduler`` (a Client is used as is; an address string is
    connected to, and closed again on exit — the cluster itself is never shut down)."""
    distributed = _distributed()
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    if isinstance(scheduler, str):
        client = distributed.Client(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    raise DataError(
        f"scheduler must be a dask.distributed.Client or an address such as "
        f"'tcp://host:8786', not {type(scheduler).__name__}"
    )

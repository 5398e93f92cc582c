"""Moved to :mod:`henderson._dask` (relationships uses it, and sits below this package);
kept so old imports keep working."""

from .._dask import get_client  # noqa: F401

"""Moved to :mod:`henderson._startup` (the package imports it, and the package must not import
the CLI); kept so old imports keep working."""

from .._startup import guard, release  # noqa: F401

"""Ids as text, in one vectorised pass."""

from __future__ import annotations

import numpy as np


def str_ids(ids) -> np.ndarray:
    """``ids`` (a list, array, Index, Series, set or iterator of scalars) as an object array of ``str(id)``.

    NumPy converts the elements with ``str`` in C, so this equals
    ``[str(i) for i in ids]`` without a Python loop over the individuals
    (``None`` → ``"None"``, NaN → ``"nan"``, ``12.0`` → ``"12.0"``).
    """
    if not hasattr(ids, "__getitem__") or isinstance(ids, (set, frozenset, dict)):
        ids = list(ids)  # a set or an iterator: its elements, in iteration order
    return np.asarray(ids, dtype=object).reshape(-1).astype(str).astype(object)

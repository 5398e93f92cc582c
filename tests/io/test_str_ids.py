"""str_ids: the vectorised ``str`` of ids equals Python's ``str`` of each, element by element."""

import numpy as np
import pandas as pd
import pytest

from henderson.data._ids import str_ids

MIXED = [1, 2.5, 12.0, np.float64(1e-7), np.int64(7), None, float("nan"), True, "x", np.str_("y"), 1e22]


@pytest.mark.parametrize(
    "ids",
    [MIXED, np.asarray(MIXED, dtype=object), pd.Series(MIXED, dtype=object), pd.Index(["a", "b"]), np.arange(3), []],
    ids=["list", "object-array", "series", "index", "int-array", "empty"],
)
def test_str_ids_equals_str_of_each(ids):
    out = str_ids(ids)
    assert out.dtype == object
    assert out.tolist() == [str(i) for i in ids]


def test_str_ids_takes_sets_and_iterators():
    assert str_ids(i for i in (3, 4)).tolist() == ["3", "4"]
    assert str_ids({"only"}).tolist() == ["only"]

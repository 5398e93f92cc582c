"""A relationship matrix held as a lazy dask array gives the same results as in memory."""

import dask.array as da  # a test extra (installed by `make test`): no silent skip
import numpy as np
import pandas as pd
import pytest

import henderson as h


@pytest.fixture(scope="module")
def wheat_g():
    w = h.datasets.load_wheat()
    G = h.genomic_relationship(h.Genotypes.from_frame(2 * w.markers))
    lazy = h.Relationship(G.ids, da.from_array(np.asarray(G.matrix), chunks=128), kind="G")
    return w, G, lazy


def test_container_operations_stay_lazy_and_agree(wheat_g):
    w, G, lazy = wheat_g
    assert lazy.is_dask and not G.is_dask
    ids = list(G.ids[::-7])
    sub = lazy.subset(ids)
    assert sub.is_dask  # nothing computed yet
    np.testing.assert_array_equal(sub.dense(), G.subset(ids).dense())
    np.testing.assert_array_equal(lazy.diagonal(), np.diag(G.dense()))
    assert lazy.mean() == pytest.approx(float(G.dense().mean()), rel=1e-12)
    pd.testing.assert_frame_equal(lazy.to_frame(), G.to_frame())


def test_fits_and_cv_equal_in_memory(wheat_g):
    w, G, lazy = wheat_g
    y = w.phenotypes["env1"]
    a, b = h.GBLUP().fit(G, y), h.GBLUP().fit(lazy, y)
    np.testing.assert_allclose(b.variance_components_["variance"], a.variance_components_["variance"], rtol=1e-10)
    np.testing.assert_allclose(b.gebv_["gebv"], a.gebv_["gebv"], atol=1e-10)
    ca = h.cross_validate(h.GBLUP(sigma2=(0.3, 0.54)), G, y, cv=w.folds)
    cb = h.cross_validate(h.GBLUP(sigma2=(0.3, 0.54)), lazy, y, cv=w.folds)
    np.testing.assert_allclose(cb.predictions["predicted_bv"], ca.predictions["predicted_bv"], atol=1e-10)

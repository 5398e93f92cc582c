"""Issue 10, item 6: a residual variance at ~0 (h² = 1) is a boundary estimate said once,
and a dense A too large for memory is refused before it is allocated."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest

import henderson as hd
from henderson.datasets import load_wheat
from henderson.errors import BoundaryWarning, ConvergenceWarning, DataError


@pytest.fixture(scope="module")
def genetic_only():
    """150 wheat lines and a trait that is exactly a genetic value, y = G a (no residual)."""
    w = load_wheat()
    ids = w.markers.index[:150]
    G = hd.genomic_relationship(2 * w.markers.loc[ids])
    a = np.random.default_rng(0).normal(size=150) * 0.1
    return G, pd.Series(G.dense() @ a, index=ids, name="y")


def _fit_recording(G, y, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = hd.GBLUP(**kw).fit(G, y)
    return m, [w for w in caught if issubclass(w.category, (BoundaryWarning, ConvergenceWarning))]


def test_residual_at_zero_is_a_boundary_estimate(genetic_only):
    G, y = genetic_only
    m, caught = _fit_recording(G, y)
    assert [w.category for w in caught] == [BoundaryWarning]  # not "did not converge"
    assert "residual variance estimated at the boundary" in str(caught[0].message)
    vc = m.variance_components_
    assert vc.loc["Residual", "boundary"] and not vc.loc["id", "boundary"]
    assert vc.loc["Residual", "variance"] < 1e-6 * vc.loc["id", "variance"]
    assert np.isnan(vc.loc["Residual", "se"]) and vc["ratio_se"].isna().all()
    assert m.result_.converged is False  # a boundary limit, not an interior optimum
    assert any("boundary" in n for n in m.result_.notes)


def test_residual_at_the_search_bound_is_a_boundary_estimate(genetic_only, monkeypatch):
    """When the search ends at its largest σ²_g/σ²_e (here capped at e^5 to force it), the
    fit used to stop with 'the residual variance is being estimated at zero'."""
    import henderson.solvers.spectral as spectral

    monkeypatch.setattr(spectral, "LOG_H_BOUNDS", (-25.0, 5.0))
    G, y = genetic_only
    m, caught = _fit_recording(G, y)
    assert [w.category for w in caught] == [BoundaryWarning]
    vc = m.variance_components_
    assert vc.loc["Residual", "boundary"]
    assert vc.loc["id", "variance"] / vc.loc["Residual", "variance"] == pytest.approx(np.exp(5.0), rel=1e-9)


def test_cv_says_the_boundary_once(genetic_only):
    G, y = genetic_only
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = hd.cross_validate(hd.GBLUP(), G, y, cv=5)
    msgs = [str(w.message) for w in caught if issubclass(w.category, (BoundaryWarning, ConvergenceWarning))]
    assert len(msgs) == 1 and msgs[0].startswith("5 of 5 fold(s): residual variance estimated at the boundary")
    assert not any("did not converge" in m for m in msgs)
    assert res.settings["notes"] and np.isfinite(res.fold_metrics["r"]).all()


def _pedigree(n):
    ids = [f"a{i}" for i in range(n)]
    sire = ["0"] * 20 + [f"a{i % 10}" for i in range(20, n)]
    dam = ["0"] * 20 + [f"a{10 + i % 10}" for i in range(20, n)]
    return hd.read_pedigree(pd.DataFrame({"id": ids, "sire": sire, "dam": dam}))


def test_dense_A_refused_before_allocating(monkeypatch):
    import henderson.relationships.pedigree as rp

    ped = _pedigree(3000)  # A: 3000² x 8 bytes = 69 MiB (x2 working copies)
    monkeypatch.setattr(rp, "available_memory", lambda: 32 * 2**20)
    tracemalloc.start()
    with pytest.raises(
        DataError,
        match=r"dense A \(tabular\) for 3,000 animals needs about 0\.1 GiB .* "
        r"only 0\.0 GiB .*pedigree_inverse",
    ):
        hd.pedigree_relationship(ped)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 * 2**20  # refused before the 69 MiB matrix was allocated
    with pytest.raises(DataError, match="2,500 animals"):
        hd.pedigree_relationship(ped, ids=ped.ids[:2500])
    # within the budget it is built as before
    monkeypatch.setattr(rp, "available_memory", lambda: 2**40)
    assert hd.pedigree_relationship(_pedigree(50)).n == 50

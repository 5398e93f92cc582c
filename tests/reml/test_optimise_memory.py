"""AI-REML on the sparse MME keeps one array of the factor's size alive.

Issue 13: at 100,000 animals the previous evaluation's factor and selected inverse were
alive while the next one was computed (peak RSS +513 MiB against a 74 MiB factor), and
then the factor and its selected inverse of the same evaluation (two arrays of L's
size). Now every solve with the factor comes before the selected inverse, which
overwrites the factor's values (benchmarks/results/sparse_memory.md). The checks count
live :class:`henderson.linalg.cholesky.Factor` and ``SelectedInverse`` value arrays
(weak references, after a garbage collection): they fail if an old factor survives, or
if a factor and a selected inverse of the same evaluation are held in two arrays.
"""

import gc
import weakref

import numpy as np
import pytest

import henderson as h
from henderson._testing.animal_model import simulate_animal_model
from henderson.linalg import cholesky as ch
from henderson.solvers import sparse as sps
from henderson.spec.model import build_spec


def _track(monkeypatch):
    """Weak sets of every Factor and SelectedInverse made from now on."""
    factors: weakref.WeakSet = weakref.WeakSet()
    selinvs: weakref.WeakSet = weakref.WeakSet()
    f_init, s_init = ch.Factor.__init__, ch.SelectedInverse.__init__

    def track_factor(self, *a, **k):
        f_init(self, *a, **k)
        factors.add(self)

    def track_selinv(self, *a, **k):
        s_init(self, *a, **k)
        selinvs.add(self)

    monkeypatch.setattr(ch.Factor, "__init__", track_factor)
    monkeypatch.setattr(ch.SelectedInverse, "__init__", track_selinv)

    def arrays() -> int:
        """Distinct value arrays of the factor's size held by live factors and inverses."""
        gc.collect()
        held = {id(f.x) for f in factors if f.x is not None} | {id(z.z) for z in selinvs}
        return len(held)

    return factors, arrays


@pytest.fixture
def sim():
    return simulate_animal_model(1500, 5, seed=4, herds=10)


def test_one_factor_alive_during_ai_reml(monkeypatch, sim):
    factors, arrays = _track(monkeypatch)
    counts = []
    evaluate = sps.SparseMME.evaluate

    def track_evaluate(self, *a, **k):
        gc.collect()
        counts.append(len(factors))
        return evaluate(self, *a, **k)

    monkeypatch.setattr(sps.SparseMME, "evaluate", track_evaluate)
    res = h.fit("y ~ sex + (1|herd) + (1|id)", sim["records"], cov_inverse={"id": sim["ainv"]}, solver="sparse")
    assert res.converged and len(counts) >= 3
    assert max(counts) == 0, counts  # no factor of an earlier evaluation is alive at the next one
    # and the result still has what needs the factor: PEVs from the selected inverse
    assert np.all(np.isfinite(res.blups["id"]["pev"]))


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_evaluation_holds_one_array_of_the_factors_size(monkeypatch, sim, method):
    """Factor and selected inverse share one array; what needs the factor later refactors."""
    _, arrays = _track(monkeypatch)
    spec = build_spec("y ~ sex + (1|herd) + (1|id)", sim["records"], cov_inverse={"id": sim["ainv"]})
    st = sps.SparseMME(spec)
    s = np.array([0.4, 0.9, 2.1])
    ev = st.evaluate(s, derivatives=True, method=method)
    assert arrays() == 1  # was 2: the factor's values and the selected inverse's
    # the consumed factor is refactored for what needs it: the same AI and diag(C⁻¹) as a
    # fresh evaluation whose factor is untouched (out-of-place selected inverse)
    fresh = st.evaluate(s, derivatives=False, method=method)
    ref_diag = fresh.factor.selected_inverse().diag()
    np.testing.assert_allclose(st.inverse_diag(ev), ref_diag, rtol=1e-12)
    np.testing.assert_allclose(st.average_information(ev), ev.ai, rtol=1e-12)


@pytest.mark.slow  # ~7 s: a full general sparse REML fit with array tracking
def test_general_sparse_reml_holds_one_array_of_the_factors_size(monkeypatch, sim):
    """The general sparse engine (a correlated 2 × 2 Σ on A⁻¹): no factor-sized array of an
    earlier evaluation is alive when the next one starts (was up to 2: the current point's
    selected inverse and a rejected or completed trial's factor). The current point is
    released before its trials, a rejected trial before the next, and the accepted trial's
    derivatives reuse its own factor (``with_derivatives``)."""
    from henderson.solvers import general_sparse as gs

    _, arrays = _track(monkeypatch)
    counts = []
    evaluate = gs.GeneralSparseMME.evaluate

    def track_evaluate(self, *a, **k):
        counts.append(arrays())
        return evaluate(self, *a, **k)

    monkeypatch.setattr(gs.GeneralSparseMME, "evaluate", track_evaluate)
    rec = sim["records"].copy()
    rec["id2"] = rec["id"]  # a second effect on the same animals, correlated with the first
    res = h.fit(
        "y ~ sex + (1|herd) + (1|id) + (1|id2)",
        rec,
        cov_inverse={"id": sim["ainv"]},
        correlated=[("id", "id2")],
        solver="sparse",
        max_iter=30,
    )
    assert res.solver == "sparse-general" and len(counts) >= 3
    assert max(counts) == 0, counts

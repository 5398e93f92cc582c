"""AI-REML on the sparse MME keeps at most one factor (and selected inverse) alive.

Issue 13: at 100,000 animals the previous evaluation's factor and selected inverse were
alive while the next one was computed (peak RSS +513 MiB against a 74 MiB factor; now
+355 MiB, benchmarks/results/sparse_memory.md). The check counts live
:class:`henderson.linalg.cholesky.Factor` objects at every evaluation (weak references,
after a garbage collection): it fails if any reference to an old factor survives.
"""

import gc
import weakref

import numpy as np

import henderson as h
from henderson._testing.animal_model import simulate_animal_model
from henderson.linalg import cholesky as ch
from henderson.solvers import sparse as sps


def test_one_factor_alive_during_ai_reml(monkeypatch):
    sim = simulate_animal_model(1500, 5, seed=4, herds=10)
    live: weakref.WeakSet = weakref.WeakSet()
    counts = []
    init, evaluate = ch.Factor.__init__, sps.SparseMME.evaluate

    def track_init(self, *a, **k):
        init(self, *a, **k)
        live.add(self)

    def track_evaluate(self, *a, **k):
        gc.collect()
        counts.append(len(live))
        return evaluate(self, *a, **k)

    monkeypatch.setattr(ch.Factor, "__init__", track_init)
    monkeypatch.setattr(sps.SparseMME, "evaluate", track_evaluate)
    res = h.fit("y ~ sex + (1|herd) + (1|id)", sim["records"], cov_inverse={"id": sim["ainv"]}, solver="sparse")
    assert res.converged and len(counts) >= 3
    assert max(counts) == 0, counts  # no factor of an earlier evaluation is alive at the next one
    # and the result still has what needs the factor: PEVs from the selected inverse
    assert np.all(np.isfinite(res.blups["id"]["pev"]))

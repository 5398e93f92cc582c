"""Parallel folds: BLAS threads capped in the workers, progress reported per fold
(audit of issue 5, items 4 and 10)."""

import os

import numpy as np
import pandas as pd
import pytest

import henderson as h
from henderson._testing.genotypes import simulate_genotypes
from henderson.cv import cross_validate, evaluate


@pytest.fixture(scope="module")
def tiny():
    geno = simulate_genotypes(30, 60, seed=5)
    y = pd.Series(np.random.default_rng(5).normal(size=30), index=geno.ids, name="y")
    return geno, y


def test_workers_run_with_capped_blas_threads(tiny, monkeypatch):
    geno, y = tiny
    real = os.cpu_count() or 1
    res = cross_validate(h.GBLUP(sigma2=(0.5, 1.0)), geno, y, cv=2, n_jobs=2, fast=False)
    assert res.settings["blas_threads_seen_in_workers"] == [max(1, real // 2)]
    # joblib's loky workers start at cpu_count // n_jobs threads on their own, so pretend
    # the machine is larger: only threadpool_limits inside the task can give this number
    fake = 2 * (real // 2 + 1)
    monkeypatch.setattr(evaluate, "_cpu_count", lambda: fake)
    res = cross_validate(h.GBLUP(sigma2=(0.5, 1.0)), geno, y, cv=2, n_jobs=2, fast=False)
    assert res.settings["blas_threads_per_job"] == fake // 2
    assert res.settings["blas_threads_seen_in_workers"] == [fake // 2]


@pytest.mark.parametrize("how", ["sequential", "parallel", "fast"])
def test_progress_called_once_per_fold(tiny, how):
    geno, y = tiny
    calls = []
    kw = {"sequential": dict(fast=False), "parallel": dict(fast=False, n_jobs=2), "fast": {}}[how]
    res = cross_validate(
        h.GBLUP(sigma2=(0.5, 1.0)),
        geno,
        y,
        cv=3,
        repeats=2,
        seed=1,
        progress=lambda done, total, info: calls.append((done, total, info)),
        **kw,
    )
    assert len(calls) == 6 == len(res.fold_metrics)
    assert [c[0] for c in calls] == list(range(1, 7)) and {c[1] for c in calls} == {6}
    seen = sorted((c[2]["repeat"], c[2]["fold"]) for c in calls)
    assert seen == sorted(zip(res.fold_metrics["repeat"], res.fold_metrics["fold"]))
    assert {c[2]["path"] for c in calls} == {res.settings["path"]}
    assert all(c[2]["n_test"] + c[2]["n_train"] == 30 for c in calls)


def test_progress_must_be_callable(tiny):
    geno, y = tiny
    from henderson.errors import DataError

    with pytest.raises(DataError, match="progress"):
        cross_validate(h.GBLUP(), geno, y, progress="bar")

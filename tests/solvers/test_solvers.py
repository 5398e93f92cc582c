"""Every solver gives the same numbers on the same problem (architecture: the first
test of each new solver). These tolerances (1e-6) date from when the sparse solver's
score was a central difference; it is now exact, and tests/solvers/test_solvers_sparse_exact.py
holds the sparse solver to the dense one at 1e-8."""

import numpy as np
import pytest

import henderson as h
from henderson.datasets import load_gryphon, load_lme4


@pytest.fixture(scope="module")
def gryphon():
    g = load_gryphon()
    return g.records, h.pedigree_inverse(g.pedigree)


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_sparse_equals_dense_animal_model(gryphon, method):
    rec, Ainv = gryphon
    f = "BWT ~ SEX + (1|ANIMAL) + (1|MOTHER) + (1|BYEAR)"
    a = h.fit(f, rec, cov_inverse={"ANIMAL": Ainv}, solver="sparse", method=method)
    b = h.fit(f, rec, cov_inverse={"ANIMAL": Ainv}, solver="dense", method=method)
    assert a.solver == "sparse-mme" and b.solver == "dense-mme"
    np.testing.assert_allclose(a.sigma2, b.sigma2, rtol=1e-6)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-8)
    ua, ub = a.blups["ANIMAL"], b.blups["ANIMAL"]
    np.testing.assert_allclose(ua["blup"], ub["blup"], atol=1e-5)
    np.testing.assert_allclose(ua["pev"], ub["pev"], rtol=1e-5)
    np.testing.assert_allclose(a.variance_components["se"], b.variance_components["se"], rtol=1e-4)
    np.testing.assert_allclose(a.fixed_effects["estimate"], b.fixed_effects["estimate"], atol=1e-5)


def test_sparse_objective_equals_dense(gryphon):
    rec, Ainv = gryphon
    from henderson.solvers.dense import DenseMME
    from henderson.solvers.sparse import SparseMME
    from henderson.spec.model import build_spec

    spec = build_spec("BWT ~ SEX + (1|ANIMAL) + (1|MOTHER)", rec, cov_inverse={"ANIMAL": Ainv})
    for s in ([2.0, 1.0, 1.5], [0.5, 0.0, 3.0]):
        for method in ("reml", "ml"):
            assert SparseMME(spec).evaluate(s, method=method).m2ll == pytest.approx(
                DenseMME(spec).evaluate(s, method=method).m2ll, rel=1e-12
            )


@pytest.mark.parametrize(
    "name, formula",
    [
        ("Penicillin", "diameter ~ 1 + (1|plate) + (1|sample)"),
        ("Pastes", "strength ~ 1 + (1|batch/cask)"),
    ],
)
def test_sparse_equals_dense_crossed_nested(name, formula):
    d = load_lme4(name)
    a = h.fit(formula, d, solver="sparse")
    b = h.fit(formula, d, solver="dense")
    np.testing.assert_allclose(a.sigma2, b.sigma2, rtol=1e-6)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-9)


def test_sparse_boundary():
    with pytest.warns(h.BoundaryWarning):
        res = h.fit("Yield ~ 1 + (1|Batch)", load_lme4("Dyestuff2"), solver="sparse")
    assert res.sigma2["Batch"] == 0.0
    # σ²_Batch = 0 leaves y ~ N(1μ, σ²I), whose REML σ² is the sample variance (ddof 1)
    assert res.sigma2["Residual"] == pytest.approx(np.var(load_lme4("Dyestuff2")["Yield"], ddof=1), rel=1e-7)


def test_auto_takes_sparse_for_large_pedigrees():
    from henderson._testing.pedigree import simulate_pedigree

    ped = simulate_pedigree(6000, generations=4, seed=3)
    Ainv = h.pedigree_inverse(ped)
    rng = np.random.default_rng(0)
    ids = Ainv.ids[-3000:]
    import pandas as pd

    d = pd.DataFrame({"id": ids, "y": rng.normal(size=len(ids))})
    res = h.fit("y ~ 1 + (1|id)", d, cov_inverse={"id": Ainv}, sigma2=[0.5, 0.5])
    assert res.solver == "sparse-mme"
    assert len(res.blups["id"]) == len(Ainv.ids)

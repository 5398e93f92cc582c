"""One table: every solver against the dense solver on the four reference data sets.

Rows are the data sets, each fitted as its reference fits it:

- potato, ``Yield ~ Env + (1|Name)`` (one iid term; lme4/sommer/rrBLUP in dt_example.json);
- Penicillin, ``diameter ~ 1 + (1|plate) + (1|sample)`` (crossed iid terms; lme4);
- gryphon, ``BWT ~ SEX + (1|ANIMAL)`` with the sparse pedigree A⁻¹ (ASReml model 2);
- wheat GBLUP, ``env1 ~ 1 + (1|id)`` with K = rrBLUP's ``A.mat`` (rrBLUP, sommer).

Columns are the solvers: ``dense`` (:class:`~henderson.solvers.dense.DenseMME`), ``sparse``
(:class:`~henderson.solvers.sparse.SparseMME`), ``spectral``
(:class:`~henderson.solvers.spectral.SpectralSolver`), ``general-dense``, ``general-sparse`` and
``general-vform`` (the structured-model engines :class:`~henderson.solvers.general.GeneralMME`,
:class:`~henderson.solvers.general_sparse.GeneralSparseMME` and
:class:`~henderson.solvers.general_vform.GeneralVForm`, through
:func:`henderson.api.fit_general`) and ``pcg`` (:mod:`henderson.solvers.pcg`).

The dense solver is the yardstick: it is the one checked against every independent
reference (tests/test_engine_references.py, tests/models/test_models_gryphon.py,
tests/models/test_models.py). Two tables:

1. REML estimates. σ² agree to 1e-8 relative, fixed effects and BLUPs to 1e-8 × sd(y),
   the log-likelihood to 1e-8 absolute. PCG is not in this table: without ``sigma2``
   it estimates by stochastic (Monte Carlo) REML, which agrees only to its Monte Carlo
   error (tests/reml/test_stochastic_reml.py).
2. Known variances (the dense solver's σ² given as ``sigma2``): every solver, PCG
   included, solves the same MME, so fixed effects and BLUPs agree to 1e-8 × sd(y) and
   the log-likelihood (not computed by PCG) to 1e-8.

A combination a solver cannot fit is an error that says why; the table asserts the
error. The general engines stop on the size of their next AI step, as the dense optimiser
does (reml/general.py, "Stopping rule"), and meet the table's 1e-8 on every data set.
"""

import functools
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import REFS

import henderson as h
from henderson.api import fit_general
from henderson.datasets import load_gryphon, load_lme4, load_potato, load_wheat
from henderson.errors import ModelError

SOLVERS = ["dense", "sparse", "spectral", "general-dense", "general-sparse", "general-vform", "pcg"]
GENERAL = ["general-dense", "general-sparse", "general-vform"]
DATASETS = ["potato", "Penicillin", "gryphon", "wheat"]

# (dataset, solver) → the error that solver gives, by a phrase of its message
INAPPLICABLE = {
    ("potato", "spectral"): "spectral solver needs exactly one random term with a dense covariance",
    ("Penicillin", "spectral"): "spectral solver needs exactly one random term with a dense covariance",
    ("gryphon", "spectral"): "spectral solver needs exactly one random term with a dense covariance",
    ("wheat", "sparse"): "term 'id' has a dense covariance: use the dense or spectral solver",
    ("gryphon", "general-vform"): "'ANIMAL' enters through K⁻¹",
}

# the dense reference fits take 4-10 s here (gryphon: 1,309 animals; wheat: 599 × 599 K)
SLOW = {"gryphon", "wheat"}


@functools.cache
def problem(name: str) -> tuple[str, pd.DataFrame, dict, str]:
    """(formula, data, covariance keywords, response column) of a reference data set."""
    if name == "potato":
        return "Yield ~ Env + (1|Name)", load_potato(), {}, "Yield"
    if name == "Penicillin":
        return "diameter ~ 1 + (1|plate) + (1|sample)", load_lme4("Penicillin"), {}, "diameter"
    if name == "gryphon":
        g = load_gryphon()
        return "BWT ~ SEX + (1|ANIMAL)", g.records, {"cov_inverse": {"ANIMAL": h.pedigree_inverse(g.pedigree)}}, "BWT"
    if name == "wheat":
        K = pd.read_csv(REFS / "wheat_Amat_rrblup.csv.gz", index_col=0)
        K.index, K.columns = K.index.astype(str), K.columns.astype(str)
        data = load_wheat().phenotypes.reset_index()
        return "env1 ~ 1 + (1|id)", data, {"cov": {"id": K}}, "env1"
    raise KeyError(name)


def run(name: str, solver: str, sigma2=None) -> h.FitResult:
    formula, data, kw, _ = problem(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", h.DataWarning)  # gryphon: 230 records without BWT
        if solver in GENERAL:
            return fit_general(formula, data, theta=sigma2, solver=solver.removeprefix("general-"), **kw)
        return h.fit(formula, data, solver=solver, sigma2=sigma2, **kw)


@functools.cache
def dense(name: str) -> h.FitResult:
    return run(name, "dense")


def sd_y(name: str) -> float:
    _, data, _, response = problem(name)
    return float(data[response].std())


def assert_same_solution(res: h.FitResult, ref: h.FitResult, name: str, loglik: bool = True) -> None:
    """Fixed effects and every term's BLUPs (matched by id) to 1e-8 × sd(y); log L to 1e-8."""
    tol = 1e-8 * sd_y(name)
    fe, fe_ref = res.fixed_effects["estimate"], ref.fixed_effects["estimate"]
    assert list(fe.index) == list(fe_ref.index)
    np.testing.assert_allclose(fe.to_numpy(), fe_ref.to_numpy(), rtol=0, atol=tol, err_msg=f"{name}: fixed effects")
    assert sorted(res.blups) == sorted(ref.blups)
    for term, b_ref in ref.blups.items():
        b = res.blups[term]["blup"]
        assert list(b.index) == list(b_ref.index), f"{name}: {term} levels"
        np.testing.assert_allclose(b.to_numpy(), b_ref["blup"].to_numpy(), rtol=0, atol=tol, err_msg=f"{name}: {term}")
    if loglik:
        assert res.loglik == pytest.approx(ref.loglik, rel=0, abs=1e-8)


def table(solvers):
    """pytest params over data set × solver, with the slow rows marked."""
    out = []
    for name in DATASETS:
        for solver in solvers:
            marks = [pytest.mark.slow] if name in SLOW else []
            out.append(pytest.param(name, solver, marks=marks, id=f"{name}-{solver}"))
    return out


@pytest.mark.parametrize("name, solver", table(["dense", "sparse", "spectral", *GENERAL]))
def test_reml_estimates_equal_dense(name, solver):
    if (name, solver) in INAPPLICABLE:
        with pytest.raises(ModelError, match=INAPPLICABLE[name, solver]):
            run(name, solver)
        return
    ref, res = dense(name), run(name, solver)
    assert ref.solver == "dense-mme" and res.converged
    if solver in GENERAL:
        assert res.solver == solver.removeprefix("general-") + "-general"
    assert list(res.sigma2.index) == list(ref.sigma2.index)
    np.testing.assert_allclose(res.sigma2.to_numpy(), ref.sigma2.to_numpy(), rtol=1e-8, atol=0)
    assert_same_solution(res, ref, name)


@pytest.mark.parametrize("name, solver", table(SOLVERS))
def test_known_variances_equal_dense(name, solver):
    ref = dense(name)
    if (name, solver) in INAPPLICABLE:
        with pytest.raises(ModelError, match=INAPPLICABLE[name, solver]):
            run(name, solver, sigma2=ref.sigma2.to_numpy())
        return
    res = run(name, solver, sigma2=ref.sigma2.to_numpy())
    np.testing.assert_array_equal(res.sigma2.to_numpy(), ref.sigma2.to_numpy())
    # PCG reports no log-likelihood (it never factors C): NaN, not a number that looks right
    assert_same_solution(res, ref, name, loglik=solver != "pcg")
    if solver == "pcg":
        assert np.isnan(res.loglik)


def test_unknown_solver_is_an_error():
    formula, data, kw, _ = problem("potato")
    with pytest.raises(ModelError, match="solver must be 'auto', 'dense', 'spectral', 'sparse' or 'pcg', not 'qr'"):
        h.fit(formula, data, solver="qr", **kw)

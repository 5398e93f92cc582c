"""The ModelSpec the genetic models build from arrays with ids (models._align.genetic_spec
over spec.model.fixed_design / random_term / model_spec) against the one build_spec reads
from the same model written as formula text: the two routes share no parsing of the model,
so equal arrays (exactly: the same records, levels and codes; X and y to 0) show the
array route builds the model the formula means."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import mrode_example_3_1

from henderson.errors import DataError, DataWarning, ModelError
from henderson.models._align import genetic_spec, records_frame
from henderson.relationships.container import Relationship
from henderson.relationships.pedigree import pedigree_inverse
from henderson.spec.formula import add_random_terms
from henderson.spec.model import build_spec, fixed_design, model_spec, random_term


def _same(a, b):
    assert a.formula.text == b.formula.text
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.X, b.X)
    assert a.x_names == b.x_names
    assert list(a.record_index) == list(b.record_index)
    assert (a.n_dropped, a.dropped_by_column, a.aliased, a.notes) == (
        b.n_dropped,
        b.dropped_by_column,
        b.aliased,
        b.notes,
    )
    assert [t.name for t in a.terms] == [t.name for t in b.terms]
    for s, t in zip(a.terms, b.terms):
        assert type(s.covariance) is type(t.covariance)
        np.testing.assert_array_equal(s.levels, t.levels)
        np.testing.assert_array_equal(s.codes, t.codes)
        np.testing.assert_array_equal(s.k_diag, t.k_diag)
        np.testing.assert_array_equal(s.n_records, t.n_records)
        np.testing.assert_array_equal(s.covariance.as_dense(), t.covariance.as_dense())


def _G(ids, seed=1):
    rng = np.random.default_rng(seed)
    W = rng.integers(0, 3, size=(len(ids), 40)).astype(float)
    W -= W.mean(axis=0)
    K = W @ W.T / 40 + 0.05 * np.eye(len(ids))
    return Relationship.from_frame(pd.DataFrame(K, index=ids, columns=ids), kind="G")


def test_gblup_spec_with_fixed_effects_and_a_missing_covariate():
    ids = [f"L{i}" for i in range(12)]
    G = _G(ids)
    rng = np.random.default_rng(2)
    y = pd.Series(rng.normal(size=10), index=ids[:10], name="yield")
    data = pd.DataFrame({"loc": list("ababababab"), "x": rng.normal(size=10)}, index=ids[:10])
    data.loc["L3", "x"] = np.nan  # dropped and counted by both routes
    frame, formula, _, _ = records_frame(y, G.ids, fixed="loc + x", data=data)
    with pytest.warns(DataWarning, match="1 of 10 records dropped"):
        ours = genetic_spec(frame, formula, cov=G)
    with pytest.warns(DataWarning, match="1 of 10 records dropped"):
        ref = build_spec("yield ~ loc + x + (1|id)", frame, cov={"id": G})
    _same(ours, ref)
    assert ours.n_dropped == 1 and ours.terms[0].q == 12  # unphenotyped lines keep their levels


def test_pedigree_spec_with_an_extra_iid_term():
    ped, data, y = mrode_example_3_1()
    Ainv = pedigree_inverse(ped)
    data = data.assign(pen=["p1", "p2", "p1", "p2", "p1"])
    frame, formula, _, _ = records_frame(y, Ainv.ids, fixed="sex", data=data)
    formula = add_random_terms(formula, "(1|pen)")
    ours = genetic_spec(frame, formula, cov_inverse=Ainv)
    ref = build_spec("wwg ~ sex + (1|id) + (1|pen)", frame, cov_inverse={"id": Ainv})
    _same(ours, ref)
    assert sp.issparse(ours.terms[0].penalty) and ours.terms[0].q == 8


def test_random_term_names_a_level_missing_from_K():
    G = _G(["a", "b", "c"])
    with pytest.raises(DataError, match=r"'id'.*'d'"):
        random_term("id", np.array(["a", "d"], dtype=object), cov=G)


def test_model_spec_refuses_terms_of_other_records():
    frame = pd.DataFrame({"y": [1.0, 2.0, 4.0], "g": ["a", "b", "a"]})
    design = fixed_design("y", "1", frame, ["g"])
    term = random_term("g", np.array(["a", "b"], dtype=object))
    ref = build_spec("y ~ 1 + (1|g)", frame)
    with pytest.raises(ModelError, match="2 record levels for 3 records"):
        model_spec(ref.formula, design, [term])

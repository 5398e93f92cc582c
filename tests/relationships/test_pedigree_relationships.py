"""Pedigree relationships: A, A⁻¹, inbreeding, Colleau subsets, against references."""

from __future__ import annotations

import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from henderson._testing.pedigree import simulate_pedigree
from henderson.datasets.loaders import load_gryphon
from henderson.errors import DataError
from henderson.io.pedigree import read_pedigree
from henderson.relationships.pedigree import inbreeding, pedigree_inverse, pedigree_relationship

REFS = Path(__file__).parents[1] / "data" / "refs"


@pytest.fixture(scope="module")
def gryphon():
    return read_pedigree(load_gryphon().pedigree)


# --- reference: sommer's A of the gryphon pedigree -----------------------------------


def test_gryphon_A_equals_sommer(gryphon):
    ref = pd.read_csv(REFS / "A_gryphon.csv.gz", dtype={"id": str}).set_index("id")
    ref.columns = ref.columns.astype(str)
    assert len(gryphon) == 1309 and list(ref.index) == list(ref.columns)
    A = pedigree_relationship(gryphon)
    pos = A.index_of(ref.index)  # match by ids, never by position
    np.testing.assert_allclose(A.matrix[np.ix_(pos, pos)], ref.to_numpy(), rtol=0, atol=1e-10)
    assert list(A.ids) == list(load_gryphon().pedigree["id"])  # input order


def test_gryphon_inverse_inbreeding_logdet(gryphon):
    A = pedigree_relationship(gryphon).matrix
    Ainv = pedigree_inverse(gryphon)
    assert sp.isspmatrix_csr(Ainv.matrix) and Ainv.inverse and Ainv.kind == "Ainv"
    np.testing.assert_allclose(Ainv.matrix @ A, np.eye(len(A)), atol=1e-10)
    sign, logdet = np.linalg.slogdet(A)
    assert sign == 1 and Ainv.info["logdet"] == pytest.approx(logdet, abs=1e-8)
    F = inbreeding(gryphon)
    np.testing.assert_allclose(F.to_numpy(), np.diag(A) - 1, atol=1e-12)
    assert F.max() > 0


def test_gryphon_colleau_subset(gryphon):
    A = pedigree_relationship(gryphon)
    rng = np.random.default_rng(1)
    ids = list(rng.choice(A.ids, size=150, replace=False))
    sub = pedigree_relationship(gryphon, ids=ids)
    assert list(sub.ids) == ids
    np.testing.assert_allclose(sub.matrix, A.subset(ids).matrix, rtol=0, atol=1e-12)


def test_colleau_blocks_agree(gryphon, monkeypatch):
    import henderson.relationships.pedigree as mod

    ids = list(gryphon.ids[-300:])
    whole = pedigree_relationship(gryphon, ids=ids).matrix
    monkeypatch.setattr(mod, "_COLLEAU_BLOCK_BYTES", 8 * len(gryphon) * 7)  # 7-column blocks
    np.testing.assert_allclose(pedigree_relationship(gryphon, ids=ids).matrix, whole, atol=1e-14)


def test_subset_unknown_ids(gryphon):
    with pytest.raises(DataError, match="'nobody'"):
        pedigree_relationship(gryphon, ids=["1306", "nobody"])


# --- hand examples ---------------------------------------------------------------------


def mrode_3_1():
    # Mrode (2014) Example 3.1: calves 4-8, sires (1, 3, 1, 4, 3), dams (-, 2, 2, 5, 6).
    return pd.DataFrame(
        {
            "id": [str(i) for i in range(1, 9)],
            "sire": [None, None, None, "1", "3", "1", "4", "3"],
            "dam": [None, None, None, None, "2", "2", "5", "6"],
        }
    )


def test_mrode_example_3_1():
    # Derived by hand with Henderson's rules: b = 1/d is 1 for founders, 4/3 for
    # animal 4 (one parent known) and 2 for the others (non-inbred parents).
    F6 = Fraction(1, 6)
    expected = np.array(
        [
            [11, 3, 0, -4, 0, -6, 0, 0],
            [3, 12, 3, 0, -6, -6, 0, 0],
            [0, 3, 12, 0, -6, 3, 0, -6],
            [-4, 0, 0, 11, 3, 0, -6, 0],
            [0, -6, -6, 3, 15, 0, -6, 0],
            [-6, -6, 3, 0, 0, 15, 0, -6],
            [0, 0, 0, -6, -6, 0, 12, 0],
            [0, 0, -6, 0, 0, -6, 0, 12],
        ],
        dtype=float,
    ) * float(F6)
    ped = read_pedigree(mrode_3_1())
    Ainv = pedigree_inverse(ped)
    assert list(Ainv.ids) == [str(i) for i in range(1, 9)]
    np.testing.assert_allclose(Ainv.dense(), expected, atol=1e-14)
    A = pedigree_relationship(ped).matrix
    np.testing.assert_allclose(np.linalg.inv(A), expected, atol=1e-12)
    # No animal is inbred: 8 = 3 x 6 and 6 = 1 x 2, so a(3,6) = (a31 + a32)/2 = 0.
    assert (inbreeding(ped) == 0).all()
    # a78 = (a73 + a76)/2 with a73 = (a43 + a53)/2 = 1/4 and a76 = (a46 + a56)/2 = 1/4;
    # a57 = (a45 + a55)/2 with a45 = (a43 + a42)/2 = 0.
    assert A[6, 7] == 0.25 and A[4, 6] == 0.5
    d = np.array([1, 1, 1, 0.75, 0.5, 0.5, 0.5, 0.5])
    assert Ainv.info["logdet"] == pytest.approx(np.log(d).sum(), abs=1e-14)


def test_full_sib_mating_inbreeding_and_quaas():
    # 3, 4 full sibs (1 x 2); 5 = 3 x 4 has F = a34/2 = 1/4; 6 = 5 x 2 has
    # F = a(5,2)/2 = ((a32 + a42)/2)/2 = 1/4, and d6 = 1/2 - (F5 + F2)/4 = 7/16.
    df = pd.DataFrame(
        {"id": list("123456"), "sire": [None, None, "1", "1", "3", "5"], "dam": [None, None, "2", "2", "4", "2"]}
    )
    ped = read_pedigree(df)
    F = inbreeding(ped)
    np.testing.assert_allclose(F.to_numpy(), [0, 0, 0, 0, 0.25, 0.25], atol=1e-15)
    Ainv = pedigree_inverse(ped)
    b6 = 16 / 7
    assert Ainv.dense()[5, 5] == pytest.approx(b6)
    assert Ainv.dense()[4, 5] == pytest.approx(-b6 / 2)
    np.testing.assert_allclose(Ainv.dense() @ pedigree_relationship(ped).matrix, np.eye(6), atol=1e-13)
    assert Ainv.info["logdet"] == pytest.approx(np.log([1, 1, 0.5, 0.5, 0.5, 7 / 16]).sum())


# --- properties on random pedigrees (hypothesis) -------------------------------------


@st.composite
def pedigrees(draw):
    """Small random pedigrees with unknown parents, inbreeding, missing founder rows."""
    n = draw(st.integers(1, 18))
    male = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    rows = []
    for i in range(n):
        s = draw(st.integers(-1, i - 1)) if i else -1
        d = draw(st.integers(-1, i - 1)) if i else -1
        s = s if s >= 0 and male[s] else -1  # keeps sexes consistent
        d = d if d >= 0 and not male[d] else -1
        rows.append((f"a{i}", f"a{s}" if s >= 0 else None, f"a{d}" if d >= 0 else "0"))
    df = pd.DataFrame(rows, columns=["id", "sire", "dam"])
    founders = df.index[df["sire"].isna() & (df["dam"] == "0")]
    drop = draw(st.lists(st.sampled_from(list(founders)), unique=True)) if len(founders) else []
    df = df.drop(index=drop[: len(df) - 1])  # these parents come back as added founders
    perm = draw(st.permutations(range(len(df))))
    return df.iloc[list(perm)].reset_index(drop=True)


def read_quiet(df):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_pedigree(df)


@settings(max_examples=80, deadline=None)
@given(pedigrees())
def test_inverse_equals_inverse_of_tabular_A(df):
    ped = read_quiet(df)
    A = pedigree_relationship(ped)
    Ainv = pedigree_inverse(ped)
    assert list(A.ids) == list(Ainv.ids)
    np.testing.assert_allclose(Ainv.dense(), np.linalg.inv(A.matrix), rtol=0, atol=1e-10)
    np.testing.assert_allclose(inbreeding(ped).to_numpy(), np.diag(A.matrix) - 1, atol=1e-12)
    assert Ainv.info["logdet"] == pytest.approx(np.linalg.slogdet(A.matrix)[1], abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(pedigrees(), st.randoms(use_true_random=False))
def test_row_order_does_not_matter_and_colleau_matches(df, rnd):
    ped = read_quiet(df)
    A = pedigree_relationship(ped).to_frame()
    shuffled = read_quiet(df.sample(frac=1, random_state=rnd.randint(0, 10**6)))
    B = pedigree_relationship(shuffled).to_frame().loc[A.index, A.columns]
    np.testing.assert_allclose(A.to_numpy(), B.to_numpy(), atol=1e-14)
    ids = rnd.sample(list(A.index), k=rnd.randint(1, len(A)))
    np.testing.assert_allclose(pedigree_relationship(shuffled, ids=ids).matrix, A.loc[ids, ids].to_numpy(), atol=1e-12)


def test_simulated_pedigree_has_inbreeding():
    df = simulate_pedigree(2000, 8, founders=40, unknown_rate=0.05, seed=11, shuffle=True)
    ped = read_pedigree(df)
    F = inbreeding(ped)
    assert (F > 0).mean() > 0.3
    A = pedigree_relationship(ped)
    np.testing.assert_allclose(F.to_numpy(), np.diag(A.matrix) - 1, atol=1e-12)
    ids = list(df["id"].sample(200, random_state=2))
    np.testing.assert_allclose(pedigree_relationship(ped, ids=ids).matrix, A.subset(ids).matrix, atol=1e-12)
    Ainv = pedigree_inverse(ped)
    x = np.random.default_rng(0).standard_normal(len(ped))
    np.testing.assert_allclose(Ainv.matrix @ (A.matrix @ x), x, atol=1e-8)


def test_accepts_dataframe_and_rejects_other_types():
    F = inbreeding(mrode_3_1())
    assert F.name == "F" and list(F.index) == [str(i) for i in range(1, 9)]
    with pytest.raises(DataError, match="Pedigree"):
        inbreeding(np.zeros((3, 3)))


def test_subset_missing_drop(gryphon):
    from henderson.errors import AlignmentError, DataWarning

    with pytest.raises(AlignmentError, match=r"1 of 3 id\(s\) are not in the pedigree.*'nobody'.*missing='drop'"):
        pedigree_relationship(gryphon, ids=["1306", "nobody", "1"])
    with pytest.warns(DataWarning, match=r"2 of 4 id\(s\).*'x1', 'x2'; dropped them, 2 left"):
        sub = pedigree_relationship(gryphon, ids=["1306", "x1", "1", "x2"], missing="drop")
    assert list(sub.ids) == ["1306", "1"] and sub.info["n_dropped_not_in_pedigree"] == 2
    full = pedigree_relationship(gryphon).subset(["1306", "1"])
    np.testing.assert_allclose(sub.dense(), full.dense(), rtol=0, atol=1e-12)
    with pytest.raises(AlignmentError, match="no id is left"):
        pedigree_relationship(gryphon, ids=["x1"], missing="drop")

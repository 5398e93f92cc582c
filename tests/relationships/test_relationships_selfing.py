"""Plant pedigrees: selfing (sire = dam) and ids used as both sire and dam (monoecious).

References written here, independently of the kernels: the tabular rules evaluated
in plain Python, and the textbook inbreeding of repeated selfing.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import tabular_A
from hypothesis import given, settings
from hypothesis import strategies as st

from henderson.errors import PedigreeError
from henderson.io.pedigree import read_pedigree
from henderson.relationships.pedigree import inbreeding, pedigree_inverse, pedigree_relationship


def selfing_chain(generations):
    rows = [("S0", None, None)]
    for g in range(1, generations + 1):
        rows.append((f"S{g}", f"S{g - 1}", f"S{g - 1}"))
    return rows


def test_selfing_needs_monoecious_and_gives_textbook_inbreeding():
    rows = selfing_chain(8)
    df = pd.DataFrame(rows, columns=["id", "sire", "dam"])
    with pytest.raises(PedigreeError, match="both as sire and as dam.*monoecious=True"):
        read_pedigree(df)
    ped = read_pedigree(df, monoecious=True)
    F = inbreeding(ped)
    # F after n generations of selfing from a non-inbred founder: 1 - (1/2)^n
    # (Falconer & Mackay 1996, ch. 5: F_t = (1 + F_{t-1})/2). Exact in binary floating point.
    expected = [1 - 0.5**g for g in range(9)]
    np.testing.assert_array_equal(F.to_numpy(), expected)
    A = pedigree_relationship(ped)
    ref, ids = tabular_A(rows)
    assert list(A.ids) == ids
    np.testing.assert_allclose(A.dense(), ref, rtol=0, atol=1e-14)
    Ainv = pedigree_inverse(ped)
    np.testing.assert_allclose(Ainv.dense() @ ref, np.eye(9), atol=1e-9)  # A is ill-conditioned
    # d_i = 1/2 - F_s/2 for a selfed individual (Mendelian sampling of one parent's two gametes)
    d = np.array([1.0] + [0.5 - 0.5 * (1 - 0.5 ** (g - 1)) for g in range(1, 9)])
    assert Ainv.info["logdet"] == pytest.approx(np.log(d).sum(), abs=1e-12)
    sub = pedigree_relationship(ped, ids=["S8", "S3", "S5"])  # Colleau on a subset
    k = [ids.index(i) for i in ["S8", "S3", "S5"]]
    np.testing.assert_allclose(sub.dense(), ref[np.ix_(k, k)], rtol=0, atol=1e-14)


def test_monoecious_mixed_crosses_and_selfs():
    # p and q appear as sire in one row and dam in another; r is selfed; t = r x (self of q)
    rows = [
        ("p", None, None),
        ("q", None, None),
        ("r", "p", "q"),
        ("s", "q", "p"),
        ("u", "r", "r"),
        ("v", "q", "q"),
        ("t", "u", "v"),
        ("w", "s", "t"),
    ]
    df = pd.DataFrame(rows, columns=["id", "sire", "dam"]).iloc[::-1]  # any row order
    ped = read_pedigree(df, monoecious=True)
    A = pedigree_relationship(ped).to_frame()
    ref, ids = tabular_A(rows)
    np.testing.assert_allclose(A.loc[ids, ids].to_numpy(), ref, rtol=0, atol=1e-14)
    # hand values: r, s full sibs from non-inbred parents: a_rs = 1/2; u selfed from r: F = 1/2
    assert A.loc["r", "s"] == 0.5 and A.loc["u", "u"] == 1.5
    Ainv = pedigree_inverse(ped).to_frame()
    np.testing.assert_allclose(Ainv.loc[ids, ids].to_numpy() @ ref, np.eye(len(ids)), atol=1e-10)
    np.testing.assert_allclose(inbreeding(ped)[ids].to_numpy(), np.diag(ref) - 1, atol=1e-14)


@st.composite
def plant_pedigrees(draw):
    """Random plant pedigrees: any earlier individual may be either parent, selfs included."""
    n = draw(st.integers(1, 16))
    rows = []
    for i in range(n):
        s = draw(st.integers(-1, i - 1)) if i else -1
        selfed = draw(st.booleans())
        d = s if selfed else (draw(st.integers(-1, i - 1)) if i else -1)
        rows.append((f"x{i}", f"x{s}" if s >= 0 else None, f"x{d}" if d >= 0 else None))
    return rows


@settings(max_examples=60, deadline=None)
@given(plant_pedigrees(), st.randoms(use_true_random=False))
def test_random_plant_pedigrees_against_brute_force(rows, rnd):
    ref, ids = tabular_A(rows)
    df = pd.DataFrame(rows, columns=["id", "sire", "dam"]).sample(frac=1, random_state=rnd.randint(0, 10**6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ped = read_pedigree(df, monoecious=True)
    A = pedigree_relationship(ped).to_frame().loc[ids, ids].to_numpy()
    np.testing.assert_allclose(A, ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(inbreeding(ped)[ids].to_numpy(), np.diag(ref) - 1, atol=1e-12)
    Ainv = pedigree_inverse(ped).to_frame().loc[ids, ids].to_numpy()
    # A of long selfing chains is ill-conditioned (cond ~ 2^generations): tolerance relative to it
    np.testing.assert_allclose(Ainv @ ref, np.eye(len(ids)), atol=1e-8 * np.linalg.cond(ref))
    want = rnd.sample(ids, k=rnd.randint(1, len(ids)))
    k = [ids.index(i) for i in want]
    np.testing.assert_allclose(pedigree_relationship(ped, ids=want).dense(), ref[np.ix_(k, k)], atol=1e-12)

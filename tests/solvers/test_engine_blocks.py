"""The dense solver's blocked cross-products and the identifiability Gram matrix.

DenseMME never forms the diagonal term's q0 × q0 block of T'T (a one-factor model with
50,000 levels would need 20 GB). These tests rebuild everything densely by brute force
(T'T, P₀ = I − X(X'X)⁻¹X', Gₖₗ = ‖Zₖ'P₀Zₗ‖²_F) and compare. Tolerance 1e-9 relative:
the quantities are sums of O(n) products of O(1) numbers, and the blocked Gram entry of
the diagonal term is a difference of squares (Σd² − 2Σd·h + tr(WMWM)), which loses
about half of the digits only when the term is nearly absorbed by X (not the case here).
"""

import tracemalloc

import numpy as np
import pandas as pd
import pytest

import henderson as h
from henderson.reml.identifiability import dense_gram
from henderson.solvers.dense import DenseMME
from henderson.spec.model import build_spec


def _crossed(seed=0, n=300):
    rng = np.random.default_rng(seed)
    d = pd.DataFrame(
        {
            "a": rng.integers(0, 40, n).astype(str),
            "b": rng.integers(0, 7, n).astype(str),
            "x": rng.normal(size=n),
            "f": rng.choice(["u", "v", "w"], n),
        }
    )
    d["y"] = rng.normal(size=n)
    return d


@pytest.mark.parametrize("formula", ["y ~ x + f + (1|a) + (1|b)", "y ~ 1 + (1|a)", "y ~ 0 + x + (1|b) + (1|a)"])
def test_blocks_and_gram_equal_brute_force(formula):
    state = DenseMME(build_spec(formula, _crossed()))
    T = state.T.toarray()
    TtT = T.T @ T
    k0 = state.diagonal_term
    c0 = state.c0
    assert k0 is not None and len(c0) == 40  # the 40-level factor is eliminated
    others = np.setdiff1d(np.arange(T.shape[1]), c0)
    np.testing.assert_allclose(state.d0, np.diag(TtT)[c0], rtol=1e-12)
    assert np.all(TtT[np.ix_(c0, c0)] == np.diag(np.diag(TtT)[c0]))  # diagonal indeed
    np.testing.assert_allclose(state.B0, TtT[np.ix_(c0, others)], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(state.R, TtT[np.ix_(others, others)], rtol=1e-12, atol=1e-12)

    G, names, raw = dense_gram(state)
    X = state.spec.X
    P0 = np.eye(len(X)) - X @ np.linalg.pinv(X) if X.shape[1] else np.eye(len(X))
    Z = {t.name: T[:, state.offsets[k] : state.offsets[k + 1]] for k, t in enumerate(state.spec.terms)}
    M = [Z[nm] for nm in names[:-1]]
    m = len(names)
    ref = np.empty((m, m))
    for i in range(m - 1):
        for j in range(m - 1):
            ref[i, j] = np.sum((M[i].T @ P0 @ M[j]) ** 2)
        ref[i, -1] = ref[-1, i] = np.trace(M[i].T @ P0 @ M[i])
        assert raw[i] == pytest.approx(np.trace(M[i].T @ M[i]), rel=1e-12)
    ref[-1, -1] = len(X) - np.linalg.matrix_rank(X) if X.shape[1] else len(X)
    np.testing.assert_allclose(G, ref, rtol=1e-9)


def test_one_factor_with_many_levels_holds_no_square_block():
    # 20,000 levels: a dense T'T would be 20,000² × 8 B = 3.2 GB; the blocks are ~0.5 MB
    rng = np.random.default_rng(3)
    n, q = 60_000, 20_000
    g = rng.integers(0, q, n)
    d = pd.DataFrame({"g": g.astype(str), "x": rng.normal(size=n)})
    d["y"] = 1 + 0.5 * d["x"] + rng.normal(size=q)[g] + rng.normal(0, 1.4, n)
    tracemalloc.start()
    res = h.fit("y ~ x + (1|g)", d)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert res.solver == "dense-mme"
    assert peak < 200 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert 0.7 < res.sigma2["g"] < 1.3  # true 1 (sanity only; lme4 agreement is tested elsewhere)


def test_integer_ids_made_float_by_missing_values_match_a_relationship():
    # pandas makes an integer id column float when it has a missing value; ids must
    # stay '3', not '3.0', or they would not match the matrix's ids
    rng = np.random.default_rng(5)
    ids = [str(i) for i in range(1, 31)]
    K = pd.DataFrame(np.eye(30) + 0.1, index=ids, columns=ids)
    d = pd.DataFrame({"id": np.r_[np.arange(1, 31), np.arange(1, 31)].astype(float), "y": rng.normal(size=60)})
    d.loc[3, "id"] = np.nan  # one record without an id: dropped and counted
    res = h.fit("y ~ 1 + (1|id)", d, cov={"id": K}, sigma2=[1.0, 1.0])
    assert res.blups["id"].index[:3].tolist() == ["1", "2", "3"]
    assert res.n_obs == 59
    iid = h.fit("y ~ 1 + (1|id)", d, sigma2=[1.0, 1.0])
    assert iid.blups["id"].index[:3].tolist() == ["1", "2", "3"]


def test_numbers_coding_a_factor_get_a_note():
    rng = np.random.default_rng(2)
    d = pd.DataFrame(
        {
            "herd": rng.integers(1, 6, 200),
            "sex": rng.integers(1, 3, 200),
            "w": rng.normal(size=200),
            "g": rng.integers(0, 20, 200).astype(str),
        }
    )
    d["y"] = d["herd"] * 0.3 + rng.normal(size=200)
    res = h.fit("y ~ herd + sex + w + (1|g)", d)
    notes = [n for n in res.notes if "whole-number" in n]
    assert len(notes) == 1 and "C(herd)" in notes[0]  # sex has 2 values, w is continuous
    res = h.fit("y ~ C(herd) + (1|g)", d)
    assert not any("whole-number" in n for n in res.notes)

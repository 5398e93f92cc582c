"""Multi-trait CV1/CV2: the exact conditional BLUP against independent computations.

- with nothing masked, :func:`conditional_blup` (dense GLS over the observed records)
  equals the spectral solver's GEBVs at the same Σ_g, Σ_e (1e-8);
- with every trait of the test lines masked it equals the spectral fit on the training
  lines, the test lines unphenotyped levels of G (1e-8): CV1;
- with Σ_g, Σ_e diagonal the secondary traits carry no information, so CV2's prediction
  equals single-trait BLUP of the target at the same variances (1e-8);
- the single-trait column of the multi-trait CV equals ``cross_validate(GBLUP(), ...)``
  on the same folds (same folds, fair comparison).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import henderson as hd
from henderson.cv.multitrait import conditional_blup
from henderson.multitrait import fit_traits

pytestmark = pytest.mark.filterwarnings("ignore::henderson.errors.BoundaryWarning")


@pytest.fixture(scope="module")
def sim():
    rng = np.random.default_rng(8)
    n = 90
    W = rng.normal(size=(n, 200))
    K = W @ W.T / 200
    ids = [f"L{i}" for i in range(n)]
    u = np.linalg.cholesky(K + 1e-9 * np.eye(n)) @ rng.normal(size=(n, 2)) @ np.linalg.cholesky([[1, 0.7], [0.7, 1]]).T
    Y = pd.DataFrame(5 + u + rng.normal(size=(n, 2)), index=ids, columns=["y1", "y2"])
    return pd.DataFrame(K, index=ids, columns=ids), Y


SG = np.array([[1.0, 0.6], [0.6, 0.9]])
SE = np.array([[1.1, 0.2], [0.2, 0.8]])


def test_conditional_blup_equals_spectral_complete_and_cv1(sim):
    K, Y = sim
    frame = Y.reset_index(names="id")
    res = fit_traits(frame, ["y1", "y2"], "id", K, sigma=(SG, SE), pev=False)
    U, b = conditional_blup(K.to_numpy(), np.arange(len(Y)), Y.to_numpy(), SG, SE)
    np.testing.assert_allclose(U, res.gebv.loc[K.index].to_numpy(), atol=1e-8)
    np.testing.assert_allclose(b, res.fixed_effects["estimate"].to_numpy(), atol=1e-8)
    train = frame.iloc[:60]
    res_t = fit_traits(train, ["y1", "y2"], "id", K, sigma=(SG, SE), pev=False)
    Ym = Y.to_numpy().copy()
    Ym[60:] = np.nan
    U2, _ = conditional_blup(K.to_numpy(), np.arange(len(Y)), Ym, SG, SE)
    np.testing.assert_allclose(U2, res_t.gebv.loc[K.index].to_numpy(), atol=1e-8)


def test_cv2_with_diagonal_covariances_is_single_trait_blup(sim):
    K, Y = sim
    Sg, Se = np.diag(np.diag(SG)), np.diag(np.diag(SE))
    Ym = Y.to_numpy().copy()
    Ym[60:, 1] = np.nan  # y2 masked on the test lines, y1 kept
    U, _ = conditional_blup(K.to_numpy(), np.arange(len(Y)), Ym, Sg, Se)
    train = Y.iloc[:60].reset_index(names="id")
    uni = hd.fit("y2 ~ 1 + (1|id)", train, cov={"id": K}, sigma2=[Sg[1, 1], Se[1, 1]])
    np.testing.assert_allclose(U[60:, 1], uni.blups["id"].loc[K.index[60:], "blup"], atol=1e-8)


def test_cross_validate_cv2_and_cv1_side_by_side(sim):
    K, Y = sim
    cv2 = hd.cross_validate(hd.GBLUP(traits=["y1", "y2"]), K, Y, cv=3, design="CV2", target="y2", seed=4)
    assert list(cv2.summary.index) == ["y2"]
    assert {"r_multi_trait", "r_single_trait", "gain"} <= set(cv2.summary.columns)
    single = hd.cross_validate(hd.GBLUP(), K, Y["y2"], cv=3, seed=4)
    p = cv2.predictions.set_index("id")["single_trait"]
    q = single.predictions.set_index("id")["predicted_bv"]
    np.testing.assert_allclose(p.loc[q.index], q, atol=1e-8)
    # trait-assisted prediction uses the test lines' y1: it differs from CV1's
    cv1 = hd.cross_validate(hd.GBLUP(traits=["y1", "y2"]), K, Y, cv=3, design="CV1", seed=4)
    assert list(cv1.summary.index) == ["y1", "y2"]
    a = cv1.predictions.query("trait == 'y2'").set_index("id")["multi_trait"]
    b = cv2.predictions.set_index("id")["multi_trait"]
    assert np.max(np.abs(a.loc[b.index] - b)) > 1e-3
    assert cv2.summary.loc["y2", "r_multi_trait"] > cv1.summary.loc["y2", "r_multi_trait"]

"""GBLUP/SNPBLUP/PedigreeBLUP(traits=...): the estimators are faces of the multi-trait fit.

Each estimator is checked against an independent computation: the formula fit of the
same model (GBLUP), the SNP effects' identity Wβ̂_k = ĝ_k (SNP-BLUP back-solving, to
1e-8 relative), and the dense A built by the tabular method against a brute-force
recursion (pedigree BLUP equals GBLUP with K = A).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import henderson as hd
from henderson.errors import DataError

# small simulated samples often put r_g on ±1: reported by a BoundaryWarning, tested elsewhere
pytestmark = pytest.mark.filterwarnings("ignore::henderson.errors.BoundaryWarning")


@pytest.fixture(scope="module")
def sim():
    rng = np.random.default_rng(3)
    n, m = 80, 200
    M = rng.binomial(2, rng.uniform(0.1, 0.9, m), size=(n, m)).astype(float)
    ids = [f"g{i}" for i in range(n)]
    geno = hd.Genotypes.from_frame(pd.DataFrame(M, index=ids, columns=[f"s{j}" for j in range(m)]))
    W = M - M.mean(0)
    u = W @ rng.normal(size=(m, 2)) * 0.15
    y = pd.DataFrame(
        {"a": 10 + u[:, 0] + rng.normal(size=n), "b": 5 + 0.5 * u[:, 0] + u[:, 1] + rng.normal(size=n)}, index=ids
    )
    return geno, y


def test_gblup_traits_equals_formula_fit(sim):
    geno, y = sim
    est = hd.GBLUP(traits=["a", "b"]).fit(geno, y)
    G = hd.genomic_relationship(geno, method="vanraden1")
    frame = y.rename_axis("id").reset_index()
    ref = hd.fit("cbind(a, b) ~ 1 + (1|id)", frame, cov={"id": G})
    np.testing.assert_allclose(est.covariances_["genetic"], ref.covariances["id"], rtol=1e-10)
    pred = est.predict()
    assert list(pred.columns) == ["a", "b"]
    np.testing.assert_allclose(pred.loc[ref.gebv.index], ref.gebv, atol=1e-12)
    assert est.gebv_.index.names == ["id", "trait"]
    assert set(est.h2_.index) == {"a", "b"}
    # SNP effects back-solved per trait reproduce the GEBVs: ĝ_k = W β̂_k
    Wc = geno.dosages.astype(float) - 2 * est.allele_freq_
    for t in ("a", "b"):
        np.testing.assert_allclose(
            Wc @ est.snp_effects_[f"effect_{t}"].to_numpy(), pred.loc[list(geno.ids), t], rtol=1e-8, atol=1e-10
        )
    new = est.predict(geno)
    np.testing.assert_allclose(new.to_numpy(), pred.loc[new.index].to_numpy(), atol=1e-8)


def test_snpblup_traits_is_gblup_and_scales_sigma_beta(sim):
    geno, y = sim
    s = hd.SNPBLUP(traits=["a", "b"]).fit(geno, y)
    g = hd.GBLUP(traits=["a", "b"]).fit(geno, y)
    np.testing.assert_allclose(s.predict(), g.predict(), atol=1e-12)
    p = geno.allele_freq
    np.testing.assert_allclose(s.sigma2_beta_ * 2 * np.sum(p * (1 - p)), g.covariances_["genetic"], rtol=1e-12)


def test_pedigree_blup_traits_uses_dense_a():
    ped = pd.DataFrame(
        {
            "id": [f"x{i}" for i in range(40)],
            "sire": [None] * 10 + [f"x{i % 5}" for i in range(30)],
            "dam": [None] * 10 + [f"x{5 + i % 5}" for i in range(30)],
        }
    )
    rng = np.random.default_rng(1)
    y = pd.DataFrame({"p": rng.normal(size=40), "q": rng.normal(size=40)}, index=ped["id"])
    y["q"] += 0.6 * y["p"]
    est = hd.PedigreeBLUP(traits=["p", "q"]).fit(ped, y)
    A = hd.pedigree_relationship(ped)
    ref = hd.GBLUP(traits=["p", "q"]).fit(A, y)
    np.testing.assert_allclose(est.predict(), ref.predict(), atol=1e-10)
    assert est.solver_ == "multitrait-spectral"


def test_missing_traits_and_series_are_clear_errors(sim):
    geno, y = sim
    y2 = y.copy()
    y2.iloc[3, 1] = np.nan
    # a missing trait value: the general engine (observed values only: the V-form, as
    # N_obs ≤ the MME's equations), the record keeps its other trait
    est = hd.GBLUP(traits=["a", "b"]).fit(geno, y2)
    assert est.solver_ == "multitrait-vform"
    assert est.predict().shape[1] == 2
    with pytest.raises(DataError, match="needs y as a DataFrame"):
        hd.GBLUP(traits=["a", "b"]).fit(geno, y["a"])
    with pytest.raises(DataError, match=r"\['c'\] not in y"):
        hd.GBLUP(traits=["a", "c"]).fit(geno, y)

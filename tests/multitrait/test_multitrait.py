"""Multi-trait spectral REML against references and a brute-force dense REML.

- cpdata 3-trait GBLUP against the R direct dense REML (``tests/data/refs/cpdata_3trait.json``)
  at that README's tolerances: (co)variances 1e-6 scaled by √(Σ_ii Σ_jj), loglik 1e-6
  absolute, fixed effects and GEBVs 1e-6 × sd(y).
- −2 log L, score and AI at fixed θ against the same quantities computed densely on the
  stacked data (V = Σ_g ⊗ K + Σ_e ⊗ I, nt × nt) to 1e-10 (rounding in an nt = 120
  problem is ~1e-13 relative).
- The optimum against scipy.optimize maximising that dense REML.
- One trait through the multi-trait path = univariate GBLUP to 1e-8.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.optimize as so
from conftest import dense_reml

import henderson as hd
from henderson.errors import BoundaryWarning, DataError, ModelError
from henderson.multitrait import fit_formula, fit_traits
from henderson.multitrait.spectral import MultiTraitSpectral, MultiTraitTridiagonal, vech_index

REFS = Path(__file__).parents[1] / "data" / "refs"


# -- brute force ------------------------------------------------------------------------------
def simulate(n=40, t=3, seed=1, n_extra=0):
    rng = np.random.default_rng(seed)
    N = n + n_extra
    W = rng.normal(size=(N, 3 * N))
    K = W @ W.T / (3 * N)
    Sg = np.array([[1.0, 0.5, 0.2], [0.5, 2.0, -0.3], [0.2, -0.3, 0.8]])[:t, :t]
    Se = np.array([[1.0, 0.2, 0.0], [0.2, 1.5, 0.4], [0.0, 0.4, 1.2]])[:t, :t]
    u = np.linalg.cholesky(K + 1e-9 * np.eye(N)) @ rng.normal(size=(N, t)) @ np.linalg.cholesky(Sg).T
    e = rng.normal(size=(n, t)) @ np.linalg.cholesky(Se).T
    x = rng.normal(size=n)
    Y = 3.0 + u[:n] + e
    Y[:, min(1, t - 1)] += 0.7 * x
    ids = [f"i{j}" for j in range(N)]
    frame = pd.DataFrame(Y, columns=[f"y{k + 1}" for k in range(t)])
    frame.insert(0, "id", ids[:n])
    frame["x"] = x
    return frame, pd.DataFrame(K, index=ids, columns=ids)


@pytest.fixture(scope="module")
def cpdata():
    c = hd.datasets.load_cpdata()
    G = hd.genomic_relationship(hd.Genotypes.from_frame(c.markers), method="vanraden1")
    data = c.phenotypes.reset_index()
    return data, G


@pytest.fixture(scope="module")
def ref3():
    return json.loads((REFS / "cpdata_3trait.json").read_text())


# -- references -------------------------------------------------------------------------------
def test_cpdata_3trait_matches_own_reml(cpdata, ref3):
    data, G = cpdata
    ref = ref3["b_gblup_3trait"]
    # G as the reference built it (sommer A.mat on the 0/1/2 scale)
    assert float(np.mean(G.diagonal())) == pytest.approx(ref3["G"]["mean_diag"], abs=1e-12)
    traits = ["Yield", "color", "FruitAver"]
    d = data.dropna(subset=traits)
    res = hd.fit("cbind(Yield, color, FruitAver) ~ 1 + (1|id)", d, cov={"id": G})
    assert res.solver == "multitrait-spectral"
    assert res.n_obs == ref["n"] // 3 == 361
    assert res.loglik == pytest.approx(ref["loglik_reml_full"], abs=1e-6)
    Sg = np.array(ref["Sigma"]["id"]["values"])
    Se = np.array(ref["Sigma"]["units"]["values"])
    for mine, theirs in ((res.covariances["id"], Sg), (res.covariances["Residual"], Se)):
        scale = np.sqrt(np.outer(np.diag(theirs), np.diag(theirs)))
        assert np.max(np.abs(mine.loc[traits, traits].to_numpy() - theirs) / scale) < 1e-6
    rg = np.array(ref["correlations"]["id"]["values"])
    np.testing.assert_allclose(res.correlations["genetic"].loc[traits, traits], rg, atol=1e-6)
    # SEs from the inverse average information: the same matrix, evaluated at optima 1e-9
    # apart, so agreement to 1e-5 relative
    se_ref = dict(zip(ref["theta_se_avg_information"]["names"], ref["theta_se_avg_information"]["values"]))
    names = [n.replace("units:", "Residual:") for n in ref["theta"]["names"]]
    np.testing.assert_allclose(
        res.variance_components.loc[names, "se"].to_numpy(), [se_ref[n] for n in ref["theta"]["names"]], rtol=1e-5
    )
    sd = d[traits].std().to_numpy()
    fe = res.fixed_effects.xs("(Intercept)", level="coefficient").loc[traits]
    np.testing.assert_allclose(fe["estimate"], ref["fixed"]["values"], atol=1e-6 * sd.min())
    np.testing.assert_allclose(fe["se"], ref["fixed_se"]["values"], rtol=1e-5)
    b = ref["blups"]["id"]
    B = pd.DataFrame(b["values"], index=b["rownames"], columns=b["colnames"])
    mine = res.gebv.loc[B.index, B.columns]
    assert len(B) == 363  # the 2 individuals without complete records are predicted too
    assert (np.abs(mine - B).max() / d[B.columns].std()).max() < 1e-6
    text = res.summary()
    assert "records per trait: Yield 361, color 361, FruitAver 361" in text


# -- brute force at fixed θ -------------------------------------------------------------------
def test_objective_score_ai_match_dense_reml():
    frame, K = simulate(n=40, t=3)
    Y = frame[["y1", "y2", "y3"]].to_numpy()
    n = len(Y)
    Xs = [np.ones((n, 1)), np.column_stack([np.ones(n), frame["x"]]), np.ones((n, 1))]  # trait-specific
    st = MultiTraitSpectral(Y, Xs, K.to_numpy(), np.arange(n))
    Sg = np.array([[1.2, 0.3, -0.1], [0.3, 0.9, 0.2], [-0.1, 0.2, 0.5]])
    Se = np.array([[0.8, 0.1, 0.05], [0.1, 1.1, -0.2], [0.05, -0.2, 0.7]])
    m2, P, y, V = dense_reml(Y, Xs, K.to_numpy(), Sg, Se)
    assert st.m2ll(Sg, Se) == pytest.approx(m2, rel=1e-10, abs=1e-10)
    Vs = []
    for B in (K.to_numpy(), np.eye(n)):
        for k, l in vech_index(3):
            E = np.zeros((3, 3))
            E[k, l] = E[l, k] = 1
            Vs.append(np.kron(E, B))
    score = np.array([-0.5 * (np.trace(P @ Vj) - y @ P @ Vj @ P @ y) for Vj in Vs])
    ai = np.array([[0.5 * y @ P @ Vj @ P @ Vm @ P @ y for Vm in Vs] for Vj in Vs])
    np.testing.assert_allclose(st.score(Sg, Se)[0], score, atol=1e-10 * np.abs(score).max())
    np.testing.assert_allclose(st.average_information(Sg, Se), ai, atol=1e-10 * np.abs(ai).max())


def test_blups_and_pev_match_dense_with_unphenotyped_levels():
    frame, K = simulate(n=30, t=2, n_extra=6, seed=3)
    Sg = np.array([[1.0, 0.4], [0.4, 0.7]])
    Se = np.array([[0.9, -0.1], [-0.1, 1.3]])
    res = fit_traits(frame, ["y1", "y2"], "id", K, sigma=(Sg, Se), pev=True)
    n, N = 30, 36
    Kn = K.to_numpy()
    Z = np.zeros((n, N))
    Z[np.arange(n), np.arange(n)] = 1
    Y = frame[["y1", "y2"]].to_numpy()
    m2, P, y, V = dense_reml(Y, [np.ones((n, 1))] * 2, Z @ Kn @ Z.T, Sg, Se)
    Cuy = np.kron(Sg, Kn @ Z.T)  # Cov(u, y), u stacked by trait
    u = Cuy @ P @ y
    pev = np.diag(np.kron(Sg, Kn) - Cuy @ P @ Cuy.T)
    b = res.blups["id"]
    mine_u = np.concatenate([b.xs(t, level="trait").loc[K.index, "blup"] for t in ("y1", "y2")])
    mine_p = np.concatenate([b.xs(t, level="trait").loc[K.index, "pev"] for t in ("y1", "y2")])
    np.testing.assert_allclose(mine_u, u, atol=1e-10)
    np.testing.assert_allclose(mine_p, pev, atol=1e-10)
    assert res.loglik == pytest.approx(-0.5 * m2, abs=1e-9)


# -- the optimum against a generic optimiser ---------------------------------------------------
def _chol_to_sigma(v, t):
    m = t * (t + 1) // 2
    out = []
    for part in (v[:m], v[m:]):
        L = np.zeros((t, t))
        L[np.tril_indices(t)] = part
        out.append(L @ L.T)
    return out


def test_optimum_matches_scipy_on_dense_reml():
    frame, K = simulate(n=50, t=2, seed=7)
    Y = frame[["y1", "y2"]].to_numpy()
    n = len(Y)
    Xs = [np.ones((n, 1)), np.column_stack([np.ones(n), frame["x"]])]
    res = fit_traits(frame, ["y1", "y2"], "id", K, fixed={"y2": "1 + x"})

    def f(v):
        Sg, Se = _chol_to_sigma(v, 2)
        return dense_reml(Y, Xs, K.to_numpy(), Sg, Se)[0]

    best = so.minimize(
        f,
        np.array([1, 0, 1, 1, 0, 1.0]),
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000, "maxfev": 40000},
    )
    best = so.minimize(f, best.x, method="BFGS", options={"gtol": 1e-9})
    Sg, Se = _chol_to_sigma(best.x, 2)
    # ours is at least as good as the generic optimiser, and at the same point
    assert -2 * res.loglik <= best.fun + 1e-8
    assert -2 * res.loglik == pytest.approx(best.fun, abs=1e-6)
    for mine, theirs in ((res.covariances["id"], Sg), (res.covariances["Residual"], Se)):
        scale = np.sqrt(np.outer(np.diag(theirs), np.diag(theirs)))
        assert np.max(np.abs(mine.to_numpy() - theirs) / scale) < 1e-4  # BFGS on values stops ~1e-5
    assert list(res.fixed_effects.index) == [("y1", "(Intercept)"), ("y2", "(Intercept)"), ("y2", "x")]


def test_single_trait_equals_univariate_gblup():
    frame, K = simulate(n=60, t=1, seed=11)
    mt = fit_traits(frame, ["y1"], "id", K)
    uni = hd.fit("y1 ~ 1 + (1|id)", frame, cov={"id": K})
    assert mt.covariances["id"].iloc[0, 0] == pytest.approx(uni.sigma2["id"], rel=1e-8)
    assert mt.covariances["Residual"].iloc[0, 0] == pytest.approx(uni.sigma2["Residual"], rel=1e-8)
    assert mt.loglik == pytest.approx(uni.loglik, abs=1e-8)
    g = mt.blups["id"].xs("y1", level="trait")
    np.testing.assert_allclose(g["blup"], uni.blups["id"].loc[g.index, "blup"], atol=1e-8)
    np.testing.assert_allclose(g["pev"], uni.blups["id"].loc[g.index, "pev"], rtol=1e-7)
    assert mt.heritability.loc["y1", "se"] == pytest.approx(uni.variance_components.loc["id", "ratio_se"], rel=1e-6)


def test_boundary_genetic_correlation_one_is_reported_not_crashed():
    rng = np.random.default_rng(5)
    n = 120
    W = rng.normal(size=(n, 300))
    K = W @ W.T / 300
    g = np.linalg.cholesky(K + 1e-9 * np.eye(n)) @ rng.normal(size=n)
    Y = np.column_stack([g + rng.normal(size=n), 2 * g + rng.normal(size=n)])  # r_g = 1
    ids = [f"a{i}" for i in range(n)]
    frame = pd.DataFrame({"id": ids, "y1": Y[:, 0], "y2": Y[:, 1]})
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = fit_traits(frame, ["y1", "y2"], "id", pd.DataFrame(K, index=ids, columns=ids))
    r = res.correlations["id"].loc["y1", "y2"]
    Sg, Se = res.covariances["id"].to_numpy(), res.covariances["Residual"].to_numpy()
    assert np.linalg.eigvalsh(Sg).min() >= -1e-10 * np.trace(Sg) and np.linalg.eigvalsh(Se).min() > 0
    # the likelihood is as good as a generic optimiser's on the dense REML
    Xs = [np.ones((n, 1))] * 2

    def f(v):
        a, b = _chol_to_sigma(v, 2)
        return dense_reml(Y, Xs, K, a, b)[0]

    best = so.minimize(
        f,
        np.array([1, 1, 0.1, 1, 0, 1.0]),
        method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": 1e-11, "maxiter": 20000, "maxfev": 40000},
    )
    assert -2 * res.loglik <= best.fun + 1e-6
    if r > 1 - 1e-4:  # estimated on the boundary: a warning, SEs not given
        assert any(issubclass(x.category, BoundaryWarning) for x in w)
        assert "genetic" in res.boundary
        assert np.isnan(res.correlation_se["id"].loc["y1", "y2"])
    else:
        assert r > 0.9


# -- bad input ----------------------------------------------------------------------------------
def test_bad_input_names_the_culprit():
    frame, K = simulate(n=30, t=2, seed=2)
    f = frame.copy()
    f["y2"] = f["y2"].astype(object)
    f.loc[3, "y2"] = "abc"
    with pytest.raises(DataError, match="trait 'y2' is not numeric"):
        fit_traits(f, ["y1", "y2"], "id", K)
    f = frame.copy()
    f["y2"] = np.nan
    with pytest.raises(DataError, match="trait 'y2' has no records"):
        fit_traits(f, ["y1", "y2"], "id", K)
    f = frame.copy()
    f["y3"] = 2.0 * f["y1"] + 1.0
    with pytest.raises(DataError, match="'y1' and 'y3' are copies"):
        fit_traits(f, ["y1", "y2", "y3"], "id", K)
    f = frame.copy()
    f.loc[[2, 5], "y2"] = np.nan
    # records missing a trait keep the others: the general engine (here the V-form over the
    # 58 observed values, fewer than the MME's equations), no record dropped
    res = fit_traits(f, ["y1", "y2"], "id", K)
    assert res.solver == "multitrait-vform" and res.n_obs == len(f)
    assert res.n_records["y2"] == len(f) - 2


@pytest.mark.filterwarnings("ignore::henderson.errors.BoundaryWarning")  # this sample has r_g -> 1
def test_formula_routes_and_refuses_other_shapes():
    frame, K = simulate(n=30, t=2, seed=4)
    frame["block"] = np.repeat(["a", "b", "c"], 10)
    res = hd.fit("cbind(y1, y2) ~ 1 + x + (1|id)", frame, cov={"id": K})
    assert res.solver == "multitrait-spectral"
    assert ("y2", "x") in res.fixed_effects.index
    # other shapes run on the general MME (its own tests: test_multitrait_general.py)
    assert hd.fit("cbind(y1, y2) ~ 1 + diag(1|block)", frame).solver == "multitrait-mme-dense"
    with pytest.raises(ModelError, match="solver='spectral' needs exactly one random term"):
        hd.fit("cbind(y1, y2) ~ 1 + (1|id) + (1|block)", frame, cov={"id": K}, solver="spectral")
    with pytest.raises(ModelError, match="diag\\(1\\|g\\)"):
        hd.fit("cbind(y1, y2) ~ 1 + diag(x|id)", frame, cov={"id": K})
    with pytest.raises(ModelError, match="both cov= and cov_inverse="):
        fit_formula("cbind(y1, y2) ~ 1 + (1|id)", frame, cov={"id": K}, cov_inverse={"id": K})


def test_correlation_and_h2_standard_errors_by_numerical_delta_method(cpdata):
    """Delta-method SEs equal g'·vcov·g with g the central-difference gradient of r(θ), h²(θ)."""
    data, G = cpdata
    traits = ["Yield", "color", "FruitAver"]
    res = hd.fit("cbind(Yield, color, FruitAver) ~ 1 + (1|id)", data.dropna(subset=traits), cov={"id": G})
    theta = res.variance_components["estimate"].to_numpy()
    m = len(theta) // 2
    idx = vech_index(3)

    def mats(th):
        S = [np.zeros((3, 3)), np.zeros((3, 3))]
        for c in range(2):
            for x, (k, l) in zip(th[c * m : (c + 1) * m], idx):
                S[c][k, l] = S[c][l, k] = x
        return S

    def funcs(th):
        Sg, Se = mats(th)
        r = [Sg[k, l] / np.sqrt(Sg[k, k] * Sg[l, l]) for k, l in idx if k != l]
        re_ = [Se[k, l] / np.sqrt(Se[k, k] * Se[l, l]) for k, l in idx if k != l]
        h = [Sg[k, k] / (Sg[k, k] + Se[k, k]) for k in range(3)]
        return np.array(r + re_ + h)

    step = 1e-6 * np.abs(theta)
    J = np.column_stack(
        [
            (funcs(theta + np.eye(len(theta))[j] * step[j]) - funcs(theta - np.eye(len(theta))[j] * step[j]))
            / (2 * step[j])
            for j in range(len(theta))
        ]
    )
    se = np.sqrt(np.einsum("ij,jk,ik->i", J, res.vcov, J))
    pairs = [(k, l) for k, l in idx if k != l]
    mine = (
        [res.correlation_se["id"].iloc[k, l] for k, l in pairs]
        + [res.correlation_se["Residual"].iloc[k, l] for k, l in pairs]
        + list(res.heritability["se"])
    )
    np.testing.assert_allclose(mine, se, rtol=1e-6)  # central differences: ~1e-9 relative


@pytest.mark.filterwarnings("ignore::henderson.errors.BoundaryWarning")
def test_tridiagonal_and_full_eigenvectors_agree():
    """The tridiagonal evaluation (dsytrd only, U never formed in REML) = the full eigendecomposition."""
    frame, K = simulate(n=40, t=3, seed=9, n_extra=5)
    Y = frame[["y1", "y2", "y3"]].to_numpy()
    Xs = [np.ones((40, 1)), np.column_stack([np.ones(40), frame["x"]]), np.ones((40, 1))]
    codes = np.arange(40)
    full = MultiTraitSpectral(Y, Xs, K.to_numpy(), codes, vectors="full")
    tri = MultiTraitTridiagonal(Y, Xs, K.to_numpy(), codes)
    Sg = np.array([[1.2, 0.3, -0.1], [0.3, 0.9, 0.2], [-0.1, 0.2, 0.5]])
    Se = np.array([[0.8, 0.1, 0.05], [0.1, 1.1, -0.2], [0.05, -0.2, 0.7]])
    assert tri.m2ll(Sg, Se) == pytest.approx(full.m2ll(Sg, Se), rel=1e-12)
    np.testing.assert_allclose(tri.score(Sg, Se)[0], full.score(Sg, Se)[0], rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(tri.average_information(Sg, Se), full.average_information(Sg, Se), rtol=1e-9)
    a, b = tri.solve(Sg, Se, pev=False), full.solve(Sg, Se, pev=False)
    np.testing.assert_allclose(a["U_hat"], b["U_hat"], atol=1e-10)
    np.testing.assert_allclose(a["Py"], b["Py"], atol=1e-10)
    r1 = fit_traits(frame, ["y1", "y2", "y3"], "id", K, pev=False)
    r2 = fit_traits(frame, ["y1", "y2", "y3"], "id", K, pev=True)
    assert r1.loglik == pytest.approx(r2.loglik, abs=1e-9)
    np.testing.assert_allclose(r1.gebv, r2.gebv, atol=1e-8)

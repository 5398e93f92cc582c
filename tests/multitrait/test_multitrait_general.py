"""The general multi-trait MME (missing traits, several terms, diag, A⁻¹) against references.

- −2 log L at fixed θ equal to a brute-force dense REML on the stacked vector of the
  *observed* values (V built entry by entry from Σ_j, K_j and R₀; nothing from henderson)
  to 1e-10 relative, on both back ends (dense MME; supernodal sparse MME with selected
  inverse), with missing traits, two random terms (one diag), and a pedigree A⁻¹.
- Score: central differences of the brute force (step 1e-6; agreement 1e-6 relative to
  the largest score). AI: ½ y'P V_a P V_b P y computed densely, to 1e-9 relative.
- The REML optimum equal to scipy.optimize maximising the brute force (loglik 1e-7,
  θ 1e-4 scaled by √(Σ_kk Σ_ll): the generic optimiser stops near 1e-5 of the optimum).
- The general path equal to the spectral fast path on complete data to 1e-8.
- cpdata: sommer's two-trait vignette model (Yield, color; unstructured G with VanRaden's G
  and R; Rowf, Colf diagonal across traits) against the direct dense REML of
  ``tests/data/refs/structures/cpdata.json`` (a copy of ../shared/refs/structures/cpdata.json,
  block ``own``) at that README's tolerance: (co)variances 1e-6 scaled, loglik 1e-6.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.optimize as so
from conftest import load_ref, tabular_A
from threadpoolctl import threadpool_limits

import henderson as hd
from henderson.multitrait.general import GeneralTerm, MultiTraitMME

LOG2PI = np.log(2 * np.pi)


# -- brute force on the stacked observed values ----------------------------------------------
def brute_reml(Y, X_of, terms, Sigmas, R0):
    """−2 log L_REML, P and y on the stacked observed values (record by record).

    ``terms``: list of (codes (n,), K (q × q)); ``X_of(i, k)`` the fixed row of value (i, k)
    (length p, zeros outside trait k's block), or the stacked X itself.
    """
    M = ~np.isnan(Y)
    rec, tr = np.nonzero(M)
    y = Y[M]
    V = R0[tr[:, None], tr[None, :]] * (rec[:, None] == rec[None, :])
    for (codes, K), S in zip(terms, Sigmas):
        V = V + S[tr[:, None], tr[None, :]] * K[codes[rec][:, None], codes[rec][None, :]]
    X = X_of if isinstance(X_of, np.ndarray) else np.array([X_of(i, k) for i, k in zip(rec, tr)])
    Vi = np.linalg.inv(V)
    XVX = X.T @ Vi @ X
    P = Vi - Vi @ X @ np.linalg.solve(XVX, X.T @ Vi)
    N, p = X.shape
    m2ll = (N - p) * LOG2PI + np.linalg.slogdet(V)[1] + np.linalg.slogdet(XVX)[1] + y @ P @ y
    return m2ll, P, y, rec, tr


def simulate(n=120, q=40, nb=6, seed=3, missing=0.3):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(q, 2 * q))
    K = W @ W.T / (2 * q) + 0.2 * np.eye(q)
    Sg = np.array([[1.0, 0.6], [0.6, 2.0]])
    Se = np.array([[1.0, 0.3], [0.3, 1.5]])
    ids = np.array([f"i{j}" for j in range(q)])
    c1 = rng.integers(0, q, n)
    c2 = rng.integers(0, nb, n)
    u = np.linalg.cholesky(K) @ rng.normal(size=(q, 2)) @ np.linalg.cholesky(Sg).T
    b = rng.normal(size=(nb, 2)) * np.sqrt([0.8, 0.4])
    x = rng.normal(size=n)
    Y = np.array([5.0, 9.0]) + u[c1] + b[c2] + rng.normal(size=(n, 2)) @ np.linalg.cholesky(Se).T
    Y[:, 1] += 0.5 * x
    Y[rng.random((n, 2)) < missing] = np.nan
    Y[np.isnan(Y).all(axis=1), 0] = 5.0  # every record keeps a trait
    frame = pd.DataFrame({"id": ids[c1], "block": [f"b{c}" for c in c2], "x": x, "y1": Y[:, 0], "y2": Y[:, 1]})
    return frame, pd.DataFrame(K, index=ids, columns=ids), c1, c2, K, Y, x


@pytest.fixture(scope="module")
def sim():
    return simulate()


def x_rows(x):
    def X_of(i, k):  # trait k: intercept and x, 2 columns per trait
        r = np.zeros(4)
        r[2 * k] = 1.0
        r[2 * k + 1] = x[i]
        return r

    return X_of


THETA = {
    "Sigma": [np.array([[0.9, 0.4], [0.4, 1.7]]), np.diag([0.5, 0.3])],
    "Residual": np.array([[1.1, 0.2], [0.2, 1.4]]),
}


@pytest.mark.parametrize("solver", ["dense", "sparse"])
def test_m2ll_at_fixed_theta_equals_brute_force(sim, solver):
    frame, Kf, c1, c2, K, Y, x = sim
    res = hd.fit("cbind(y1, y2) ~ 1 + x + (1|id) + diag(1|block)", frame, cov={"id": Kf}, sigma2=THETA, solver=solver)
    assert res.solver == f"multitrait-mme-{solver}"
    # block levels sorted as text = codes c2 (b0..b5)
    ref, *_ = brute_reml(Y, x_rows(x), [(c1, K), (c2, np.eye(6))], THETA["Sigma"], THETA["Residual"])
    assert -2 * res.loglik == pytest.approx(ref, rel=1e-10)
    # no record dropped: every observed value is in the fit
    assert res.n_obs == len(frame)
    assert res.n_records.to_dict() == {"y1": int(frame.y1.notna().sum()), "y2": int(frame.y2.notna().sum())}
    assert np.isnan(res.residuals["y2"][frame.y2.isna()]).all()


def pedigree_case(seed=5):
    rng = np.random.default_rng(seed)
    rows = [(f"f{j}", None, None) for j in range(6)]
    for j in range(30):  # sires from even rows, dams from odd rows (dioecious)
        s, d = 2 * rng.integers(0, len(rows) // 2), 2 * rng.integers(0, len(rows) // 2) + 1
        rows.append((f"a{j}", rows[s][0], rows[d][0]))
    A, ids = tabular_A(rows)
    ped = pd.DataFrame(rows, columns=["id", "sire", "dam"])
    n = 50
    codes = rng.integers(0, len(ids), n)
    Sg = np.array([[1.0, -0.4], [-0.4, 0.8]])
    u = np.linalg.cholesky(A) @ rng.normal(size=(len(ids), 2)) @ np.linalg.cholesky(Sg).T
    Y = u[codes] + rng.normal(size=(n, 2)) + np.array([1.0, 2.0])
    Y[rng.random((n, 2)) < 0.25] = np.nan
    Y[np.isnan(Y).all(axis=1), 1] = 2.0
    frame = pd.DataFrame({"animal": np.array(ids)[codes], "y1": Y[:, 0], "y2": Y[:, 1]})
    return frame, ped, A, codes, Y


@pytest.mark.parametrize("solver", ["dense", "sparse"])
def test_m2ll_with_pedigree_inverse_equals_brute_force(solver):
    frame, ped, A, codes, Y = pedigree_case()
    Ainv = hd.pedigree_inverse(ped)
    th = {"Sigma": [np.array([[0.7, -0.2], [-0.2, 0.9]])], "Residual": np.array([[1.2, 0.1], [0.1, 0.8]])}
    res = hd.fit("cbind(y1, y2) ~ 1 + (1|animal)", frame, cov_inverse={"animal": Ainv}, sigma2=th, solver=solver)

    def X_of(i, k):
        return np.eye(2)[k]

    ref, *_ = brute_reml(Y, X_of, [(codes, A)], th["Sigma"], th["Residual"])
    assert -2 * res.loglik == pytest.approx(ref, rel=1e-10)


def test_score_and_ai_equal_brute_force(sim):
    frame, Kf, c1, c2, K, Y, x = sim
    Xs = [np.column_stack([np.ones(len(x)), x])[~np.isnan(Y[:, k])] for k in range(2)]
    terms = [
        GeneralTerm("id", c1, np.arange(K.shape[0]).astype(str), np.linalg.inv(K), np.linalg.slogdet(K)[1]),
        GeneralTerm("block", c2, np.arange(6).astype(str), None, 0.0, diag=True),
    ]
    st0 = MultiTraitMME(Y, Xs, terms, backend="dense")
    th = st0.pack(THETA["Sigma"], THETA["Residual"])

    def f(v):
        S, R = st0.unpack(v)
        return brute_reml(Y, x_rows(x), [(c1, K), (c2, np.eye(6))], S, R)[0]

    h = 1e-6
    g = np.array([(f(th + h * e) - f(th - h * e)) / (2 * h) for e in np.eye(len(th))])
    for backend in ("dense", "sparse"):
        st = MultiTraitMME(Y, Xs, terms, backend=backend)
        ev = st.evaluate(th, derivatives=True)
        assert np.max(np.abs(-0.5 * g - ev["score"])) < 1e-6 * np.max(np.abs(ev["score"]))
        # AI = ½ y'P V_a P V_b P y, V_a = ∂V/∂θ_a built densely
        m2ll, P, y, rec, tr = brute_reml(Y, x_rows(x), [(c1, K), (c2, np.eye(6))], THETA["Sigma"], THETA["Residual"])
        mats = {0: K[c1[rec]][:, c1[rec]], 1: (c2[rec][:, None] == c2[rec][None, :]).astype(float)}
        Vs = []
        for j, (k, l) in st.params:
            E = np.zeros((2, 2))
            E[k, l] = E[l, k] = 1.0
            Vs.append(E[tr[:, None], tr[None, :]] * (mats[j] if j >= 0 else (rec[:, None] == rec[None, :])))
        Py = P @ y
        AI = np.array([[0.5 * Py @ Va @ P @ Vb @ Py for Vb in Vs] for Va in Vs])
        np.testing.assert_allclose(ev["ai"], AI, rtol=1e-9, atol=1e-9 * np.abs(AI).max())


def test_reml_optimum_equals_scipy_on_brute_force():
    frame, Kf, c1, c2, K, Y, x = simulate(n=90, q=30, seed=14, missing=0.25)
    res = hd.fit("cbind(y1, y2) ~ 1 + x + (1|id)", frame, cov={"id": Kf}, solver="dense")
    assert res.converged

    def unpack(v):
        Lg = np.array([[v[0], 0], [v[1], v[2]]])
        Le = np.array([[v[3], 0], [v[4], v[5]]])
        return Lg @ Lg.T, Le @ Le.T

    M = ~np.isnan(Y)
    X = np.array([x_rows(x)(i, k) for i, k in zip(*np.nonzero(M))])

    def f(v):
        Sg, Se = unpack(v)
        return brute_reml(Y, X, [(c1, K)], [Sg], Se)[0]

    v0 = np.array([0.7, 0.3, 1.0, 0.9, 0.1, 1.0])
    with threadpool_limits(1):  # small dense algebra: threads only spin on a busy machine
        opt = so.minimize(f, v0, method="BFGS", options={"gtol": 1e-7, "maxiter": 2000})
    Sg, Se = unpack(opt.x)
    assert -2 * res.loglik <= opt.fun + 1e-7
    assert -2 * res.loglik == pytest.approx(opt.fun, abs=1e-6)
    for mine, ref in ((res.covariances["id"].to_numpy(), Sg), (res.covariances["Residual"].to_numpy(), Se)):
        scale = np.sqrt(np.outer(np.diag(ref), np.diag(ref)))
        assert np.max(np.abs(mine - ref) / scale) < 1e-4


def test_general_path_equals_fast_path_on_complete_data():
    frame, Kf, *_ = simulate(n=80, q=30, seed=7, missing=0.0)
    fast = hd.fit("cbind(y1, y2) ~ 1 + x + (1|id)", frame, cov={"id": Kf})
    gen = hd.fit("cbind(y1, y2) ~ 1 + x + (1|id)", frame, cov={"id": Kf}, solver="mme")
    assert fast.solver == "multitrait-spectral" and gen.solver == "multitrait-mme-dense"
    assert gen.loglik == pytest.approx(fast.loglik, abs=1e-8)
    for name in ("id", "Residual"):
        a, b = gen.covariances[name].to_numpy(), fast.covariances[name].to_numpy()
        scale = np.sqrt(np.outer(np.diag(b), np.diag(b)))
        assert np.max(np.abs(a - b) / scale) < 1e-8
    np.testing.assert_allclose(gen.fixed_effects["estimate"], fast.fixed_effects["estimate"], atol=1e-8)
    np.testing.assert_allclose(gen.blups["id"]["blup"], fast.blups["id"]["blup"], atol=1e-8)
    np.testing.assert_allclose(gen.blups["id"]["pev"], fast.blups["id"]["pev"], rtol=1e-7)
    np.testing.assert_allclose(
        gen.variance_components["se"], fast.variance_components["se"], rtol=1e-6
    )  # both from the inverse AI at the same optimum


def test_missing_traits_go_to_the_general_path(sim):
    frame, Kf, *_ = sim
    res = hd.fit("cbind(y1, y2) ~ 1 + (1|id)", frame, cov={"id": Kf})
    assert res.solver == "multitrait-mme-dense"
    assert res.n_obs == len(frame)


@pytest.mark.slow
def test_cpdata_vignette_two_traits_matches_own_reml():
    ref = load_ref("structures/cpdata.json")["own"]["a_vignette_2trait"]
    c = hd.datasets.load_cpdata()
    G = hd.genomic_relationship(hd.Genotypes.from_frame(c.markers), method="vanraden1")
    d = c.phenotypes.reset_index().dropna(subset=["Yield", "color"])
    d = d.assign(Rowf=d["Rowf"].astype(str), Colf=d["Colf"].astype(str))
    res = hd.fit("cbind(Yield, color) ~ 1 + (1|id) + diag(1|Rowf) + diag(1|Colf)", d, cov={"id": G})
    assert res.converged
    assert res.loglik == pytest.approx(ref["loglik_reml_full"], abs=1e-6)
    names = [n.replace("units:", "Residual:") for n in ref["theta"]["names"]]
    mine = res.variance_components.loc[names, "estimate"].to_numpy()
    theirs = np.array(ref["theta"]["values"])
    S = {k: np.array(v["values"]) for k, v in ref["Sigma"].items()}
    tr = {"Yield": 0, "color": 1}
    scale = []
    for n in ref["theta"]["names"]:
        term, a, b = n.split(":")
        scale.append(np.sqrt(S[term][tr[a], tr[a]] * S[term][tr[b], tr[b]]))
    assert np.max(np.abs(mine - theirs) / np.array(scale)) < 1e-6
    se_ref = np.array(ref["theta_se_avg_information"]["values"])
    np.testing.assert_allclose(res.variance_components.loc[names, "se"], se_ref, rtol=1e-4)


def test_pedigree_blup_traits_large_pedigree_uses_sparse_ainv(monkeypatch):
    """Above DENSE_A_MAX animals PedigreeBLUP(traits=...) fits A⁻¹ on the general MME:
    the same model as the dense-A fast path, so the same fit (1e-7; REML optima)."""
    import henderson.models.multitrait as mte

    ped = pd.DataFrame(
        {
            "id": [f"x{i}" for i in range(60)],
            "sire": [None] * 12 + [f"x{i % 6}" for i in range(48)],
            "dam": [None] * 12 + [f"x{6 + i % 6}" for i in range(48)],
        }
    )
    rng = np.random.default_rng(4)  # an interior optimum (r_g 0.70)
    A = hd.pedigree_relationship(ped).dense()
    u = np.linalg.cholesky(A) @ rng.normal(size=(60, 2)) @ np.linalg.cholesky([[1.0, 0.5], [0.5, 1.0]]).T
    y = pd.DataFrame(u + rng.normal(size=(60, 2)), columns=["p", "q"], index=ped["id"])
    dense = hd.PedigreeBLUP(traits=["p", "q"]).fit(ped, y)
    monkeypatch.setattr(mte, "DENSE_A_MAX", 10)
    sparse = hd.PedigreeBLUP(traits=["p", "q"]).fit(ped, y)
    assert dense.solver_ == "multitrait-spectral" and sparse.solver_ == "multitrait-mme-sparse"
    assert sparse.result_.loglik == pytest.approx(dense.result_.loglik, abs=1e-7)
    np.testing.assert_allclose(sparse.predict(), dense.predict(), atol=1e-5)


def test_pedigree_blup_traits_with_extra_random_term_is_the_formula_fit():
    """PedigreeBLUP(traits=..., random="(1|MOTHER)") = the cbind formula with A⁻¹ and the
    same extra term (the estimator is a face of the general fit; gryphon, BWT and TARSUS)."""
    g = hd.datasets.load_gryphon()
    rec = g.records.dropna(subset=["BWT", "TARSUS"], how="all").drop_duplicates("ANIMAL").set_index("ANIMAL")
    est = hd.PedigreeBLUP(traits=["BWT", "TARSUS"], random="(1|MOTHER)").fit(
        g.pedigree, rec[["BWT", "TARSUS"]], data=rec[["MOTHER"]]
    )
    frame = rec.reset_index().rename(columns={"ANIMAL": "id"})
    ref = hd.fit(
        "cbind(BWT, TARSUS) ~ 1 + (1|id) + (1|MOTHER)", frame, cov_inverse={"id": hd.pedigree_inverse(g.pedigree)}
    )
    assert est.solver_ == ref.solver == "multitrait-mme-sparse"
    assert est.result_.loglik == pytest.approx(ref.loglik, abs=1e-9)
    np.testing.assert_allclose(est.result_.variance_components["estimate"], ref.variance_components["estimate"])


def test_copied_trait_with_missing_values_is_a_clear_error(sim):
    frame = sim[0].copy()
    frame["y3"] = 2.0 * frame["y1"] + 1.0
    frame.loc[frame.index[:10], "y3"] = np.nan
    with pytest.raises(hd.errors.ModelError, match="'y1' and 'y3' are copies"):
        hd.fit("cbind(y1, y2, y3) ~ 1 + (1|id)", frame, cov={"id": sim[1]})


@pytest.mark.parametrize("solver", ["dense", "sparse"])
def test_diag_term_whose_levels_see_one_trait_equals_brute_force(solver):
    """A diag(1|grp) term where some levels have records of one trait only: its cross-trait
    blocks are outside C's pattern (the sparse back end must not ask for them)."""
    frame, ped, A, codes, Y = pedigree_case(seed=6)
    n = len(frame)
    grp = np.arange(n) % 4
    Y[grp == 0, 1] = np.nan  # level 0: trait 1 only
    Y[grp == 1, 0] = np.nan  # level 1: trait 2 only
    Y[np.isnan(Y).all(axis=1), 0] = 1.0
    frame = frame.assign(y1=Y[:, 0], y2=Y[:, 1], grp=[f"g{g}" for g in grp])
    th = {
        "Sigma": [np.array([[0.7, -0.2], [-0.2, 0.9]]), np.diag([0.4, 0.6])],
        "Residual": np.array([[1.2, 0.1], [0.1, 0.8]]),
    }
    res = hd.fit(
        "cbind(y1, y2) ~ 1 + (1|animal) + diag(1|grp)",
        frame,
        cov_inverse={"animal": hd.pedigree_inverse(ped)},
        sigma2=th,
        solver=solver,
    )

    def X_of(i, k):
        return np.eye(2)[k]

    ref, *_ = brute_reml(Y, X_of, [(codes, A), (grp, np.eye(4))], th["Sigma"], th["Residual"])
    assert -2 * res.loglik == pytest.approx(ref, rel=1e-10)

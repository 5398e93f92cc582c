"""The observation-space multi-trait engine (multitrait/vform.py) against references.

- At fixed θ: −2 log L equal to a brute-force dense REML on the stacked observed values
  (V built entry by entry from Σ_j, K_j, R₀ with numpy; P by explicit inverses; nothing
  from henderson) to 1e-10 relative; the score −½(tr(PV_a) − y'PV_aPy) and the AI
  ½ y'PV_aPV_bPy from the same dense P to 1e-8 relative to their largest entry; b̂ by GLS,
  BLUPs (Σ⊗K)Z'Py for every (level, trait) and PEV diag(G − GZ'PZG) to 1e-8.
  Cases: a positive definite K with a diag iid term; a singular G (rank q/2) with levels
  that have no records; a diag term whose levels see one trait only.
- The REML optimum equal to the dense MME back end's (loglik 1e-8; θ 1e-6 scaled).
- The ``auto`` rule and the identifiability error (a trait recorded only on individuals
  that have no other trait and no relationships); the three other bad-input errors
  still name their trait on the missing-traits path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import tabular_A

import henderson as hd

LOG2PI = np.log(2 * np.pi)


def brute(Y, X, terms, Sigmas, R0):
    """Dense REML pieces on the observed values stacked record by record.

    ``terms``: list of (codes (n,), K (q × q), diag); X: (N × p) stacked fixed design.
    Returns m2ll, P, y, V_a per parameter (θ order of the engine), Z per term."""
    M = ~np.isnan(Y)
    rec, tr = np.nonzero(M)
    y = Y[M]
    N = len(y)
    t = Y.shape[1]
    same = (rec[:, None] == rec[None, :]).astype(float)
    V = R0[tr[:, None], tr[None, :]] * same
    Vas, Zs = [], []
    for (codes, K, diag), S in zip(terms, Sigmas):
        Kobs = K[codes[rec]][:, codes[rec]]
        V = V + S[tr[:, None], tr[None, :]] * Kobs
        pairs = [(k, k) for k in range(t)] if diag else [(k, l) for k in range(t) for l in range(k + 1)]
        for k, l in pairs:
            E = np.zeros((t, t))
            E[k, l] = E[l, k] = 1.0
            Vas.append(E[tr[:, None], tr[None, :]] * Kobs)
        Z = np.zeros((N, K.shape[0] * t))  # column (level i, trait k) at i * t + k
        Z[np.arange(N), codes[rec] * t + tr] = 1.0
        Zs.append(Z)
    for k in range(t):
        for l in range(k + 1):
            E = np.zeros((t, t))
            E[k, l] = E[l, k] = 1.0
            Vas.append(E[tr[:, None], tr[None, :]] * same)
    Vi = np.linalg.inv(V)
    XVX = X.T @ Vi @ X
    P = Vi - Vi @ X @ np.linalg.solve(XVX, X.T @ Vi)
    p = X.shape[1]
    m2ll = (N - p) * LOG2PI + np.linalg.slogdet(V)[1] + np.linalg.slogdet(XVX)[1] + y @ P @ y
    b = np.linalg.solve(XVX, X.T @ Vi @ y)
    return dict(m2ll=m2ll, P=P, y=y, Vas=Vas, Zs=Zs, b=b, bcov=np.linalg.inv(XVX), rec=rec, tr=tr)


def make_case(kind: str, seed: int = 11):
    """Two traits, 30 % of values missing; returns frame, cov dict, formula, θ, brute terms, X."""
    rng = np.random.default_rng(seed)
    q, n = 40, 110
    ids = np.array([f"i{j:02d}" for j in range(q)])
    if kind == "singular":  # VanRaden-like: centred markers, rank q/2; 8 levels without records
        W = rng.integers(0, 3, size=(q, q // 2)).astype(float)
        W -= W.mean(axis=0)
        K = W @ W.T / (q // 2)
        codes = rng.integers(0, q - 8, n)
    else:
        W = rng.normal(size=(q, 2 * q))
        K = W @ W.T / (2 * q) + 0.2 * np.eye(q)
        codes = rng.integers(0, q, n)
    Y = (
        rng.normal(size=(n, 2))
        + np.array([3.0, -1.0])
        + (np.linalg.cholesky(K + 1e-9 * np.eye(q)) @ rng.normal(size=(q, 2)))[codes]
    )
    x = rng.normal(size=n)
    Y[rng.random((n, 2)) < 0.3] = np.nan
    grp = np.arange(n) % 5
    if kind == "one-trait-levels":
        Y[grp == 0, 1] = np.nan  # level g0 sees trait 1 only
        Y[grp == 1, 0] = np.nan  # level g1 sees trait 2 only
    Y[np.isnan(Y).all(axis=1), 0] = 3.0
    frame = pd.DataFrame({"id": ids[codes], "grp": [f"g{g}" for g in grp], "x": x, "y1": Y[:, 0], "y2": Y[:, 1]})
    Kf = pd.DataFrame(K, index=ids, columns=ids)
    th = {
        "Sigma": [np.array([[0.9, 0.35], [0.35, 1.3]]), np.diag([0.4, 0.25])],
        "Residual": np.array([[1.1, -0.2], [-0.2, 0.9]]),
    }
    formula = "cbind(y1, y2) ~ 1 + x + (1|id) + diag(1|grp)"
    M = ~np.isnan(Y)
    rec, tr = np.nonzero(M)
    X = np.zeros((len(rec), 4))
    X[np.arange(len(rec)), 2 * tr] = 1.0
    X[np.arange(len(rec)), 2 * tr + 1] = x[rec]
    terms = [(codes, K, False), (grp, np.eye(5), True)]
    return frame, {"id": Kf}, formula, th, terms, X, Y


CASES = ["pd", "singular", "one-trait-levels"]


@pytest.mark.parametrize("kind", CASES)
def test_fixed_theta_equals_brute_force(kind):
    frame, cov, formula, th, terms, X, Y = make_case(kind)
    res = hd.fit(formula, frame, cov=cov, sigma2=th, solver="vform", pev=True)
    assert res.solver == "multitrait-vform"
    ref = brute(Y, X, terms, th["Sigma"], th["Residual"])
    assert -2 * res.loglik == pytest.approx(ref["m2ll"], rel=1e-10)
    # fixed effects (trait-major: y1 (Intercept, x), y2 (Intercept, x)) and their SEs
    np.testing.assert_allclose(res.fixed_effects["estimate"], ref["b"], rtol=0, atol=1e-8 * np.abs(ref["b"]).max())
    np.testing.assert_allclose(res.fixed_effects["se"], np.sqrt(np.diag(ref["bcov"])), rtol=1e-8)
    # BLUPs and PEV for every (level, trait), levels without records included
    Py = ref["P"] @ ref["y"]
    for j, (name, (_, K, _)) in enumerate(zip(["id", "grp"], terms)):
        G = np.kron(K, th["Sigma"][j])  # (level, trait) order: level-major
        u = G @ ref["Zs"][j].T @ Py
        pev = np.diag(G - G @ ref["Zs"][j].T @ ref["P"] @ ref["Zs"][j] @ G)
        np.testing.assert_allclose(res.blups[name]["blup"], u, rtol=0, atol=1e-8 * np.abs(u).max())
        np.testing.assert_allclose(res.blups[name]["pev"], pev, rtol=0, atol=1e-8 * np.abs(pev).max())


@pytest.mark.parametrize("kind", CASES)
def test_score_and_ai_equal_brute_force(kind):
    from henderson.multitrait.general import build_terms, trait_designs_observed
    from henderson.multitrait.vform import MultiTraitVForm

    frame, cov, formula, th, terms, X, Y = make_case(kind)
    gterms = build_terms(frame, [("id", False), ("grp", True)], cov, {})
    Xs, *_ = trait_designs_observed(frame, ["y1", "y2"], "1 + x")
    st = MultiTraitVForm(Y, Xs, gterms)
    theta = st.pack(th["Sigma"], th["Residual"])
    ev = st.evaluate(theta, derivatives=True)
    ref = brute(Y, X, terms, th["Sigma"], th["Residual"])
    P, y = ref["P"], ref["y"]
    Py = P @ y
    # θ order: id (0,0), (1,0), (1,1); grp (0,0), (1,1); residual (0,0), (1,0), (1,1)
    score = np.array([-0.5 * (np.sum(P * Va) - Py @ Va @ Py) for Va in ref["Vas"]])
    AI = np.array([[0.5 * Py @ Va @ P @ Vb @ Py for Vb in ref["Vas"]] for Va in ref["Vas"]])
    assert [(j, kl) for j, kl in st.params] == [
        (0, (0, 0)),
        (0, (1, 0)),
        (0, (1, 1)),
        (1, (0, 0)),
        (1, (1, 1)),
        (-1, (0, 0)),
        (-1, (1, 0)),
        (-1, (1, 1)),
    ]
    np.testing.assert_allclose(ev["score"], score, rtol=0, atol=1e-8 * np.abs(score).max())
    np.testing.assert_allclose(ev["ai"], AI, rtol=0, atol=1e-8 * np.abs(AI).max())


@pytest.mark.parametrize("kind", CASES)
def test_reml_optimum_equals_dense_mme(kind):
    frame, cov, formula, *_ = make_case(kind, seed=21)
    v = hd.fit(formula, frame, cov=cov, solver="vform")
    d = hd.fit(formula, frame, cov=cov, solver="dense")
    assert v.solver == "multitrait-vform" and d.solver == "multitrait-mme-dense"
    assert v.converged and d.converged
    assert v.loglik == pytest.approx(d.loglik, abs=1e-8)
    for name in ("id", "grp", "Residual"):
        a, b = v.covariances[name].to_numpy(), d.covariances[name].to_numpy()
        scale = np.sqrt(np.outer(np.diag(b), np.diag(b))) + 1e-3 * np.abs(b).max()
        assert np.max(np.abs(a - b) / scale) < 1e-5
    np.testing.assert_allclose(v.blups["id"]["blup"], d.blups["id"]["blup"], atol=1e-5)
    np.testing.assert_allclose(v.blups["id"]["pev"], d.blups["id"]["pev"], rtol=1e-4)


def test_auto_takes_vform_when_observed_values_are_fewer_than_equations():
    """Rule (multitrait/vform.prefer_vform): a dense K, no K⁻¹, N_obs ≤ Σ q_j·t + p."""
    frame, cov, *_ = make_case("singular", seed=3)
    many = hd.fit("cbind(y1, y2) ~ 1 + (1|id)", frame, cov=cov)  # 40 levels
    assert many.solver == "multitrait-mme-dense"
    assert int(many.n_records.sum()) > 2 * 40 + 2
    sub = frame.iloc[:20].copy()
    sub.loc[sub.index[:4], "y2"] = np.nan  # missing traits (the spectral path needs none)
    assert int(sub[["y1", "y2"]].notna().to_numpy().sum()) <= 2 * 40 + 2
    th = {"Sigma": [np.array([[0.8, 0.3], [0.3, 1.2]])], "Residual": np.array([[1.0, 0.2], [0.2, 0.7]])}
    few = hd.fit("cbind(y1, y2) ~ 1 + (1|id)", sub, cov=cov, sigma2=th)
    assert few.solver == "multitrait-vform"
    ref = hd.fit("cbind(y1, y2) ~ 1 + (1|id)", sub, cov=cov, sigma2=th, solver="dense")
    assert few.loglik == pytest.approx(ref.loglik, abs=1e-10)


# -- bad input -------------------------------------------------------------------------
def isolated_trait_frame(n=60, seed=2):
    rng = np.random.default_rng(seed)
    ids = np.array([f"a{j}" for j in range(n)])
    Y = rng.normal(size=(n, 3)) + 1.0
    Y[:40, 2] = np.nan  # y3 only on a40..a59 ...
    Y[40:, :2] = np.nan  # ... which have no other trait
    Y[:, :2][rng.random((n, 2)) < 0.2] = np.nan
    Y[np.isnan(Y).all(axis=1), 0] = 1.0
    return pd.DataFrame({"id": ids, "y1": Y[:, 0], "y2": Y[:, 1], "y3": Y[:, 2]})


def test_trait_on_isolated_individuals_iid_term_is_named():
    frame = isolated_trait_frame()
    with pytest.raises(hd.errors.ModelError, match=r"trait 'y3' is recorded only on 20 individual\(s\) \(id\)"):
        hd.fit("cbind(y1, y2, y3) ~ 1 + (1|id)", frame)


def test_trait_on_unrelated_founders_pedigree_is_named():
    """y3 on founders without progeny (no relationships in A⁻¹); the others on a family."""
    frame = isolated_trait_frame()
    rows = [(f"a{j}", None, None) for j in range(4)] + [(f"a{j}", "a0", "a1" if j % 2 else "a3") for j in range(4, 40)]
    rows += [(f"a{j}", None, None) for j in range(40, 60)]
    ped = pd.DataFrame(rows, columns=["id", "sire", "dam"])
    Ainv = hd.pedigree_inverse(ped)
    with pytest.raises(hd.errors.ModelError, match=r"trait 'y3' is recorded only on 20 individual\(s\)"):
        hd.fit("cbind(y1, y2, y3) ~ 1 + (1|id)", frame, cov_inverse={"id": Ainv})
    # one y3 animal made a progeny of a0: y3 is now linked to the family, no error
    rows[45] = ("a45", "a0", None)
    A, ids = tabular_A(rows)
    Af = pd.DataFrame(A, index=ids, columns=ids)
    res = hd.fit("cbind(y1, y2, y3) ~ 1 + (1|id)", frame, cov={"id": Af}, max_iter=3)
    assert res.solver.startswith("multitrait-")


def test_trait_on_separate_individuals_related_through_g_is_fitted():
    frame = isolated_trait_frame()
    rng = np.random.default_rng(0)
    W = rng.normal(size=(60, 120))
    K = pd.DataFrame(W @ W.T / 120, index=frame["id"], columns=frame["id"])
    res = hd.fit("cbind(y1, y2, y3) ~ 1 + (1|id)", frame, cov={"id": K}, max_iter=2)
    assert res.n_records["y3"] == 20


def test_other_bad_inputs_name_the_trait_on_the_missing_traits_path():
    frame = isolated_trait_frame()
    frame.loc[frame.index[:10], "y3"] = 1.0  # y3 linked to the others now
    bad = frame.assign(y2=frame["y2"].astype(object))
    bad.loc[bad.index[3], "y2"] = "n/a"
    with pytest.raises(hd.errors.DataError, match="trait 'y2' is not numeric"):
        hd.fit("cbind(y1, y2, y3) ~ 1 + (1|id)", bad)
    with pytest.raises(hd.errors.DataError, match="trait 'y2' has no records"):
        hd.fit("cbind(y1, y2, y3) ~ 1 + (1|id)", frame.assign(y2=np.nan))
    with pytest.raises(hd.errors.ModelError, match="'y1' and 'y4' are copies"):
        hd.fit("cbind(y1, y2, y4) ~ 1 + (1|id)", frame.assign(y4=3.0 * frame["y1"] - 2.0))


@pytest.mark.parametrize("kind", CASES)
def test_em_step_equals_the_mme_engines(kind):
    """The EM fallback step from the V-form's pieces (Σ S'KS Σ + rΣ − ΣTΣ, rank K by
    pivoted Cholesky; Σ_i ê_iê_i' + mR_o − R_oΣP_iiR_o) equals the MME engine's
    (Û'K⁻¹Û + tr(K⁻¹C^{uu}) with K = LL' from the eigendecomposition) to 1e-10."""
    from henderson.multitrait.general import MultiTraitMME, build_terms, trait_designs_observed
    from henderson.multitrait.vform import MultiTraitVForm

    frame, cov, formula, th, terms, X, Y = make_case(kind)
    Xs, *_ = trait_designs_observed(frame, ["y1", "y2"], "1 + x")
    sv = MultiTraitVForm(Y, Xs, build_terms(frame, [("id", False), ("grp", True)], cov, {}))
    sm = MultiTraitMME(Y, Xs, build_terms(frame, [("id", False), ("grp", True)], cov, {}), backend="dense")
    theta = sv.pack(th["Sigma"], th["Residual"])
    ev, em = sv.evaluate(theta, derivatives=True), sm.evaluate(theta, derivatives=True)
    assert sv.em_divisor(0) == sm.terms[0].r == (20 if kind == "singular" else 40)
    a, b = sv.em_update(ev), sm.em_update(em)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * np.abs(b).max())

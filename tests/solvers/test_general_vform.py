"""The V-form general engine (solvers/general_vform.py) against brute-force V algebra and the C-form.

1. At fixed θ (REML and ML), −2 log L, the score, the AI matrix, b̂, the BLUPs and their PEV
   equal a brute-force computation written here: V = Σ_ab Σ[a, b] (zₐzᵦ') ∘ K[g, g] (+ an iid
   block term) + R built from the data columns, P = V⁻¹ − V⁻¹X(X'V⁻¹X)⁻¹X'V⁻¹, the score
   −½[tr(PV̇ⱼ) − y'PV̇ⱼPy] (ML: V⁻¹ in the trace), AI ½y'PV̇ᵢPV̇ⱼPy (ML: V⁻¹ in the middle),
   û = Cov(u, y)Py and PEV = diag(Var(u) − Cov(u, y)P Cov(y, u)), each from explicit
   n × n matrices. V̇ⱼ is a central difference of V(θ) with step 1: exact, because V is
   at most quadratic in θ (FA loadings). Tolerances: −2 log L 1e-10 relative; score,
   AI, b̂, BLUPs, PEV 1e-8 relative (two O(n³) computations on n ≈ 150 in double precision).
2. Fitted models equal the dense C-form general engine (loglik 1e-8 absolute, θ 1e-6
   scaled by √(ΣᵢᵢΣⱼⱼ)) on the potato MET (shared references, K = I) and on a small
   simulated genomic MET with G; the V-form fit also meets the shared potato references.
3. ``solver="auto"`` routes the genomic MET (n < 0.8 Σ Sq) to the V-form; a K⁻¹ term is refused.
4. The EM targets equal the C-form's (from C⁻¹) to 1e-10; a rank-1 Σ, which the C-form
   refuses, evaluates to the brute force; both V⁻¹ routines equal numpy's inverse.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import load_ref

import henderson as h
from henderson.datasets import load_potato
from henderson.errors import ModelError
from henderson.solvers.protocol import prepare
from henderson.spec.terms import build_general_spec

LOG2PI = np.log(2 * np.pi)
ENVS = ["E1", "E2", "E3", "E4"]


def _data(seed=3, n_lev=30, p_obs=0.7):
    """Seeded plots: n_lev lines × 4 environments (1-2 plots per observed cell), a covariate
    x, an iid block factor, weights and a dense K over the lines."""
    rng = np.random.default_rng(seed)
    lev = [f"L{i:02d}" for i in range(n_lev)]
    rows = [(g, e) for g in lev for e in ENVS if rng.random() < p_obs for _ in range(1 + (rng.random() < 0.4))]
    d = pd.DataFrame(rows, columns=["g", "env"])
    n = len(d)
    d["x"] = rng.uniform(-1, 1, n).round(2)
    d["block"] = rng.choice(list("abcdef"), n)
    d["w"] = rng.uniform(0.5, 2.0, n)
    B = rng.normal(size=(n_lev, n_lev // 2))
    K = B @ B.T / (n_lev // 2) + 0.2 * np.eye(n_lev)  # a G-like dense K
    d["y"] = rng.normal(size=n) * 2 + 3 * pd.Index(ENVS).get_indexer(d["env"])
    return d, pd.DataFrame(K, index=lev, columns=lev)


def _us(v, S):
    """Σ from θ in ASReml row order (1:1, 2:1, 2:2, 3:1, ...)."""
    M = np.zeros((S, S))
    M[np.tril_indices(S)] = v
    return M + np.tril(M, -1).T


def _case(name):
    """(formula, kwargs, θ, V(θ) from the data columns, fixed X, [(term, Cov(u,y)(θ), Var(u) diag(θ))])."""
    d, K = _data()
    n = len(d)
    Kn = K.to_numpy()
    gi = pd.Index(K.index).get_indexer(d["g"])
    E = (d["env"].to_numpy()[:, None] == np.array(ENVS)[None, :]).astype(float)
    Zg = np.zeros((n, len(K)))
    Zg[np.arange(n), gi] = 1.0
    bl = sorted(d["block"].unique())
    Zb = (d["block"].to_numpy()[:, None] == np.array(bl)[None, :]).astype(float)
    x, w = d["x"].to_numpy(), d["w"].to_numpy()
    Xenv = np.column_stack([np.ones(n), E[:, 1:]])
    Xx = np.column_stack([np.ones(n), x])

    def genetic(Sig, zs):
        """V part and Cov(vec U, y) (S q × n, component-major) of Σ ⊗ K on loadings zs."""
        S = len(zs)
        Zs = [z[:, None] * Zg for z in zs]
        V = sum(Sig[a, b] * Zs[a] @ Kn @ Zs[b].T for a in range(S) for b in range(S))
        C = np.vstack([sum(Sig[a, b] * Kn @ Zs[b].T for b in range(S)) for a in range(S)])
        return V, C, np.concatenate([Sig[a, a] * np.diag(Kn) for a in range(S)])

    kw = {"cov": {"g": K}}
    env = [E[:, a] for a in range(4)]
    if name == "us_K_hetres":
        f, X = "y ~ env + us(0 + env|g)", Xenv
        kw["residual"] = "env"
        th = np.array([3.0, 1.0, 2.0, 0.5, 0.8, 2.5, 1.2, 0.2, 0.4, 3.5, 1.0, 1.5, 0.7, 2.0])

        def parts(t):
            V, C, dg = genetic(_us(t[:10], 4), env)
            return V + np.diag(E @ t[10:]), [("g", C, dg)]
    elif name == "diag_K_weights":
        f, X = "y ~ env + diag(0 + env|g)", Xenv
        kw["weights"] = "w"
        th = np.array([3.0, 2.0, 1.0, 2.5, 1.5])

        def parts(t):
            V, C, dg = genetic(np.diag(t[:4]), env)
            return V + np.diag(t[4] / w), [("g", C, dg)]
    elif name == "cs_K":
        f, X = "y ~ env + cs(0 + env|g)", Xenv
        th = np.array([3.0, 1.2, 1.5])

        def parts(t):
            V, C, dg = genetic(np.full((4, 4), t[1]) + np.eye(4) * (t[0] - t[1]), env)
            return V + t[2] * np.eye(n), [("g", C, dg)]
    elif name == "fa1_K_hetres":
        f, X = "y ~ env + fa(0 + env|g, 1)", Xenv
        kw["residual"] = "env"
        th = np.array([1.5, 1.0, 1.2, 0.6, 0.8, 0.5, 1.0, 0.7, 1.3, 0.9, 1.1, 1.4])

        def parts(t):
            V, C, dg = genetic(np.outer(t[:4], t[:4]) + np.diag(t[4:8]), env)
            return V + np.diag(E @ t[8:]), [("g", C, dg)]
    elif name == "us_slopes_K":  # two components on every record: the pair-space path
        f, X = "y ~ x + (x|g)", Xx
        th = np.array([4.0, -0.3, 0.5, 2.0])

        def parts(t):
            V, C, dg = genetic(_us(t[:3], 2), [np.ones(n), x])
            return V + t[3] * np.eye(n), [("g", C, dg)]
    elif name == "us_K_plus_iid_block":  # a second term whose records are not in blocks
        f, X = "y ~ env + us(0 + env|g) + (1|block)", Xenv
        th = np.array([3.0, 1.0, 2.0, 0.5, 0.8, 2.5, 1.2, 0.2, 0.4, 3.5, 0.6, 1.5])

        def parts(t):
            V, C, dg = genetic(_us(t[:10], 4), env)
            Cb = t[10] * Zb.T
            return V + t[10] * Zb @ Zb.T + t[11] * np.eye(n), [("g", C, dg), ("block", Cb, np.full(len(bl), t[10]))]
    else:
        raise KeyError(name)
    return f, kw, d, th, parts, X


CASES = ["us_K_hetres", "diag_K_weights", "cs_K", "fa1_K_hetres", "us_slopes_K", "us_K_plus_iid_block"]


def _brute(y, X, parts, th, method):
    V, terms = parts(th)
    n, p = X.shape
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    P = Vi - Vi @ X @ np.linalg.solve(XtViX, X.T @ Vi)
    ld = np.linalg.slogdet(V)[1]
    if method == "reml":
        m2ll = (n - p) * LOG2PI + ld + np.linalg.slogdet(XtViX)[1] + y @ P @ y
    else:
        m2ll = n * LOG2PI + ld + y @ P @ y
    Py = P @ y
    Mid = P if method == "reml" else Vi
    dV = []
    for j in range(len(th)):
        e = np.zeros(len(th))
        e[j] = 1.0
        dV.append((parts(th + e)[0] - parts(th - e)[0]) / 2)
    score = np.array([-0.5 * (np.sum(Mid * D) - Py @ D @ Py) for D in dV])
    ai = np.array([[0.5 * (Di @ Py) @ Mid @ (Dj @ Py) for Dj in dV] for Di in dV])
    b = np.linalg.solve(XtViX, X.T @ Vi @ y)
    blups = {t: C @ Py for t, C, _ in terms}
    pev = {t: dg - np.einsum("ij,jk,ik->i", C, P, C) for t, C, dg in terms}
    return m2ll, score, ai, b, blups, pev


@pytest.mark.parametrize("method", ["reml", "ml"])
@pytest.mark.parametrize("name", CASES)
def test_vform_equals_brute_force_v_algebra(name, method):
    f, kw, d, th, parts, X = _case(name)
    spec = build_general_spec(f, d, **kw)
    np.testing.assert_array_equal(spec.X, X)  # the same fixed design (column order)
    prepared = prepare(spec, "general_vform")
    ev = prepared.evaluate(th, method=method, derivatives=True, pev=True)
    m2ll, score, ai, b, blups, pev = _brute(spec.y, X, parts, th, method)
    assert ev.m2ll == pytest.approx(m2ll, rel=1e-10)
    np.testing.assert_allclose(ev.score, score, rtol=1e-8, atol=1e-8 * np.max(np.abs(score)))
    np.testing.assert_allclose(ev.ai, ai, rtol=1e-8, atol=1e-8 * np.max(np.abs(ai)))
    np.testing.assert_allclose(ev.fixed, b, rtol=1e-8, atol=1e-10)
    for t in spec.terms:
        got_u = np.asarray(ev.blups[t.name]).T.ravel()  # (q, S) → component-major
        got_p = np.asarray(ev.pev[t.name]).T.ravel()
        np.testing.assert_allclose(got_u, blups[t.name], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(got_p, pev[t.name], rtol=1e-8, atol=1e-10)


def test_vform_score_and_trial_evaluation_agree():
    """The optimiser's path: an evaluation without derivatives completed later from its
    kept factor equals a full evaluation (twice: the factor is not consumed)."""
    f, kw, d, th, parts, X = _case("us_K_hetres")
    from henderson.solvers.general_vform import GeneralVForm

    st = GeneralVForm(build_general_spec(f, d, **kw))
    full = st.evaluate(th, derivatives=True)
    bare = st.evaluate(th)
    assert bare.score is None and bare.m2ll == full.m2ll
    for _ in range(2):
        done = st.with_derivatives(bare)
        np.testing.assert_array_equal(done.score, full.score)
        np.testing.assert_array_equal(done.ai, full.ai)


def _theta_scaled_diff(a, b) -> float:
    """max |θa − θb| / √(ΣᵢᵢΣⱼⱼ) (variances scaled by themselves), over shared names."""
    ta, tb = a.variance_components, b.variance_components
    out = 0.0
    for name in ta.index:
        row = ta.loc[name]
        if row["term"] == "Residual" or row["type"] in ("loading",):
            scale = abs(row["estimate"])
        else:
            S = a.covariances[row["term"]]
            ci = row["component_i"]
            cj = row["component_j"] if row["component_j"] is not None else ci
            scale = np.sqrt(S.loc[ci, ci] * S.loc[cj, cj]) if ci is not None else abs(row["estimate"])
        out = max(out, abs(row["estimate"] - tb.loc[name, "estimate"]) / max(scale, 1e-300))
    return out


POTATO_MODELS = {
    "b_DIAG": ("Yield ~ Env + diag(0 + Env|Name)", {}),
    "c_US": ("Yield ~ Env + us(0 + Env|Name)", {}),
    "d_DIAG_hetres": ("Yield ~ Env + diag(0 + Env|Name)", {"residual": "Env"}),
    "e_US_hetres": ("Yield ~ Env + (0 + Env|Name)", {"residual": "Env"}),
}


@pytest.mark.parametrize("model", list(POTATO_MODELS))
def test_vform_fit_equals_c_form_on_potato_met(model):
    d = load_potato()
    f, kw = POTATO_MODELS[model]
    c = h.fit(f, d, solver="dense", **kw)
    v = h.fit(f, d, solver="vform", **kw)
    assert c.solver == "dense-general" and v.solver == "vform-general"
    assert v.loglik == pytest.approx(c.loglik, abs=1e-8)
    assert _theta_scaled_diff(c, v) < 1e-6
    # the shared reference (own dense REML in R): loglik 1e-6, θ 1e-6 scaled (references' README)
    own = load_ref("structures/dt_example.json")["own"][model]
    assert v.loglik == pytest.approx(own["loglik_reml_full"], abs=1e-6)
    theta = pd.Series(own["theta"]["values"], index=own["theta"]["names"])
    est = v.variance_components["estimate"]
    for nm, val in theta.items():
        parts_ = nm.split(":")
        if len(parts_) == 3:
            S = own["Sigma"][parts_[0]]
            Sm = pd.DataFrame(S["values"], index=S["rownames"], columns=S["colnames"])
            scale = np.sqrt(Sm.loc[parts_[1], parts_[1]] * Sm.loc[parts_[2], parts_[2]])
        else:
            scale = abs(val)
        assert abs(est[nm] - val) / scale < 1e-6, nm
    # BLUPs, PEVs and SEs of the two engines agree (same optimum, different algebra)
    np.testing.assert_allclose(v.blups["Name"]["blup"], c.blups["Name"]["blup"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v.blups["Name"]["pev"], c.blups["Name"]["pev"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v.fixed_effects["se"], c.fixed_effects["se"], rtol=1e-5)
    np.testing.assert_allclose(v.residuals, c.residuals, rtol=0, atol=1e-6 * d["Yield"].std())


def _genomic_met(seed=7, lines=60, envs=4, p_obs=0.6, markers=400):
    """Seeded genomic MET: VanRaden G from simulated markers, us Σ across environments,
    60 % of line × environment cells observed, y simulated from the model."""
    rng = np.random.default_rng(seed)
    M = rng.binomial(2, rng.uniform(0.1, 0.9, markers), size=(lines, markers)).astype(float)
    pfreq = M.mean(0) / 2
    W = M - 2 * pfreq
    G = W @ W.T / (2 * np.sum(pfreq * (1 - pfreq))) + 0.01 * np.eye(lines)
    ids = [f"line{i:03d}" for i in range(lines)]
    env = [f"env{j}" for j in range(envs)]
    A = rng.normal(size=(envs, envs))
    Sig = 0.6 * A @ A.T / envs + 0.6 * np.eye(envs)
    U = np.linalg.cholesky(G) @ rng.normal(size=(lines, envs)) @ np.linalg.cholesky(Sig).T
    cells = [(i, j) for i in range(lines) for j in range(envs) if rng.random() < p_obs]
    li = np.array([c[0] for c in cells])
    ej = np.array([c[1] for c in cells])
    y = 5 + ej + U[li, ej] + rng.normal(size=len(cells))
    d = pd.DataFrame({"Name": np.array(ids)[li], "Env": np.array(env)[ej], "y": y})
    return d, pd.DataFrame(G, index=ids, columns=ids)


def test_vform_fit_equals_c_form_on_simulated_genomic_met():
    d, G = _genomic_met()
    f = "y ~ Env + us(0 + Env|Name)"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # both converge in the interior: no warning
        c = h.fit(f, d, cov={"Name": G}, solver="dense")
        v = h.fit(f, d, cov={"Name": G})
    assert v.solver == "vform-general"  # auto: n = 144 < 0.8 × 4 × 60 random equations
    assert c.converged and v.converged
    assert v.loglik == pytest.approx(c.loglik, abs=1e-8)
    assert _theta_scaled_diff(c, v) < 1e-6
    np.testing.assert_allclose(v.blups["Name"]["pev"], c.blups["Name"]["pev"], rtol=1e-5)


def test_auto_keeps_c_form_when_records_outnumber_equations():
    d, G = _genomic_met(lines=20, p_obs=1.0)
    d = pd.concat([d, d.assign(y=d["y"] + 0.3)], ignore_index=True)  # 160 records > 0.8 × 80
    res = h.fit("y ~ Env + diag(0 + Env|Name)", d, cov={"Name": G})
    assert res.solver == "dense-general"


def test_vform_refuses_an_inverse_covariance_by_name():
    d, G = _genomic_met(lines=20)
    Ginv = h.Relationship(list(G.index), sp.csr_matrix(np.linalg.inv(G.to_numpy())), inverse=True)
    with pytest.raises(ModelError, match=r"'Name' enters through K⁻¹"):
        h.fit("y ~ Env + us(0 + Env|Name)", d, cov_inverse={"Name": Ginv}, solver="vform")


def test_vform_memory_check_says_how_much():
    from henderson.solvers.general_vform import check_vform_memory, vform_bytes
    from henderson.solvers.memory import InsufficientMemoryError

    d, G = _genomic_met(lines=20)
    spec = build_general_spec("y ~ Env + us(0 + Env|Name)", d, cov={"Name": G})
    assert vform_bytes(spec) == 8 * 5 * spec.n**2  # K̃ (N = n: one component per record) + 4 n × n
    check_vform_memory(spec, available=10 * vform_bytes(spec))
    with pytest.raises(InsufficientMemoryError, match=f"{spec.n:,} records"):
        check_vform_memory(spec, available=vform_bytes(spec))


def test_vform_is_exact_on_a_rank_deficient_sigma():
    """Σ of rank 1 (the boundary REML often reaches): the C-form needs Σ⁻¹ and refuses it,
    the V-form needs only V, and equals the brute force there (1e-10 / 1e-8)."""
    f, kw, d, _, parts, X = _case("us_K_hetres")
    lam = np.array([1.5, -0.5, 1.0, 0.8])
    S = np.outer(lam, lam)
    th = np.concatenate([S[np.tril_indices(4)], [1.0, 1.5, 0.7, 2.0]])
    spec = build_general_spec(f, d, **kw)
    with pytest.raises(h.errors.NotPositiveDefiniteError):
        prepare(spec, "general").evaluate(th)
    ev = prepare(spec, "general_vform").evaluate(th, derivatives=True)
    m2ll, score, ai, b, _, _ = _brute(spec.y, X, parts, th, "reml")
    assert ev.m2ll == pytest.approx(m2ll, rel=1e-10)
    np.testing.assert_allclose(ev.score, score, rtol=1e-8, atol=1e-8 * np.max(np.abs(score)))
    np.testing.assert_allclose(ev.ai, ai, rtol=1e-8, atol=1e-8 * np.max(np.abs(ai)))


@pytest.mark.parametrize("how", ["dpotri", "dsyrk"])
def test_both_inverses_of_v_equal_numpy(how):
    from scipy.linalg import lapack

    from henderson.solvers.general_vform import _inverse_from_cholesky

    rng = np.random.default_rng(5)
    A = rng.normal(size=(300, 200))
    V = np.asfortranarray(A @ A.T / 200 + np.eye(300))
    L, _ = lapack.dpotrf(V, lower=1, clean=0)  # upper triangle left as V's: must be ignored
    np.testing.assert_allclose(_inverse_from_cholesky(L, how), np.linalg.inv(V), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", ["reml", "ml"])
@pytest.mark.parametrize("name", ["us_K_hetres", "fa1_K_hetres", "us_slopes_K", "us_K_plus_iid_block"])
def test_vform_em_targets_equal_the_c_form(name, method):
    """The EM-REML targets (the optimiser's fallback step): the V-form's Σ − Σ(T − Q)Σ/r
    and σ² − σ⁴(tr − quad)/n_g equal the C-form's (Q + T)/r and (ê'Dê + tr(C⁻¹M))/n_g,
    computed there from C⁻¹, to 1e-10 relative."""
    from henderson.solvers.general import GeneralMME
    from henderson.solvers.general_vform import GeneralVForm

    f, kw, d, th, _, _ = _case(name)
    spec = build_general_spec(f, d, **kw)
    c = GeneralMME(spec).evaluate(th, method=method, derivatives=True).em
    v = GeneralVForm(spec).evaluate(th, method=method, derivatives=True).em
    for a, b in zip(c["terms"], v["terms"]):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10 * np.max(np.abs(a)))
    np.testing.assert_allclose(v["residual"], c["residual"], rtol=1e-10)


@pytest.mark.parametrize("n", [300, 1100])  # one block of 512, and three
def test_mirror_lower_copies_the_lower_triangle(n):
    from henderson.solvers.general_vform import _mirror_lower

    A = np.asfortranarray(np.random.default_rng(n).normal(size=(n, n)))
    expected = np.tril(A) + np.tril(A, -1).T
    _mirror_lower(A)
    np.testing.assert_array_equal(A, expected)

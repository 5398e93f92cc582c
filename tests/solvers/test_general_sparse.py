"""The sparse general engine against the dense general engine, finite differences and Mrode.

1. At fixed θ, −2 log L, score and AI of ``GeneralSparseMME`` equal those of the dense
   ``GeneralMME`` (REML and ML) to 1e-10 relative: both are exact, from different
   factorisations (supernodal sparse with METIS vs dense LAPACK) of the same C, whose
   rounding differs by ~1e-13. The dense engine is itself checked against a brute-force
   V-based likelihood in test_structures_bruteforce.py.
2. The full REML fit on the sparse engine equals the dense engine's fit to 1e-8.
3. The score equals central differences of −½(−2 log L) (relative 1e-5: the step error).
4. Mrode (2014) Example 8.1 (maternal animal model): the book's printed solutions.
"""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import henderson as h
from henderson.datasets import load_gryphon
from henderson.solvers.general import GeneralMME
from henderson.solvers.general_sparse import GeneralSparseMME
from henderson.spec.terms import build_general_spec

ENVS = ["E1", "E2", "E3", "E4"]


def _data(seed=1, n_lev=20, p_obs=0.8):
    """Seeded plots of n_lev levels × 4 environments (1-2 plots per observed cell), a
    covariate x, a random dam among the levels, weights, and a level covariance K."""
    rng = np.random.default_rng(seed)
    lev = [f"L{i:02d}" for i in range(n_lev)]
    rows = [(g, e) for g in lev for e in ENVS if rng.random() < p_obs for _ in range(1 + (rng.random() < 0.5))]
    d = pd.DataFrame(rows, columns=["g", "env"])
    n = len(d)
    d["x"] = rng.uniform(1, 30, n).round(1)
    d["dam"] = rng.choice(lev, n)
    d["w"] = rng.uniform(0.5, 2.0, n)
    B = rng.normal(size=(n_lev, n_lev + 6))
    K = pd.DataFrame(B @ B.T / (n_lev + 6) + 0.3 * np.eye(n_lev), index=lev, columns=lev)
    gi = pd.Index(lev).get_indexer(d["g"])
    env = pd.Index(ENVS).get_indexer(d["env"])
    ug = rng.normal(size=(n_lev, 4)) * [1.5, 1.0, 1.2, 0.8]
    y = 10 + 2 * env + 0.1 * d["x"].to_numpy() + ug[gi, env] + 0.3 * d["x"].to_numpy() * ug[gi, 0] / 5
    d["y"] = y + rng.normal(size=n) * 1.2 + ug[pd.Index(lev).get_indexer(d["dam"]), 1] * 0.7
    return d, K


def _cases():
    d, K = _data()
    lev = list(K.index)
    Kinv = h.Relationship(lev, sp.csr_matrix(np.linalg.inv(K.to_numpy())), inverse=True)
    return {
        "us_slopes": ("y ~ x + (x|g)", {}, [4.0, -0.3, 0.04, 2.0]),
        "diag_slopes": ("y ~ x + (x||g)", {}, [4.0, 0.01, 2.0]),
        "us_env_Kinv": (
            "y ~ env + us(0 + env|g)",
            {"cov_inverse": {"g": Kinv}},
            [3.0, 1.0, 2.0, 0.5, 0.8, 2.5, 1.2, 0.2, 0.4, 3.5, 1.5],
        ),
        "us_env_K": (
            "y ~ env + us(0 + env|g)",
            {"cov": {"g": K}},
            [3.0, 1.0, 2.0, 0.5, 0.8, 2.5, 1.2, 0.2, 0.4, 3.5, 1.5],
        ),
        "cs_env": ("y ~ env + cs(0 + env|g)", {}, [3.0, 1.2, 1.5]),
        "fa1_env": ("y ~ env + fa(0 + env|g, 1)", {}, [1.5, 1.0, 1.2, 0.6, 0.8, 0.5, 1.0, 0.7, 1.3]),
        "diag_env_hetres": ("y ~ env + diag(0 + env|g)", {"residual": "env"}, [3.0, 2.0, 1.0, 2.5, 1.0, 1.5, 0.7, 2.0]),
        "weights": ("y ~ x + (1|g)", {"weights": "w"}, [3.0, 2.0]),
        "maternal_Kinv": (
            "y ~ 1 + (1|g) + (1|dam)",
            {"cov_inverse": {"g": Kinv}, "correlated": [("g", "dam")]},
            [3.0, -0.8, 1.5, 2.0],
        ),
    }, d


CASES = list(_cases()[0])


def _states(name):
    cases, d = _cases()
    f, kw, th = cases[name]
    spec = build_general_spec(f, d, **kw)
    return GeneralMME(spec), GeneralSparseMME(spec), np.asarray(th, float)


def _close(a, b, rel):
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(b, a, rtol=rel, atol=rel * np.abs(a).max())


@pytest.mark.parametrize("method", ["reml", "ml"])
@pytest.mark.parametrize("name", CASES)
def test_sparse_equals_dense_at_fixed_theta(name, method):
    dense, sparse, th = _states(name)
    a = dense.evaluate(th, derivatives=True, method=method)
    b = sparse.evaluate(th, derivatives=True, method=method)
    assert b.m2ll == pytest.approx(a.m2ll, rel=1e-10)
    _close(a.solution, b.solution, 1e-10)
    _close(a.score, b.score, 1e-10)
    _close(a.ai, b.ai, 1e-10)
    for k in range(len(dense.spec.terms)):
        _close(a.em["terms"][k], b.em["terms"][k], 1e-10)
        for x, y in zip(dense.term_blups(a, k), sparse.term_blups(b, k)):
            _close(x, y, 1e-10)
    _close(a.em["residual"], b.em["residual"], 1e-10)
    for x, y in zip(dense.fixed(a), sparse.fixed(b)):
        _close(x, y, 1e-10)


@pytest.mark.parametrize("name", ["us_slopes", "fa1_env", "diag_env_hetres", "maternal_Kinv"])
def test_score_equals_finite_differences(name):
    _, sparse, th = _states(name)
    ev = sparse.evaluate(th, derivatives=True)
    fd = np.empty(len(th))
    for j in range(len(th)):
        e = np.zeros(len(th))
        e[j] = 1e-5 * max(abs(th[j]), 0.1)
        fd[j] = -0.5 * (sparse.evaluate(th + e).m2ll - sparse.evaluate(th - e).m2ll) / (2 * e[j])
    np.testing.assert_allclose(ev.score, fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())


def _simulated(name, seed=3):
    """The case's data with y drawn from its own model at the case's θ (seeded), so the
    REML optimum is interior: y = Xb + Σₖ Z̃ₖ vec(Lₖ E Lₛ') + e, Kₖ = LₖLₖ'."""
    cases, d = _cases()
    f, kw, th = cases[name]
    dense = GeneralMME(build_general_spec(f, d, **kw))
    spec, rng = dense.spec, np.random.default_rng(seed)
    th = np.asarray(th, float)
    y = spec.X @ rng.normal(size=spec.p)
    for k, t in enumerate(spec.terms):
        r = dense.ranks[k]
        E = rng.normal(size=(r, t.size)) @ np.linalg.cholesky(t.structure.sigma(th[dense.slices[k]])).T
        if dense.penalties[k] is not None:
            E = np.linalg.cholesky(np.linalg.inv(dense.penalties[k])) @ E
        y += dense.W[:, dense.offsets[k] : dense.offsets[k + 1]] @ E.T.ravel()
    rs = th[dense.slices[-1]]
    rs = rs[spec.residual.codes] if len(rs) > 1 else np.full(spec.n, rs[0])
    y += rng.normal(size=spec.n) * np.sqrt(rs / dense.w)
    out = d.loc[spec.record_index].copy()
    out["y"] = y
    return f, kw, out


@pytest.mark.parametrize("name", ["us_slopes", "cs_env", "diag_env_hetres", "maternal_Kinv"])
def test_reml_fit_equals_dense_engine(name):
    f, kw, d = _simulated(name)
    a = h.fit(f, d, solver="dense", **kw)
    b = h.fit(f, d, solver="sparse", **kw)
    assert a.solver == "dense-general" and b.solver == "sparse-general"
    assert b.loglik == pytest.approx(a.loglik, rel=1e-10)
    ea, eb = a.variance_components["estimate"], b.variance_components["estimate"]
    np.testing.assert_allclose(eb.to_numpy(), ea.to_numpy(), rtol=1e-8, atol=1e-8 * ea.abs().max())


@pytest.mark.slow
def test_maternal_gryphon_sparse_equals_dense():
    """Direct–maternal animal model on the gryphon pedigree (1,309 animals, sparse A⁻¹)."""
    g = load_gryphon()
    Ainv = h.pedigree_inverse(g.pedigree)
    spec = build_general_spec(
        "BWT ~ 1 + SEX + (1|ANIMAL) + (1|MOTHER) + (1|BYEAR)",
        g.records,
        cov_inverse={"ANIMAL": Ainv},
        correlated=[("ANIMAL", "MOTHER")],
    )
    th = np.array([3.0, -0.3, 1.2, 0.9, 3.5])
    dense, sparse = GeneralMME(spec), GeneralSparseMME(spec)
    for method in ("reml", "ml"):
        a = dense.evaluate(th, derivatives=True, method=method)
        b = sparse.evaluate(th, derivatives=True, method=method)
        assert b.m2ll == pytest.approx(a.m2ll, rel=1e-10)
        _close(a.score, b.score, 1e-10)
        _close(a.ai, b.ai, 1e-10)


def test_auto_routes_large_sparse_inverse_models_to_sparse_engine():
    """solver="auto": the maternal gryphon model (2 × 1,309 equations, sparse A⁻¹) goes to
    the sparse engine; a small model with a sparse K⁻¹ and a slopes model stay dense."""
    from henderson.api import _general_state

    g = load_gryphon()
    spec = build_general_spec(
        "BWT ~ 1 + SEX + (1|ANIMAL) + (1|MOTHER)",
        g.records.dropna(subset=["BWT"]),
        cov_inverse={"ANIMAL": h.pedigree_inverse(g.pedigree)},
        correlated=[("ANIMAL", "MOTHER")],
    )
    assert _general_state(spec, "auto").name == "sparse-general"
    assert _general_state(spec, "dense").name == "dense-general"
    for name in ("maternal_Kinv", "us_slopes"):
        f, kw, d = _simulated(name)
        assert _general_state(build_general_spec(f, d, **kw), "auto").name == "dense-general"


# -- Mrode (2014), 3rd ed., Table 7.1: birth weights of beef calves, maternal animal model --
#: calf, sire, dam, herd, pen, birth weight (kg) (Mrode 2014, p. 111 of the 3rd edition,
#: section 7.2, "Animal model for a maternal trait")
MRODE_7_1 = [
    (5, 1, 2, 1, 1, 35.0),
    (6, 3, 2, 1, 2, 20.0),
    (7, 4, 6, 1, 2, 25.0),
    (8, 3, 5, 1, 1, 40.0),
    (9, 1, 6, 2, 1, 42.0),
    (10, 3, 2, 2, 2, 22.0),
    (11, 3, 7, 2, 2, 35.0),
    (12, 8, 7, 3, 2, 34.0),
    (13, 9, 2, 3, 1, 20.0),
    (14, 3, 6, 3, 2, 40.0),
]
#: the book's variances: g11 = 150, g12 = −40, g22 = 90 (direct, maternal), σ²_pe = 40, σ²_e = 350
MRODE_G0 = np.array([[150.0, -40.0], [-40.0, 90.0]])


def test_mrode_maternal_example_equals_brute_force_blup():
    """Mrode's maternal example (Table 7.1: direct and maternal genetic effects correlated
    through A, a maternal permanent environment) at the book's variances.

    The book's printed solutions (p. 113 of the 3rd ed.) could not be retrieved here, so
    the reference is brute-force GLS/BLUP written in this test: V = [Z W](G0 ⊗ A)[Z W]' +
    σ²_pe SS' + σ²_e I with A from the tabular method, b̂ = (X'V⁻¹X)⁻¹X'V⁻¹y and
    [û; m̂] = (G0 ⊗ A)[Z W]'V⁻¹(y − Xb̂), p̂e = σ²_pe S'V⁻¹(y − Xb̂); agreement 1e-8. The
    book's printed G0⁻¹ and α = σ²_e G0⁻¹ (2.647, 1.176, 4.412; α4 = 8.75) are checked at
    their printed precision.
    """
    from conftest import tabular_A

    rec = pd.DataFrame(MRODE_7_1, columns=["calf", "sire", "dam", "herd", "pen", "bw"]).astype(
        {"calf": str, "sire": str, "dam": str, "herd": str, "pen": str}
    )
    rec["pe"] = rec["dam"]
    parents = {r[0]: (r[1], r[2]) for r in MRODE_7_1}
    rows = [(str(i), *(str(p) if p else "" for p in parents.get(i, (0, 0)))) for i in range(1, 15)]
    A, ids = tabular_A(rows)
    ped = pd.DataFrame(rows, columns=["id", "sire", "dam"]).replace("", None)
    Gi = np.linalg.inv(MRODE_G0)
    np.testing.assert_allclose(Gi, [[0.00756, 0.00336], [0.00336, 0.0126]], rtol=5e-4)
    np.testing.assert_allclose(350 * Gi, [[2.647, 1.176], [1.176, 4.412]], atol=5e-4)
    theta = [150.0, -40.0, 90.0, 40.0, 350.0]
    for solver in ("sparse", "dense"):
        res = h.fit(
            "bw ~ 0 + herd + pen + (1|calf) + (1|dam) + (1|pe)",
            rec,
            cov_inverse={"calf": h.pedigree_inverse(ped)},
            correlated=[("calf", "dam")],
            sigma2=theta,
            solver=solver,
        )
        assert res.solver == f"{solver}-general"
        # brute force
        n = len(rec)
        idx = pd.Index(ids)
        Z = np.zeros((n, 14))
        Z[np.arange(n), idx.get_indexer(rec["calf"])] = 1
        W = np.zeros((n, 14))
        W[np.arange(n), idx.get_indexer(rec["dam"])] = 1
        dams = sorted(rec["dam"].unique())
        S = (rec["dam"].to_numpy()[:, None] == np.array(dams)[None, :]).astype(float)
        herd = (rec["herd"].to_numpy()[:, None] == np.array(["1", "2", "3"])).astype(float)
        X = np.column_stack([herd, rec["pen"].to_numpy() == "2"])
        ZW = np.hstack([Z, W])
        GA = np.kron(MRODE_G0, A)
        V = ZW @ GA @ ZW.T + 40.0 * S @ S.T + 350.0 * np.eye(n)
        Vi = np.linalg.inv(V)
        y = rec["bw"].to_numpy()
        b = np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ y)
        r = Vi @ (y - X @ b)
        um = GA @ ZW.T @ r
        pe = 40.0 * S.T @ r
        bl = res.blups["calf+dam"]["blup"]
        got_u = np.array([bl[(i, "calf")] for i in ids])
        got_m = np.array([bl[(i, "dam")] for i in ids])
        np.testing.assert_allclose(got_u, um[:14], atol=1e-8)
        np.testing.assert_allclose(got_m, um[14:], atol=1e-8)
        got_pe = res.blups["pe"].loc[dams, "blup"].to_numpy()
        np.testing.assert_allclose(got_pe, pe, atol=1e-8)
        # fitted values of the records are estimable: X b̂ + Z û + W m̂ + S p̂e
        np.testing.assert_allclose(res.fitted.to_numpy(), X @ b + ZW @ um + S @ pe, atol=1e-8)


def test_solver_protocol_general_sparse_equals_general():
    """``solvers.protocol.prepare(spec, "general_sparse")`` gives the Evaluation of
    ``"general"``: −2 log L, score, AI, b̂, BLUPs and PEVs to 1e-10."""
    from henderson.solvers.protocol import prepare

    cases, d = _cases()
    f, kw, th = cases["maternal_Kinv"]
    spec = build_general_spec(f, d, **kw)
    a = prepare(spec, "general").evaluate(th, derivatives=True, pev=True)
    b = prepare(spec, "general_sparse").evaluate(th, derivatives=True, pev=True)
    assert b.m2ll == pytest.approx(a.m2ll, rel=1e-10)
    for x, y in [(a.score, b.score), (a.ai, b.ai), (a.fixed, b.fixed)]:
        _close(x, y, 1e-10)
    for name in a.blups:
        _close(a.blups[name], b.blups[name], 1e-10)
        _close(a.pev[name], b.pev[name], 1e-10)

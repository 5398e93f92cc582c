"""Every structure against a brute-force dense likelihood written here, independent of the engine.

For each model the test builds V = Σₖ Σ_ab Σₖ[a, b] (zₐ zᵦ') ∘ K[levelₐ, levelᵦ] + R
from the data columns itself (its own Legendre polynomials, its own indicator
matrices, its own residual) and computes

    −2 log L_REML = (n − p) log 2π + log|V| + log|X'V⁻¹X| + y'Py     (ML: n, no log|X'V⁻¹X|)

1. At fixed θ, the engine's −2 log L equals the brute force to 1e-10 relative (both are
   O(n³) dense computations in double precision on n ≈ 60-120 records: their rounding
   differs by ~1e-13 relative).
2. The engine's REML optimum is the optimum of the brute-force likelihood: a generic
   optimiser (scipy BFGS) started elsewhere reaches no lower −2 log L (to 1e-7, its own
   stopping accuracy), the same Σ (1e-3 relative: BFGS's θ is only ~1e-4 accurate in the
   flat directions), and the brute-force gradient at the engine's θ̂ is zero (scaled
   central differences, < 1e-4).
Data are simulated from the model itself (seeded) so the optimum is interior.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.optimize as so
import scipy.sparse as sp

import henderson as h
from henderson.solvers.general import GeneralMME
from henderson.spec.terms import build_general_spec

LOG2PI = np.log(2 * np.pi)
ENVS = ["E1", "E2", "E3", "E4"]


def brute_m2ll(y, X, V, method="reml"):
    n, p = X.shape
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    b = np.linalg.solve(XtViX, X.T @ Vi @ y)
    r = y - X @ b
    ld_v = np.linalg.slogdet(V)[1]
    if method == "ml":
        return n * LOG2PI + ld_v + r @ Vi @ r
    return (n - p) * LOG2PI + ld_v + np.linalg.slogdet(XtViX)[1] + r @ Vi @ r


def _data(seed=1, n_lev=20, envs=ENVS, p_obs=0.8):
    rng = np.random.default_rng(seed)
    lev = [f"L{i:02d}" for i in range(n_lev)]
    # one or two plots per observed level x env cell: replicates separate the residual
    # from a level x env variance (ψ of fa, the diagonal of cs)
    rows = [(g, e) for g in lev for e in envs if rng.random() < p_obs for _ in range(1 + (rng.random() < 0.5))]
    d = pd.DataFrame(rows, columns=["g", "env"])
    n = len(d)
    d["x"] = rng.uniform(1, 30, n).round(1)
    d["dam"] = rng.choice(lev, n)
    d["w"] = rng.uniform(0.5, 2.0, n)
    B = rng.normal(size=(n_lev, n_lev + 6))
    K = pd.DataFrame(B @ B.T / (n_lev + 6) + 0.3 * np.eye(n_lev), index=lev, columns=lev)
    return d, K, rng


def _ind(codes, q):
    M = np.zeros((len(codes), q))
    M[np.arange(len(codes)), codes] = 1.0
    return M


def _legendre(x, k):
    t = 2 * (x - x.min()) / (x.max() - x.min()) - 1
    cols = [np.full_like(t, np.sqrt(0.5)), np.sqrt(1.5) * t, np.sqrt(2.5) * (1.5 * t**2 - 0.5)]
    return np.column_stack(cols[: k + 1])


def _us(th, S):
    M = np.zeros((S, S))
    k = 0
    for i in range(S):
        for j in range(i + 1):
            M[i, j] = M[j, i] = th[k]
            k += 1
    return M


def case(name):
    """(formula, fit kwargs, data, X, theta, V(theta)) for one structure."""
    d, K, rng = _data()
    lev = list(K.index)
    Kn = K.to_numpy()
    gi = pd.Index(lev).get_indexer(d["g"])
    G = _ind(gi, len(lev))
    E = (d["env"].to_numpy()[:, None] == np.array(ENVS)[None, :]).astype(float)
    n = len(d)
    one = np.ones(n)
    Xenv = np.column_stack([one, E[:, 1:]])
    Xx = np.column_stack([one, d["x"].to_numpy()])
    x = d["x"].to_numpy()
    Iq = np.eye(len(lev))

    def v_comp(Sig, zs, Kmat, codes_list):
        V = np.zeros((n, n))
        for a in range(len(zs)):
            for b in range(len(zs)):
                Za = zs[a][:, None] * _ind(codes_list[a], Kmat.shape[0])
                Zb = zs[b][:, None] * _ind(codes_list[b], Kmat.shape[0])
                V += Sig[a, b] * Za @ Kmat @ Zb.T
        return V

    env_z = [E[:, a] for a in range(4)]
    if name == "us_slopes":
        f, kw, X = "y ~ x + (x|g)", {}, Xx
        th = np.array([4.0, -0.3, 0.04, 2.0])
        Vf = lambda t: v_comp(_us(t[:3], 2), [one, x], Iq, [gi, gi]) + t[3] * np.eye(n)
    elif name == "diag_slopes":
        f, kw, X = "y ~ x + (x||g)", {}, Xx
        th = np.array([4.0, 0.01, 2.0])
        Vf = lambda t: v_comp(np.diag(t[:2]), [one, x], Iq, [gi, gi]) + t[2] * np.eye(n)
    elif name == "us_env_K":
        f, kw, X = "y ~ env + us(0 + env|g)", {"cov": {"g": K}}, Xenv
        th = np.array([3.0, 1.0, 2.0, 0.5, 0.8, 2.5, 1.2, 0.2, 0.4, 3.5, 1.5])
        Vf = lambda t: v_comp(_us(t[:10], 4), env_z, Kn, [gi] * 4) + t[10] * np.eye(n)
    elif name == "cs_env":
        f, kw, X = "y ~ env + cs(0 + env|g)", {}, Xenv
        th = np.array([3.0, 1.2, 1.5])
        Vf = lambda t: v_comp(np.full((4, 4), t[1]) + np.eye(4) * (t[0] - t[1]), env_z, Iq, [gi] * 4) + t[2] * np.eye(n)
    elif name == "fa1_env":
        f, kw, X = "y ~ env + fa(0 + env|g, 1)", {}, Xenv
        th = np.array([1.5, 1.0, 1.2, 0.6, 0.8, 0.5, 1.0, 0.7, 1.3])

        def Vf(t):
            lam, psi = t[:4], t[4:8]
            return v_comp(np.outer(lam, lam) + np.diag(psi), env_z, Iq, [gi] * 4) + t[8] * np.eye(n)
    elif name == "diag_env_hetres":
        f, kw, X = "y ~ env + diag(0 + env|g)", {"residual": "env"}, Xenv
        th = np.array([3.0, 2.0, 1.0, 2.5, 1.0, 1.5, 0.7, 2.0])
        Vf = lambda t: v_comp(np.diag(t[:4]), env_z, Iq, [gi] * 4) + np.diag(E @ t[4:8])
    elif name == "weights":
        f, kw, X = "y ~ x + (1|g)", {"weights": "w"}, Xx
        th = np.array([3.0, 2.0])
        w = d["w"].to_numpy()
        Vf = lambda t: t[0] * G @ G.T + np.diag(t[1] / w)
    elif name == "leg_K":
        f, kw = "y ~ 0 + leg(x, 2) + us(leg(x, 1)|g)", {"cov": {"g": K}}
        P = _legendre(x, 2)
        X = P
        th = np.array([3.0, 0.4, 1.0, 1.5])
        Vf = lambda t: v_comp(_us(t[:3], 2), [P[:, 0], P[:, 1]], Kn, [gi, gi]) + t[3] * np.eye(n)
    elif name == "maternal_Kinv":
        f = "y ~ 1 + (1|g) + (1|dam)"
        kw = {
            "cov_inverse": {"g": h.Relationship(lev, sp.csr_matrix(np.linalg.inv(Kn)), inverse=True)},
            "correlated": [("g", "dam")],
        }
        X = one[:, None]
        di = pd.Index(lev).get_indexer(d["dam"])
        th = np.array([3.0, -0.8, 1.5, 2.0])
        Vf = lambda t: v_comp(_us(t[:3], 2), [one, one], Kn, [gi, di]) + t[3] * np.eye(n)
    else:
        raise KeyError(name)
    if name == "fa1_env":  # twice the levels: 9 parameters
        d2, K2, rng = _data(seed=2, n_lev=24)
        return _fa_case(d2, rng)
    # simulate y from the model itself
    y = X @ rng.normal(size=X.shape[1]) + np.linalg.cholesky(Vf(th)) @ rng.normal(size=n)
    d = d.assign(y=y)
    return f, kw, d, X, th, Vf


def _fa_case(d, rng):
    lev = sorted(d["g"].unique())
    gi = pd.Index(lev).get_indexer(d["g"])
    E = (d["env"].to_numpy()[:, None] == np.array(ENVS)[None, :]).astype(float)
    n = len(d)
    X = np.column_stack([np.ones(n), E[:, 1:]])
    G = np.zeros((n, len(lev)))
    G[np.arange(n), gi] = 1.0
    same = G @ G.T
    th = np.array([1.5, 1.0, 1.2, 0.6, 0.8, 0.5, 1.0, 0.7, 1.3])

    def Vf(t):
        lam, psi = t[:4], t[4:8]
        S = np.outer(lam, lam) + np.diag(psi)
        return (E @ S @ E.T) * same + t[8] * np.eye(n)

    y = X @ rng.normal(size=4) + np.linalg.cholesky(Vf(th)) @ rng.normal(size=n)
    return "y ~ env + fa(0 + env|g, 1)", {}, d.assign(y=y), X, th, Vf


#: the test's own map from unconstrained parameters to PSD θ, per case (squares for
#: variances, a Cholesky factor for US, the eigenvalues of CS), so that BFGS searches
#: exactly the parameter space REML is defined on (Σ PSD), independently of the engine
def _psd_map(name, th):
    def chol(t, S):
        L = np.zeros((S, S))
        L[np.tril_indices(S)] = t
        M = L @ L.T
        return M[np.tril_indices(S)]

    def to_us(t, S):  # θ in row order (1:1, 2:1, 2:2, ...) = numpy's tril order
        M = np.zeros((S, S))
        M[np.tril_indices(S)] = t
        M = M + np.tril(M, -1).T
        return np.linalg.cholesky(M)[np.tril_indices(S)]

    if name in ("us_slopes", "leg_K", "maternal_Kinv"):
        return (
            lambda p: np.concatenate([chol(p[:3], 2), [p[3] ** 2]]),
            np.concatenate([to_us(th[:3], 2), [np.sqrt(th[3])]]),
        )
    if name == "us_env_K":
        return (
            lambda p: np.concatenate([chol(p[:10], 4), [p[10] ** 2]]),
            np.concatenate([to_us(th[:10], 4), [np.sqrt(th[10])]]),
        )
    if name == "cs_env":  # eigenvalues a = v - c, b = v + 3c

        def f(p):
            a, b = p[0] ** 2, p[1] ** 2
            return np.array([a + (b - a) / 4, (b - a) / 4, p[2] ** 2])

        v, c = th[:2]
        return f, np.sqrt([v - c, v + 3 * c, th[2]])
    if name == "fa1_env":
        return (lambda p: np.concatenate([p[:4], p[4:] ** 2]), np.concatenate([th[:4], np.sqrt(th[4:])]))
    return (lambda p: p**2), np.sqrt(th)  # diag, residual groups, weights


CASES = [
    "us_slopes",
    "diag_slopes",
    "us_env_K",
    "cs_env",
    "fa1_env",
    "diag_env_hetres",
    "weights",
    "leg_K",
    "maternal_Kinv",
]


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("method", ["reml", "ml"])
def test_m2ll_at_fixed_theta_equals_brute_force(name, method):
    f, kw, d, X, th, Vf = case(name)
    spec = build_general_spec(f, d, **kw)
    assert spec.n_theta == len(th)
    state = GeneralMME(spec)
    for scale in (1.0, 0.5, 2.0):  # several θ, not only the simulating one
        t = th * scale
        t[-1] = th[-1] / scale
        want = brute_m2ll(d["y"].to_numpy(), X, Vf(t), method)
        got = state.evaluate(t, method=method).m2ll
        assert got == pytest.approx(want, rel=1e-10, abs=0), (name, scale)


@pytest.mark.parametrize("name", CASES)
def test_reml_optimum_equals_generic_optimiser_on_brute_force(name):
    f, kw, d, X, th, Vf = case(name)
    y = d["y"].to_numpy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = h.fit(f, d, **kw)
    assert res.converged
    that = res.variance_components["estimate"].to_numpy()
    m_hat = -2 * res.loglik
    assert m_hat == pytest.approx(brute_m2ll(y, X, Vf(that)), rel=1e-10)

    def obj(t):
        try:
            V = Vf(t)
            np.linalg.cholesky(V)
        except np.linalg.LinAlgError:
            return 1e10
        return brute_m2ll(y, X, V)

    # BFGS over PSD Σ only (the test's own map), started at the simulating θ
    fmap, p0 = _psd_map(name, th)
    opt = so.minimize(lambda p: obj(fmap(p)), p0, method="BFGS", options={"gtol": 1e-6, "maxiter": 3000})
    assert m_hat <= opt.fun + 1e-7
    assert opt.fun - m_hat < 1e-4  # BFGS got there too: the same optimum
    V_hat, V_opt = Vf(that), Vf(fmap(opt.x))
    assert np.max(np.abs(V_hat - V_opt)) / np.max(np.abs(V_hat)) < 1e-3
    # optimality (KKT) of θ̂ on the brute force: zero gradient in every parameter away
    # from the boundary; a variance at 0 may only have −2 log L rising as it grows
    sc = np.maximum(np.abs(that), 1e-3 * np.max(np.abs(that)))
    e = np.eye(len(that))
    at0 = np.abs(that) < 1e-6 * np.max(np.abs(that))
    for j in range(len(that)):
        if at0[j]:
            assert obj(that + 1e-4 * sc[j] * e[j]) > m_hat - 1e-9
            continue
        g = (obj(that + 1e-6 * sc[j] * e[j]) - obj(that - 1e-6 * sc[j] * e[j])) / 2e-6
        assert abs(g) < 1e-4, (j, g)
    assert res.variance_components["boundary"].any() == at0.any()
    # a boundary estimate is reported with a warning, never silently
    assert any(issubclass(w.category, h.BoundaryWarning) for w in caught) == at0.any()

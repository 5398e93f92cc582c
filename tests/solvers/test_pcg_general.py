"""PCG on multi-trait, maternal and single-step (H⁻¹, APY) MME against dense algebra.

Reference: the MME written out densely, independently of the kernels: one row per
(record, trait) in W = [Z X], R⁻¹ block-diagonal with (R₀[o, o])⁻¹ per record (o = its
observed traits, missing traits dropped as rows), the penalty kron(K⁻¹, Σ⁻¹) per group
(level-major), and C s = W'R⁻¹y solved by Cholesky (scipy.linalg.cho_solve). H⁻¹ for
the reference is formed as inv(H) with H built from A (inverse of the dense A⁻¹) and G
by the Legarra et al. (2009) blocks — not from τG⁻¹ − ωA₂₂⁻¹.

Tolerance: PCG is run to ‖r − Cx‖/‖r‖ <= 1e-12; with κ(C) below ~1e4 on these models
the solution error is below 1e-8 relative to the largest entry (the issue's criterion).
"""

import numpy as np
import pandas as pd
import pytest
import scipy.linalg as sla
import scipy.sparse as sp

from henderson._testing.animal_model import simulate_animal_model
from henderson.errors import ModelError, NotPositiveDefiniteError
from henderson.solvers.pcg_general import GeneralPCG, GenomicBlock, RandomGroup


@pytest.fixture(scope="module")
def sim():
    s = simulate_animal_model(300, 4, seed=11, herds=12)
    ped = s["pedigree"]
    Ainv = sp.csr_matrix(s["ainv"].matrix)
    ids = np.asarray(s["ainv"].ids)
    pos = {v: i for i, v in enumerate(ids)}
    dam = np.array([pos.get(d, -1) for d in ped.set_index("id").loc[ids, "dam"]])
    return {"Ainv": Ainv, "ids": ids, "dam": dam, "q": len(ids)}


def dense_reference(y, X, groups, R0):
    """Solution of the MME built densely (see module docstring); groups as RandomGroup but
    with ``dense_kinv`` (q, q) ndarray attributes."""
    n, t = y.shape
    cols = sum(gr.q * gr.codes.shape[1] for gr in groups) + X.shape[1] * t
    rows, rhs_y, Rblocks = [], [], []
    for i in range(n):
        o = np.flatnonzero(~np.isnan(y[i]))
        Wi = np.zeros((t, cols))
        a = 0
        for gr in groups:
            g = gr.codes.shape[1]
            for e in range(g):
                if gr.codes[i, e] >= 0:
                    Wi[gr.traits[e], a + gr.codes[i, e] * g + e] += 1.0
            a += gr.q * g
        Wi[:, a:] = np.kron(X[i], np.eye(t))
        rows.append(Wi[o])
        rhs_y.append(y[i, o])
        Rblocks.append(np.linalg.inv(R0[np.ix_(o, o)]))
    W = np.vstack(rows)
    Rinv = sla.block_diag(*Rblocks)
    C = W.T @ Rinv @ W
    a = 0
    for gr in groups:
        g = gr.codes.shape[1]
        C[a : a + gr.q * g, a : a + gr.q * g] += np.kron(gr.dense_kinv, np.linalg.inv(gr.sigma))
        a += gr.q * g
    r = W.T @ Rinv @ np.concatenate(rhs_y)
    return sla.cho_solve(sla.cho_factor(C), r)


def assert_close(x, ref, tol=1e-8):
    np.testing.assert_allclose(x, ref, rtol=0, atol=tol * np.abs(ref).max())


def _with_dense(gr, K):
    gr.dense_kinv = K
    return gr


def multitrait_data(sim, seed=0, t=3):
    rng = np.random.default_rng(seed)
    q = sim["q"]
    n = 260
    animal = rng.choice(q, size=n, replace=False)
    herd = rng.integers(8, size=n)
    sex = rng.integers(2, size=n)
    X = np.column_stack([np.ones(n), sex])
    y = rng.normal(size=(n, t)) + np.arange(t)
    # every missing pattern but "all missing"
    miss = rng.random((n, t)) < 0.3
    miss[miss.all(axis=1), 0] = False
    y[miss] = np.nan
    return y, X, animal, herd


def test_multitrait_equals_dense(sim):
    t = 3
    y, X, animal, herd = multitrait_data(sim, t=t)
    G0 = np.array([[1.0, 0.5, 0.2], [0.5, 2.0, -0.3], [0.2, -0.3, 0.8]])
    H0 = np.diag([0.3, 0.2, 0.4]) + 0.05
    R0 = np.array([[2.0, 0.6, 0.1], [0.6, 3.0, 0.4], [0.1, 0.4, 1.5]])
    codes_a = np.repeat(animal[:, None], t, axis=1)
    codes_h = np.repeat(herd[:, None], t, axis=1)
    groups = [
        _with_dense(
            RandomGroup("animal", codes_a, np.arange(t), G0, sim["q"], kinv=sim["Ainv"]), sim["Ainv"].toarray()
        ),
        _with_dense(RandomGroup("herd", codes_h, np.arange(t), H0, 8), np.eye(8)),
    ]
    ref = dense_reference(y, X, groups, R0)
    for pre in ("block", "jacobi"):
        m = GeneralPCG(y, X, groups, R0, preconditioner=pre)
        x, info = m.solve(tol=1e-12)
        assert info.converged and info.rel_residual <= 1e-12
        assert_close(x, ref)
        assert m.effects(x, "animal").shape == (sim["q"], t) and m.fixed(x).shape == (2, t)
        # the matvec is C: C x* = r
        assert_close(m.matvec(ref), m.rhs(), 1e-10)


def test_block_beats_jacobi_on_correlated_traits(sim):
    t = 3
    y, X, animal, herd = multitrait_data(sim, seed=1, t=t)
    G0 = np.array([[1.0, 0.9, 0.8], [0.9, 1.0, 0.9], [0.8, 0.9, 1.0]])  # strongly correlated traits
    R0 = np.eye(t) + 0.5
    codes = np.repeat(animal[:, None], t, axis=1)
    groups = [RandomGroup("animal", codes, np.arange(t), G0, sim["q"], kinv=sim["Ainv"])]
    rb = GeneralPCG(y, X, groups, R0, "block").solve(tol=1e-10)[1].rounds
    rj = GeneralPCG(y, X, groups, R0, "jacobi").solve(tol=1e-10)[1].rounds
    assert rb < rj


def test_maternal_equals_dense(sim):
    """Direct + maternal on the same A⁻¹ (codes: the animal, its dam), 2 × 2 Σ, plus a
    maternal permanent environment (iid on dams) and herd."""
    rng = np.random.default_rng(4)
    q, dam = sim["q"], sim["dam"]
    has_dam = np.flatnonzero(dam >= 0)
    animal = rng.choice(has_dam, size=min(200, has_dam.size), replace=False)
    n = animal.size
    # a few records whose dam is unknown: their maternal effect is absent (code −1)
    extra = rng.choice(np.flatnonzero(dam < 0), size=20, replace=False)
    animal = np.concatenate([animal, extra])
    n = animal.size
    d = dam[animal]
    herd = rng.integers(6, size=n)
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = rng.normal(size=(n, 1)) + 3.0
    S = np.array([[1.0, -0.3], [-0.3, 0.5]])
    Ad = sim["Ainv"].toarray()
    groups = [
        _with_dense(RandomGroup("am", np.column_stack([animal, d]), [0, 0], S, q, kinv=sim["Ainv"]), Ad),
        _with_dense(RandomGroup("mpe", d[:, None], [0], [[0.2]], q), np.eye(q)),
        _with_dense(RandomGroup("herd", herd[:, None], [0], [[0.4]], 6), np.eye(6)),
    ]
    R0 = np.array([[2.0]])
    ref = dense_reference(y, X, groups, R0)
    m = GeneralPCG(y, X, groups, R0)
    x, info = m.solve(tol=1e-12)
    assert info.converged
    assert_close(x, ref)


def _single_step_parts(sim, k, seed, tau=1.0, omega=1.0):
    """A, a blended G_w on k genotyped animals, the dense H⁻¹ of the reference, and D."""
    rng = np.random.default_rng(seed)
    q = sim["q"]
    A = np.linalg.inv(sim["Ainv"].toarray())
    gidx = np.sort(rng.choice(q, size=k, replace=False))
    A22 = A[np.ix_(gidx, gidx)]
    M = rng.integers(0, 3, size=(k, 400)).astype(float)
    Z = M - M.mean(axis=0)
    G = Z @ Z.T / (2 * (M.mean(axis=0) / 2 * (1 - M.mean(axis=0) / 2)).sum())
    Gw = 0.9 * G + 0.1 * A22
    # reference H⁻¹ = A⁻¹ + [0 0; 0 τG_w⁻¹ − ωA₂₂⁻¹] written from inverses of the dense
    # matrices (no factor reuse with GenomicBlock)
    Hinv = sim["Ainv"].toarray()
    Hinv[np.ix_(gidx, gidx)] += tau * np.linalg.inv(Gw) - omega * np.linalg.inv(A22)
    return gidx, Gw, A22, Hinv


@pytest.mark.parametrize("form", ["dense", "factors"])
def test_single_step_equals_dense(sim, form):
    rng = np.random.default_rng(7)
    q = sim["q"]
    gidx, Gw, A22, Hinv = _single_step_parts(sim, 60, seed=3, tau=1.2, omega=0.7)
    n = 250
    animal = rng.choice(q, size=n, replace=False)
    X = np.column_stack([np.ones(n), rng.integers(2, size=n)])
    y = rng.normal(size=(n, 1))
    if form == "dense":
        blk = GenomicBlock(matrix=1.2 * np.linalg.inv(Gw) - 0.7 * np.linalg.inv(A22))
    else:
        blk = GenomicBlock(G=Gw, A22=A22, tau=1.2, omega=0.7)
    gr = RandomGroup("a", animal[:, None], [0], [[1.5]], q, kinv=sim["Ainv"], genomic=(gidx, blk))
    ref = dense_reference(y, X, [_with_dense(gr, Hinv)], np.array([[2.5]]))
    x, info = GeneralPCG(y, X, [gr], [[2.5]]).solve(tol=1e-12)
    assert info.converged
    assert_close(x, ref)


def test_single_step_multitrait_apy(sim):
    """Two traits on H⁻¹ with an APY G⁻¹ (Misztal 2016: core c, non-core conditionally
    independent given the core), the dense block held as a matrix."""
    rng = np.random.default_rng(9)
    q = sim["q"]
    gidx, Gw, A22, _ = _single_step_parts(sim, 50, seed=5)
    k, c = len(gidx), 20
    # APY inverse of G_w, written from its definition (core first)
    Gcc, Gcn, Gnn = Gw[:c, :c], Gw[:c, c:], Gw[c:, c:]
    Gcc_inv = np.linalg.inv(Gcc)
    P = Gcc_inv @ Gcn  # c × (k − c)
    Mdiag = np.diag(Gnn) - np.einsum("ij,ij->j", Gcn, P)
    Minv = np.diag(1.0 / Mdiag)
    Ginv_apy = np.zeros((k, k))
    Ginv_apy[:c, :c] = Gcc_inv + P @ Minv @ P.T
    Ginv_apy[:c, c:] = -P @ Minv
    Ginv_apy[c:, :c] = -Minv @ P.T
    Ginv_apy[c:, c:] = Minv
    D = Ginv_apy - np.linalg.inv(A22)
    Hinv = sim["Ainv"].toarray()
    Hinv[np.ix_(gidx, gidx)] += D
    n = 200
    animal = rng.choice(q, size=n, replace=False)
    X = np.ones((n, 1))
    y = rng.normal(size=(n, 2))
    y[rng.random(n) < 0.25, 1] = np.nan
    G0 = np.array([[1.0, 0.4], [0.4, 0.7]])
    R0 = np.array([[2.0, 0.3], [0.3, 1.0]])
    gr = RandomGroup("a", np.column_stack([animal, animal]), [0, 1], G0, q, kinv=sim["Ainv"], genomic=(gidx, D))
    ref = dense_reference(y, X, [_with_dense(gr, Hinv)], R0)
    x, info = GeneralPCG(y, X, [gr], R0).solve(tol=1e-12)
    assert info.converged
    assert_close(x, ref)


def test_bad_inputs_are_named(sim):
    y = np.full((3, 2), np.nan)
    y[:2] = 1.0
    gr = RandomGroup("a", np.zeros((3, 1), int), [0], [[1.0]], 1)
    with pytest.raises(ModelError, match=r"records \[2\] have every trait missing"):
        GeneralPCG(y, np.ones((3, 1)), [gr], np.eye(2))
    y = np.ones((3, 1))
    with pytest.raises(NotPositiveDefiniteError, match="group 'a'"):
        GeneralPCG(y, np.ones((3, 1)), [RandomGroup("a", np.zeros((3, 1), int), [0], [[-1.0]], 1)], [[1.0]])
    with pytest.raises(NotPositiveDefiniteError, match="confounded"):
        GeneralPCG(y, np.ones((3, 2)), [gr], [[1.0]])
    with pytest.raises(NotPositiveDefiniteError, match="G_w"):
        GenomicBlock(G=-np.eye(2), A22=np.eye(2))


def test_multitrait_equals_henderson_spectral_at_given_sigma(sim):
    """Second reference: the multi-trait spectral solver (dense A, complete records) at
    the same Σ_g, R₀ gives the same BLUPs as PCG on A⁻¹ (convention check: trait order,
    Σ vs Σ⁻¹, level-major layout). Tolerance 1e-8 relative, as above."""
    import pandas as pd

    from henderson.multitrait.fit import fit_traits

    ids = np.asarray([str(i) for i in range(sim["q"])])
    A = np.linalg.inv(sim["Ainv"].toarray())
    rng = np.random.default_rng(0)
    animal = rng.choice(sim["q"], 200, replace=False)
    Y = rng.normal(size=(200, 2)) + [1.0, 2.0]
    G0, R0 = np.array([[1.0, 0.4], [0.4, 0.7]]), np.array([[2.0, 0.3], [0.3, 1.0]])
    frame = pd.DataFrame({"id": ids[animal], "y1": Y[:, 0], "y2": Y[:, 1]})
    ref = fit_traits(frame, ["y1", "y2"], "id", pd.DataFrame(A, index=ids, columns=ids), sigma=(G0, R0), pev=False)
    u_ref = ref.blups["id"]["blup"].unstack("trait").loc[ids, ["y1", "y2"]].to_numpy()
    gr = RandomGroup("id", np.column_stack([animal, animal]), [0, 1], G0, sim["q"], kinv=sim["Ainv"])
    m = GeneralPCG(Y, np.ones((200, 1)), [gr], R0)
    x, info = m.solve(tol=1e-12)
    assert info.converged
    assert_close(m.effects(x, "id"), u_ref)


def test_gblup_with_apy_inverse_kept_in_blocks():
    """GBLUP with K⁻¹ = G_APY⁻¹ held as ApyInverse (core factor, G_CN, m; applied as a
    product) equals the dense MME with G_APY⁻¹ written from its definition (numpy G =
    WW'/2Σpq, Misztal 2016)."""
    from henderson.relationships.apy import apy_inverse_from_genotypes

    rng = np.random.default_rng(21)
    k, m, c = 120, 300, 25
    p = rng.uniform(0.1, 0.9, m)
    Xg = (rng.random((k, m)) < p).astype(np.int8) + (rng.random((k, m)) < p).astype(np.int8)
    ids = np.array([f"g{i}" for i in range(k)], dtype=object)
    core = rng.choice(k, size=c, replace=False)
    blk = apy_inverse_from_genotypes(pd.DataFrame(Xg, index=ids), ids[core])
    freq = Xg.mean(axis=0) / 2
    W = Xg - 2 * freq
    G = W @ W.T / (2 * np.sum(freq * (1 - freq)))
    nc = np.setdiff1d(np.arange(k), core)
    P = G[np.ix_(nc, core)] @ np.linalg.inv(G[np.ix_(core, core)])
    Gapy = G.copy()
    Gapy[np.ix_(nc, nc)] = P @ G[np.ix_(core, nc)]
    Gapy[nc, nc] = np.diag(G)[nc]  # diag(P G_CN) + m = g_ii
    n = 240
    animal = rng.integers(0, k, size=n)
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = rng.normal(size=(n, 1))
    gr = RandomGroup("g", animal[:, None], [0], [[0.8]], k, kinv=sp.csr_matrix((k, k)), genomic=(np.arange(k), blk))
    ref = dense_reference(y, X, [_with_dense(gr, np.linalg.inv(Gapy))], np.array([[1.3]]))
    x, info = GeneralPCG(y, X, [gr], np.array([[1.3]])).solve(tol=1e-12)
    assert info.converged
    assert_close(x, ref)

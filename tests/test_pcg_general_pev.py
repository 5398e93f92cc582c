"""Sampled PEV, reliabilities and exact fixed-effect SEs on the general PCG (issue 13).

Reference: the exact PEV and fixed-effect SEs of the direct solvers at the same given
(co)variances — the sparse multi-trait MME and the sparse general engine (selected
inverse of the factored C; both checked against the dense MME inverse and brute force in
tests/multitrait and tests/solvers). The sampled PEV is a Monte Carlo estimate with a
reported SE per level; the checks are calibrated to it, so they fail when the estimate is
biased or the SE is wrong, not by chance (the z-scores use the estimated SE of a 200-sample
control-variate mean, roughly t-distributed):

- every PEV within 7 Monte Carlo SE of the exact one;
- at most 0.5 % of them beyond 4 SE (normal: 0.006 %);
- at least 90 % within 2 SE, minus 3 binomial SDs (normal: 95.4 %);
- a level with no link to the data has û* = 0 in every sample, PEV = its prior exactly and
  SE 0: there the PEV must equal the exact one to 1e-6 (each sample's solve stops at a
  relative residual of 1e-8).

Fixed-effect SEs come from p·t solves C xⱼ = eⱼ at tol 1e-10: equal to the direct ones to
1e-7 (relative). The seed makes the sampling reproducible bit for bit.
"""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import henderson as h
from henderson._testing.animal_model import simulate_animal_model
from henderson.multitrait.general import trait_reliability
from henderson.relationships.single_step import single_step_inverse
from henderson.solvers.pcg_general import GeneralPCG, RandomGroup

MT_FORMULA = "cbind(BWT, TARSUS) ~ 1 + SEX + (1|ANIMAL) + (1|BYEAR)"
MT_SIGMA = {
    "Sigma": [np.array([[3.4, 2.1], [2.1, 12.0]]), np.array([[0.9, 0.3], [0.3, 2.0]])],
    "Residual": np.array([[3.8, 1.5], [1.5, 13.0]]),
}
MAT_FORMULA = "BWT ~ 1 + SEX + (1|ANIMAL) + (1|MOTHER) + (1|BYEAR)"
MAT_CORR = [("ANIMAL", "MOTHER")]
MAT_THETA = np.array([3.0, -0.3, 1.2, 0.9, 3.5])


def check_pev(pcg_tab: pd.DataFrame, ref_tab: pd.DataFrame) -> None:
    """The calibrated checks of the module notes, on one term's BLUP tables."""
    assert pcg_tab.index.equals(ref_tab.index)
    est, se, exact = (pcg_tab[c].to_numpy(dtype=float) for c in ("pev", "pev_se", "pev"))
    exact = ref_tab["pev"].to_numpy(dtype=float)
    assert np.all(np.isfinite(exact)) and np.all(np.isfinite(est)) and np.all(se >= 0)
    fixed = se == 0
    np.testing.assert_allclose(est[fixed], exact[fixed], rtol=1e-6)  # the solves stop at 1e-8
    z = np.abs(est[~fixed] - exact[~fixed]) / se[~fixed]
    n = z.size
    assert n > 0
    assert z.max() <= 7, f"a PEV {z.max():.2f} Monte Carlo SE from the exact one"
    assert np.mean(z > 4) <= 0.005, f"{np.mean(z > 4):.2%} beyond 4 SE"
    assert np.mean(z <= 2) >= 0.90 - 3 * np.sqrt(0.9 * 0.1 / n), f"{np.mean(z <= 2):.2%} within 2 SE"


def check_reliability(pcg_tab: pd.DataFrame, ref_tab: pd.DataFrame) -> None:
    """Same prior variance diag(K)σ² as the direct solver: 1 − rel = PEV/prior on both sides."""
    prior_ref = ref_tab["pev"] / (1 - ref_tab["reliability"])
    prior_pcg = pcg_tab["pev"] / (1 - pcg_tab["reliability"])
    np.testing.assert_allclose(prior_pcg, prior_ref, rtol=1e-8)


def check_fixed_se(pcg, ref) -> None:
    assert pcg.fixed_effects.index.equals(ref.fixed_effects.index)
    np.testing.assert_allclose(pcg.fixed_effects["se"], ref.fixed_effects["se"], rtol=1e-7)
    np.testing.assert_allclose(pcg.fixed_effects["t"], ref.fixed_effects["t"], rtol=1e-6)


def check_named(res, n=200, seed=1) -> None:
    assert res.settings["pev_method"].startswith("Garcia-Cortes et al. (1995) sampling")
    assert f"over {n} data sets" in res.settings["pev_method"] and f"(seed {seed})" in res.settings["pev_method"]
    assert any(note.startswith("PEV estimated by sampling: Garcia-Cortes") for note in res.notes)
    run = res.settings["pev_sampling"]
    assert run["n_samples"] == n and run["seed"] == seed and run["rounds"] > 1 and run["seconds"] > 0
    assert not any("PEV, reliabilities and fixed-effect standard errors not computed" in nt for nt in res.notes)


@pytest.fixture(scope="module")
def gryphon():
    g = h.datasets.load_gryphon()
    return g.records, h.pedigree_inverse(g.pedigree)


@pytest.fixture(scope="module")
def single_step():
    sim = simulate_animal_model(600, 5, seed=3, herds=10)
    rng = np.random.default_rng(5)
    ids = sim["pedigree"]["id"].astype(str).to_numpy()
    gids = np.sort(rng.choice(ids[200:], size=80, replace=False))
    p = rng.uniform(0.1, 0.9, 500)
    M = (rng.random((80, 500)) < p).astype(int) + (rng.random((80, 500)) < p).astype(int)
    geno = pd.DataFrame(M, index=gids, columns=[f"s{j}" for j in range(500)])
    Hb = single_step_inverse(sim["pedigree"], geno, as_blocks=True)
    rec = sim["records"].copy()
    rec["y2"] = 0.5 * rec["y"] + rng.normal(size=len(rec))
    rec.loc[rng.random(len(rec)) < 0.3, "y2"] = np.nan
    return rec, Hb


# -- the block PCG itself ---------------------------------------------------------------------------
def small_model(genomic=False):
    rng = np.random.default_rng(0)
    n, q = 300, 80
    X = np.column_stack([np.ones(n), rng.standard_normal(n)])
    Y = rng.standard_normal((n, 2))
    Y[rng.random(n) < 0.3, 1] = np.nan
    codes = rng.integers(0, q, n)
    dam = np.where(rng.random(n) < 0.3, -1, rng.integers(0, q, n))
    M = sp.random(q, q, density=0.05, random_state=1)
    Kinv = (M @ M.T + sp.eye(q) * 0.5).tocsr()
    S = np.array([[1.0, 0.3], [0.3, 2.0]])
    gen = None
    if genomic:
        idx = np.arange(10, 30)
        B = rng.standard_normal((20, 20))
        gen = (idx, 0.1 * B @ B.T)
    groups = [
        RandomGroup("a", np.column_stack([codes, codes]), np.arange(2), S, q, kinv=Kinv, genomic=gen),
        RandomGroup("m", np.column_stack([codes, dam]), np.zeros(2, int), S, q, kinv=Kinv),
        RandomGroup("h", np.column_stack([codes % 7, codes % 7]), np.arange(2), S, 7),
    ]
    return GeneralPCG(Y, X, groups, np.array([[2.0, 0.5], [0.5, 1.5]]))


@pytest.mark.parametrize("genomic", [False, True])
def test_matmat_and_lockstep_solve_equal_the_single_vector_ones(genomic):
    """C X column by column (numba multi-RHS kernel + penalties) equals matvec to rounding;
    the block preconditioner likewise; solve_multi converges every column to tol, a zero
    right-hand side included, and agrees with the dense solve of the formed C."""
    model = small_model(genomic)
    rng = np.random.default_rng(1)
    V = rng.standard_normal((model.m, 5))
    ref = np.column_stack([model.matvec(V[:, j]) for j in range(5)])
    np.testing.assert_allclose(model.matmat(V), ref, rtol=0, atol=1e-13 * np.abs(ref).max())
    P = np.column_stack([model.precondition(V[:, j]) for j in range(5)])
    np.testing.assert_allclose(model.precondition_multi(V), P, rtol=0, atol=1e-13 * np.abs(P).max())
    V[:, 2] = 0.0
    Xs, info = model.solve_multi(V, tol=1e-11)
    assert info.all_converged and info.rounds[2] == 0 and np.all(Xs[:, 2] == 0)
    assert np.all(info.rel_residual <= 1e-11) and np.all(info.rounds[[0, 1, 3, 4]] > 0)
    C = model.matmat(np.eye(model.m))
    np.testing.assert_allclose(Xs, np.linalg.solve(C, V), rtol=0, atol=1e-8 * np.abs(Xs).max())


def test_lockstep_solve_not_converging_warns():
    model = small_model()
    with pytest.warns(h.errors.ConvergenceWarning, match="right-hand sides did not reach"):
        _, info = model.solve_multi(np.ones((model.m, 2)), tol=1e-30, max_rounds=5)
    assert not info.converged.any() and np.all(info.rounds == 5)


def test_sampled_pev_against_the_inverse_of_c():
    """Every random equation (maternal group with unknown dams, an H-like dense block, an iid
    group) against diag(C⁻¹) of the formed C; fixed block of C⁻¹ to 1e-8."""
    from henderson.solvers.pev_sampling_general import fixed_effect_cov_general, sampled_pev_general

    model = small_model(genomic=True)
    Ci = np.linalg.inv(model.matmat(np.eye(model.m)))
    out = sampled_pev_general(model, n_samples=200, seed=4)
    exact = np.diag(Ci)[: model.fpos]
    z = np.abs(out["pev"] - exact) / out["se"]
    assert z.max() <= 7 and np.mean(z > 4) <= 0.005 and np.mean(z <= 2) >= 0.9 - 3 * np.sqrt(0.09 / z.size)
    V = fixed_effect_cov_general(model)
    F = Ci[model.fpos :, model.fpos :]
    np.testing.assert_allclose(V, F, rtol=0, atol=1e-8 * np.abs(F).max())
    again = sampled_pev_general(model, n_samples=200, seed=4, batch=37)  # other batching, other draws
    assert not np.array_equal(again["pev"], out["pev"])
    z2 = np.abs(again["pev"] - exact) / again["se"]
    assert z2.max() <= 7


# -- through the public API -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def multitrait_fits(gryphon):
    rec, Ainv = gryphon
    kw = dict(cov_inverse={"ANIMAL": Ainv}, sigma2=MT_SIGMA)
    pcg = h.fit(MT_FORMULA, rec, solver="pcg", pev="sample", pev_samples=200, seed=1, **kw)
    ref = h.fit(MT_FORMULA, rec, solver="sparse", **kw)
    return pcg, ref


def test_multitrait_missing_traits_pev_within_monte_carlo_se(multitrait_fits):
    pcg, ref = multitrait_fits
    assert pcg.solver == "multitrait-pcg" and ref.solver == "multitrait-mme-sparse"
    for term in ("ANIMAL", "BYEAR"):
        check_pev(pcg.blups[term], ref.blups[term])
        check_reliability(pcg.blups[term], ref.blups[term])
    check_fixed_se(pcg, ref)
    check_named(pcg)


def test_seeded_sampling_is_reproducible(gryphon, multitrait_fits):
    rec, Ainv = gryphon
    kw = dict(cov_inverse={"ANIMAL": Ainv}, sigma2=MT_SIGMA, solver="pcg", pev="sample")
    pcg, _ = multitrait_fits
    same = h.fit(MT_FORMULA, rec, seed=1, **kw)
    other = h.fit(MT_FORMULA, rec, seed=2, pev_samples=50, **kw)
    for col in ("pev", "pev_se", "reliability"):
        np.testing.assert_array_equal(same.blups["ANIMAL"][col], pcg.blups["ANIMAL"][col])
    assert not np.allclose(other.blups["ANIMAL"]["pev"], pcg.blups["ANIMAL"]["pev"])
    check_named(other, n=50, seed=2)
    # a 4× smaller sample: Monte Carlo SEs about twice as large (√4)
    a, b = other.blups["ANIMAL"]["pev_se"], pcg.blups["ANIMAL"]["pev_se"]
    ratio = np.median((a / b)[b > 0])  # SE 0: levels with no link to the data (PEV = prior)
    assert 1.6 < ratio < 2.5


def test_without_pev_sample_pcg_says_not_computed(gryphon):
    rec, Ainv = gryphon
    res = h.fit(MT_FORMULA, rec, cov_inverse={"ANIMAL": Ainv}, sigma2=MT_SIGMA, solver="pcg")
    assert res.blups["ANIMAL"]["pev"].isna().all() and res.fixed_effects["se"].isna().all()
    assert "pev_se" not in res.blups["ANIMAL"] and res.settings["pev_method"] is None
    assert any("pev='sample' estimates PEV by sampling" in n for n in res.notes)
    with pytest.raises(h.errors.ModelError, match="pev must be"):
        h.fit(MT_FORMULA, rec, cov_inverse={"ANIMAL": Ainv}, sigma2=MT_SIGMA, solver="pcg", pev="exact")


def test_maternal_pev_within_monte_carlo_se(gryphon):
    rec, Ainv = gryphon
    kw = dict(cov_inverse={"ANIMAL": Ainv}, correlated=MAT_CORR, sigma2=MAT_THETA)
    with pytest.warns(h.errors.DataWarning):
        pcg = h.fit(MAT_FORMULA, rec, solver="pcg", pev="sample", seed=1, **kw)
    with pytest.warns(h.errors.DataWarning):
        ref = h.fit(MAT_FORMULA, rec, solver="sparse", **kw)
    assert pcg.solver == "general-pcg" and ref.solver == "sparse-general"
    for term in ref.blups:
        assert list(pcg.blups[term].columns) == ["blup", "pev", "pev_se", "reliability", "n_records"]
        check_pev(pcg.blups[term], ref.blups[term])
        check_reliability(pcg.blups[term], ref.blups[term])
    check_fixed_se(pcg, ref)
    check_named(pcg)


def test_single_step_blocks_single_trait_pev(single_step):
    rec, Hb = single_step
    f = "y ~ 1 + sex + (1|herd) + (1|id)"
    kw = dict(cov_inverse={"id": Hb}, sigma2=[0.5, 1.0, 2.0])
    pcg = h.fit(f, rec, solver="pcg", pev="sample", seed=1, **kw)
    ref = h.fit(f, rec, solver="sparse", **kw)
    assert pcg.solver == "pcg" and any("kept in blocks" in n for n in pcg.notes)
    for term in ("herd", "id"):
        check_pev(pcg.blups[term], ref.blups[term])
        check_reliability(pcg.blups[term], ref.blups[term])
    check_fixed_se(pcg, ref)
    check_named(pcg)


def test_single_step_blocks_multitrait_pev(single_step):
    rec, Hb = single_step
    f = "cbind(y, y2) ~ 1 + sex + (1|id) + (1|herd)"
    sigma = {
        "Sigma": [np.array([[1.0, 0.4], [0.4, 0.8]]), np.array([[0.5, 0.1], [0.1, 0.3]])],
        "Residual": np.array([[2.0, 0.5], [0.5, 1.5]]),
    }
    pcg = h.fit(f, rec, cov_inverse={"id": Hb}, sigma2=sigma, solver="pcg", pev="sample", seed=2)
    ref = h.fit(f, rec, cov_inverse={"id": Hb}, sigma2=sigma, solver="sparse")
    for term in ("id", "herd"):
        check_pev(pcg.blups[term], ref.blups[term])
        check_reliability(pcg.blups[term], ref.blups[term])
    check_fixed_se(pcg, ref)
    check_named(pcg, seed=2)


# -- reliability where diag(K) is unknown ------------------------------------------------------------
def test_trait_reliability_is_nan_not_zero_where_diag_k_is_unknown():
    P = np.array([[0.5, 1.0], [0.2, 0.3]])
    var = np.array([[1.0, 0.0], [np.nan, 2.0]])
    rel = trait_reliability(P, var)
    np.testing.assert_array_equal(np.isnan(rel), [[False, False], [True, False]])
    np.testing.assert_allclose(rel[~np.isnan(rel)], [0.5, 0.0, 0.85])


def test_multitrait_direct_and_pcg_reliability_nan_with_unknown_diag(gryphon):
    """A K⁻¹ whose diag(K) is declared unknown (NaN, as for a large K⁻¹ without a pedigree's
    inbreeding): reliability NaN, not 0, on the direct multi-trait MME and on sampled PCG
    (drawing from the pedigree's parents, so diag(K) is not computed; the plain estimator
    without control variate), while the PEV is still computed."""
    rec, Ainv = gryphon
    info = {k: v for k, v in Ainv.info.items() if k != "inbreeding"}
    info["diag"] = np.full(len(Ainv.ids), np.nan)
    K = h.Relationship(Ainv.ids, Ainv.matrix, inverse=True, kind="Ainv", info=info)
    kw = dict(cov_inverse={"ANIMAL": K}, sigma2=MT_SIGMA)
    ref = h.fit(MT_FORMULA, rec, solver="sparse", **kw)
    assert ref.blups["ANIMAL"]["reliability"].isna().all() and ref.blups["ANIMAL"]["pev"].notna().all()
    assert ref.blups["BYEAR"]["reliability"].notna().all()
    pcg = h.fit(MT_FORMULA, rec, solver="pcg", pev="sample", pev_samples=20, **kw)
    assert pcg.blups["ANIMAL"]["reliability"].isna().all() and pcg.blups["ANIMAL"]["pev"].notna().all()

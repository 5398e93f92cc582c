"""``solver="pcg"`` through the public API for multi-trait, maternal and single-step models.

Reference: the direct solvers at the same given (co)variances — the sparse multi-trait
MME (``solver="sparse"``, supernodal Cholesky; checked against sommer and brute force in
tests/multitrait) and the sparse general engine (checked against the dense engine and
Mrode's printed maternal solutions in tests/solvers/test_general_sparse.py). Tolerance:
BLUPs and fixed effects equal to 1e-8 of the largest entry (issue 13), with PCG run to
‖r − Cx‖/‖r‖ ≤ 1e-12 (``tol=``): at the default 1e-10 the gryphon multi-trait solution
is 2.1e-8 from the direct one, at 1e-12 9.4e-11, at 1e-14 4.1e-13 — the difference is
PCG's stopping point, not a different system.
"""

import numpy as np
import pandas as pd
import pytest

import henderson as h
from henderson import api_pcg
from henderson._testing.animal_model import simulate_animal_model
from henderson.errors import ModelError
from henderson.relationships.single_step import single_step_inverse


def close(a, b, tol=1e-8):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    np.testing.assert_allclose(a, b, rtol=0, atol=tol * np.abs(b).max())


@pytest.fixture(scope="module")
def gryphon():
    g = h.datasets.load_gryphon()
    return g.records, h.pedigree_inverse(g.pedigree)


# -- multi-trait with missing traits and A⁻¹ ----------------------------------------------------
MT_FORMULA = "cbind(BWT, TARSUS) ~ 1 + SEX + (1|ANIMAL) + (1|BYEAR)"
MT_SIGMA = {
    "Sigma": [np.array([[3.4, 2.1], [2.1, 12.0]]), np.array([[0.9, 0.3], [0.3, 2.0]])],
    "Residual": np.array([[3.8, 1.5], [1.5, 13.0]]),
}


def test_multitrait_missing_traits_equals_direct(gryphon):
    rec, Ainv = gryphon
    assert rec[["BWT", "TARSUS"]].isna().any().all()  # both traits have missing values
    kw = dict(cov_inverse={"ANIMAL": Ainv}, sigma2=MT_SIGMA)
    pcg = h.fit(MT_FORMULA, rec, solver="pcg", tol=1e-12, **kw)
    ref = h.fit(MT_FORMULA, rec, solver="sparse", **kw)
    assert pcg.solver == "multitrait-pcg" and ref.solver == "multitrait-mme-sparse"
    assert pcg.converged and pcg.settings["pcg"]["rel_residual"] <= 1e-12
    for term in ("ANIMAL", "BYEAR"):
        assert pcg.blups[term].index.equals(ref.blups[term].index)
        close(pcg.blups[term]["blup"], ref.blups[term]["blup"])
    assert pcg.fixed_effects.index.equals(ref.fixed_effects.index)
    close(pcg.fixed_effects["estimate"], ref.fixed_effects["estimate"])
    a, b = pcg.residuals.to_numpy(), ref.residuals.to_numpy()
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))  # missing traits have no residual
    close(a[~np.isnan(b)], b[~np.isnan(b)])
    assert np.isnan(pcg.loglik) and any("PCG:" in n for n in pcg.notes)
    np.testing.assert_array_equal(pcg.covariances["ANIMAL"].to_numpy(), MT_SIGMA["Sigma"][0])


# -- maternal (correlated direct and maternal effects on A⁻¹) -------------------------------------
MAT = dict(formula="BWT ~ 1 + SEX + (1|ANIMAL) + (1|MOTHER) + (1|BYEAR)", correlated=[("ANIMAL", "MOTHER")])
MAT_THETA = np.array([3.0, -0.3, 1.2, 0.9, 3.5])


def test_maternal_equals_direct(gryphon):
    rec, Ainv = gryphon
    kw = dict(cov_inverse={"ANIMAL": Ainv}, correlated=MAT["correlated"], sigma2=MAT_THETA)
    pcg = h.fit(MAT["formula"], rec, solver="pcg", tol=1e-12, **kw)
    ref = h.fit(MAT["formula"], rec, solver="sparse", **kw)
    assert pcg.solver == "general-pcg" and ref.solver == "sparse-general"
    assert pcg.converged
    for term in ref.blups:
        assert pcg.blups[term].index.equals(ref.blups[term].index)
        close(pcg.blups[term]["blup"], ref.blups[term]["blup"])
    close(pcg.fixed_effects["estimate"], ref.fixed_effects["estimate"])
    close(pcg.residuals, ref.residuals)
    assert pcg.covariances.keys() == ref.covariances.keys()
    for name, S in ref.covariances.items():
        close(pcg.covariances[name], S, 1e-15)


def test_maternal_refuses_what_pcg_does_not_fit(gryphon):
    rec, Ainv = gryphon
    with pytest.raises(ModelError, match="needs the variances: pass sigma2"):
        h.fit(MAT["formula"], rec, cov_inverse={"ANIMAL": Ainv}, correlated=MAT["correlated"], solver="pcg")
    with pytest.raises(ModelError, match="one residual variance"):
        h.fit(
            MAT["formula"],
            rec,
            cov_inverse={"ANIMAL": Ainv},
            correlated=MAT["correlated"],
            residual="SEX",
            sigma2=np.r_[MAT_THETA, 3.5],
            solver="pcg",
        )


# -- single-step H⁻¹ ----------------------------------------------------------------------------------
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


def test_single_step_multitrait_equals_direct(single_step):
    """H⁻¹ given in blocks: PCG applies τG*⁻¹ − ωA₂₂⁻¹ as a product, the direct MME fills it in."""
    rec, Hb = single_step
    f = "cbind(y, y2) ~ 1 + sex + (1|id) + (1|herd)"
    sigma = {
        "Sigma": [np.array([[1.0, 0.4], [0.4, 0.8]]), np.array([[0.5, 0.1], [0.1, 0.3]])],
        "Residual": np.array([[2.0, 0.5], [0.5, 1.5]]),
    }
    pcg = h.fit(f, rec, cov_inverse={"id": Hb}, sigma2=sigma, solver="pcg", tol=1e-12)
    ref = h.fit(f, rec, cov_inverse={"id": Hb}, sigma2=sigma, solver="sparse")
    assert pcg.solver == "multitrait-pcg" and pcg.converged
    for term in ("id", "herd"):
        close(pcg.blups[term]["blup"], ref.blups[term]["blup"])
    close(pcg.fixed_effects["estimate"], ref.fixed_effects["estimate"])


def test_single_step_single_trait_equals_direct(single_step, monkeypatch):
    """H⁻¹ in blocks, one trait: PCG (GeneralPCG, the dense block as a product) equals the
    sparse direct solver on the filled H⁻¹ and single-trait PCG on the filled CSR; ``auto``
    takes it above the threshold (monkeypatched) and says so, and stays direct below."""
    rec, Hb = single_step
    f = "y ~ 1 + sex + (1|herd) + (1|id)"
    kw = dict(cov_inverse={"id": Hb}, sigma2=[0.5, 1.0, 2.0])
    pcg = h.fit(f, rec, solver="pcg", tol=1e-12, **kw)
    ref = h.fit(f, rec, solver="sparse", **kw)
    filled = h.fit(f, rec, solver="pcg", tol=1e-12, cov_inverse={"id": Hb.to_relationship()}, sigma2=kw["sigma2"])
    assert pcg.solver == "pcg" and pcg.converged
    assert any("kept in blocks" in n for n in pcg.notes) and not any("kept in blocks" in n for n in filled.notes)
    for term in ("id", "herd"):
        assert pcg.blups[term].index.equals(ref.blups[term].index)
        close(pcg.blups[term]["blup"], ref.blups[term]["blup"])
        close(pcg.blups[term]["blup"], filled.blups[term]["blup"])
    close(pcg.fixed_effects["estimate"], ref.fixed_effects["estimate"])
    close(pcg.residuals, ref.residuals)
    assert h.fit(f, rec, **kw).solver != "pcg"  # auto, below PCG_THRESHOLD
    monkeypatch.setattr(api_pcg, "PCG_THRESHOLD", 100)
    auto = h.fit(f, rec, **kw)
    assert auto.solver == "pcg" and any("solver 'auto' chose PCG" in n for n in auto.notes)
    close(auto.blups["id"]["blup"], ref.blups["id"]["blup"], 1e-7)  # default tol 1e-10
    # pev="sample" with H⁻¹ in blocks now works: tests/test_pcg_general_pev.py


# -- solver="auto" above the size threshold -------------------------------------------------------------
def test_auto_takes_pcg_above_the_threshold_and_says_so(gryphon, monkeypatch):
    rec, Ainv = gryphon
    mt = dict(cov_inverse={"ANIMAL": Ainv}, sigma2=MT_SIGMA)
    mat = dict(cov_inverse={"ANIMAL": Ainv}, correlated=MAT["correlated"], sigma2=MAT_THETA)
    # below the threshold (the default, 100,000 equations): the direct solvers
    assert h.fit(MT_FORMULA, rec, **mt).solver == "multitrait-mme-sparse"
    assert h.fit(MAT["formula"], rec, **mat).solver == "sparse-general"
    monkeypatch.setattr(api_pcg, "PCG_THRESHOLD", 1000)
    a = h.fit(MT_FORMULA, rec, **mt)
    b = h.fit(MAT["formula"], rec, **mat)
    assert a.solver == "multitrait-pcg" and b.solver == "general-pcg"
    for res in (a, b):
        assert any("solver 'auto' chose PCG" in n and "> PCG_THRESHOLD (1000)" in n for n in res.notes)
    # without given variances "auto" still estimates them (REML on the direct solvers)
    assert h.fit(MAT["formula"], rec, cov_inverse={"ANIMAL": Ainv}, correlated=MAT["correlated"]).solver == (
        "sparse-general"
    )


def test_multitrait_pcg_needs_sigma_and_an_inverse(gryphon):
    rec, Ainv = gryphon
    with pytest.raises(ModelError, match="needs the covariances: sigma2="):
        h.fit(MT_FORMULA, rec, cov_inverse={"ANIMAL": Ainv}, solver="pcg")
    with pytest.raises(ModelError, match="same fixed effects for every trait"):
        h.multitrait.pcg.fit_traits_pcg(
            rec,
            ["BWT", "TARSUS"],
            [("ANIMAL", False)],
            fixed={"BWT": "1 + SEX", "TARSUS": "1"},
            sigma={"Sigma": [np.eye(2)], "Residual": np.eye(2)},
        )


def test_not_converging_is_a_warning_with_the_residual_history(gryphon):
    """A tolerance PCG cannot reach in double precision: a ConvergenceWarning whose .log is
    the residual history, and ``converged`` False on the result — never a silent answer."""
    rec, Ainv = gryphon
    kw = dict(cov_inverse={"ANIMAL": Ainv}, correlated=MAT["correlated"], sigma2=MAT_THETA)
    with pytest.warns(h.errors.ConvergenceWarning, match="PCG did not reach") as rec_w:
        res = h.fit(MAT["formula"], rec, solver="pcg", tol=1e-30, **kw)
    w = next(x.message for x in rec_w if isinstance(x.message, h.errors.ConvergenceWarning))
    assert not res.converged and res.iterations == len(w.log) - 1 >= 1000
    assert list(w.log.columns) == ["round", "rel_residual"] and res.log.equals(w.log)

"""No leakage with REML in every fold: perturbing the phenotypes of fold k by huge noise
leaves fold k's predictions bit-identical (and moves the other folds'), for GBLUP,
SNP-BLUP and pedigree BLUP (audit of issue 5, item 12)."""

import numpy as np
import pandas as pd
import pytest

import henderson as h
from henderson._testing.genotypes import simulate_genotypes
from henderson._testing.pedigree import simulate_pedigree
from henderson.cv import cross_validate


def _perturbed(y, ids, seed=0):
    out = y.copy()
    out.loc[ids] = out.loc[ids] + 1e3 * np.random.default_rng(seed).standard_normal(len(ids))
    return out


def _check(model, X, y, folds, k):
    a = cross_validate(model, X, y, cv=folds)
    assert a.settings["path"] == "refit" and a.leakage_note is None
    b = cross_validate(model, X, _perturbed(y, folds.index[folds == k]), cv=folds)
    pa, pb = a.predictions, b.predictions
    inside = (pa["fold"] == str(k)).to_numpy()
    for col in ("predicted_bv", "predicted_phenotype"):
        # bit-identical: fold k's fits never saw its phenotypes
        assert np.array_equal(pa.loc[inside, col].to_numpy(), pb.loc[inside, col].to_numpy()), col
    # while every other fold trained on the noise, and moved (its intercept at least: the
    # noise can push σ²_a to the boundary, where all BLUPs are 0 in both runs)
    moved = np.abs(
        pa.loc[~inside, "predicted_phenotype"].to_numpy() - pb.loc[~inside, "predicted_phenotype"].to_numpy()
    )
    assert moved.min() > 1e-3
    fa = a.fold_metrics.set_index("fold")
    fb = b.fold_metrics.set_index("fold")
    assert fa.loc[str(k), "sigma2_g"] == fb.loc[str(k), "sigma2_g"]  # REML of fold k untouched too


@pytest.fixture(scope="module")
def sim():
    geno = simulate_genotypes(60, 150, seed=8)
    rng = np.random.default_rng(8)
    y = pd.Series(0.3 * (geno.dosages[:, :25] @ rng.normal(size=25)) + rng.normal(size=60), index=geno.ids, name="y")
    folds = pd.Series(np.arange(60) % 3 + 1, index=geno.ids)
    return geno, y, folds


@pytest.mark.parametrize("model", [h.GBLUP, h.SNPBLUP])
def test_genomic_refit_has_no_leakage(sim, model):
    geno, y, folds = sim
    _check(model(), geno, y, folds, 2)


@pytest.mark.filterwarnings("ignore::henderson.errors.BoundaryWarning")  # perturbed folds
def test_pedigree_refit_has_no_leakage():
    ped = simulate_pedigree(150, 3, seed=2)
    ids = ped["id"].astype(str).to_numpy()[30:]  # founders without records stay in A
    rng = np.random.default_rng(4)
    # parental effects: a pedigree signal, so REML is interior in the unperturbed run
    par = pd.concat([ped["sire"], ped["dam"]]).dropna().astype(str).unique()
    eff = pd.Series(rng.normal(size=len(par)), index=par)
    rows = ped.set_index(ped["id"].astype(str)).loc[ids]
    g = sum(rows[c].astype(str).map(eff).fillna(0.0).to_numpy() for c in ("sire", "dam"))
    y = pd.Series(g + rng.normal(size=len(ids)), index=ids, name="w")
    folds = pd.Series(np.arange(len(ids)) % 2 + 1, index=ids)  # 2 folds: pedigree REML is the slow part
    _check(h.PedigreeBLUP(), ped, y, folds, 1)

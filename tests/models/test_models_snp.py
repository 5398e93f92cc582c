"""SNP-BLUP details: effect SEs, the automatic space, GBLUP's SNP effects, alleles.

References: rrBLUP ``mixed.solve(y, Z = scale(M, scale = FALSE), SE = TRUE)`` in
``tests/data/refs/wheat_rrblup.json`` (``snpblup_centred``: effects ``u`` and their
``u_se``, at rrBLUP's own Vu, Ve). Tolerances are stated at each assertion.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import load_ref

import henderson as h
from henderson.data.genotypes import Genotypes
from henderson.datasets import load_wheat
from henderson.models import fit_snpblup
from henderson.models.snpblup import centred_markers, snp_pev

RR = load_ref("wheat_rrblup.json")


@pytest.fixture(scope="module")
def wheat():
    w = load_wheat()
    geno = Genotypes.from_frame(2 * w.markers.astype(int))  # inbred lines: counts 0/2
    return geno, w.phenotypes["env1"]


@pytest.mark.parametrize("space", ["marker", "individual"])
def test_snp_effect_se_equals_rrblup_u_se(wheat, space):
    # rrBLUP's u.SE is √PEV(û); at rrBLUP's own Vu, Ve both formulas (MME inverse in
    # marker space, P in individual space) are exact linear algebra: 1e-12 absolute
    # on SEs of ~0.023 (observed 1e-16)
    geno, y = wheat
    ref = RR["snpblup_centred"]
    f = fit_snpblup(y, geno, sigma2=[ref["Vu"], ref["Ve"]], space=space)
    got = f.snp_effects.set_index("snp").loc[ref["u"]["names"]]
    np.testing.assert_allclose(got["se"], ref["u_se"], atol=1e-12)
    np.testing.assert_allclose(got["effect"], ref["u"]["values"], atol=1e-10)


def test_snp_pev_brute_force_with_fixed_effects():
    # independent check of both formulas with a non-intercept X: PEV(β) = σ²_β I −
    # Var(β̂), Var(β̂) = σ⁴_β W'PW with P written out from dense V (no MME, no blocks)
    rng = np.random.default_rng(3)
    n, m = 40, 25
    W = rng.normal(size=(n, m))
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.integers(0, 2, n)])
    s_b, s_e = 0.3, 1.7
    V = s_b * W @ W.T + s_e * np.eye(n)
    Vi = np.linalg.inv(V)
    P = Vi - Vi @ X @ np.linalg.inv(X.T @ Vi @ X) @ X.T @ Vi
    want = np.diag(s_b * np.eye(m) - s_b**2 * W.T @ P @ W)
    for space in ("marker", "individual"):
        np.testing.assert_allclose(snp_pev(W, X, s_b, s_e, space, block=7), want, rtol=1e-10)
    assert np.all(snp_pev(W, X, 0.0, s_e, "marker") == 0)  # β ≡ 0 on the boundary


def test_snp_se_optional_in_individual_space(wheat):
    geno, y = wheat
    f = fit_snpblup(y, geno, sigma2=[7e-4, 0.54], space="individual", snp_se=False)
    assert f.snp_effects["se"].isna().all()
    assert any("SNP-effect SEs not computed" in n and "snp_se=True" in n for n in f.result.notes)
    # pev=False (as cross-validation sets it) skips them under "auto"
    f = fit_snpblup(y, geno, sigma2=[7e-4, 0.54], pev=False)
    assert f.snp_effects["se"].isna().all()
    f = fit_snpblup(y, geno, sigma2=[7e-4, 0.54], pev=False, snp_se=True)
    assert (f.snp_effects["se"] > 0).all()


def test_auto_space_uses_genotyped_individuals(wheat):
    geno, y = wheat
    # 1,279 SNPs >= 599 genotyped lines: individual space
    s = h.SNPBLUP(sigma2=[7e-4, 0.54]).fit(geno, y)
    assert s.space_ == "individual"
    assert any("individual space: 1279 SNPs >= 599 genotyped" in n for n in s.result_.notes)
    # 300 SNPs < 599: marker space
    few = geno.subset(snps=geno.snp_ids[:300])
    s = h.SNPBLUP(sigma2=[7e-4, 0.54]).fit(few, y)
    assert s.space_ == "marker"
    assert any("marker space: 300 SNPs < 599 genotyped" in n for n in s.result_.notes)
    # regression: 100 records, 300 SNPs, 599 genotyped. The individual-space kernel is
    # 599 x 599 (every genotyped line gets a GEBV), so marker space is smaller; the old
    # rule compared SNPs with records (300 >= 100) and took individual space
    y100 = y.copy()
    y100.iloc[100:] = np.nan
    s = h.SNPBLUP(sigma2=[7e-4, 0.54]).fit(few, y100)
    assert s.space_ == "marker"
    assert len(s.gebv_) == 599


def test_gblup_on_genotypes_exposes_snp_effects(wheat):
    geno, y = wheat
    gb = h.GBLUP().fit(geno, y)
    c = 2 * np.sum(gb.allele_freq_ * (1 - gb.allele_freq_))
    vc = gb.variance_components_["variance"]
    sb = fit_snpblup(y, geno, sigma2=[vc["id"] / c, vc["Residual"]])
    # same model at equal variances: 1e-8 (effects ~0.03; observed ~4e-16)
    np.testing.assert_allclose(gb.snp_effects_["effect"], sb.snp_effects["effect"], atol=1e-8)
    assert list(gb.snp_effects_["snp"]) == list(geno.snp_ids)
    # ĝ = Wβ̂ for every genotyped line, independently of the numba pass
    W, _ = centred_markers(geno)
    np.testing.assert_allclose(W @ gb.snp_effects_["effect"].to_numpy(), gb.gebv_["gebv"], atol=1e-10)
    # β̂ = W'α/2Σpq with a float W built here (SNP-BLUP above shares the int8 kernel)
    alpha = gb.dual_coef_.loc[list(geno.ids)].to_numpy()
    np.testing.assert_allclose(gb.snp_effects_["effect"], W.T @ alpha / c, atol=1e-12)
    # fitted on a G matrix (no genotypes): nothing to back-solve from
    assert h.GBLUP().fit(h.genomic_relationship(geno), y).snp_effects_ is None


def test_attach_genotypes_after_a_fit_on_g_equals_a_fit_on_genotypes(wheat):
    geno, y = wheat
    a = h.GBLUP(sigma2=[0.3, 0.54], pev=False).fit(geno, y)
    b = h.GBLUP(sigma2=[0.3, 0.54], pev=False).fit(h.genomic_relationship(geno), y)
    assert b.snp_effects_ is None
    b.attach_genotypes(geno)
    np.testing.assert_allclose(b.snp_effects_["effect"], a.snp_effects_["effect"], atol=1e-12)
    with pytest.raises(h.DataError, match="not in the genotypes"):
        h.GBLUP(sigma2=[0.3, 0.54], pev=False).fit(h.genomic_relationship(geno), y).attach_genotypes(
            geno.subset(ids=geno.ids[:10])
        )


def test_gblup_snp_effects_with_missing_calls_and_fortran_order(wheat):
    # missing calls are centred to 0 by both G and β̂ = W'α/c; the int8 kernel has a
    # row-major and a column-major pass: both against the float W'α
    geno, y = wheat
    d = np.array(geno.dosages)
    rng = np.random.default_rng(0)
    d[rng.random(d.shape) < 0.02] = -127
    for order in ("C", "F"):
        g2 = Genotypes(geno.ids, geno.snps, np.asarray(d, order=order))
        gb = h.GBLUP(pev=False).fit(g2, y)
        W, _ = centred_markers(g2)
        c = 2 * np.sum(gb.allele_freq_ * (1 - gb.allele_freq_))
        want = W.T @ gb.dual_coef_.loc[g2.ids].to_numpy() / c
        np.testing.assert_allclose(gb.snp_effects_["effect"], want, atol=1e-12)


# ---- alleles at prediction ------------------------------------------------------


def _with_alleles(geno, a1, a2):
    snps = geno.snps.copy()
    snps["allele1"], snps["allele2"] = a1, a2
    return Genotypes(geno.ids, snps, geno.dosages)


@pytest.fixture(scope="module")
def allele_setup(wheat):
    geno, y = wheat
    rng = np.random.default_rng(1)
    bases = np.array(["A", "C", "G", "T"])
    a1 = bases[rng.integers(0, 4, geno.p)]
    # allele2: any base that is neither a1 nor its complement (no A/T, C/G SNPs)
    other = {"A": "G", "C": "A", "G": "T", "T": "C"}
    a2 = np.array([other[a] for a in a1])
    g = _with_alleles(geno, a1, a2)
    train, new = g.ids[:500], g.ids[500:]
    sb = h.SNPBLUP(sigma2=[7e-4, 0.54]).fit(g.subset(ids=train), y.loc[train])
    gb = h.GBLUP(sigma2=[7e-4 * 426.27, 0.54]).fit(g.subset(ids=train), y.loc[train])
    return g.subset(ids=new), a1, a2, sb, gb


def test_swapped_alleles_are_flipped_and_reported(allele_setup):
    new, a1, a2, sb, gb = allele_setup
    base = sb.predict(new)
    # hand-swap 7 SNPs: count the other allele (x -> 2 - x) and swap the labels
    swap = np.zeros(new.p, bool)
    swap[[0, 5, 17, 100, 400, 800, 1278]] = True
    d = np.where(swap, 2 - new.dosages, new.dosages).astype(np.int8)
    snps = new.snps.copy()
    snps.loc[swap, "allele1"], snps.loc[swap, "allele2"] = a2[swap], a1[swap]
    swapped = Genotypes(new.ids, snps, d)
    for est in (sb, gb):
        with pytest.warns(h.errors.DataWarning, match="7 SNP\\(s\\) count the model's other allele"):
            got = est.predict(swapped)
        # identical to the unswapped prediction: the flip is exact (integer dosages)
        np.testing.assert_allclose(got, est.predict(new), atol=1e-12)
        assert "7 SNP(s)" in got.attrs["notes"][0]
    # without the check the sign of those SNPs' contributions would be wrong
    from henderson.models import predict_from_snp_effects

    wrong = predict_from_snp_effects(swapped, sb.snp_effects_, check_alleles=False)
    assert np.abs(wrong - base).max() > 1e-3


def test_mismatched_and_ambiguous_alleles_are_errors(allele_setup):
    new, a1, a2, sb, gb = allele_setup
    comp = {"A": "T", "T": "A", "C": "G", "G": "C"}
    snps = new.snps.copy()
    snps.loc[3, "allele1"], snps.loc[3, "allele2"] = comp[a1[3]], comp[a2[3]]  # other strand
    bad = Genotypes(new.ids, snps, new.dosages)
    name = new.snp_ids[3]
    with pytest.raises(
        h.DataError,
        match=f"1 SNP\\(s\\) have alleles that do not match.*{name} "
        f"\\({a1[3]}/{a2[3]} vs {comp[a1[3]]}/{comp[a2[3]]}\\)",
    ):
        sb.predict(bad)
    # a palindromic (A/T) SNP whose labels are swapped: swap or strand flip? refuse
    model = sb.snp_effects_.copy()
    model.loc[0, ["allele1", "allele2"]] = ["A", "T"]
    snps = new.snps.copy()
    snps.loc[0, ["allele1", "allele2"]] = ["T", "A"]
    from henderson.models import predict_from_snp_effects

    with pytest.raises(h.DataError, match="strand-ambiguous.*" + new.snp_ids[0]):
        predict_from_snp_effects(Genotypes(new.ids, snps, new.dosages), model)
    # same labels on an A/T SNP are taken as they are
    snps.loc[0, ["allele1", "allele2"]] = ["A", "T"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict_from_snp_effects(Genotypes(new.ids, snps, new.dosages), model)


def test_no_allele_labels_no_check(wheat):
    geno, y = wheat  # numeric matrix: allele labels are empty placeholders
    sb = h.SNPBLUP(sigma2=[7e-4, 0.54]).fit(geno.subset(ids=geno.ids[:500]), y.iloc[:500])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = sb.predict(geno.subset(ids=geno.ids[500:]))
    assert g.attrs["notes"] == []


def test_effects_read_back_from_csv_with_missing_alleles_are_unchecked(allele_setup, tmp_path):
    # a saved snp_effects.csv from a numeric matrix has empty allele cells, which pandas
    # reads back as NaN (kept as NaN by astype(str) in pandas 3): unknown, not "nan"
    new, a1, a2, sb, gb = allele_setup
    eff = sb.snp_effects_.copy()
    eff[["allele1", "allele2"]] = ""
    eff.to_csv(tmp_path / "e.csv", index=False)
    back = pd.read_csv(tmp_path / "e.csv", dtype={"snp": str})
    assert back["allele1"].isna().all()
    from henderson.models import predict_from_snp_effects

    g = predict_from_snp_effects(new, back)  # new carries A/C/G/T labels: nothing to check against
    np.testing.assert_allclose(g, predict_from_snp_effects(new, eff), atol=1e-12)


def test_h2_convention_and_sample_scale_note(wheat):
    # h2_ stays rrBLUP's σ²_g/(σ²_g + σ²_e); the notes add the heritability on the
    # scale of the sample's genetic variance, σ²_g·D with D = mean(diag G) − mean(G)
    # (Legarra 2016), computed here from G directly: D = 2 for these 0/2 inbred lines
    import re

    geno, y = wheat
    G = h.genomic_relationship(geno).dense()
    D = np.mean(np.diag(G)) - G.mean()
    assert D == pytest.approx(2.0, abs=1e-12)
    for est, X in ((h.GBLUP(pev=False), geno), (h.SNPBLUP(pev=False), geno)):
        est.fit(X, y)
        vc = est.variance_components_["variance"]
        s_g = est.sigma2_g_ if isinstance(est, h.SNPBLUP) else vc["id"]
        s_e = vc["Residual"]
        assert est.h2_ == pytest.approx(s_g / (s_g + s_e), rel=1e-12)
        note = next(n for n in est.result_.notes if n.startswith("h2 ="))
        scaled = float(re.search(r"h2 = [^=]*= ([0-9.]+)$", note).group(1))
        assert scaled == pytest.approx(D * s_g / (D * s_g + s_e), abs=5e-4)  # 4 digits printed


def test_marker_and_individual_space_agree_with_missing_calls_and_unphenotyped():
    """Two ways to one model: marker space (W explicit) and individual space (WW' through
    G's blocked kernel, effects by W'a over the int8 codes). REML optima, effects, SEs and
    GEBVs agree to 1e-8 (both are exact solutions; the REML optima to their 1e-10 search)."""
    from henderson._testing.genotypes import simulate_genotypes

    geno = simulate_genotypes(120, 90, seed=11, missing_rate=0.03)
    rng = np.random.default_rng(2)
    y = pd.Series(
        rng.normal(size=100) + 0.02 * (geno.dosages[:100].clip(0, 2) @ rng.normal(size=90)), index=geno.ids[:100]
    )  # 20 genotyped lines without records
    a = h.SNPBLUP(space="marker", snp_se=True).fit(geno, y)
    b = h.SNPBLUP(space="individual", snp_se=True).fit(geno, y)
    assert a.space_ == "marker" and b.space_ == "individual"
    np.testing.assert_allclose(a.sigma2_beta_, b.sigma2_beta_, rtol=1e-6)
    c = h.SNPBLUP(
        space="individual", sigma2=(a.sigma2_beta_, a.variance_components_["variance"].iloc[1]), snp_se=True
    ).fit(geno, y)
    np.testing.assert_allclose(c.snp_effects_["effect"], a.snp_effects_["effect"], atol=1e-8)
    np.testing.assert_allclose(c.snp_effects_["se"], a.snp_effects_["se"], atol=1e-8)
    np.testing.assert_allclose(c.gebv_["gebv"], a.gebv_["gebv"].loc[c.gebv_.index], atol=1e-8)

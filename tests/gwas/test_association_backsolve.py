"""Back-solved SNP tests and windows against brute-force dense computations.

References are computed here from their definitions with explicit dense matrices
(V, P, the MME and its inverse), independently of the blocked code under test.
Tolerances are relative 1e-8: both sides are exact in exact arithmetic, and float64
rounding through an n = 100 Cholesky or inverse stays far below that.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import henderson
from henderson._testing.genotypes import simulate_genotypes

S_G, S_E = 0.8, 1.3


@pytest.fixture(scope="module")
def case():
    geno = simulate_genotypes(120, 300, seed=7, n_chrom=3)
    rng = np.random.default_rng(7)
    ids = geno.ids[:100]  # 20 genotyped individuals without records: Z is not I
    x = rng.normal(size=100)
    y = pd.Series(geno.dosages[:100, 10] * 0.7 + 0.4 * x + rng.normal(size=100), index=ids, name="y")
    data = pd.DataFrame({"x": x}, index=ids)
    return geno, y, data


def _dense(geno, y, data, freq):
    """W (N × m), Z (n × N), X (n × 2), y (n,)."""
    W = geno.dosages.astype(float) - 2 * freq
    Z = np.zeros((len(y), geno.n))
    Z[np.arange(len(y)), pd.Index(geno.ids).get_indexer(y.index)] = 1.0
    X = np.column_stack([np.ones(len(y)), data.loc[y.index, "x"].to_numpy()])
    return W, Z, X, y.to_numpy()


def _brute_p(V, X):
    Vi = np.linalg.inv(V)
    return Vi - Vi @ X @ np.linalg.solve(X.T @ Vi @ X, X.T @ Vi)


def test_gblup_backsolve_equals_dense_formula_and_mme_inverse(case):
    geno, y, data = case
    gb = henderson.GBLUP(fixed="x", sigma2=(S_G, S_E)).fit(geno, y, data=data)
    t = henderson.association(gb, geno)
    freq = geno.allele_freq
    W, Z, X, yv = _dense(geno, y, data, freq)
    c = 2 * np.sum(freq * (1 - freq))
    s_b = S_G / c
    G = W @ W.T / c
    P = _brute_p(S_G * Z @ G @ Z.T + S_E * np.eye(len(yv)), X)
    beta = s_b * W.T @ Z.T @ P @ yv
    var = s_b**2 * np.einsum("ij,ij->j", Z @ W, P @ Z @ W)
    np.testing.assert_allclose(t.effect, beta, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(t.se**2, var, rtol=1e-8)
    np.testing.assert_allclose(t.p, 2 * stats.norm.sf(np.abs(beta) / np.sqrt(var)), rtol=1e-8)
    # a second, independent route (Henderson 1975): the SNP-BLUP mixed model equations,
    # Var(β̂) = σ²_β − PEV with PEV = σ²_e diag(C^ββ) of the MME inverse
    ZW = Z @ W
    C = np.block([[X.T @ X, X.T @ ZW], [ZW.T @ X, ZW.T @ ZW + (S_E / s_b) * np.eye(geno.p)]])
    pev = S_E * np.diag(np.linalg.inv(C))[2:]
    np.testing.assert_allclose(t.se**2, s_b - pev, rtol=1e-7)
    # and the effects are the estimator's own back-solved ones
    np.testing.assert_allclose(t.effect, gb.snp_effects_.effect, rtol=1e-10, atol=1e-15)
    assert t.attrs["method"].startswith("backsolve (GBLUP")


def test_snpblup_backsolve_equals_gblup_at_matching_variances(case):
    geno, y, data = case
    freq = geno.allele_freq
    c = 2 * np.sum(freq * (1 - freq))
    gb = henderson.GBLUP(fixed="x", sigma2=(S_G, S_E)).fit(geno, y, data=data)
    sb = henderson.SNPBLUP(fixed="x", sigma2=(S_G / c, S_E)).fit(geno, y, data=data)
    a, b = henderson.association(gb, geno), henderson.association(sb, geno)
    np.testing.assert_allclose(b.effect, a.effect, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(b.se, a.se, rtol=1e-8)


class _SingleStepLike:
    """The single-step hook: G_, gebv_, variance_components_, genotyped_pec()."""

    def __init__(self, G, gebv, pec, s_g, s_e, freq):
        self.G_, self.allele_freq_ = G, freq
        self.gebv_ = pd.DataFrame({"gebv": gebv}, index=G.ids)
        self.variance_components_ = pd.DataFrame({"variance": [s_g, s_e]}, index=["id", "Residual"])
        self._pec = pd.DataFrame(pec, index=G.ids, columns=G.ids)

    def genotyped_pec(self):
        return self._pec


def test_single_step_hook_from_the_mme_inverse_equals_the_p_formula(case):
    """C^gg from Henderson's MME inverse (G invertible: centred at p = 0.5) through the hook
    gives the same effects and SEs as σ²_β W'Z'Py and σ⁴_β diag(W'Z'PZW)."""
    geno, y, data = case
    freq = np.full(geno.p, 0.5)
    W, Z, X, yv = _dense(geno, y, data, freq)
    c = 2 * np.sum(freq * (1 - freq))
    G = W @ W.T / c
    Gi = np.linalg.inv(G)
    lam = S_E / S_G
    C = np.block([[X.T @ X, X.T @ Z], [Z.T @ X, Z.T @ Z + lam * Gi]])
    Ci = np.linalg.inv(C)
    sol = Ci @ np.concatenate([X.T @ yv, Z.T @ yv])
    gebv, pec = sol[2:], S_E * Ci[2:, 2:]
    est = _SingleStepLike(henderson.Relationship(geno.ids, G, kind="G"), gebv, pec, S_G, S_E, freq)
    t = henderson.association(est, geno)
    P = _brute_p(S_G * Z @ G @ Z.T + S_E * np.eye(len(yv)), X)
    s_b = S_G / c
    np.testing.assert_allclose(t.effect, s_b * W.T @ Z.T @ P @ yv, rtol=1e-7, atol=1e-13)
    np.testing.assert_allclose(t.se**2, s_b**2 * np.einsum("ij,ij->j", Z @ W, P @ Z @ W), rtol=1e-6)
    assert "Aguilar" in t.attrs["method"]


def test_windows_equal_a_loop_over_windows(case):
    geno, y, data = case
    gb = henderson.GBLUP(fixed="x", sigma2=(S_G, S_E)).fit(geno, y, data=data)
    t = henderson.association(gb, geno)
    W = geno.dosages.astype(float) - 2 * geno.allele_freq
    total = (W @ t.effect.to_numpy()).var(ddof=1)
    for size, kind in ((7, "snps"), ("25kb", "bp")):
        win = henderson.variance_windows(t, geno, size, block_size=16)  # several chunks
        assert win.n_snps.sum() == geno.p
        for _, w in win.iterrows():
            on = ((geno.snps.chrom == w.chrom) & (geno.snps.pos >= w.start) & (geno.snps.pos <= w.end)).to_numpy()
            assert on.sum() == w.n_snps
            if kind == "snps":
                assert w.n_snps == 7 or w.end == geno.snps.pos[geno.snps.chrom == w.chrom].max()
            else:
                assert w.end - w.start + 1 == 25_000
            expect = 100 * (W[:, on] @ t.effect.to_numpy()[on]).var(ddof=1) / total
            assert w.pct_var == pytest.approx(expect, rel=1e-9)


def test_window_sizes_parse():
    from henderson.gwas import parse_window

    assert parse_window(50) == ("snps", 50)
    assert parse_window("20snps") == ("snps", 20)
    assert parse_window("1Mb") == ("bp", 1_000_000)
    assert parse_window("250kb") == ("bp", 250_000)
    assert parse_window("0.5Mb") == ("bp", 500_000)
    with pytest.raises(henderson.DataError, match="not a number of SNPs"):
        parse_window("1 megabase")
    with pytest.raises(henderson.DataError, match="whole number"):
        parse_window("2.5snps")


def test_reml_fit_backsolve_runs_and_zero_variance_is_stated(case):
    geno, y, data = case
    rng = np.random.default_rng(1)
    noise = pd.Series(rng.normal(size=len(y)), index=y.index, name="y")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gb = henderson.GBLUP(sigma2=(0.0, 1.0)).fit(geno, noise)
    t = henderson.association(gb, geno)
    assert (t.effect == 0).all() and t.p.isna().all()
    assert any("sigma2_g estimated at 0" in n for n in t.attrs["notes"])


def test_float32_whitening_of_large_problems_agrees_with_float64(case, monkeypatch):
    """From FLOAT32_FROM records SNP blocks are whitened in float32: same statistics to ~1e-5."""
    from henderson.gwas import _fixed

    geno, y, data = case
    gb = henderson.GBLUP(fixed="x", sigma2=(S_G, S_E)).fit(geno, y, data=data)
    t64 = henderson.association(gb, geno)
    m64 = henderson.association(y, geno, method="mlma", fixed="x", data=data)
    monkeypatch.setattr(_fixed, "FLOAT32_FROM", 1)
    t32 = henderson.association(gb, geno)
    m32 = henderson.association(y, geno, method="mlma", fixed="x", data=data)
    # float32 has 24-bit mantissas (6e-8); a whitened column sums n = 100 such terms
    np.testing.assert_allclose(t32.se, t64.se, rtol=1e-5)
    np.testing.assert_allclose(t32.effect, t64.effect, rtol=1e-4, atol=1e-5 * t64.se.max())
    np.testing.assert_allclose(-np.log10(m32.p), -np.log10(m64.p), atol=1e-4)
    assert not np.array_equal(t32.se, t64.se)  # the float32 path did run


def test_snpblup_many_records_uses_the_marker_space_pev(case, monkeypatch):
    """Above KERNEL_MAX_RECORDS no n × n kernel: Var(β̂) = σ²_β − PEV from SNP-BLUP's MME inverse."""
    import importlib

    bs_mod = importlib.import_module("henderson.gwas.backsolve")  # the module, not the function

    geno, y, data = case
    sub = geno.subset(snps=geno.snp_ids[:60])  # m < N: SNP-BLUP in marker space, SEs from the MME
    freq = sub.allele_freq
    c = 2 * np.sum(freq * (1 - freq))
    sb = henderson.SNPBLUP(fixed="x", sigma2=(S_G / c, S_E)).fit(sub, y, data=data)
    assert sb.space_ == "marker"
    ref = henderson.association(sb, sub)
    monkeypatch.setattr(bs_mod, "KERNEL_MAX_RECORDS", 10)
    t = henderson.association(sb, sub)
    assert "PEV" in t.attrs["method"]
    np.testing.assert_allclose(t.effect, ref.effect, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(t.se, ref.se, rtol=1e-6)  # σ²_β − PEV cancels a few digits


def test_backsolve_reads_a_plink_file_in_blocks(case, tmp_path):
    geno, y, data = case
    gb = henderson.GBLUP(fixed="x", sigma2=(S_G, S_E)).fit(geno, y, data=data)
    henderson.write_plink(tmp_path / "g", geno)
    a = henderson.association(gb, geno)
    b = henderson.association(gb, tmp_path / "g", block_size=37)
    np.testing.assert_allclose(b.effect, a.effect, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(b.se, a.se, rtol=1e-10)


def test_float32_blocks_with_missing_calls_equal_float64(monkeypatch):
    """The fused float32 path (centre_f32 + strsm + column_forms) against the float64 one.

    Missing calls (5%) are centred to 0 in both; covariates make Q two columns wide.
    Reference: FixedRatio.forms on float64 blocks with a float64 Cholesky solve
    (FLOAT32_FROM above n), i.e. the dense formula tested above to 1e-8. Tolerance: the
    float32 solve's relative error is about κ(L)·6e-8 per element, and a, b sum n = 150
    such terms: 1e-5 relative on b, 1e-5·max|a| on a.
    """
    from henderson.gwas import _fixed
    from henderson.gwas._source import GenotypeSource

    geno = simulate_genotypes(150, 400, seed=11, n_chrom=2, missing_rate=0.05)
    assert (geno.dosages == -127).any()
    rng = np.random.default_rng(11)
    X = np.column_stack([np.ones(150), rng.normal(size=150)])
    y = rng.normal(size=150)
    src = GenotypeSource(geno, block_size=96)
    freq = src.allele_freq()
    K = np.zeros((150, 150))
    for _, W in src.centred_blocks(None, freq):
        K += W @ W.T
    K /= 2 * np.sum(freq * (1 - freq))
    monkeypatch.setattr(_fixed, "FLOAT32_FROM", 10**9)
    f64 = _fixed.FixedRatio(K, 0.7, y, X)
    a64, b64 = map(np.concatenate, zip(*(f64.forms(W) for _, W in src.centred_blocks(None, freq)), strict=True))
    monkeypatch.setattr(_fixed, "FLOAT32_FROM", 1)
    f32 = _fixed.FixedRatio(K, 0.7, y, X)
    blocks = list(f32.blocks(src, None, freq, np.arange(geno.p)))
    assert all(W.dtype == np.float32 and W.flags.f_contiguous for _, W in blocks)
    # centring: the float32 block is the float64 one rounded (missing calls exactly 0)
    for (_, w32), (_, w64) in zip(blocks, src.centred_blocks(None, freq), strict=True):
        np.testing.assert_array_equal(w32, w64.astype(np.float32))
    a32, b32 = map(np.concatenate, zip(*(f32.forms_of(W) for _, W in blocks), strict=True))
    np.testing.assert_allclose(b32, b64, rtol=1e-5)
    np.testing.assert_allclose(a32, a64, rtol=0, atol=1e-5 * np.abs(a64).max())
    assert not np.array_equal(b32, b64)  # the float32 path did run


def test_float32_path_leaves_a_snp_constant_among_the_records_untested(case, monkeypatch):
    """On the float32 path b = ‖W̃‖² − ‖Q'W̃‖² cancels to rounding for a SNP in the span of
    the covariates (constant among the records, variable among all genotyped): it must be
    untested (no huge z from a rounding-sized b), as on the float64 path."""
    from henderson.gwas import _fixed

    geno, y, data = case
    d = np.array(geno.dosages)
    d[:100, 3] = 1  # heterozygous in every record, variable among the 20 without records
    d[100:, 3] = np.arange(20) % 3
    g2 = henderson.Genotypes(geno.ids, geno.snps, d)
    gb = henderson.GBLUP(fixed="x", sigma2=(S_G, S_E)).fit(g2, y, data=data)
    t64 = henderson.association(gb, g2)
    monkeypatch.setattr(_fixed, "FLOAT32_FROM", 1)
    t32 = henderson.association(gb, g2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", henderson.DataWarning)  # SNP 3 is monomorphic among the records
        m32 = henderson.association(y, g2, method="mlma", fixed="x", data=data)
    for t in (t64, t32, m32):
        assert not t.tested[3] and np.isnan(t.p[3])
        assert t.tested.drop(3).all()

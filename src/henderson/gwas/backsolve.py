"""SNP tests back-solved from GBLUP, SNP-BLUP and single-step GBLUP.

With centred counts W and G = WW'/c (c = 2Σpq), g = Wβ and σ²_β = σ²_g/c, the BLUP of
the SNP effects and their sampling variances are (Gualdrón Duarte et al. 2014, BMC
Bioinformatics 15:246; Aguilar et al. 2019, Genet. Sel. Evol. 51:28 for single step):

    β̂ = σ²_β W'Z'Py                      = (1/c) W'G⁻¹ĝ
    Var(β̂) = σ⁴_β W'Z'PZW                = (1/c²) W'G⁻¹(Gσ²_g − C^{gg})G⁻¹W

(P = V⁻¹ − V⁻¹X(X'V⁻¹X)⁻¹X'V⁻¹, C^{gg} the prediction-error covariance of ĝ), and
β̂ⱼ/√Var(β̂ⱼ) ~ N(0, 1) when βⱼ = 0. The first form needs no G⁻¹ (valid for singular
G) and is what GBLUP and SNP-BLUP use; only the diagonal of Var(β̂) is formed, block
by block over SNPs (:class:`~henderson.gwas._fixed.FixedRatio`: one Cholesky of
λK_r + I, then a triangular solve per SNP block, O(n²m) in all). The second form is the
single-step hook: it reads C^{gg} from the fitted model and needs G invertible.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
from scipy import stats

from ..errors import DataError, ModelError
from ._fixed import FixedRatio
from ._model import Fitted
from ._source import GenotypeSource
from ._table import empty_table, untestable


def _model_freq(fm: Fitted, source: GenotypeSource, rows: np.ndarray) -> np.ndarray:
    """Centring frequencies of the fitted model, checked against the genotypes given."""
    if fm.snp_ids is not None:
        ours = source.snps["snp"].astype(str).to_numpy()
        if len(ours) != len(fm.snp_ids) or not np.array_equal(ours, np.asarray(fm.snp_ids, dtype=str)):
            raise DataError(
                f"the genotypes have {len(ours)} SNPs, the fitted model {len(fm.snp_ids)} "
                "(or another order): back-solving needs the SNPs G was built from"
            )
    freq = fm.freq if fm.freq is not None else source.allele_freq(rows)
    ok = np.isfinite(freq)
    scale = 2.0 * float(np.sum(freq[ok] * (1.0 - freq[ok])))
    if fm.scale is not None and abs(scale - fm.scale) > 1e-6 * fm.scale:
        raise DataError(
            f"these genotypes give 2*sum(pq) = {scale:.6g} over the fitted model's individuals, "
            f"but its G was scaled by {fm.scale:.6g}: pass the genotypes (same SNPs, same "
            "individuals) that G was built from"
        )
    return freq


def backsolve(fm: Fitted, source: GenotypeSource):
    """Back-solved effects, their SEs, z and two-sided normal p (see the module notes).

    Returns
    -------
    (table, method, notes)
    """
    if fm.pec is not None:
        return _backsolve_pec(fm, fm.pec, source)
    d = fm.design
    if d is None:  # pragma: no cover - only the single-step hook (with pec) has no record design
        raise ModelError(f"the fitted {fm.kind} carries no record design to back-solve from")
    rows = source.rows_of(d.record_ids, f"the fitted {fm.kind} (phenotyped)")
    all_ids = fm.G.ids if fm.G is not None else fm.estimator.gebv_.index.to_numpy()
    all_rows = source.rows_of(all_ids, f"the fitted {fm.kind}")  # every individual of the fit
    freq = _model_freq(fm, source, all_rows)
    t = empty_table(source.snps, freq)
    ok, notes = untestable(freq, t["snp"].to_numpy(), f"the fitted {fm.kind}'s individuals")
    c = fm.scale if fm.scale is not None else 2.0 * float(np.nansum(freq * (1 - freq)))
    s_g, s_e = fm.sigma2_g, fm.sigma2_e
    s_b = s_g / c
    if s_g <= 0:
        notes.append("sigma2_g estimated at 0: every back-solved effect is 0 and nothing is tested")
        t.loc[ok, ["effect", "se"]] = 0.0
        return t, "backsolve", notes
    if fm.G is None and len(rows) > KERNEL_MAX_RECORDS:
        return _from_snp_pev(fm, len(d.y), c, t, ok, notes)
    Kr = _record_kernel(fm, d.record_ids, source, rows, freq, c)
    fr = FixedRatio(Kr, s_g / s_e, d.y, d.X)
    del Kr
    idx_ok = np.flatnonzero(ok)
    for idx, W in fr.blocks(source, rows, freq, idx_ok):
        a, b = fr.forms_of(W)  # w'P_H y, w'P_H w with P_H = σ²_e P
        t.loc[idx, "effect"] = s_b * a / s_e
        t.loc[idx, "se"] = s_b * np.sqrt(b / s_e)
        t.loc[idx, "tested"] = b > 1e-12 * max(1.0, float(np.max(b)))  # constant among the records: untested
    _finish(t)
    method = (
        f"backsolve ({fm.kind}: beta = sigma2_beta W'Z'Py, Var(beta) = sigma2_beta^2 "
        f"diag(W'Z'PZW), exact; Gualdron Duarte et al. 2014)"
    )
    return t, method, notes


#: SNP-BLUP records above which the n × n kernel is not formed (8 bytes · n² > 3 GB):
#: the SEs come from the fit's marker-space PEV instead
KERNEL_MAX_RECORDS = 20000


def _from_snp_pev(fm: Fitted, n_records: int, c: float, t, ok, notes):
    """SNP-BLUP solved in marker space: Var(β̂) = σ²_β − PEV(β̂), PEV from its MME inverse (c = 2Σpq)."""
    eff = fm.estimator.snp_effects_
    if not np.isfinite(eff["se"].to_numpy(dtype=float)[ok]).all():
        raise ModelError(
            f"{n_records:,} records are too many for the n x n kernel, and the SNP-BLUP "
            "fit has no SNP-effect SEs: refit with SNPBLUP(snp_se=True) (marker space)"
        )
    s_b = fm.sigma2_g / c
    var = np.maximum(s_b - eff["se"].to_numpy(dtype=float) ** 2, 0.0)
    t.loc[ok, "effect"] = eff["effect"].to_numpy(dtype=float)[ok]
    t.loc[ok, "se"] = np.sqrt(var[ok])
    t.loc[ok, "tested"] = True
    _finish(t)
    notes.append(
        "Var(beta) = sigma2_beta - PEV(beta) from the marker-space MME inverse (loses digits "
        "where PEV is close to sigma2_beta, i.e. for SNPs the data say little about)"
    )
    return t, "backsolve (SNPBLUP: beta from the MME, Var(beta) = sigma2_beta - PEV(beta), exact)", notes


def _record_kernel(fm: Fitted, record_ids, source, rows, freq, c: float) -> np.ndarray:
    """K_r = ZGZ' for the records (G of the fit, or WW'/c built for SNP-BLUP)."""
    if fm.G is not None:
        codes = fm.G.index_of(record_ids)
        return np.ascontiguousarray(fm.G.dense()[np.ix_(codes, codes)])
    K = np.zeros((len(rows), len(rows)))
    for _, W in source.centred_blocks(rows, freq):
        K += W @ W.T  # SNP-BLUP: the records' WW' (SNP-BLUP fits use all of W)
    return K / c


def _finish(t) -> None:
    with np.errstate(invalid="ignore", divide="ignore"):
        t["z"] = t["effect"] / t["se"]
    t["p"] = 2.0 * stats.norm.sf(np.abs(t["z"].to_numpy(dtype=float)))
    t.loc[~t["tested"].astype(bool), ["z", "p"]] = np.nan


def _backsolve_pec(fm: Fitted, pec: np.ndarray, source: GenotypeSource):
    """Single-step hook: β̂ = W'G⁻¹ĝ/c, Var(β̂) = diag(W'G⁻¹(Gσ²_g − C^{gg})G⁻¹W)/c²."""
    G, gebv = fm.G, fm.gebv
    if G is None or gebv is None:  # pragma: no cover - fitted_model sets both with pec
        raise ModelError(f"the fitted {fm.kind} gives C^gg but not G and the GEBVs")
    rows = source.rows_of(G.ids, f"the fitted {fm.kind}'s genotyped animals")
    freq = source.allele_freq(rows) if fm.freq is None else fm.freq  # G's centring frequencies
    t = empty_table(source.snps, freq)
    ok, notes = untestable(freq, t["snp"].to_numpy(), "the genotyped animals")
    c = fm.scale if fm.scale is not None else 2.0 * float(np.nansum(freq * (1 - freq)))
    Gd = np.asarray(G.dense(), dtype=float)
    try:
        cf = sla.cho_factor(Gd, lower=True)
    except np.linalg.LinAlgError as err:
        raise ModelError(
            "the single-step back-solve needs G invertible (it is blended or tuned in single step): G is singular"
        ) from err
    alpha = sla.cho_solve(cf, gebv)
    M = sla.cho_solve(cf, sla.cho_solve(cf, fm.sigma2_g * Gd - pec).T)  # G⁻¹(Gσ²_g − C)G⁻¹
    for idx, W in source.centred_blocks(rows, freq, np.flatnonzero(ok)):
        q = np.einsum("ij,ij->j", W, M @ W)
        t.loc[idx, "effect"] = (W.T @ alpha) / c
        t.loc[idx, "se"] = np.sqrt(np.maximum(q, 0.0)) / c
        # a SNP constant among the genotyped animals (e.g. all heterozygous) has W = 0:
        # effect and Var both 0, so untested, as in the GBLUP path
        t.loc[idx, "tested"] = np.any(np.abs(W) > 1e-12, axis=0) & (q > 0)
    _finish(t)
    method = (
        f"backsolve ({fm.kind}: beta = W'G^-1 g/c, Var(beta) = diag(W'G^-1(G sigma2_g - C_gg)"
        "G^-1 W)/c^2, exact; Aguilar et al. 2019, as postGSf90)"
    )
    return t, method, notes

"""SNP-BLUP (RR-BLUP): y = Xb + ZWβ + e, β ~ N(0, Iσ²_β), and its equivalence to GBLUP.

W holds the allele counts of the N genotyped individuals centred by 2p (missing calls
mean-imputed, W = 0). With G = WW'/(2Σpq) the model is GBLUP with g = Wβ and
σ²_g = 2Σpq·σ²_β (VanRaden 2008; Strandén & Garrick 2009), so the two give identical
predictions at matching variances.

Which side is solved (chosen automatically, reported as ``space``):

- marker space (m SNPs < n records): the MME of order m + p, [Z̃ = ZW];
- individual space (n ≤ m): the spectral solver on K = WW' (order n).

In both, β̂ = σ²_β W'Z'Py and Py = ê/σ²_e (the MME residuals), so the effects are
back-solved without inverting G; ĝ = Wβ̂ for every genotyped individual.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..api import fit_spec
from ..data.genotypes import Genotypes
from ..errors import DataError
from ..results import FitResult, ratio_table
from ..spec.model import RandomTerm, build_spec
from ._align import ID, records_frame


@dataclass(frozen=True, eq=False)
class SNPBLUPFit:
    """A fitted SNP-BLUP.

    Attributes
    ----------
    result : FitResult
        Variance components (``id`` row is σ²_β, the per-SNP variance), fixed
        effects, GEBVs (``blups["id"]``) and fit statistics.
    snp_effects : DataFrame
        One row per SNP: ``snp, chrom, pos, allele1, allele2, freq, effect``.
    allele_freq : ndarray, shape (m,)
        Frequencies used to centre W (needed to score new individuals).
    two_sum_pq : float
        2Σpᵢqᵢ, so σ²_g = two_sum_pq · σ²_β.
    sigma2_g, h2, h2_se : float
        Genomic variance on the G scale, heritability σ²_g/(σ²_g + σ²_e), its SE.
    space : {"marker", "individual"}
    """

    result: FitResult
    snp_effects: pd.DataFrame
    allele_freq: np.ndarray
    two_sum_pq: float
    sigma2_g: float
    h2: float
    h2_se: float
    space: str

    @property
    def gebv(self) -> pd.Series:
        return self.result.blups[ID]["blup"].rename("gebv")


def centred_markers(geno: Genotypes, allele_freq=None) -> tuple[np.ndarray, np.ndarray]:
    """W = X − 2p (N × m, float64), missing calls set to 0 (mean imputation)."""
    freq = geno.allele_freq if allele_freq is None else np.asarray(allele_freq, dtype=float)
    if freq.shape != (geno.p,):
        raise DataError(f"allele_freq has {freq.size} values for {geno.p} SNPs")
    W = np.empty(geno.dosages.shape, dtype=np.float64)
    for cols in geno.block_slices():
        W[:, cols] = geno.dosages[:, cols]
        W[:, cols] -= 2.0 * freq[cols]
        W[:, cols][geno.missing_mask(cols)] = 0.0
    return W, freq


def fit_snpblup(y: pd.Series, geno: Genotypes, *, fixed: str | None = None, data=None,
                method: str = "reml", sigma2=None, space: str = "auto", allele_freq=None,
                missing: str = "error", pev="auto") -> SNPBLUPFit:
    """Fit SNP-BLUP by REML (or at given (σ²_β, σ²_e)).

    Parameters
    ----------
    y : Series indexed by id
    geno : Genotypes (N individuals × m SNPs)
    fixed, data : optional fixed effects
    method : {"reml", "ml"}
    sigma2 : (σ²_β, σ²_e), optional
    space : {"auto", "marker", "individual"}
    allele_freq : array (m,), optional — centring frequencies (default: observed in ``geno``)
    missing : {"error", "drop"}
    pev : bool or "auto"
        PEV of the GEBVs (exact; costs O(n²N) in individual space, as GBLUP).
    """
    frame, formula, _, notes = records_frame(y, geno.ids, fixed=fixed, data=data, missing=missing,
                                             what="genotypes")
    spec = build_spec(formula, frame)
    W, freq = centred_markers(geno, allele_freq)
    two_sum_pq = float(2.0 * np.sum(freq * (1.0 - freq)))
    codes = pd.Index(geno.ids).get_indexer(frame.loc[spec.record_index, ID].to_numpy())
    if space == "auto":
        space = "marker" if geno.p < spec.n else "individual"
    if space not in ("marker", "individual"):
        raise DataError(f"space must be 'auto', 'marker' or 'individual', not {space!r}")
    counts = np.bincount(codes, minlength=geno.n)
    kdiag = np.einsum("ij,ij->i", W, W)
    if space == "marker":
        term = RandomTerm(ID, geno.ids, codes, "factor", kernel=None, k_diag=kdiag,
                          n_records=counts, source="WW' (marker space)")
        object.__setattr__(term, "_factor", W)  # K = WW' is never formed
        solver = "dense"
    else:
        term = RandomTerm(ID, geno.ids, codes, "factor", kernel=W @ W.T, k_diag=kdiag,
                          n_records=counts, source="WW' (individual space)")
        solver = "spectral"
    res = fit_spec(dataclasses.replace(spec, terms=(term,)), method=method, sigma2=sigma2,
                   solver=solver, pev=pev)
    s_b, s_e = float(res.sigma2[ID]), float(res.sigma2["Residual"])
    # β̂ = σ²_β W'Z'Py with Py = ê/σ²_e
    ztpy = np.bincount(codes, weights=res.residuals.to_numpy() / s_e, minlength=geno.n)
    beta = s_b * (W.T @ ztpy)
    effects = geno.snps.copy()
    effects["freq"] = freq
    effects["effect"] = beta
    s_g = two_sum_pq * s_b
    h2, h2_se = _heritability(res, two_sum_pq)
    notes = notes + [f"SNP-BLUP solved in {space} space ({geno.p} SNPs, {spec.n} records); "
                     f"sigma2_g = 2*sum(pq)*sigma2_beta = {two_sum_pq:.6g} * {s_b:.6g}"]
    object.__setattr__(res, "notes", tuple(notes) + tuple(res.notes))
    return SNPBLUPFit(res, effects, freq, two_sum_pq, s_g, h2, h2_se, space)


def _heritability(res: FitResult, scale: float) -> tuple[float, float]:
    """h² = cσ²_β/(cσ²_β + σ²_e) and its delta-method SE (c = 2Σpq)."""
    s = np.array([scale * res.sigma2[ID], res.sigma2["Residual"]])
    cov = None
    if res.vcov is not None:
        J = np.diag([scale, 1.0])
        cov = J @ res.vcov @ J
    ratio, ratio_se = ratio_table(["g", "e"], s, cov)
    return float(ratio[0]), float(ratio_se[0])


def predict_from_snp_effects(geno: Genotypes, snp_effects: pd.DataFrame, allele_freq=None) -> pd.Series:
    """Score individuals: ĝ = (X − 2p)β̂, SNPs matched by id.

    ``allele_freq`` defaults to the ``freq`` column of ``snp_effects`` (the training
    frequencies), as cross-validation and prediction of new animals require.
    """
    sub = geno.subset(snps=snp_effects["snp"].astype(str).to_numpy())
    freq = snp_effects["freq"].to_numpy() if allele_freq is None else allele_freq
    W, _ = centred_markers(sub, freq)
    return pd.Series(W @ snp_effects["effect"].to_numpy(), index=pd.Index(sub.ids, name=ID), name="gebv")


def snp_effects_from_gebv(gebv: pd.Series, geno: Genotypes, allele_freq=None) -> np.ndarray:
    """Back-solve SNP effects from GBLUP GEBVs without inverting G.

    ĝ = σ²_g G α lies in the column space of W, and the SNP-BLUP solution
    β̂ = W'α·σ²_g/(2Σpq) is the minimum-norm solution of Wβ = ĝ; it is computed by
    least squares on W (no G⁻¹, valid for singular G). ``gebv`` must cover all
    individuals of the GBLUP fit (matched by id).
    """
    sub = geno.subset(ids=gebv.index.astype(str).to_numpy())
    W, _ = centred_markers(sub, allele_freq)
    beta, *_ = np.linalg.lstsq(W, gebv.to_numpy(dtype=float), rcond=None)
    return beta

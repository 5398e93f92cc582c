"""SNP-BLUP (RR-BLUP): y = Xb + ZWβ + e, β ~ N(0, Iσ²_β), and its equivalence to GBLUP.

W holds the allele counts of the N genotyped individuals centred by 2p (missing calls
mean-imputed, W = 0). With G = WW'/(2Σpq) the model is GBLUP with g = Wβ and
σ²_g = 2Σpq·σ²_β (VanRaden 2008; Strandén & Garrick 2009), so the two give identical
predictions at matching variances.

Which side is solved (chosen automatically, reported as ``space`` and in the notes):

- marker space when m < N: the MME of order m + p with Z̃ = ZW (n × m);
- individual space when N ≤ m: the spectral solver on K = WW', which is formed over
  all N genotyped individuals (phenotyped or not, so that every one gets a GEBV).

N, not the number of records n, is what the individual side costs (forming the N × N
kernel is O(N²m)), so it is the size compared with m.

In both, β̂ = σ²_β W'Z'Py and Py = ê/σ²_e (the MME residuals), so the effects are
back-solved without inverting G; ĝ = Wβ̂ for every genotyped individual.

Standard errors of the SNP effects (``se`` = √PEV(β̂ⱼ), as rrBLUP's ``u.SE``) come
from the MME inverse in marker space and from P in individual space
(:func:`snp_pev`); the latter costs O(n²m) and is optional (``snp_se``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg as sla

from ..api import fit_spec
from ..data.genotypes import MISSING, Genotypes
from ..errors import DataError, DataWarning
from ..linalg import dense_safe
from ..relationships.genomic import genomic_relationship
from ..results import FitResult, ratio_table
from ..spec.levels import DenseKernel, Markers
from ..spec.model import RandomTerm, model_spec
from ._align import ID, genetic_design, records_frame, with_notes
from ._alleles import allele_flips
from ._kernels import crossprod_int8, crossprod_int8_t

#: multiply-adds (n²·m) up to which ``snp_se="auto"`` computes SNP-effect SEs in
#: individual space (~1-2 s on two cores); beyond it, pass ``snp_se=True``.
SNP_SE_BUDGET = 2e10


@dataclass(frozen=True, eq=False)
class SNPBLUPFit:
    """A fitted SNP-BLUP.

    Attributes
    ----------
    result : FitResult
        Variance components (``id`` row is σ²_β, the per-SNP variance), fixed
        effects, GEBVs (``blups["id"]``) and fit statistics.
    snp_effects : DataFrame
        One row per SNP: ``snp, chrom, pos, allele1, allele2, freq, effect, se``;
        ``effect`` is per copy of ``allele1``, ``se`` = √PEV (NaN when not computed,
        see ``snp_se`` and the notes).
    allele_freq : ndarray, shape (m,)
        Frequencies used to centre W (needed to score new individuals).
    two_sum_pq : float
        2Σpᵢqᵢ, so σ²_g = two_sum_pq · σ²_β.
    sigma2_g, h2, h2_se : float
        Genomic variance on the G scale (σ²_g = 2Σpq·σ²_β, the variance of a gᵢ
        whose G diagonal is 1) and h² = σ²_g/(σ²_g + σ²_e) with its SE. This is
        rrBLUP's convention; for inbred lines (0/2 counts) mean(diag G) ≈ 2 and the
        variance of the genetic values is about 2σ²_g (see ``docs/gblup_snpblup.md``).
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


def fit_snpblup(
    y: pd.Series,
    geno: Genotypes,
    *,
    fixed: str | None = None,
    data=None,
    method: str = "reml",
    sigma2=None,
    space: str = "auto",
    allele_freq=None,
    missing: str = "error",
    pev="auto",
    snp_se="auto",
) -> SNPBLUPFit:
    """Fit SNP-BLUP by REML (or at given (σ²_β, σ²_e)).

    Parameters
    ----------
    y : Series indexed by id
    geno : Genotypes (N individuals × m SNPs)
    fixed, data : optional fixed effects
    method : {"reml", "ml"}
    sigma2 : (σ²_β, σ²_e), optional
    space : {"auto", "marker", "individual"}
        ``auto``: marker space when m < N (genotyped individuals), else individual.
    allele_freq : array (m,), optional — centring frequencies (default: observed in ``geno``)
    missing : {"error", "drop"}
    pev : bool or "auto"
        PEV of the GEBVs (exact; costs O(n²N) in individual space, as GBLUP).
    snp_se : bool or "auto"
        Standard errors of the SNP effects (:func:`snp_pev`). ``auto``: always in
        marker space (cost of one more MME inverse), in individual space when
        n²m ≤ ``SNP_SE_BUDGET`` (it costs O(n²m)); never when ``pev=False``.
    """
    frame, formula, _, notes = records_frame(y, geno.ids, fixed=fixed, data=data, missing=missing, what="genotypes")
    formula, design = genetic_design(frame, formula)
    freq = geno.allele_freq if allele_freq is None else np.asarray(allele_freq, dtype=float)
    if freq.shape != (geno.p,):
        raise DataError(f"allele_freq has {freq.size} values for {geno.p} SNPs")
    two_sum_pq = float(2.0 * np.nansum(freq * (1.0 - freq)))
    codes = pd.Index(geno.ids).get_indexer(design.records[ID].to_numpy())
    space, why = _choose_space(space, geno.p, geno.n)
    term, W, K, freq = _marker_term(geno, freq, codes, space)
    spec = model_spec(formula, design, [term])
    solver = "dense" if space == "marker" else "spectral"
    res = fit_spec(spec, method=method, sigma2=sigma2, solver=solver, pev=pev)
    s_b, s_e = float(res.sigma2[ID]), float(res.sigma2["Residual"])
    # β̂ = σ²_β W'Z'Py with Py = ê/σ²_e
    ztpy = np.bincount(codes, weights=res.residuals.to_numpy() / s_e, minlength=geno.n)
    beta = s_b * (W.T @ ztpy if W is not None else centred_crossprod(geno, ztpy, freq))
    effects = geno.snps.copy()
    effects["freq"] = freq
    effects["effect"] = beta
    n, m = spec.n, geno.p
    want_se = snp_se is True or (
        snp_se == "auto" and pev is not False and (space == "marker" or float(n) * n * m <= SNP_SE_BUDGET)
    )
    if want_se:
        Kr = None if K is None else K[np.ix_(codes, codes)]
        if W is not None:
            Wr = W[codes]
        else:  # centred markers of the phenotyped lines only (n²m is within budget here)
            lines = np.unique(codes)
            Wr = centred_markers(geno.subset(ids=geno.ids[lines]), freq)[0][np.searchsorted(lines, codes)]
        effects["se"] = np.sqrt(snp_pev(Wr, spec.X, s_b, s_e, space, Kr=Kr))
    else:
        effects["se"] = np.nan
        notes = notes + [
            f"SNP-effect SEs not computed (snp_se={snp_se!r}, pev={pev!r}; individual "
            f"space costs n^2*m = {float(n) * n * m:.2g} multiply-adds): pass snp_se=True"
        ]
    s_g = two_sum_pq * s_b
    h2, h2_se = _heritability(res, two_sum_pq)
    # mean(diag G) − mean(G) with G = WW'/2Σpq: the genetic variance of the sample is
    # σ²_g times this (Legarra 2016); ≈ 2 for inbred lines coded 0/2
    mean_k = float(np.sum(W.sum(axis=0) ** 2)) / geno.n**2 if W is not None else float(K.mean())
    d_scale = (term.k_diag.mean() - mean_k) / two_sum_pq
    notes = notes + [
        f"SNP-BLUP solved in {space} space: {why}",
        f"sigma2_g = 2*sum(pq)*sigma2_beta = {two_sum_pq:.6g} * {s_b:.6g} = {s_g:.6g}",
        h2_note(s_g, s_e, d_scale),
    ]
    res = with_notes(res, before=notes)
    return SNPBLUPFit(res, effects, freq, two_sum_pq, s_g, h2, h2_se, space)


def _marker_term(geno: Genotypes, freq, codes: np.ndarray, space: str):
    """The ``id`` term with K = WW' (W the centred markers), and W or K (the other None).

    Marker space: K is never formed, the term holds W (:class:`Markers`, N × m with m < N).
    Individual space: K through the blocked exact-SYRK kernel of genomic_relationship (G
    times its scale 2Σpq over the SNPs with calls), no N × m float copy of the genotypes.
    Returns (term, W, K, the centring frequencies used).
    """
    counts = np.bincount(codes, minlength=geno.n)
    cov: Markers | DenseKernel
    if space == "marker":
        W, freq = centred_markers(geno, freq)
        kdiag = np.einsum("ij,ij->i", W, W)
        cov, K, source = Markers(W, geno.ids), None, "WW' (marker space)"
    else:
        G = genomic_relationship(geno, method="vanraden1", allele_freq=freq)
        K = np.multiply(G.matrix, G.info["scale"])
        del G
        kdiag = np.diag(K).copy()
        cov, W, source = DenseKernel(K, geno.ids, ID), None, "WW' (individual space)"
    term = RandomTerm(ID, geno.ids, codes, cov, k_diag=kdiag, n_records=counts, source=source)
    return term, W, K, freq


def _choose_space(space: str, m: int, N: int) -> tuple[str, str]:
    """Marker space (MME of order m + p) when m < N, else individual space (N × N WW')."""
    if space not in ("auto", "marker", "individual"):
        raise DataError(f"space must be 'auto', 'marker' or 'individual', not {space!r}")
    if space != "auto":
        return space, f"as asked (space={space!r}; {m} SNPs, {N} genotyped individuals)"
    if m < N:
        return "marker", (
            f"{m} SNPs < {N} genotyped individuals: the MME of order m + p is smaller than the N x N kernel WW'"
        )
    return "individual", (
        f"{m} SNPs >= {N} genotyped individuals: the N x N kernel WW' "
        "(all genotyped, phenotyped or not) is smaller than the marker MME"
    )


def h2_note(s_g: float, s_e: float, d_scale: float) -> str:
    """The two heritabilities: rrBLUP's σ²_g/(σ²_g+σ²_e) and on the sample's scale."""
    h2_scaled = s_g * d_scale / (s_g * d_scale + s_e)
    return (
        f"h2 = sigma2_g/(sigma2_g + sigma2_e) = {s_g / (s_g + s_e):.4g} (rrBLUP's convention: "
        f"sigma2_g is the variance of an individual with G_ii = 1); mean(diag G) - mean(G) = "
        f"{d_scale:.4g}, so on the scale of this sample's genetic variance "
        f"h2 = {d_scale:.4g}*sigma2_g/({d_scale:.4g}*sigma2_g + sigma2_e) = {h2_scaled:.4g}"
    )


def snp_pev(
    Wr: np.ndarray,
    X: np.ndarray,
    s_b: float,
    s_e: float,
    space: str,
    *,
    Kr: np.ndarray | None = None,
    block: int = 2048,
) -> np.ndarray:
    """Prediction error variances of the SNP effects, PEV(β̂ⱼ) = Var(βⱼ − β̂ⱼ).

    Parameters
    ----------
    Wr : ndarray, shape (n, m)
        Centred markers of the records, W̃ = ZW.
    X : ndarray, shape (n, p)
        Full-rank fixed-effect matrix.
    s_b, s_e : float
        σ²_β and σ²_e.
    space : {"marker", "individual"}
        Which (equivalent) formula to use:

        - marker (Henderson 1975): σ²_e·diag(C^ββ), C^ββ the SNP block of the MME
          inverse, = (W̃'MW̃ + λI)⁻¹ with M = I − X(X'X)⁻¹X' (X absorbed), λ = σ²_e/σ²_β.
          O(nm² + m³).
        - individual: σ²_β − σ⁴_β·diag(W̃'PW̃), P = V⁻¹ − V⁻¹X(X'V⁻¹X)⁻¹X'V⁻¹,
          V = σ²_β W̃W̃' + σ²_e I (Var(β̂) = σ⁴_β W̃'PW̃). O(n²m), SNPs in blocks.
    Kr : ndarray, shape (n, n), optional
        W̃W̃' if already formed.

    Returns
    -------
    ndarray, shape (m,)
        rrBLUP's ``u.SE`` is the square root.
    """
    n, m = Wr.shape
    if s_b <= 0:
        return np.zeros(m)  # β ≡ 0 on the boundary: predicted without error
    if space == "marker":
        Q, _ = np.linalg.qr(X)
        Wm = Wr - Q @ (Q.T @ Wr)  # MW̃
        C = Wm.T @ Wm
        C[np.diag_indices(m)] += s_e / s_b
        c, info = dense_safe.potrf(C, overwrite=True)  # one dpotrf up to 12k (OpenBLAS dsyrk crash above)
        if info == 0:
            inv, info = dense_safe.potri(c, overwrite=True)
        if info != 0:
            raise np.linalg.LinAlgError(f"SNP block of the MME not positive definite (LAPACK info {info})")
        return s_e * np.diag(inv).copy()
    V = Kr.copy() if Kr is not None else Wr @ Wr.T
    V *= s_b
    V[np.diag_indices(n)] += s_e
    # split above 12k rows (OpenBLAS threaded-dsyrk crash: linalg.dense_safe)
    L = (dense_safe.cholesky_lower(V, overwrite=True), True)
    VX = sla.cho_solve(L, X)
    XVX = sla.cho_factor(X.T @ VX)
    d = np.empty(m)
    for j in range(0, m, block):
        Wb = Wr[:, j : j + block]
        A = sla.cho_solve(L, Wb)  # V⁻¹W̃_b
        XA = X.T @ A
        d[j : j + block] = np.einsum("ij,ij->j", Wb, A) - np.einsum("ij,ij->j", XA, sla.cho_solve(XVX, XA))
    return s_b - s_b**2 * d


def _heritability(res: FitResult, scale: float) -> tuple[float, float]:
    """h² = cσ²_β/(cσ²_β + σ²_e) and its delta-method SE (c = 2Σpq)."""
    s = np.array([scale * res.sigma2[ID], res.sigma2["Residual"]])
    cov = None
    if res.vcov is not None:
        J = np.diag([scale, 1.0])
        cov = J @ res.vcov @ J
    ratio, ratio_se = ratio_table(["g", "e"], s, cov)
    return float(ratio[0]), float(ratio_se[0])


def predict_from_snp_effects(
    geno: Genotypes, snp_effects: pd.DataFrame, allele_freq=None, *, check_alleles: bool = True
) -> pd.Series:
    """Score individuals: ĝ = (X − 2p)β̂, SNPs matched by id and by counted allele.

    Parameters
    ----------
    geno : Genotypes (n individuals, any SNPs including those of the model)
    snp_effects : DataFrame with ``snp, freq, effect`` (and ``allele1, allele2``)
    allele_freq : array (m,), optional
        Centring frequencies; default the ``freq`` column (the training frequencies,
        as cross-validation and prediction of new animals require).
    check_alleles : bool
        When both sides carry allele labels, SNPs whose counted allele is swapped are
        flipped (x → 2 − x; counted, reported in a :class:`DataWarning` and in the
        result's ``attrs["notes"]``) and SNPs whose alleles do not match are an error
        (see :mod:`henderson.models._alleles`).

    Returns
    -------
    Series (n,) indexed by id, ``attrs["notes"]`` listing what was done.

    Notes
    -----
    A flipped SNP is scored as ((2 − x) − 2p)β = (x − 2(1 − p))(−β): the sign of its
    effect and its frequency are switched instead of copying the dosages. The product
    is accumulated over SNP blocks, so no n × m float copy is made.
    """
    snp_ids = snp_effects["snp"].astype(str).to_numpy()
    sub = geno.subset(snps=snp_ids)
    freq = np.asarray(snp_effects["freq"].to_numpy() if allele_freq is None else allele_freq, dtype=float)
    beta = snp_effects["effect"].to_numpy(dtype=float)
    notes: list[str] = []
    if check_alleles and {"allele1", "allele2"} <= set(snp_effects.columns):
        flip, notes = allele_flips(snp_effects.reset_index(drop=True), sub.snps)
        if flip.any():
            beta = np.where(flip, -beta, beta)
            freq = np.where(flip, 1.0 - freq, freq)
            warnings.warn(notes[0], DataWarning, stacklevel=2)
    g = np.zeros(sub.n)
    for cols, w in sub.centered(allele_freq=freq):
        g += w @ beta[cols]
    out = pd.Series(g, index=pd.Index(sub.ids, name=ID), name="gebv")
    out.attrs["notes"] = notes
    return out


def centred_crossprod(geno: Genotypes, a: np.ndarray, allele_freq) -> np.ndarray:
    """W'a, shape (m,), for W = X − 2p (missing calls 0) without an n × m float copy.

    With int8 calls one numba pass gives Σᵢxᵢⱼaᵢ and Σᵢaᵢ over called genotypes, and
    W'a = xa − 2p·sa; float dosages go block by block.
    """
    a = np.ascontiguousarray(a, dtype=np.float64)
    freq = np.asarray(allele_freq, dtype=np.float64)
    if geno.is_integer:
        d = geno.dosages
        if d.flags.c_contiguous:
            xa, sa = crossprod_int8(d, a, MISSING)
        else:
            xa, sa = crossprod_int8_t(np.ascontiguousarray(d.T), a, MISSING)
        with np.errstate(invalid="ignore"):
            out = xa - 2.0 * freq * sa
    else:
        out = np.empty(geno.p)
        for cols, w in geno.centered(allele_freq=freq):
            out[cols] = w.T @ a
    out[geno.n_called == 0] = 0.0  # a SNP without calls has a zero centred column
    return out


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

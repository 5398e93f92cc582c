"""Mixed-model association: each SNP a fixed effect, y = Xb + x_jβ_j + g + e.

g ~ N(0, σ²_g K), e ~ N(0, σ²_e I), K = G (VanRaden 1) of the analysed individuals, or
G₋ₖ without the tested SNP's chromosome (LOCO). Two ways to handle the variances:

* **P3D** (EMMAX, Kang et al. 2010; "population parameters previously determined",
  Zhang et al. 2010; the default): λ = σ²_g/σ²_e is estimated once by REML in the
  null model and held fixed; σ²_e is re-profiled with each SNP. With the quadratic
  forms of :class:`~henderson.gwas._fixed.FixedRatio` (P_H at that λ),

      β̂ = x'P_H y / x'P_H x,   y'P₁y = y'P_H y − β̂ x'P_H y,
      se² = y'P₁y / ((n − c − 1) x'P_H x),   F = β̂²/se² ~ F(1, n − c − 1),

  exactly GEMMA's Wald test at that λ (one Cholesky, then TRSM per SNP block).
* **Exact** (``p3d=False``, as GEMMA ``-lmm 1``): λ re-estimated by REML for every
  SNP (:mod:`henderson.gwas._exact`), then the same Wald test.

Covariates are the fixed part of the formula (c columns of X, intercept included).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from ..errors import DataError, format_ids
from ..solvers.spectral import SpectralSolver
from ._exact import Rotation, per_snp_lambda, wald
from ._fixed import FixedRatio
from ._kernels import crossproduct
from ._model import Design
from ._source import GenotypeSource
from ._table import empty_table, require_map, untestable

#: SNPs per sub-block of the exact (per-SNP REML) search: its (b, n) weights stay small
EXACT_BLOCK = 256


def mlma(design: Design, source: GenotypeSource, *, p3d: bool = True, loco: bool = False, G=None, sigma2=None):
    """Mixed-model association of every SNP in ``source`` (see the module notes).

    Parameters
    ----------
    design : Design
        Records (y, X) of the trait, ids matched to the genotypes.
    source : GenotypeSource
    p3d : bool
        Variance ratio once in the null model (True) or per SNP by REML (False).
    loco : bool
        Leave the tested SNP's chromosome out of G (needs a map and two or more
        chromosomes).
    G : Relationship, optional
        The kernel (a fitted GBLUP's G); default G = WW'/2Σpq from ``source``.
        Ignored with ``loco`` (G₋ₖ is built from the genotypes).
    sigma2 : (σ²_g, σ²_e), optional
        Null-model variances on G's scale (a fitted GBLUP's); P3D only, not LOCO.

    Returns
    -------
    (table, method, notes); the table has a ``lambda`` column (σ²_g/σ²_e used per
    SNP, on the scale of G).
    """
    rows = source.rows_of(design.record_ids, "the phenotyped records")
    uniq, codes = np.unique(rows, return_inverse=True)
    ind_ids = source.ids[uniq]
    freq = source.allele_freq(uniq)  # over the analysed individuals, as GEMMA centres
    t = empty_table(source.snps, freq)
    t["lambda"] = np.nan
    snp_ids = t["snp"].to_numpy()
    ok, notes = untestable(freq, snp_ids, "the phenotyped individuals")
    if loco:
        n_chrom = _test_loco(t, design, source, rows, codes, ind_ids, ok, freq, p3d, notes)
        kernel = f"LOCO: G without the tested SNP's chromosome (one of {n_chrom})"
    else:
        if G is not None:
            K = np.asarray(G.dense())[np.ix_(G.index_of(ind_ids), G.index_of(ind_ids))]
            kernel = "G of the fitted model"
        else:
            K, c = crossproduct(source, np.arange(source.p), ind_ids, freq)
            K /= c
            kernel = "G = WW'/2sum(pq) of the phenotyped individuals (VanRaden 1)"
        _test(t, design, source, rows, codes, K, np.flatnonzero(ok), freq, p3d, sigma2, notes, None)
    return t, f"mlma ({_HOW[p3d]}; Wald F test, {kernel})", notes


_HOW = {
    True: "P3D: variance ratio from the null model by REML, fixed for every SNP (EMMAX)",
    False: "exact: variance ratio re-estimated by REML for every SNP (as GEMMA -lmm 1)",
}


def _test_loco(t, design, source, rows, codes, ind_ids, ok, freq, p3d: bool, notes) -> int:
    """Test each chromosome's SNPs with G of the other chromosomes; returns the number of chromosomes."""
    require_map(source.snps, "LOCO (leave one chromosome out)")
    chroms = source.snps["chrom"].astype(str).to_numpy()
    names = list(dict.fromkeys(chroms))
    if len(names) < 2:
        raise DataError(
            f"LOCO needs SNPs on two or more chromosomes; all {len(chroms)} SNPs are on "
            f"chromosome {names[0]!r}: use loco=False"
        )
    K_all, c_all = crossproduct(source, np.arange(source.p), ind_ids, freq)
    for name in names:
        on = chroms == name
        Kc, cc = crossproduct(source, np.flatnonzero(on), ind_ids, freq)
        if c_all - cc <= 0:
            raise DataError(f"LOCO: no polymorphic SNP outside chromosome {name!r}")
        K = (K_all - Kc) / (c_all - cc)
        del Kc
        tested = np.flatnonzero(on & ok)
        _test(t, design, source, rows, codes, K, tested, freq, p3d, None, notes, f"chromosome {name} left out")
    return len(names)


def _null_lambda(design, K, codes, what, notes) -> float:
    from ..reml.spectral_search import search
    from ..solvers.protocol import Prepared

    s = SpectralSolver(design.y, design.X, K, codes, term="g")
    sg, se, _ = search(Prepared.of(s), "reml")
    notes.append(f"null model{f' ({what})' if what else ''}: sigma2_g = {sg:.6g}, sigma2_e = {se:.6g} (REML)")
    return sg / se


def _test(t, design, source, rows, codes, K, idx, freq, p3d, sigma2, notes, what) -> None:
    """Fill the statistics of SNPs ``idx`` (positions) with kernel K (analysed individuals)."""
    if idx.size == 0:
        return
    n, c = design.X.shape
    df = n - c - 1
    if df < 1:
        raise DataError(f"{n} records and {c} fixed effects leave no degrees of freedom for a SNP")
    Kr = K[np.ix_(codes, codes)]
    beta = np.full(idx.size, np.nan)
    se = np.full(idx.size, np.nan)
    lam_out = np.full(idx.size, np.nan)
    if p3d:
        lam = (sigma2[0] / sigma2[1]) if sigma2 is not None else _null_lambda(design, K, codes, what, notes)
        fr = FixedRatio(Kr, lam, design.y, design.X)
        for sub, W in fr.blocks(source, rows, freq, idx):
            a, b = fr.forms_of(W)
            k = np.searchsorted(idx, sub)
            with np.errstate(invalid="ignore", divide="ignore"):
                beta[k] = a / b
                se[k] = np.sqrt((fr.yPy - a * a / b) / df / b)
            lam_out[k] = lam
    else:
        rot = Rotation(Kr, design.y, design.X)
        for sub, W in source.centred_blocks(rows, freq, idx):
            Wt = rot.rotate(W)
            for s0 in range(0, len(sub), EXACT_BLOCK):
                k = np.searchsorted(idx, sub[s0 : s0 + EXACT_BLOCK])
                w = Wt[:, s0 : s0 + EXACT_BLOCK]
                lam = per_snp_lambda(rot, w)
                b_, s_, _, _ = wald(rot, lam, w)
                beta[k], se[k], lam_out[k] = b_, s_, lam
    # SNPs with no variation left after the covariates (constant among the records)
    bad = ~(se > 0)
    if bad.any():
        sid = t["snp"].to_numpy()[idx[bad]]
        notes.append(
            f"{int(bad.sum())} SNP(s) have no variation among the records after the "
            "covariates: not tested: " + format_ids(sid)
        )
        beta[bad] = se[bad] = np.nan
    z = beta / se
    t.loc[idx, "effect"] = beta
    t.loc[idx, "se"] = se
    t.loc[idx, "z"] = z
    t.loc[idx, "p"] = stats.f.sf(z * z, 1, df)
    t.loc[idx, "lambda"] = lam_out
    t.loc[idx, "tested"] = ~bad

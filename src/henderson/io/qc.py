"""Genotype quality control and mean imputation, with every removal counted.

Order of filters (documented because it changes the result): individuals are
filtered on their call rate over all SNPs first; SNP call rate, minor allele
frequency and monomorphism are then computed on the retained individuals.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from ..data._ids import str_ids
from ..data.genotypes import Genotypes
from ..errors import DataError, GenotypeError


class QCResult(NamedTuple):
    """Result of :func:`genotype_qc` (unpacks as ``geno, snp_report, ind_report``)."""

    genotypes: Genotypes
    snp_report: pd.DataFrame
    individual_report: pd.DataFrame


def _row_missing(geno: Genotypes) -> np.ndarray:
    out = np.zeros(geno.n, dtype=np.int64)
    for cols in geno.block_slices():
        out += geno.missing_mask(cols).sum(axis=1)
    return out


def genotype_qc(
    geno: Genotypes,
    *,
    min_maf: float = 0.0,
    min_call_rate: float = 0.0,
    min_individual_call_rate: float = 0.0,
    drop_monomorphic: bool = True,
    impute: bool = False,
) -> QCResult:
    """Filter SNPs and individuals; report per SNP and per individual.

    Parameters
    ----------
    geno : Genotypes, shape (n, p)
    min_maf : float
        SNPs with minor allele frequency < ``min_maf`` are removed (reason ``maf``).
    min_call_rate : float
        SNPs with call rate < this are removed (reason ``call_rate``).
    min_individual_call_rate : float
        Individuals with call rate < this are removed (reason ``call_rate``).
    drop_monomorphic : bool
        Remove SNPs with a single observed allele (reason ``monomorphic``).
    impute : bool
        Replace remaining missing calls by ``2p`` (mean imputation; the result is
        float64 dosage). The number imputed is reported per SNP and individual.

    Returns
    -------
    QCResult
        ``genotypes`` (filtered, order kept); ``snp_report`` indexed by SNP id with
        ``call_rate``, ``allele_freq`` (counted allele), ``maf``, ``monomorphic``,
        ``n_imputed``, ``kept`` and ``reason`` (``;``-joined, empty when kept);
        ``individual_report`` indexed by id with ``call_rate``, ``n_missing``,
        ``n_imputed``, ``kept``, ``reason``. ``genotypes.info["qc"]`` holds the counts.
    """
    _check_thresholds(min_maf=min_maf, min_call_rate=min_call_rate, min_individual_call_rate=min_individual_call_rate)
    if geno.p == 0:
        raise GenotypeError("no SNP to check")
    ind_missing = _row_missing(geno)
    ind_cr = 1.0 - ind_missing / geno.p
    keep_ind = ind_cr >= min_individual_call_rate
    if not keep_ind.any():
        raise GenotypeError(f"every individual has call rate < {min_individual_call_rate}")
    kept = geno if keep_ind.all() else geno.subset(ids=geno.ids[keep_ind])

    freq = kept.allele_freq
    maf = np.minimum(freq, 1.0 - freq)
    cr = kept.call_rate
    mono = ~(maf > 0)  # also true for SNPs without any call (maf NaN)
    fails = {
        "call_rate": cr < min_call_rate,
        "maf": ~(maf >= min_maf) & ~mono if min_maf > 0 else np.zeros(geno.p, bool),
        "monomorphic": mono if drop_monomorphic else np.zeros(geno.p, bool),
    }
    reason = _reasons(fails, geno.p)
    keep_snp = (reason == "").to_numpy()
    if not keep_snp.any():
        raise GenotypeError("every SNP failed quality control: " + str(reason.value_counts().to_dict()))
    out = kept if keep_snp.all() else kept.subset(snps=kept.snp_ids[keep_snp])
    n_imp_snp = np.zeros(geno.p, dtype=np.int64)
    n_imp_ind = np.zeros(geno.n, dtype=np.int64)
    if impute and out.n_missing:
        out = _impute_counted(out, keep_snp, keep_ind, n_imp_snp, n_imp_ind)

    snp_report = pd.DataFrame(
        {
            "call_rate": cr,
            "allele_freq": freq,
            "maf": maf,
            "monomorphic": mono,
            "n_imputed": n_imp_snp,
            "kept": keep_snp,
            "reason": reason.to_numpy(),
        },
        index=pd.Index(geno.snp_ids, name="snp"),
    )
    ind_report = pd.DataFrame(
        {
            "call_rate": ind_cr,
            "n_missing": ind_missing,
            "n_imputed": n_imp_ind,
            "kept": keep_ind,
            "reason": np.where(keep_ind, "", "call_rate").astype(object),
        },
        index=pd.Index(geno.ids, name="id"),
    )
    counts = {
        "n_individuals_in": geno.n,
        "n_individuals_removed": int((~keep_ind).sum()),
        "n_snps_in": geno.p,
        "n_snps_removed": int((~keep_snp).sum()),
        **{f"n_snps_failed_{k}": int(v.sum()) for k, v in fails.items()},
        "n_imputed": int(n_imp_snp.sum()),
    }
    out = Genotypes(out.ids, out.snps, out.dosages, {**out.info, "qc": counts})
    return QCResult(out, snp_report, ind_report)


def _check_thresholds(**thresholds: float) -> None:
    """Each QC threshold is a rate or frequency in [0, 1]."""
    for name, val in thresholds.items():
        if not 0.0 <= val <= 1.0:
            raise DataError(f"{name} must be in [0, 1], got {val}")


def _reasons(fails: dict, p: int) -> pd.Series:
    """Per SNP, the names of the checks it failed, ``;``-joined (empty when kept)."""
    keys = list(fails)
    code = np.zeros(p, dtype=np.int64)  # bit i set: check keys[i] failed
    for bit, key in enumerate(keys):
        code |= np.asarray(fails[key], dtype=np.int64) << bit
    # the joined names of each of the 2**len(keys) combinations, looked up by code
    joined = np.array(
        [";".join(k for bit, k in enumerate(keys) if c >> bit & 1) for c in range(1 << len(keys))], dtype=object
    )
    return pd.Series(joined[code], dtype=object)


def _impute_counted(out: Genotypes, keep_snp, keep_ind, n_imp_snp, n_imp_ind) -> Genotypes:
    """Missing calls of the kept genotypes replaced by 2p; the counts are written into
    ``n_imp_snp`` / ``n_imp_ind`` (over all SNPs / individuals, at the kept positions)."""
    d = out.dosages.astype(np.float64)
    miss = out.missing_mask()
    fill = 2.0 * out.allele_freq
    d[miss] = np.broadcast_to(fill, d.shape)[miss]
    n_imp_snp[keep_snp] = miss.sum(axis=0)
    n_imp_ind[keep_ind] = miss.sum(axis=1)
    return Genotypes(out.ids, out.snps, d, dict(out.info))


def impute_mean(geno: Genotypes) -> Genotypes:
    """Missing calls replaced by ``2p`` (observed frequency); float64 dosages.

    ``info["n_imputed"]`` counts the replaced calls.
    """
    d = geno.dosages.astype(np.float64)
    miss = geno.missing_mask()
    d[miss] = np.broadcast_to(2.0 * geno.allele_freq, d.shape)[miss]
    return Genotypes(geno.ids, geno.snps, d, {**geno.info, "n_imputed": int(miss.sum())})


class CallReport(NamedTuple):
    """Missing calls of a genotype matrix (:func:`call_report`)."""

    summary: dict
    snps: pd.DataFrame
    individuals: pd.DataFrame


def call_report(geno: Genotypes, top: int = 10) -> CallReport:
    """Missing calls counted per SNP and per individual.

    Returns
    -------
    CallReport
        ``snps`` indexed by SNP id and ``individuals`` indexed by id, each with
        ``n_missing`` and ``call_rate``; ``summary`` (JSON-ready) with the totals, the
        numbers of SNPs and individuals with a missing call, those without any call,
        and the ``top`` worst SNPs and individuals.
    """
    snp_missing = geno.n - np.asarray(geno.n_called, dtype=np.int64)
    ind_missing = _row_missing(geno) if geno.n_missing else np.zeros(geno.n, np.int64)
    snps = pd.DataFrame(
        {"n_missing": snp_missing, "call_rate": 1.0 - snp_missing / max(geno.n, 1)},
        index=pd.Index(geno.snp_ids, name="snp"),
    )
    inds = pd.DataFrame(
        {"n_missing": ind_missing, "call_rate": 1.0 - ind_missing / max(geno.p, 1)}, index=pd.Index(geno.ids, name="id")
    )

    def worst(t: pd.DataFrame) -> list[dict]:
        w = t[t["n_missing"] > 0].sort_values("n_missing", ascending=False, kind="stable").head(top)
        return [{"id": str(i), "n_missing": int(r.n_missing), "call_rate": float(r.call_rate)} for i, r in w.iterrows()]

    total = int(geno.n_missing)
    summary = {
        "n_individuals": geno.n,
        "n_snps": geno.p,
        "n_missing_calls": total,
        "missing_rate": total / max(geno.n * geno.p, 1),
        "n_snps_with_missing": int((snp_missing > 0).sum()),
        "n_individuals_with_missing": int((ind_missing > 0).sum()),
        "snps_without_calls": str_ids(geno.snp_ids[snp_missing == geno.n]).tolist() if geno.n else [],
        "individuals_without_calls": str_ids(geno.ids[ind_missing == geno.p]).tolist() if geno.p else [],
        "worst_snps": worst(snps),
        "worst_individuals": worst(inds),
    }
    return CallReport(summary, snps, inds)


def describe_calls(summary: dict) -> str:
    """One line for the console: the missing calls of :func:`call_report`'s summary."""
    if not summary["n_missing_calls"]:
        return f"genotypes: {summary['n_individuals']} individuals x {summary['n_snps']} SNPs, no missing call"
    ws, wi = summary["worst_snps"][0], summary["worst_individuals"][0]
    return (
        f"genotypes: {summary['n_missing_calls']:,} missing calls ({100 * summary['missing_rate']:.2f} %) "
        f"in {summary['n_snps_with_missing']} of {summary['n_snps']} SNPs and "
        f"{summary['n_individuals_with_missing']} of {summary['n_individuals']} individuals; they are "
        f"mean-imputed. Most missing: SNP {ws['id']!r} ({ws['n_missing']} missing, call rate "
        f"{ws['call_rate']:.3f}), individual {wi['id']!r} ({wi['n_missing']} missing, call rate "
        f"{wi['call_rate']:.3f})"
    )

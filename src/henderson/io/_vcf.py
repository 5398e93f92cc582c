"""VCF/BCF genotypes through cyvcf2: hard calls (GT) or a dosage FORMAT field (DS, ...).

Counted allele: ALT. A GT call's dosage is the number of ALT alleles in it
(``0/0`` -> 0, ``0/1`` -> 1, ``1/1`` -> 2), read from the allele indices themselves
(``Variant.genotype.array()``), so that

* a call with any missing allele (``./.``, ``./1``, ``1/.``) is a missing call, not
  a heterozygote (htslib's genotype type calls ``./1`` heterozygous);
* an allele index beyond the site's ALT alleles (``0/3`` at a site with one ALT) is
  an error naming the site and the sample, not a silent heterozygote;
* a haploid call (``0``, ``1``) counts as homozygous (0 or 2), PLINK 1.9's
  convention for haploid genotypes; such calls are counted in ``info``.

Multi-allelic sites are skipped and counted. cyvcf2/htslib errors (a file that is
not a VCF, a record that does not parse) become :class:`GenotypeError` naming the
file and the last site read.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import pandas as pd

from ..data.genotypes import MISSING, Genotypes
from ..errors import DataError, DataWarning, GenotypeError, HendersonError, format_ids


def read_vcf(path: Path, field: str = "GT") -> Genotypes:
    """Read a VCF/BCF file; see the module notes for how calls become dosages.

    Parameters
    ----------
    path : Path
    field : str
        ``"GT"`` (hard calls, int8) or a numeric FORMAT field holding the ALT dosage
        (e.g. ``"DS"``; float, NaN for missing). The field must be declared in the
        header; sites whose FORMAT lacks it are read as missing and counted.

    Returns
    -------
    Genotypes, shape (samples, bi-allelic sites).
    """
    try:
        from cyvcf2 import VCF
    except ImportError as e:  # optional dependency
        raise ImportError("reading VCF/BCF needs cyvcf2: pip install 'henderson[vcf]'") from e
    if not path.exists():
        raise DataError(f"VCF file not found: {path}")
    try:
        vcf = VCF(str(path))
    except OSError as err:
        raise GenotypeError(f"{path}: not a readable VCF/BCF file ({err})") from err
    state = _Position()
    try:
        return _read_sites(vcf, path, field, state)
    except HendersonError:
        raise
    except Exception as err:  # htslib parse errors surface as bare Exception/KeyError
        where = (
            f"the record after site {state.site!r} (data record {state.record + 1})"
            if state.site is not None
            else "the first data record"
        )
        raise GenotypeError(f"{path}: cannot parse {where}: {err}") from err
    finally:
        vcf.close()


def _check_header(vcf, path: Path, field: str) -> bool:
    """The field is declared as a FORMAT field of a usable type; returns True for GT."""
    declared = {h.info().get("ID"): h.info() for h in vcf.header_iter() if h.type == "FORMAT"}
    if field not in declared:
        raise GenotypeError(
            f"{path}: the header declares no FORMAT field {field!r} (no ##FORMAT=<ID={field},...> line); "
            f"declared FORMAT fields: {format_ids(sorted(declared)) or 'none'}"
        )
    if field == "GT":
        return True
    if declared[field].get("Type") not in ("Float", "Integer"):
        raise GenotypeError(
            f"{path}: FORMAT field {field!r} has Type={declared[field].get('Type')}; a dosage field "
            "must be Float or Integer"
        )
    return False


@numba.njit(cache=True)
def _gt_kernel(gt, n_alt, missing, out):
    """ALT counts of one site's calls into ``out`` (int8); one pass, no temporaries.

    ``gt`` is cyvcf2's ``genotype.array()``: (samples, ploidy + 1) allele indices,
    -1 missing, -2 padding of a shorter call, last column the phase flag. Returns
    ``(status, sample, n_haploid)``: status 1 = allele index > n_alt, 2 = more than two
    alleles, at ``sample``; 0 = fine.
    """
    n, w = gt.shape
    n_haploid = 0
    for i in range(n):
        count = 0
        alt = 0
        miss = False
        for k in range(w - 1):
            a = gt[i, k]
            if a == -2:
                continue
            count += 1
            if a == -1:
                miss = True
            elif a > n_alt:
                return 1, i, n_haploid
            elif a > 0:
                alt += 1
        if count > 2:
            return 2, i, n_haploid
        if miss or count == 0:
            out[i] = missing
        elif count == 1:
            out[i] = 2 * alt
            n_haploid += 1
        else:
            out[i] = alt
    return 0, -1, n_haploid


def _gt_dosage(v, n_alt: int, samples, path: Path, sid: str):
    """ALT counts (int8, MISSING for any missing allele) and the number of haploid calls."""
    gt = v.genotype.array()
    g = np.empty(len(samples), np.int8)
    status, j, n_haploid = _gt_kernel(gt, n_alt, MISSING, g)
    if status == 1:
        raise GenotypeError(
            f"{path}: site {sid!r} (chromosome {v.CHROM}, position {v.POS}) declares "
            f"{n_alt} ALT allele(s) but sample {samples[j]!r} has allele index {int(gt[j, :-1].max())}"
        )
    if status == 2:
        raise GenotypeError(
            f"{path}: site {sid!r}: sample {samples[j]!r} has a {int((gt[j, :-1] != -2).sum())}-ploid "
            "call; only haploid and diploid calls have 0/1/2 dosages"
        )
    return g, n_haploid


@dataclass
class _Position:
    """The last data record read (its count and site id), for errors raised by htslib."""

    record: int = 0
    site: str | None = None


def _samples(vcf, path: Path) -> list[str]:
    """The sample names of the header: at least one, no duplicates (checked before any site)."""
    samples = list(vcf.samples)
    if not samples:
        raise GenotypeError(f"{path}: no sample columns (a sites-only VCF has no genotypes)")
    dup = pd.Index(samples)
    if dup.has_duplicates:
        raise GenotypeError(f"{path}: duplicated sample names: " + format_ids(dup[dup.duplicated()].unique()))
    return samples


def _field_dosage(v, field: str, samples: list[str], path: Path, sid: str) -> np.ndarray:
    """A numeric FORMAT field's ALT dosage at one site (NaN missing), checked to lie in [0, 2]."""
    g = np.asarray(v.format(field), dtype=np.float64)[:, 0]
    g[~np.isfinite(g)] = np.nan  # bcf_float_missing is a NaN payload
    bad = ~np.isnan(g) & ((g < 0) | (g > 2))
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise GenotypeError(f"{path}: {field} {g[j]:g} at site {sid!r} for sample {samples[j]!r} is outside [0, 2]")
    return g


def _warn_skipped(path: Path, field: str, multi: list[str], lacking: list[str], n_haploid: int) -> None:
    """DataWarnings for skipped multi-allelic sites, sites without the field, haploid calls."""
    if multi:
        warnings.warn(
            f"{path.name}: skipped {len(multi)} multi-allelic site(s): {format_ids(multi)}",
            DataWarning,
            stacklevel=5,
        )
    if lacking:
        warnings.warn(
            f"{path.name}: {len(lacking)} site(s) have no {field} in their FORMAT and were read as "
            f"missing calls: {format_ids(lacking)}",
            DataWarning,
            stacklevel=5,
        )
    if n_haploid:
        warnings.warn(
            f"{path.name}: {n_haploid} haploid call(s) counted as homozygous (0 or 2 ALT copies, PLINK's convention)",
            DataWarning,
            stacklevel=5,
        )


def _read_sites(vcf, path: Path, field: str, state: _Position) -> Genotypes:
    samples = _samples(vcf, path)
    hard = _check_header(vcf, path, field)
    rows, meta, multi, lacking = [], [], [], []
    n_haploid = 0
    for v in vcf:  # cyvcf2 yields one site at a time; each site is vectorised over samples
        alt = v.ALT
        sid = v.ID or f"{v.CHROM}:{v.POS}:{v.REF}:{','.join(alt)}"
        state.record += 1
        state.site = sid
        if len(alt) > 1:
            multi.append(sid)
            continue
        if field not in v.FORMAT:
            lacking.append(sid)
            g = np.full(len(samples), MISSING if hard else np.nan, dtype=np.int8 if hard else np.float64)
        elif hard:
            g, k = _gt_dosage(v, len(alt), samples, path, sid)
            n_haploid += k
        else:
            g = _field_dosage(v, field, samples, path, sid)
        rows.append(g)
        meta.append((sid, v.CHROM, v.POS, alt[0] if alt else ".", v.REF))
    _warn_skipped(path, field, multi, lacking, n_haploid)
    if not rows:
        raise GenotypeError(f"{path.name}: no bi-allelic site to read ({len(multi)} multi-allelic skipped)")
    snps = pd.DataFrame(meta, columns=["snp", "chrom", "pos", "allele1", "allele2"])
    dup = pd.Index(snps["snp"])
    if dup.has_duplicates:
        raise GenotypeError(f"{path}: duplicated site ids: " + format_ids(dup[dup.duplicated()].unique()))
    d = np.ascontiguousarray(np.stack(rows, axis=1))
    info = {
        "file": str(path),
        "format": "vcf",
        "field": field,
        "coding": "012" if hard else "dosage",
        "coding_detected": False,
        "counted_allele": "ALT",
        "n_multiallelic_skipped": len(multi),
        "multiallelic_skipped": multi,
        "n_sites_without_field": len(lacking),
        "sites_without_field": lacking,
        "n_haploid_calls": n_haploid,
    }
    return Genotypes(np.asarray(samples, dtype=object), snps, d, info)

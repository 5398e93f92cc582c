"""Read genotypes from PLINK binary, VCF/BCF and numeric CSV/TSV files; write PLINK.

Counted allele (``snps.allele1``, see :mod:`henderson.data.genotypes`):

* PLINK ``.bed``: the A1 allele (5th ``.bim`` column), bed-reader ``count_A1=True``,
  PLINK 1.9's convention. :func:`write_plink` writes with the same convention, so a
  round trip is the identity.
* VCF/BCF: the ALT allele (``GT`` 0/0 -> 0, 0/1 -> 1, 1/1 -> 2); ``allele2`` is REF.
* numeric matrices: whatever the file counts (``-101`` coding is shifted by +1).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.genotypes import MISSING, Genotypes
from ..errors import DataError, DataWarning, GenotypeError, format_ids

_CODINGS = {"012": (0.0, 1.0, 2.0), "-101": (-1.0, 0.0, 1.0)}


def _plink_prefix(path: Path) -> Path | None:
    if path.suffix in (".bed", ".bim", ".fam"):
        return path.with_suffix("")
    if Path(str(path) + ".bed").exists():
        return path
    return None


def _detect_format(path: Path) -> str:
    name = path.name.lower()
    if _plink_prefix(path) is not None:
        return "plink"
    if name.endswith((".vcf", ".vcf.gz", ".vcf.bgz", ".bcf")):
        return "vcf"
    if name.removesuffix(".gz").endswith((".csv", ".tsv", ".txt")):
        return "csv"
    raise DataError(
        f"cannot tell the genotype format of {str(path)!r} from its name; pass "
        "format='plink', 'vcf' or 'csv'"
    )


def read_genotypes(path, *, format: str | None = None, coding: str | None = None, field: str = "GT") -> Genotypes:
    """Read a genotype file into :class:`Genotypes`.

    Parameters
    ----------
    path : str or Path
        PLINK prefix or ``.bed``/``.bim``/``.fam`` file; ``.vcf``, ``.vcf.gz``,
        ``.bcf``; or a numeric matrix ``.csv``/``.tsv``/``.txt`` (optionally ``.gz``):
        header line ``id,SNP1,SNP2,...``, one row per individual.
    format : {"plink", "vcf", "csv"}, optional
        Detected from the file name when omitted.
    coding : {"012", "-101", "dosage"}, optional
        Numeric matrices only. ``"012"`` counts, ``"-101"`` counts minus one (stored
        +1), ``"dosage"`` reals in [0, 2]. Detected when omitted: integer values in
        {-1, 0, 1} with at least one -1 mean ``"-101"`` (reported with a
        :class:`DataWarning`), integer values in {0, 1, 2} mean ``"012"``.
    field : {"GT", "DS"} or other FORMAT field
        VCF only: hard calls (``GT``, int8) or a dosage field (float, NaN missing).

    Returns
    -------
    Genotypes, shape (n individuals, p SNPs); ``info`` records the file, format,
    counted allele and anything skipped.

    Raises
    ------
    GenotypeError
        A code outside the coding (naming id, SNP column and line), no usable site.
    """
    path = Path(path)
    fmt = format or _detect_format(path)
    if fmt == "plink":
        return _read_plink(path)
    if fmt == "vcf":
        return _read_vcf(path, field)
    if fmt == "csv":
        return _read_matrix(path, coding)
    raise DataError(f"unknown genotype format {fmt!r}; use 'plink', 'vcf' or 'csv'")


def _read_plink(path: Path) -> Genotypes:
    from bed_reader import open_bed

    prefix = _plink_prefix(path)
    if prefix is None:
        raise DataError(f"PLINK file set {str(path)!r}.bed/.bim/.fam not found")
    bed_file = Path(str(prefix) + ".bed")
    with open_bed(bed_file, count_A1=True) as bed:
        d = bed.read(dtype="int8", order="C")  # missing -> -127 == MISSING
        snps = pd.DataFrame(
            {
                "snp": bed.sid,
                "chrom": bed.chromosome,
                "pos": bed.bp_position,
                "allele1": bed.allele_1,
                "allele2": bed.allele_2,
            }
        )
        iid, fid = bed.iid, bed.fid
    info = {"file": str(bed_file), "format": "plink", "counted_allele": "A1 (.bim column 5)", "fid": np.asarray(fid)}
    return Genotypes(iid, snps, d, info)


def write_plink(path, geno: Genotypes, fid=None) -> Path:
    """Write hard-call genotypes as PLINK ``.bed/.bim/.fam`` (bed-reader ``to_bed``).

    ``allele1`` is written as A1 and counted (``count_A1=True``), as
    :func:`read_genotypes` reads it. ``fid`` defaults to the individual ids.
    Returns the ``.bed`` path.
    """
    from bed_reader import to_bed

    if not geno.is_integer:
        raise GenotypeError("PLINK .bed stores hard calls only; these genotypes are float dosages")
    path = Path(path)
    bed_file = path if path.suffix == ".bed" else Path(str(path) + ".bed")
    s = geno.snps
    props = {
        "fid": list(geno.ids if fid is None else map(str, fid)),
        "iid": list(geno.ids),
        "sid": list(s["snp"]),
        "chromosome": list(s["chrom"]),
        "bp_position": s["pos"].to_numpy(),
        "allele_1": list(s["allele1"]),
        "allele_2": list(s["allele2"]),
    }
    # bed-reader insists on a writeable array; the container's dosages are read-only
    to_bed(bed_file, np.array(geno.dosages), properties=props, count_A1=True)
    return bed_file


def _read_vcf(path: Path, field: str) -> Genotypes:
    try:
        from cyvcf2 import VCF
    except ImportError as e:  # optional dependency
        raise ImportError("reading VCF/BCF needs cyvcf2: pip install 'henderson[vcf]'") from e

    vcf = VCF(str(path), gts012=True)  # gt_types: 0 hom-ref, 1 het, 2 hom-alt, 3 unknown
    samples = list(vcf.samples)
    rows, meta, multi = [], [], []
    hard = field == "GT"
    for v in vcf:  # cyvcf2 yields one site at a time; each site is vectorised over samples
        alt = v.ALT
        sid = v.ID or f"{v.CHROM}:{v.POS}:{v.REF}:{','.join(alt)}"
        if len(alt) > 1:
            multi.append(sid)
            continue
        if hard:
            g = v.gt_types.astype(np.int8)
            g[g == 3] = MISSING
        else:
            ds = v.format(field)
            if ds is None:
                g = np.full(len(samples), np.nan)
            else:
                g = np.asarray(ds, dtype=np.float64)[:, 0]
                g[~np.isfinite(g)] = np.nan  # bcf_float_missing is a NaN payload
        rows.append(g)
        meta.append((sid, v.CHROM, v.POS, alt[0] if alt else ".", v.REF))
    vcf.close()
    if multi:
        warnings.warn(
            f"{path.name}: skipped {len(multi)} multi-allelic site(s): {format_ids(multi)}",
            DataWarning,
            stacklevel=3,
        )
    if not rows:
        raise GenotypeError(f"{path.name}: no bi-allelic site to read ({len(multi)} multi-allelic skipped)")
    d = np.ascontiguousarray(np.stack(rows, axis=1))
    snps = pd.DataFrame(meta, columns=["snp", "chrom", "pos", "allele1", "allele2"])
    info = {
        "file": str(path),
        "format": "vcf",
        "field": field,
        "counted_allele": "ALT",
        "n_multiallelic_skipped": len(multi),
        "multiallelic_skipped": multi,
    }
    return Genotypes(samples, snps, d, info)


def _sniff_sep(path: Path) -> str:
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt") as fh:
        first = fh.readline()
    for sep in ("\t", ",", ";"):
        if sep in first:
            return sep
    return r"\s+"


def _read_matrix(path: Path, coding: str | None) -> Genotypes:
    if coding is not None and coding not in (*_CODINGS, "dosage"):
        raise DataError(f"coding must be '012', '-101' or 'dosage', not {coding!r}")
    sep = _sniff_sep(path)
    frame = pd.read_csv(path, sep=sep, skip_blank_lines=False, na_values=["NA", "."], low_memory=False)
    id_col = frame.columns[0]
    line = np.arange(len(frame)) + 2  # header is line 1; blank lines are kept as rows
    blank = frame.isna().all(axis=1).to_numpy()
    frame, line = frame.loc[~blank], line[~blank]
    if frame[id_col].isna().any():
        bad = line[frame[id_col].isna().to_numpy()]
        raise GenotypeError(f"{path.name}: missing individual id on line(s) {format_ids(bad)}")
    ids = frame[id_col].astype(str).to_numpy(dtype=object)
    body = frame.drop(columns=id_col)
    snp_ids = [str(c) for c in body.columns]
    for j, col in enumerate(body.columns):  # only non-numeric columns are inspected
        if not pd.api.types.is_numeric_dtype(body[col]):
            num = pd.to_numeric(body[col], errors="coerce")
            r = int(np.flatnonzero(num.isna().to_numpy() & body[col].notna().to_numpy())[0])
            raise GenotypeError(
                f"{path.name}: non-numeric genotype {body[col].iloc[r]!r} for id {ids[r]!r}, "
                f"SNP {snp_ids[j]!r} (line {line[r]}, column {j + 2})"
            )
    v = body.to_numpy(dtype=np.float64, na_value=np.nan)
    miss = np.isnan(v)
    finite = v[~miss]
    integer = bool(np.array_equal(finite, np.round(finite)))
    detected = coding is None
    if coding is None:
        if integer and finite.size and np.isin(finite, _CODINGS["-101"]).all() and (finite == -1).any():
            coding = "-101"
            warnings.warn(
                f"{path.name}: genotypes detected as -1/0/1 coding (a -1 occurs, no 2); "
                "stored as counts 0/1/2 (value + 1). Pass coding= to state it.",
                DataWarning,
                stacklevel=3,
            )
        else:
            coding = "012"
    if coding == "dosage":
        bad = ~miss & ((v < 0) | (v > 2))
        allowed = "reals in [0, 2]"
    else:
        bad = ~miss & ~np.isin(v, _CODINGS[coding])
        allowed = "/".join(str(int(c)) for c in _CODINGS[coding])
    if bad.any():
        r, c = np.argwhere(bad)[0]  # first offending cell in file order
        hint = " (coding detected; pass coding= to declare it)" if detected else ""
        if detected and not integer:
            hint = " (non-integer values: pass coding='dosage' for dosage data)"
        raise GenotypeError(
            f"{path.name}: genotype {v[r, c]:g} for id {ids[r]!r}, SNP {snp_ids[c]!r} "
            f"(line {line[r]}, column {c + 2}) is outside coding '{coding}' ({allowed}){hint}"
        )
    if coding == "dosage":
        d = v
    else:
        if coding == "-101":
            v = v + 1.0
        d = np.where(miss, MISSING, v).astype(np.int8)
    info = {"file": str(path), "format": "csv", "coding": coding, "coding_detected": detected}
    return Genotypes(ids, snp_ids, d, info)

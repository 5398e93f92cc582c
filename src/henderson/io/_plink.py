"""PLINK 1 binary filesets (``.bed/.bim/.fam``): checked reading and writing.

``.bed`` layout (PLINK 1.9 documentation, "bed" file format): three magic bytes
``0x6c 0x1b 0x01`` (the last one: SNP-major), then for each SNP ``ceil(n/4)`` bytes
holding the n individuals' 2-bit codes, lowest bits first: ``00`` homozygous A1,
``01`` missing, ``10`` heterozygous, ``11`` homozygous A2. The file size is therefore
exactly ``3 + p * ceil(n/4)``; it is checked against the ``.fam`` (n) and ``.bim``
(p) counts before anything is decoded, so a mismatched or truncated fileset is an
error that says which file disagrees, not a decoder's "ill-formed" message.

Counted allele: A1 (5th ``.bim`` column), bed-reader ``count_A1=True``, as PLINK
1.9 counts it; :func:`write_plink` writes with the same convention.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..data.genotypes import Genotypes
from ..errors import DataError, GenotypeError, format_ids

MAGIC = b"\x6c\x1b"
SNP_MAJOR = 1


def plink_prefix(path: Path) -> Path | None:
    """The fileset prefix of a ``.bed/.bim/.fam`` path or of a bare prefix, else None."""
    if path.suffix in (".bed", ".bim", ".fam"):
        return path.with_suffix("")
    if Path(str(path) + ".bed").exists():
        return path
    return None


def _check_bed_size(bed_file: Path, n: int, p: int) -> None:
    """Refuse a .bed whose size is not 3 + p * ceil(n/4), saying which count is off."""
    size = bed_file.stat().st_size
    per_snp = -(-n // 4)
    expected = 3 + p * per_snp
    if size == expected:
        return
    body = size - 3
    stem = bed_file.with_suffix("")
    why = (
        f"{bed_file.name} has {size} bytes, but 3 + {p} SNPs x ceil({n}/4) = {expected} are "
        f"expected for the {n} individuals of {stem.name}.fam and the {p} SNPs of {stem.name}.bim"
    )
    fits = []  # which other count would explain the size (either file may be the odd one)
    if p and body > 0 and body % p == 0:
        k = body // p  # bytes per SNP; each byte packs 4 individuals
        fits.append(
            f"{stem.name}.fam has {n} individuals but {bed_file.name} is sized for "
            f"{4 * k - 3} to {4 * k} individuals at {p} SNPs"
        )
    if per_snp and body > 0 and body % per_snp == 0:
        fits.append(
            f"{stem.name}.bim has {p} SNPs but {bed_file.name} is sized for {body // per_snp} SNPs at {n} individuals"
        )
    why += ": " + ("; or ".join(fits) if fits else "the file is truncated or corrupt")
    raise GenotypeError(f"PLINK fileset {stem}: {why}. Regenerate the fileset (e.g. plink --make-bed).")


def _check_padding(bed_file: Path, n: int, p: int) -> None:
    """Refuse a .bed whose unused bits (after the n-th individual of each SNP) are in use.

    PLINK writes the 2-bit slots after the last individual of a SNP's last byte as 00.
    When the .fam lists fewer individuals than the .bed holds but the byte count per
    SNP is the same (a deleted .fam line with n not a multiple of 4), those slots hold
    the real genotypes of the last individual(s), and every id after the deleted line
    would be read with its neighbour's genotypes. One strided read of the last byte of
    every SNP detects it (a fileset whose hidden individual is homozygous A1 at every
    SNP cannot be told from a correct one).
    """
    used = n % 4
    if used == 0 or p == 0:
        return
    per_snp = -(-n // 4)
    last = np.memmap(bed_file, dtype=np.uint8, mode="r", offset=3, shape=(p, per_snp))[:, -1]
    mask = np.uint8((0xFF << (2 * used)) & 0xFF)  # the slots of individuals n+1 .. 4*ceil(n/4)
    bad = np.flatnonzero(np.asarray(last) & mask)
    if len(bad):
        stem = bed_file.with_suffix("")
        raise GenotypeError(
            f"PLINK fileset {stem}: {stem.name}.fam lists {n} individuals, but {bed_file.name} holds "
            f"genotypes for more ({len(bad)} of {p} SNPs carry calls after individual {n}, in bits "
            "PLINK leaves empty). A line is probably missing from the .fam, which would give every "
            "later individual its neighbour's genotypes. Regenerate the fileset (plink --make-bed)."
        )


def _check_magic(bed_file: Path) -> None:
    with open(bed_file, "rb") as fh:
        head = fh.read(3)
    if len(head) < 3 or head[:2] != MAGIC:
        raise GenotypeError(
            f"{bed_file}: not a PLINK 1 .bed file (first bytes {head.hex() or 'none'}, expected 6c1b01)"
        )
    if head[2] != SNP_MAJOR:
        raise GenotypeError(
            f"{bed_file}: individual-major .bed (PLINK 1.0 mode byte {head[2]:#04x}); "
            "convert it to SNP-major with plink --make-bed"
        )


def read_plink(path: Path) -> Genotypes:
    """Read a PLINK fileset (see the module notes); errors name the file at fault."""
    from bed_reader import open_bed

    prefix = plink_prefix(path)
    if prefix is None:
        raise DataError(f"PLINK fileset {str(path)!r}: no {path}.bed found")
    files = {ext: Path(f"{prefix}.{ext}") for ext in ("bed", "bim", "fam")}
    absent = [str(f) for f in files.values() if not f.exists()]
    if absent:
        raise DataError(f"PLINK fileset {prefix}: missing file(s) {format_ids(absent)}")
    bed_file = files["bed"]
    _check_magic(bed_file)
    try:
        with open_bed(bed_file, count_A1=True) as bed:
            n, p = bed.iid_count, bed.sid_count  # parses .fam and .bim
            _check_bed_size(bed_file, n, p)
            _check_padding(bed_file, n, p)
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
            iid, fid = np.asarray(bed.iid, dtype=object), np.asarray(bed.fid, dtype=object)
    except GenotypeError:
        raise
    except Exception as err:  # bed-reader's parse errors: name the fileset
        raise GenotypeError(f"PLINK fileset {prefix}: cannot read ({type(err).__name__}: {err})") from err
    _check_unique_ids(iid, snps["snp"], files)
    info = {
        "file": str(bed_file),
        "format": "plink",
        "coding": "012",
        "coding_detected": False,
        "counted_allele": "A1 (.bim column 5)",
        # by IID, so that subsets and G built from these genotypes keep the right FID
        "fid": pd.Series(fid, index=pd.Index(iid, name="id"), name="fid"),
    }
    return Genotypes(iid, snps, d, info)


def _check_unique_ids(iid: np.ndarray, snp: pd.Series, files: dict[str, Path]) -> None:
    """Each IID once in the .fam (the lines of repeats named) and each SNP id once in the .bim."""
    dup = pd.Index(iid)
    if dup.has_duplicates:
        rep = pd.Series(np.arange(len(iid)) + 1, index=dup)[dup.duplicated(keep=False)]  # .fam lines
        where = "; ".join(
            f"{i!r} on lines {', '.join(map(str, lines))}"
            for i, lines in list(rep.groupby(level=0, sort=False).agg(list).items())[:5]
        )
        raise GenotypeError(
            f"{files['fam']}: duplicated individual ids (IID, column 2): {where}; "
            "henderson identifies individuals by IID, so each must appear once"
        )
    dup = pd.Index(snp)
    if dup.has_duplicates:
        raise GenotypeError(
            f"{files['bim']}: duplicated SNP ids (column 2): " + format_ids(dup[dup.duplicated()].unique())
        )


def write_plink(path, geno: Genotypes, fid=None) -> Path:
    """Write hard-call genotypes as PLINK ``.bed/.bim/.fam`` (bed-reader ``to_bed``).

    Parameters
    ----------
    path : str or Path
        Prefix, or the ``.bed`` path.
    geno : Genotypes, shape (n, p), int8 hard calls
        ``snps.allele1`` is written as A1 and counted (``count_A1=True``), as
        :func:`read_genotypes` reads it; unknown (empty) allele names are written as
        ``1`` (A1) and ``2``, since PLINK refuses empty ``.bim`` fields.
    fid : sequence of str (n,) or Series by id, optional
        Family ids; default ``geno.info["fid"]`` (matched by id) or the individual ids.

    Returns
    -------
    Path of the ``.bed`` file.
    """
    from bed_reader import to_bed

    if not geno.is_integer:
        raise GenotypeError("PLINK .bed stores hard calls only; these genotypes are float dosages")
    path = Path(path)
    bed_file = path if path.suffix == ".bed" else Path(str(path) + ".bed")
    if fid is None:
        fid = geno.info.get("fid")
    if isinstance(fid, pd.Series):
        known = fid.reindex(pd.Index(geno.ids)).to_numpy(dtype=object)
        fid = np.where(pd.isna(known), geno.ids, known)  # FID = IID where unknown
    fid = geno.ids if fid is None else np.asarray([str(f) for f in fid], dtype=object)
    if len(fid) != geno.n:
        raise DataError(f"fid has {len(fid)} entries for {geno.n} individuals")
    s = geno.snps
    # PLINK refuses a .bim with empty allele fields (numeric matrices have no allele
    # names): unknown alleles are written as "1" (A1, counted) and "2", the codes of
    # PLINK's own --recode 12.
    a1 = s["allele1"].where(s["allele1"].str.strip() != "", "1")
    a2 = s["allele2"].where(s["allele2"].str.strip() != "", "2")
    props = {
        "fid": list(fid),
        "iid": list(geno.ids),
        "sid": list(s["snp"]),
        "chromosome": list(s["chrom"]),
        "bp_position": s["pos"].to_numpy(),
        "allele_1": list(a1),
        "allele_2": list(a2),
    }
    # bed-reader insists on a writeable array; the container's dosages are read-only
    to_bed(bed_file, np.array(geno.dosages), properties=props, count_A1=True)
    return bed_file

"""``henderson grm`` and ``henderson ainv``: relationship matrices to files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import scipy.sparse as sp
import typer

from ._common import DebugOpt, QuietOpt, SchedulerOpt, Session, ThreadsOpt
from ._errors import CLIError
from ._inputs import read_genotypes_file, read_pedigree_file
from ._steps import codes
from .genetic_cmd import CodingOpt, MissingParentOpt, PedColsOpt, SelfingOpt

GrmGenotypesOpt = Annotated[
    Path, typer.Option("--genotypes", "-g", help="PLINK prefix or .bed, VCF, or CSV/TSV matrix (first column id).")
]
GrmOutOpt = Annotated[
    Path,
    typer.Option(
        "--out",
        "-o",
        help="Output FILE (not a directory): CSV with an id column and one column per id; or, when it ends in .grm or with --format gcta, the PREFIX of the GCTA binary files PREFIX.grm.bin, .grm.N.bin and .grm.id. Replaced only at the end of a successful run.",
    ),
]
GrmMethodOpt = Annotated[
    str,
    typer.Option(
        "--method",
        help="vanraden1 (rrBLUP A.mat), vanraden2 (PLINK --make-rel), yang (GCTA) or vitezica (dominance).",
    ),
]
GrmFormatOpt = Annotated[str | None, typer.Option("--format", help="csv or gcta (default: from the file name).")]
AinvPedigreeOpt = Annotated[
    Path,
    typer.Option(
        "--pedigree",
        help="Pedigree file with id, sire, dam columns (delimiter detected; 0, NA, . or empty = unknown).",
    ),
]
AinvOutOpt = Annotated[
    Path,
    typer.Option(
        "--out",
        "-o",
        help="Output FILE (not a directory), a CSV: id1,id2,value, lower triangle (id1 is the younger or same animal). Replaced only at the end of a successful run.",
    ),
]
InbreedingOpt = Annotated[
    Path | None, typer.Option("--inbreeding", help="Also write inbreeding coefficients (id,F) to this CSV FILE.")
]


def grm(
    genotypes: GrmGenotypesOpt,
    out: GrmOutOpt,
    method: GrmMethodOpt = "vanraden1",
    format: GrmFormatOpt = None,
    coding: CodingOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    threads: ThreadsOpt = None,
    scheduler: SchedulerOpt = None,
):
    """Genomic relationship matrix G from genotypes, written as CSV or GCTA binary GRM.

    Example: henderson grm --genotypes geno.csv --method vanraden1 --out G.csv
    """
    from ..relationships.genomic import genomic_relationship

    s = Session("grm", quiet, debug, threads, None)
    fmt = (format or ("gcta" if str(out).endswith((".grm", ".grm.bin")) else "csv")).lower()
    if fmt not in ("csv", "gcta"):
        raise CLIError(f"--format must be csv or gcta, not {format!r}")
    prefix = str(out).removesuffix(".bin").removesuffix(".grm")
    if fmt == "gcta":
        files = s.output_files([prefix + ext for ext in (".grm.bin", ".grm.N.bin", ".grm.id")], kind="file prefix")
    else:
        files = s.output_files([out])
    from ..io._plink import plink_prefix

    if scheduler and plink_prefix(Path(genotypes)) is not None:
        geno = str(genotypes)  # the workers read their SNP chunks from the file themselves
    else:
        with s.step("Reading genotypes"):
            geno = read_genotypes_file(genotypes, coding)
    with s.step(f"Building G ({method})" + (f" on {scheduler}" if scheduler else ""), counted="SNPs"):
        G = genomic_relationship(geno, method=method, scheduler=scheduler or None)
    with s.step("Writing"):
        written = _write_grm(G, fmt, files, out, prefix, geno)
    _print_g_summary(s, G, method)
    s.done()
    s.stdout.print(f"Wrote {written}")


def _write_grm(G, fmt: str, files, out, prefix: str, geno) -> str:
    """G as CSV, or as GCTA binary files (.grm.N.bin: SNPs called in both, from the
    genotypes when they were read here); returns what was written."""
    from ..relationships.grm_io import write_gcta_grm, write_relationship_csv

    if fmt == "gcta":
        write_gcta_grm(
            G,
            str(files.where(prefix + ".grm.bin")).removesuffix(".grm.bin"),
            genotypes=None if isinstance(geno, str) else geno,
        )
        return f"{prefix}.grm.bin, {prefix}.grm.N.bin, {prefix}.grm.id"
    write_relationship_csv(G, files.where(out))
    return str(out)


def _print_g_summary(s: Session, G, method: str) -> None:
    """G's size and the mean and range of its diagonal and off-diagonal."""
    d = np.diag(G.dense())
    off = G.dense()[np.triu_indices(G.n, 1)]
    s.stdout.print(
        f"G ({method}): {G.n} individuals, {G.info['n_snps']} SNPs; diagonal mean {d.mean():.4f} "
        f"(range {d.min():.4f} to {d.max():.4f}), off-diagonal mean {off.mean():.4f} sd {off.std():.4f}"
    )


def ainv(
    pedigree: AinvPedigreeOpt,
    out: AinvOutOpt,
    ped_columns: PedColsOpt = "id,sire,dam",
    inbreeding: InbreedingOpt = None,
    selfing: SelfingOpt = False,
    missing_parent: MissingParentOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    threads: ThreadsOpt = None,
):
    """Inverse numerator relationship matrix A⁻¹ (Henderson's rules with inbreeding) as a sparse list.

    Example: henderson ainv --pedigree ped.csv --out Ainv.csv
    """
    from ..relationships.pedigree import pedigree_inverse

    s = Session("ainv", quiet, debug, threads, None)
    from ._steps import ped_cols

    cols = ped_cols(ped_columns)
    files = s.output_files([out])
    f_file = s.output_files([inbreeding], "--inbreeding") if inbreeding is not None else None
    with s.step("Reading pedigree"):
        ped, notes = read_pedigree_file(
            pedigree, *cols, selfing=selfing, missing=None if missing_parent is None else codes(missing_parent)
        )
    for note in notes:
        s.warn(note)
    with s.step("Building A⁻¹"):
        Ai = pedigree_inverse(ped)
    low = sp.tril(sp.csr_matrix(Ai.matrix), format="coo")
    order = np.lexsort((low.col, low.row))
    ids = np.asarray(Ai.ids, dtype=object)
    table = pd.DataFrame({"id1": ids[low.row[order]], "id2": ids[low.col[order]], "value": low.data[order]})
    table.to_csv(files.where(out), index=False, float_format="%.12g")
    F = Ai.info.get("inbreeding")
    if f_file is not None and F is not None:
        F.rename("F").rename_axis("id").reset_index().to_csv(
            f_file.where(inbreeding), index=False, float_format="%.10g"
        )
    n_inbred = int((F > 0).sum()) if F is not None else 0
    max_f = f" (max F {float(F.max()):.4f})" if F is not None and n_inbred else ""
    s.stdout.print(
        f"A⁻¹: {Ai.n} animals, {len(table)} non-zeros in the lower triangle; {n_inbred} inbred animals{max_f}"
    )
    s.done()
    s.stdout.print(f"Wrote {out}" + (f" and {inbreeding}" if inbreeding is not None else ""))

"""The association section of an HTML report: Manhattan, QQ, top hits, windows."""

from __future__ import annotations

import pandas as pd

from . import plots

HITS_COLUMNS = ["snp", "chrom", "pos", "allele1", "allele2", "freq", "effect", "se", "p"]


def top_hits(table: pd.DataFrame, n: int = 20) -> pd.DataFrame:
    """The ``n`` smallest p-values (tested SNPs only)."""
    t = table[table["tested"]].nsmallest(n, "p")
    return t[[c for c in HITS_COLUMNS if c in t]].reset_index(drop=True)


def add_association(
    report, table: pd.DataFrame, windows: pd.DataFrame | None = None, *, trait: str = "", top: int = 20
) -> None:
    """Append the association section (figures and tables) to a :class:`~henderson.report.html.Report`."""
    tested = int(table["tested"].sum())
    lam = table.attrs.get("lambda_gc", float("nan"))
    report.section("Association")
    report.text(f"Method: {table.attrs.get('method', '')}", cls="note")
    report.kv({"SNPs tested": f"{tested:,} of {len(table):,}", "genomic control λ": f"{lam:.3f}"})
    report.image(
        plots.manhattan(table, f"{trait}: {tested:,} SNPs"),
        caption="−log10 p by chromosome and position; dashed: Bonferroni 0.05 over the SNPs tested",
        alt="Manhattan plot of the association p-values",
    )
    report.start_grid()
    report.image(
        plots.qq(table["p"], "QQ plot"),
        caption="Observed against expected −log10 p; grey: 95 % band under the null",
        alt="QQ plot of the association p-values with the genomic-control lambda",
    )
    report.table(top_hits(table, top), caption=f"Top {min(top, tested)} SNPs", index=False, digits=4)
    report.end_grid()
    report.text("effect: per copy of allele1 (the counted allele), in trait units; freq: of allele1.", cls="note")
    for note in table.attrs.get("notes", []):
        report.callout(note, warn=True)
    if windows is not None and len(windows):
        report.section("Windows: share of genetic variance", level=3)
        report.image(
            plots.windows_plot(windows, "% of genetic variance per window"),
            caption="100·Var(W_w β̂_w)/Var(Wβ̂) per window of the back-solved SNP effects "
            "(shares need not sum to 100: windows covary)",
            alt="Bar plot of the percentage of genetic variance explained by each window",
        )
        report.table(
            windows.nlargest(min(top, len(windows)), "pct_var").reset_index(drop=True),
            caption="Windows explaining the most genetic variance",
            index=False,
            digits=3,
        )

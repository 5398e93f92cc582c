"""Match the counted alleles of new genotypes to those of fitted SNP effects.

A SNP effect is the effect of one copy of the model's counted allele (``allele1``).
If a new genotype file counts the other allele (REF/ALT swapped, another PLINK A1
choice), its dosage x is 2 − x in the model's coding, and scoring it as is would flip
the sign of that SNP's contribution to every prediction. So, per SNP, when both
sides carry allele labels:

- same alleles (A/G vs A/G): used as is;
- swapped (A/G vs G/A): the dosage is flipped (2 − x), counted and reported;
- anything else (A/G vs C/T, A/G vs A/C): an error naming the SNPs — the labels
  describe different variants, or the other DNA strand, and guessing could be wrong;
- strand-ambiguous (palindromic) SNPs, A/T or C/G: a swap cannot be told apart from
  a strand flip (the complement of A/T is T/A), so swapped labels are an error too;
  identical labels are taken as they are.

SNPs where either side lacks labels (empty, ``0``, ``.``, as for numeric matrices or
PLINK's monomorphic sites) cannot be checked and are counted as unchecked.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError, format_ids

_UNKNOWN = {"", "0", ".", "NAN", "NONE", "NA", "-"}
_COMPLEMENT = {"A": "T", "T": "A", "C": "G", "G": "C"}


def _labels(col: pd.Series) -> np.ndarray:
    # missing labels first become "": pandas 3 keeps NaN through astype(str), and a NaN
    # label must count as unknown, not as a label that matches nothing
    return col.astype(object).where(col.notna(), "").astype(str).str.strip().str.upper().to_numpy(dtype=object)


def allele_flips(model_snps: pd.DataFrame, new_snps: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Which SNPs of the new genotypes count the model's other allele.

    Parameters
    ----------
    model_snps, new_snps : DataFrame, shape (m, ≥3)
        Columns ``snp, allele1, allele2`` (allele1 = counted allele), the same SNPs in
        the same order (the caller has matched them by id).

    Returns
    -------
    flip : ndarray of bool, shape (m,)
        True where the new genotypes count the model's ``allele2``: use 2 − x.
    notes : list of str
        What was flipped and how many SNPs could not be checked.

    Raises
    ------
    DataError
        Naming the SNPs whose alleles do not match (or are strand-ambiguous swaps).
    """
    m1, m2 = _labels(model_snps["allele1"]), _labels(model_snps["allele2"])
    n1, n2 = _labels(new_snps["allele1"]), _labels(new_snps["allele2"])
    known = ~(
        np.isin(m1, list(_UNKNOWN))
        | np.isin(m2, list(_UNKNOWN))
        | np.isin(n1, list(_UNKNOWN))
        | np.isin(n2, list(_UNKNOWN))
    )
    same = known & (m1 == n1) & (m2 == n2)
    swapped = known & (m1 == n2) & (m2 == n1) & ~same
    comp = pd.Series(m1, dtype=object).map(_COMPLEMENT).fillna("?").to_numpy(dtype=object)
    palindromic = known & (comp == m2)
    ids = model_snps["snp"].astype(str).to_numpy()
    _check_alleles_match(ids, swapped & palindromic, known & ~same & ~swapped, (m1, m2, n1, n2))
    notes = []
    flip = swapped & ~palindromic
    if flip.any():
        notes.append(
            f"{int(flip.sum())} SNP(s) count the model's other allele (alleles swapped): "
            f"dosages flipped to 2 - x: " + format_ids(ids[flip])
        )
    unchecked = int((~known).sum())
    if unchecked and known.any():
        notes.append(f"{unchecked} SNP(s) lack allele labels on one side: alleles not checked")
    return flip, notes


def _check_alleles_match(ids: np.ndarray, ambiguous: np.ndarray, mismatch: np.ndarray, labels: tuple) -> None:
    """Errors naming strand-ambiguous swaps and SNPs whose allele labels differ.

    ``labels``: (model allele1, model allele2, new allele1, new allele2), one per SNP.
    """
    m1, m2, n1, n2 = labels
    if ambiguous.any():
        raise DataError(
            f"{int(ambiguous.sum())} strand-ambiguous SNP(s) (A/T or C/G) whose counted allele differs "
            "between the model and the new genotypes: "
            + format_ids(ids[ambiguous])
            + "; a swap cannot be told from a strand flip — recode these SNPs so that the same "
            "allele is counted, or remove them from the model"
        )
    if mismatch.any():
        show = ", ".join(
            f"{s} ({a}/{b} vs {c}/{d})"
            for s, a, b, c, d in zip(ids[mismatch][:10], m1[mismatch], m2[mismatch], n1[mismatch], n2[mismatch])
        )
        more = int(mismatch.sum()) - 10
        raise DataError(
            f"{int(mismatch.sum())} SNP(s) have alleles that do not match the model's "
            f"(model allele1/allele2 vs new): {show}{f' ... and {more} more' if more > 0 else ''}; "
            "they may be different variants under the same id or on the other strand — align "
            "the genotypes to the model's alleles first"
        )

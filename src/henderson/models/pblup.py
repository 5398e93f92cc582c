"""Pedigree BLUP (Henderson's animal model) with the sparse A⁻¹ in the MME."""

from __future__ import annotations

import time

import pandas as pd

from ..api import fit, fit_spec
from ..errors import HendersonError, ModelError, format_ids
from ..relationships.pedigree import pedigree_inverse
from ..spec.formula import add_random_terms
from ._align import ID, genetic_spec, records_frame, with_notes


def fit_pblup(
    y: pd.Series,
    pedigree,
    *,
    fixed: str | None = None,
    data=None,
    random: str | None = None,
    method: str = "reml",
    sigma2=None,
    missing: str = "error",
):
    """Fit the animal model y = Xb + Za + e, a ~ N(0, Aσ²_a), A⁻¹ by Henderson's rules.

    Every animal in the pedigree gets an EBV, with or without records.

    Parameters
    ----------
    y : Series indexed by animal id
    pedigree : Pedigree or DataFrame (id, sire, dam)
    fixed, data : optional fixed effects (formula part, frame indexed by id)
    random : str, optional
        Extra random terms on columns of ``data``, e.g. ``"(1|MOTHER) + (1|BYEAR)"``.
    method, sigma2, missing : as :func:`henderson.fit`
    """
    Ainv = pedigree_inverse(pedigree)
    frame, formula, _, notes = records_frame(y, Ainv.ids, fixed=fixed, data=data, missing=missing, what="pedigree")
    if random:
        if data is None:
            raise ValueError("random= terms need data= (a DataFrame indexed by id)")
        if not fixed:
            d = data.copy()
            d.index = d.index.astype(str)
            frame = frame.merge(d, left_on=ID, right_index=True, how="left", suffixes=("", "_data"))
        formula = add_random_terms(formula, random)
    try:
        if any(t.structured for t in formula.random):  # random= with a structure: the general engine
            res = fit(formula, frame, cov_inverse={ID: Ainv}, method=method, sigma2=sigma2)
        else:
            t0 = time.perf_counter()
            spec = genetic_spec(frame, formula, cov_inverse=Ainv)
            res = fit_spec(spec, method=method, sigma2=sigma2, t0=t0)
    except HendersonError as err:
        near = Ainv.info.get("fully_inbred") or ()
        if not near:
            raise
        # the generic message blames fixed effects; here the pedigree is the cause
        raise ModelError(
            f"the animal model cannot be solved: {len(near)} animal(s) of the pedigree have inbreeding "
            f"F >= 1 - 1e-6 ({format_ids(near)}), so A is singular to working precision (A⁻¹ terms up "
            f"to {Ainv.info['max_inverse_diagonal_term']:.3g}) and these animals cannot be told from "
            "their ancestors. Keep one representative per fully inbred line (or start the line's "
            f"pedigree at its last non-inbred ancestor), or use genomic relationships"
        ) from err
    return with_notes(res, before=notes)

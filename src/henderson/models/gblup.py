"""GBLUP: y = Xb + Zg + e, g ~ N(0, Gσ²_g), built from arrays with ids
(:func:`~henderson.models._align.genetic_spec`) and fitted by :func:`henderson.api.fit_spec`.

One genomic kernel, so the fit takes the spectral solver (tridiagonal reduction of
ZGZ' once, O(n) per REML evaluation). Genotyped individuals without phenotypes get
GEBVs ĝ = σ²_g G Z'Py.
"""

from __future__ import annotations

import time

import pandas as pd

from ..api import fit_spec
from ..relationships.container import Relationship, as_relationship
from ._align import genetic_spec, records_frame, with_notes


def fit_gblup(
    y: pd.Series,
    G: Relationship,
    *,
    fixed: str | None = None,
    data=None,
    method: str = "reml",
    sigma2=None,
    pev="auto",
    missing: str = "error",
):
    """Fit GBLUP by REML (or at given variances).

    Parameters
    ----------
    y : Series indexed by id
    G : Relationship or DataFrame (N × N, ids)
    fixed, data : optional fixed effects (formula part and a frame indexed by id)
    method : {"reml", "ml"}
    sigma2 : (σ²_g, σ²_e), optional — skip estimation
    pev : bool or "auto"
    missing : {"error", "drop"} for phenotyped ids absent from G

    Returns
    -------
    FitResult with ``blups["id"]`` holding GEBVs of all N individuals.
    """
    G = as_relationship(G, kind="G")
    frame, formula, _, notes = records_frame(
        y, G.ids, fixed=fixed, data=data, missing=missing, what="genomic relationship matrix"
    )
    t0 = time.perf_counter()
    spec = genetic_spec(frame, formula, cov=G)
    res = fit_spec(spec, method=method, sigma2=sigma2, pev=pev, t0=t0)
    return with_notes(res, before=notes)

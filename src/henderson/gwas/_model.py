"""What association needs from a fitted model: records, kernel, variances, frequencies.

A fitted :class:`~henderson.GBLUP` or :class:`~henderson.SNPBLUP` is read through its
public attributes; anything else that exposes GEBVs and the prediction-error
covariance of the genotyped animals (single-step GBLUP, see :func:`fitted_model`) is
accepted through a small duck-typed hook.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, ModelError
from ..models._align import ID, records_frame
from ..relationships.container import Relationship
from ..spec.model import build_spec


@dataclass
class Design:
    """Records of one trait: y (n,), fixed-effect matrix X (n, c), the id of each record."""

    y: np.ndarray
    X: np.ndarray
    x_names: list
    record_ids: np.ndarray
    trait: str
    notes: list = field(default_factory=list)


def design_of(
    y: pd.Series, known_ids, *, fixed: str | None = None, data=None, missing: str = "error", what: str = "genotypes"
) -> Design:
    """Align phenotypes and the fixed part of a formula by id (as the genetic models do)."""
    frame, formula, trait, notes = records_frame(y, known_ids, fixed=fixed, data=data, missing=missing, what=what)
    spec = build_spec(formula, frame)  # the random term is only parsed: X and y are what we use
    rec = frame.loc[spec.record_index, ID].astype(str).to_numpy(dtype=object)
    return Design(spec.y, spec.X, list(spec.x_names), rec, trait, list(notes) + list(spec.notes))


@dataclass
class Fitted:
    """A fitted genetic model as association sees it.

    ``sigma2_g`` is on the scale of ``G`` (Var(g) = σ²_g G) and G = WW'/scale;
    ``pec`` (ssGBLUP hook only) is C^{gg}, the prediction-error covariance of the GEBVs
    of G's individuals, with ``gebv`` in G's order.
    """

    kind: str
    design: Design | None
    G: Relationship | None
    sigma2_g: float
    sigma2_e: float
    scale: float | None
    freq: np.ndarray | None
    snp_ids: np.ndarray | None = None
    gebv: np.ndarray | None = None
    pec: np.ndarray | None = None
    estimator: Any = None


def _sigma2(est) -> tuple[float, float]:
    vc = est.variance_components_["variance"]
    return float(vc.iloc[0]), float(vc.loc["Residual"])


def _design_from(est, ids) -> Design:
    if not hasattr(est, "y_"):
        raise ModelError(f"this {type(est).__name__} was fitted before association support (no y_): refit it")
    return design_of(
        est.y_, ids, fixed=est.fixed, data=getattr(est, "data_", None), missing=getattr(est, "missing", "error")
    )


def fitted_model(est) -> Fitted:
    """Read a fitted estimator (GBLUP, SNPBLUP, or the single-step hook).

    The hook: any fitted object with ``G_`` (the genotyped animals' G, VanRaden 1),
    ``gebv_`` (DataFrame by id with a ``gebv`` column), ``variance_components_``
    (genetic variance in the first row, ``Residual``) and a method
    ``genotyped_pec()`` returning C^{gg} as a DataFrame (G's ids as index and columns):
    the prediction-error covariance of the genotyped animals' GEBVs (the genotyped
    block of σ²_e C⁻¹ of the mixed model equations), as BLUPF90's postGSf90 reads it.
    An ``allele_freq_`` array (the frequencies G was centred with) is used when present;
    otherwise the frequencies observed among G's individuals.
    """
    from ..estimators import GBLUP, SNPBLUP

    if not hasattr(est, "variance_components_"):
        raise ModelError(f"{type(est).__name__} is not fitted: call fit(X, y) first")
    if isinstance(est, GBLUP):
        return _fitted_gblup(est)
    if isinstance(est, SNPBLUP):
        return _fitted_snpblup(est)
    if all(hasattr(est, a) for a in ("G_", "gebv_", "genotyped_pec")):
        return _fitted_single_step_hook(est)
    raise ModelError(
        f"association cannot read a {type(est).__name__}: pass a fitted GBLUP or SNPBLUP, "
        "an estimator with G_, gebv_ and genotyped_pec() (single-step), or phenotypes "
        "(a Series by id) with method='mlma'"
    )


def _fitted_gblup(est) -> Fitted:
    """A GBLUP on G = WW'/2Σpq (VanRaden 1), the only G whose SNP effects back-solve."""
    s_g, s_e = _sigma2(est)
    if est.grm != "vanraden1":
        raise ModelError(
            f"back-solving SNP effects needs G = WW'/2sum(pq) (grm='vanraden1'), "
            f"not grm={est.grm!r}; use method='mlma' instead"
        )
    G = est.G_
    freq = getattr(est, "allele_freq_", None) if getattr(est, "genotypes_", None) is not None else None
    snp_ids = est.genotypes_.snp_ids if getattr(est, "genotypes_", None) is not None else None
    return Fitted("GBLUP", _design_from(est, G.ids), G, s_g, s_e, G.info.get("scale"), freq, snp_ids, estimator=est)


def _fitted_snpblup(est) -> Fitted:
    """A SNP-BLUP: Var(g) = σ²_β WW' = (2Σpq σ²_β) G with G = WW'/2Σpq."""
    _, s_e = _sigma2(est)
    f = est.fit_
    snp_ids = f.snp_effects["snp"].to_numpy()
    design = _design_from(est, est.gebv_.index.to_numpy())
    # Var(g) = σ²_β WW' = (2Σpq σ²_β) G with G = WW'/2Σpq
    return Fitted(
        "SNPBLUP",
        design,
        None,
        f.two_sum_pq * est.sigma2_beta_,
        s_e,
        f.two_sum_pq,
        np.asarray(f.allele_freq, dtype=float),
        snp_ids,
        estimator=est,
    )


def _fitted_single_step_hook(est) -> Fitted:
    """Any estimator with ``G_``, ``gebv_`` and ``genotyped_pec()`` (see :func:`fitted_model`)."""
    s_g, s_e = _sigma2(est)
    G = est.G_
    pec = est.genotyped_pec()
    if not isinstance(pec, pd.DataFrame):
        raise ModelError("genotyped_pec() must return a DataFrame with G's ids as index and columns")
    ids = pd.Index(G.ids).astype(str)
    pec.index, pec.columns = pec.index.astype(str), pec.columns.astype(str)
    absent = ids[~ids.isin(pec.index)]
    if len(absent):
        raise DataError(f"genotyped_pec() lacks {len(absent)} genotyped animal(s) of G_: {list(absent[:10])}")
    gebv = est.gebv_["gebv"]
    gebv.index = gebv.index.astype(str)
    freq = getattr(est, "allele_freq_", None)
    freq = None if freq is None else np.asarray(freq, dtype=float)
    return Fitted(
        type(est).__name__,
        None,
        G,
        s_g,
        s_e,
        G.info.get("scale"),
        freq,
        gebv=gebv.loc[ids].to_numpy(dtype=float),
        pec=pec.loc[ids, ids].to_numpy(dtype=float),
        estimator=est,
    )

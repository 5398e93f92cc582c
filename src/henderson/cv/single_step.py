"""Validation of single-step GBLUP as breeders run it: on young genotyped animals.

The records of the validation animals are masked; ssGBLUP (pedigree + genotypes) and
pedigree BLUP (pedigree only) are fitted on the rest, and the validation animals'
predicted breeding values are compared with their masked phenotypes (Legarra et al.
2008; the "forward" validation of Legarra & Reverter 2018 in its simplest form).

- With birth years, forward in time: validation = genotyped animals with records born
  in or after ``cutoff`` (default: the last year among them); every record of an
  animal born in or after ``cutoff`` is masked (the future is not known).
- Without: validation = genotyped animals with records in the youngest pedigree
  generation among them; only their records are masked.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..data.genotypes import Genotypes
from ..errors import DataError
from ..relationships.pedigree import _as_pedigree
from .metrics import fold_metrics


def young_split(
    pedigree, genotyped_ids, y: pd.Series, birth_year: pd.Series | None = None, cutoff=None
) -> tuple[np.ndarray, np.ndarray, str]:
    """(validation ids, masked ids, description) — see the module notes."""
    ped = _as_pedigree(pedigree)
    rec = pd.Index(pd.unique(y.index[y.notna()].astype(str)))
    cand = rec[rec.isin(pd.Index(np.asarray(genotyped_ids, dtype=str)))]
    if len(cand) < 3:
        raise DataError(
            f"validation on young genotyped animals needs at least 3 genotyped animals with records, found {len(cand)}"
        )
    if birth_year is not None:
        by = pd.to_numeric(pd.Series(birth_year.to_numpy(), index=birth_year.index.astype(str)), errors="coerce")
        by = by[~by.index.duplicated()]
        yc = by.reindex(cand)
        if yc.isna().all():
            raise DataError("no birth year for any genotyped animal with records")
        cut = float(yc.max()) if cutoff is None else float(cutoff)
        test = cand[(yc >= cut).to_numpy()]
        masked = by.index[(by >= cut).to_numpy()].intersection(rec)
        how = f"forward in time: validation = genotyped animals with records born in or after {cut:g}"
    else:
        gen = pd.Series(ped.generation[ped.codes_of(cand)], index=cand)
        top = int(gen.max())
        test = cand[(gen == top).to_numpy()]
        masked = test
        how = f"youngest pedigree generation ({top}) of the genotyped animals with records"
    if len(test) < 3:
        raise DataError(f"only {len(test)} validation animal(s) ({how}); choose an earlier cutoff")
    if len(rec.difference(masked)) < 3:
        raise DataError("no training records left after masking the validation animals")
    return np.asarray(test, dtype=object), np.asarray(masked, dtype=object), how


def validate_young(
    pedigree,
    genotypes,
    y: pd.Series,
    *,
    birth_year: pd.Series | None = None,
    cutoff=None,
    refit_variances: bool = True,
    fixed=None,
    data=None,
    method: str = "reml",
    **h_settings,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Validate ssGBLUP and pedigree BLUP on young genotyped animals.

    Parameters
    ----------
    pedigree : Pedigree or DataFrame
    genotypes : Genotypes (or G)
    y : Series of phenotypes by id
    birth_year : Series by id, optional — forward-in-time validation
    cutoff : number, optional — first validation birth year (default the last)
    refit_variances : bool
        REML on the training records (honest); False: the full-data REML variances.
    fixed, data, method : as the estimators; **h_settings : as ``single_step_inverse``

    Returns
    -------
    predictions : DataFrame (model, id, observed, predicted_bv, fold, repeat)
    metrics : DataFrame, one row per model (r, slope, ... as cross_validate's)
    info : dict (scheme, n_train, n_test, masked)
    """
    from ..estimators import PedigreeBLUP, SingleStepGBLUP

    gids = genotypes.ids if isinstance(genotypes, Genotypes) else np.asarray(getattr(genotypes, "ids", []))
    test, masked, how = young_split(pedigree, gids, y, birth_year, cutoff)
    ids = y.index.astype(str)
    train = y.copy()
    train.index = ids
    train[ids.isin(pd.Index(masked))] = np.nan
    sig_ss, sig_pb = (
        (None, None)
        if refit_variances
        else _full_data_variances(pedigree, genotypes, y, data, method, fixed, h_settings)
    )
    obs = pd.Series(y.to_numpy(), index=ids).groupby(level=0).mean().reindex(test)  # repeated records: mean
    preds, rows = [], []
    models: list[tuple[str, Any]] = [
        ("ssGBLUP", SingleStepGBLUP(method=method, fixed=fixed, sigma2=sig_ss, snp_effects=False, **h_settings)),
        ("pedigree BLUP", PedigreeBLUP(method=method, fixed=fixed, sigma2=sig_pb)),
    ]
    for label, est in models:  # the two estimators' fit() take different inputs
        if label == "ssGBLUP":
            est.fit(pedigree, genotypes, train, data=data)
        else:
            est.fit(pedigree, train, data=data)
        row, pred = _validated(label, est, test, obs, int(train.notna().sum()), method)
        rows.append(row)
        preds.append(pred)
    info = {
        "scheme": how,
        "n_test": len(test),
        "n_masked_records": int(ids.isin(pd.Index(masked)).sum()),
        "refit_variances": refit_variances,
    }
    return pd.concat(preds, ignore_index=True), pd.DataFrame(rows), info


def _full_data_variances(pedigree, genotypes, y, data, method, fixed, h_settings):
    """(σ² of ssGBLUP, σ² of pedigree BLUP) by REML on all records (``refit_variances=False``)."""
    from ..estimators import PedigreeBLUP, SingleStepGBLUP

    full_ss = SingleStepGBLUP(method=method, fixed=fixed, snp_effects=False, **h_settings).fit(
        pedigree, genotypes, y, data=data
    )
    full_pb = PedigreeBLUP(method=method, fixed=fixed).fit(pedigree, y, data=data)
    return (
        tuple(float(v) for v in full_ss.result_.sigma2.to_numpy()),
        tuple(float(v) for v in full_pb.result_.sigma2.to_numpy()),
    )


def _validated(label: str, est, test, obs: pd.Series, n_train: int, method: str):
    """(the metrics row, the predictions) of one fitted model on the validation animals."""
    bv = est.gebv_.loc[test, "gebv"].to_numpy()
    fe = est.fixed_effects_["estimate"]
    yhat = bv + float(fe.iloc[0]) if list(fe.index) == ["(Intercept)"] else np.full(len(bv), np.nan)
    h2 = float(est.h2_)
    row = {
        "model": label,
        "repeat": 1,
        "fold": "young",
        "n_train": n_train,
        "n_test": len(test),
        **fold_metrics(obs.to_numpy(), bv, yhat, h2),
        "sigma2_g": float(est.result_.sigma2.iloc[0]),
        "sigma2_e": float(est.result_.sigma2.iloc[-1]),
        "h2": h2,
        "method": method,
    }
    pred = pd.DataFrame(
        {
            "model": label,
            "id": test,
            "observed": obs.to_numpy(),
            "predicted_bv": bv,
            "predicted": yhat,
            "fold": "young",
            "repeat": 1,
        }
    )
    return row, pred

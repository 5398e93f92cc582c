"""``FormulaModel``: a general :func:`henderson.fit` model as a cross-validation estimator."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from ..errors import ModelError
from ..spec.formula import response_of
from ..spec.model import build_spec


class FormulaModel(BaseEstimator):
    """A general :func:`henderson.fit` model for :func:`cross_validate`.

    ``fit(X, y)``: ``X`` is a DataFrame indexed by id with the covariates the formula
    uses (one row per id; the id is also available as column ``term``), ``y`` the
    phenotypes by id; the response of ``formula`` must be ``y.name``. Breeding values
    are the BLUPs of the random term ``term`` (levels are ids, e.g. with ``cov={"id": G}``
    or ``cov_inverse={"id": Ainv}``); predicted phenotypes are Xb̂ + Σₖ Zₖûₖ over all
    terms at the validation records (a level unseen in training contributes 0 for a
    random term and makes a fixed effect non-estimable → NaN).

    Parameters
    ----------
    formula : str, e.g. ``"y ~ x + (1|family) + (1|id)"``
    cov, cov_inverse : dict, optional (as :func:`henderson.fit`)
    term : str
        The random term whose BLUPs are the breeding values.
    method : {"reml", "ml"}
    sigma2 : array, optional
        Fixed variance components (terms in formula order, then residual).
    """

    def __init__(self, formula, cov=None, cov_inverse=None, term="id", method="reml", sigma2=None):
        self.formula = formula
        self.cov = cov
        self.cov_inverse = cov_inverse
        self.term = term
        self.method = method
        self.sigma2 = sigma2

    def _frame(self, X, y):
        X = pd.DataFrame(index=y.index) if X is None else X
        frame = X.copy()
        frame.index = pd.Index(frame.index.astype(str))
        frame = frame.reindex(y.index.astype(str))
        frame[self.term] = frame.index.to_numpy(dtype=object)
        frame[str(y.name)] = y.to_numpy()
        return frame.reset_index(drop=True)

    def fit(self, X, y, data=None):
        from ..api import fit as _fit

        if y.name is None or str(y.name) != response_of(self.formula):
            raise ModelError(f"the response of {self.formula!r} must be the name of y ({y.name!r})")
        frame = self._frame(X, y)
        frame = frame[frame[str(y.name)].notna()]  # masked / unphenotyped: predicted, not fitted
        self.result_ = res = _fit(
            self.formula, frame, cov=self.cov, cov_inverse=self.cov_inverse, method=self.method, sigma2=self.sigma2
        )
        if self.term not in res.blups:
            raise ModelError(f"term {self.term!r} is not a random term of {self.formula!r}")
        self.variance_components_ = res.variance_components
        self.fixed_effects_ = res.fixed_effects
        self.gebv_ = res.blups[self.term].rename(columns={"blup": "gebv"})
        self.h2_ = float(res.variance_components.loc[self.term, "ratio"])
        self.X_ = X
        return self

    def predict_records(self, y_full, ids) -> np.ndarray:
        """Xb̂ + Σₖ Zₖûₖ at the records of ``ids`` (phenotypes taken from ``y_full``)."""
        yy = y_full.loc[ids]
        spec = build_spec(self.formula, self._frame(self.X_, yy), cov=self.cov, cov_inverse=self.cov_inverse)
        b = self.fixed_effects_["estimate"]
        Xf = pd.DataFrame(spec.X, columns=spec.x_names)
        known = Xf.columns.isin(b.index)
        out = Xf.loc[:, known].to_numpy() @ b.reindex(Xf.columns[known]).to_numpy()
        if (~known).any():
            out[(Xf.loc[:, ~known].to_numpy() != 0).any(axis=1)] = np.nan
        for t in spec.terms:
            u = self.result_.blups[t.name]["blup"]
            out = out + u.reindex(t.levels[t.codes]).fillna(0.0).to_numpy()
        full = np.full(len(ids), np.nan)
        full[np.asarray(spec.record_index)] = out
        return full

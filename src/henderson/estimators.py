"""scikit-learn style estimators: ``GBLUP``, ``SNPBLUP``, ``PedigreeBLUP``.

Thin faces over :mod:`henderson.models`: ``__init__`` stores options only,
``fit(X, y)`` takes genotypes / a relationship / a pedigree as X and phenotypes as
a Series indexed by id (aligned by id, never by position), and sets attributes
ending in ``_``. Large inputs (G, genotypes) are immutable objects whose deep copy
is themselves, so ``sklearn.base.clone`` never copies them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from .data.genotypes import Genotypes
from .data.pedigree import Pedigree
from .errors import DataError, ModelError, format_ids
from .models import fit_gblup, fit_pblup, fit_snpblup, predict_from_snp_effects
from .models._align import ID
from .models.snpblup import centred_markers
from .relationships.container import Relationship, as_relationship
from .relationships.genomic import genomic_relationship


def _bv_table(res, name="gebv") -> pd.DataFrame:
    t = res.blups[ID]
    return pd.DataFrame({name: t["blup"], "pev": t["pev"], "reliability": t["reliability"],
                         "n_records": t["n_records"]})


def _bv_of_ids(table: pd.DataFrame, X, what: str) -> pd.Series:
    """Breeding values of the ids in X; unknown ids are a DataError naming them."""
    if isinstance(X, (str, bytes)):
        X = [X]
    ids = [str(i) for i in X]
    unknown = pd.unique(pd.Index(ids)[~pd.Index(ids).isin(table.index)])  # in the user's order
    if len(unknown):
        raise DataError(f"{len(unknown)} id(s) not in the {what}: {format_ids(unknown)}; "
                        "only animals of the fitted model can be predicted by id")
    return table.loc[ids, "gebv"]


class _Base(BaseEstimator):
    def _set_common(self, res):
        self.result_ = res
        self.variance_components_ = res.variance_components
        self.fixed_effects_ = res.fixed_effects
        self.solver_ = res.solver

    def _check_fitted(self):
        if not hasattr(self, "result_"):
            raise ModelError(f"this {type(self).__name__} is not fitted yet: call fit(X, y) first")

    def predict_phenotype(self, X=None, data=None) -> pd.Series:
        """Intercept-only models: b̂₀ + ĝ. With other fixed effects give ``data``."""
        self._check_fitted()
        g = self.predict(X)
        fe = self.fixed_effects_["estimate"]
        if list(fe.index) == ["(Intercept)"]:
            return (g + fe.iloc[0]).rename("predicted")
        raise ModelError("predicted phenotypes with fixed effects beyond the intercept are not "
                         "supported yet; add the fixed part yourself from fixed_effects_")


class GBLUP(_Base):
    """Genomic BLUP: y = Xb + Zg + e, g ~ N(0, Gσ²_g), REML by the spectral solver.

    Parameters
    ----------
    method : {"reml", "ml"}
    grm : str
        Method of :func:`~henderson.genomic_relationship` when ``fit`` gets genotypes.
    fixed : str, optional
        Fixed-effect formula part (columns of ``data`` in ``fit``); default intercept.
    sigma2 : (σ²_g, σ²_e), optional
        Known variances: skip REML.
    pev : bool or "auto"
    missing : {"error", "drop"}
        Phenotyped ids absent from G.

    Attributes
    ----------
    result_ : FitResult
    variance_components_, fixed_effects_ : DataFrame
    gebv_ : DataFrame indexed by id: ``gebv, pev, reliability, n_records``
    h2_, h2_se_ : float
    dual_coef_ : Series by id, α with ĝ = Gα (α = σ²_g Z'Py)
    G_ : Relationship
    """

    def __init__(self, method="reml", grm="vanraden1", fixed=None, sigma2=None, pev="auto",
                 missing="error"):
        self.method = method
        self.grm = grm
        self.fixed = fixed
        self.sigma2 = sigma2
        self.pev = pev
        self.missing = missing

    def fit(self, X, y, data=None):
        """X: Genotypes (G is built) or a G Relationship/DataFrame; y: Series by id."""
        if isinstance(X, Genotypes):
            self.genotypes_ = X
            self.allele_freq_ = X.allele_freq
            G = genomic_relationship(X, method=self.grm)
        else:
            self.genotypes_ = None
            G = as_relationship(X, kind="G")
        res = fit_gblup(y, G, fixed=self.fixed, data=data, method=self.method, sigma2=self.sigma2,
                        pev=self.pev, missing=self.missing)
        self._set_common(res)
        self.G_ = G
        self.gebv_ = _bv_table(res)
        vc = res.variance_components
        self.h2_, self.h2_se_ = float(vc.loc[ID, "ratio"]), float(vc.loc[ID, "ratio_se"])
        s_g, s_e = float(res.sigma2[ID]), float(res.sigma2["Residual"])
        codes = G.index_of(res.record_levels[ID])
        alpha = np.bincount(codes, weights=res.residuals.to_numpy() / s_e, minlength=G.n) * s_g
        self.dual_coef_ = pd.Series(alpha, index=pd.Index(G.ids, name=ID), name="alpha")
        return self

    def predict(self, X=None) -> pd.Series:
        """GEBVs: of the fitted individuals (X None or a list of ids), or of new genotypes.

        New individuals: ĝ_new = G_new,fit α with G_new,fit = W_new W'/(2Σpq), centred
        with the fitted allele frequencies (``grm="vanraden1"`` only).
        """
        self._check_fitted()
        if X is None:
            return self.gebv_["gebv"]
        if isinstance(X, Genotypes):
            if self.genotypes_ is None or self.grm != "vanraden1":
                raise ModelError("predicting new genotypes needs a GBLUP fitted on genotypes with grm='vanraden1'")
            fit_geno = self.genotypes_
            Wn, _ = centred_markers(X.subset(snps=fit_geno.snp_ids), self.allele_freq_)
            Wf, _ = centred_markers(fit_geno, self.allele_freq_)
            c = 2.0 * np.sum(self.allele_freq_ * (1 - self.allele_freq_))
            g = Wn @ (Wf.T @ self.dual_coef_.loc[fit_geno.ids].to_numpy()) / c
            return pd.Series(g, index=pd.Index(X.ids, name=ID), name="gebv")
        return _bv_of_ids(self.gebv_, X, "fitted relationship matrix")


class SNPBLUP(_Base):
    """SNP-BLUP (RR-BLUP): y = Xb + ZWβ + e, β ~ N(0, Iσ²_β), W centred marker counts.

    Parameters
    ----------
    method : {"reml", "ml"}
    space : {"auto", "marker", "individual"}
        Solve in marker space (m < n) or individual space (n ≤ m); ``auto`` picks the
        smaller and reports it in ``space_``.
    fixed, sigma2 ((σ²_β, σ²_e)), missing, pev : as :class:`GBLUP`

    Attributes
    ----------
    snp_effects_ : DataFrame (snp, chrom, pos, allele1, allele2, freq, effect)
    gebv_ : DataFrame indexed by id
    sigma2_beta_, sigma2_g_ (= 2Σpq σ²_β), h2_, h2_se_, allele_freq_, space_
    """

    def __init__(self, method="reml", space="auto", fixed=None, sigma2=None, missing="error",
                 pev="auto"):
        self.method = method
        self.space = space
        self.fixed = fixed
        self.sigma2 = sigma2
        self.missing = missing
        self.pev = pev

    def fit(self, X, y, data=None):
        if not isinstance(X, Genotypes):
            raise DataError("SNPBLUP.fit needs Genotypes (henderson.read_genotypes or Genotypes.from_frame)")
        f = fit_snpblup(y, X, fixed=self.fixed, data=data, method=self.method, sigma2=self.sigma2,
                        space=self.space, missing=self.missing, pev=self.pev)
        self._set_common(f.result)
        self.fit_ = f
        self.snp_effects_ = f.snp_effects
        self.gebv_ = _bv_table(f.result)
        self.allele_freq_ = f.allele_freq
        self.sigma2_beta_ = float(f.result.sigma2[ID])
        self.sigma2_g_ = f.sigma2_g
        self.h2_, self.h2_se_ = f.h2, f.h2_se
        self.space_ = f.space
        return self

    def predict(self, X=None) -> pd.Series:
        """GEBVs of new genotypes: (X − 2p_train)β̂, SNPs matched by id."""
        self._check_fitted()
        if X is None:
            return self.gebv_["gebv"]
        if not isinstance(X, Genotypes):
            raise DataError("SNPBLUP.predict needs Genotypes")
        return predict_from_snp_effects(X, self.snp_effects_)


class PedigreeBLUP(_Base):
    """Pedigree BLUP (animal model) with the sparse A⁻¹: every animal gets an EBV.

    Parameters
    ----------
    method : {"reml", "ml"}
    fixed : str, optional
    random : str, optional
        Extra random terms on columns of ``data`` (e.g. ``"(1|MOTHER)"``).
    sigma2 : variances (animal, extra terms..., residual), optional
    missing : {"error", "drop"}

    Attributes
    ----------
    gebv_ (alias ``ebv_``) : DataFrame indexed by animal id
    h2_, h2_se_ : float (σ²_a over the total)
    """

    def __init__(self, method="reml", fixed=None, random=None, sigma2=None, missing="error"):
        self.method = method
        self.fixed = fixed
        self.random = random
        self.sigma2 = sigma2
        self.missing = missing

    def fit(self, X, y, data=None):
        if not isinstance(X, (Pedigree, pd.DataFrame)):
            raise DataError("PedigreeBLUP.fit needs a Pedigree (henderson.read_pedigree) or a DataFrame id/sire/dam")
        res = fit_pblup(y, X, fixed=self.fixed, data=data, random=self.random, method=self.method,
                        sigma2=self.sigma2, missing=self.missing)
        self._set_common(res)
        self.gebv_ = _bv_table(res)
        vc = res.variance_components
        self.h2_, self.h2_se_ = float(vc.loc[ID, "ratio"]), float(vc.loc[ID, "ratio_se"])
        return self

    @property
    def ebv_(self) -> pd.DataFrame:
        return self.gebv_

    def predict(self, X=None) -> pd.Series:
        """EBVs of all animals (X None) or of the animal ids in X (any pedigree member)."""
        self._check_fitted()
        if X is None:
            return self.gebv_["gebv"]
        return _bv_of_ids(self.gebv_, X, "pedigree")

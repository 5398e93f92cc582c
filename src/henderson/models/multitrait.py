"""Multi-trait fits behind ``GBLUP(traits=...)``, ``SNPBLUP(traits=...)``, ``PedigreeBLUP(traits=...)``.

The estimators call these when ``traits`` is set; y is then a DataFrame indexed by id
holding the trait columns. GBLUP and SNP-BLUP are one model (Σ_g = 2Σpq Σ_β): SNP
effects are back-solved per trait, β̂_k = W'α_k/(2Σpq) with α = Z'Py Σ_g (Û = Gα).
PedigreeBLUP takes the dense A (small pedigrees); the sparse A⁻¹ needs the general
multi-trait engine.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.genotypes import Genotypes
from ..errors import DataError, ModelError, format_ids
from ..multitrait.fit import fit_traits
from ..relationships.container import as_relationship
from ..relationships.genomic import genomic_relationship
from ._align import ID

#: animals above which PedigreeBLUP(traits=...) refuses the dense A (n² memory, n³ time)
DENSE_A_MAX = 6000


def records_of(y, traits, data=None) -> pd.DataFrame:
    """Trait columns of y (DataFrame by id) plus covariates from data, one row per record."""
    if isinstance(y, pd.Series):
        raise DataError(
            "a multi-trait fit needs y as a DataFrame indexed by id with the trait columns "
            f"{list(traits)}, not a Series"
        )
    if not isinstance(y, pd.DataFrame):
        raise DataError("y must be a DataFrame indexed by id (aligned by id, not position)")
    missing = [t for t in traits if t not in y.columns]
    if missing:
        raise DataError(f"trait column(s) {missing} not in y; columns: {list(y.columns)}")
    frame = y[list(traits)].copy()
    frame.insert(0, ID, y.index.astype(str))
    frame = frame.reset_index(drop=True)
    if data is not None:
        d = data.copy()
        d.index = d.index.astype(str)
        if d.index.has_duplicates:
            raise DataError(
                "data for fixed effects has duplicated ids: " + format_ids(d.index[d.index.duplicated()].unique())
            )
        frame = frame.merge(
            d.drop(columns=[c for c in d.columns if c in frame.columns]), left_on=ID, right_index=True, how="left"
        )
    return frame


def fit_gblup(est, X, y, data=None, *, kernel_only: bool = False):
    """Set the fitted attributes of a GBLUP (or SNPBLUP) estimator with ``traits``."""
    traits = [str(t) for t in est.traits]
    geno = X if isinstance(X, Genotypes) else None
    grm = getattr(est, "grm", "vanraden1")
    G = genomic_relationship(geno, method=grm) if geno is not None else as_relationship(X, kind="G")
    frame = records_of(y, traits, data)
    res = fit_traits(frame, traits, ID, G, fixed=est.fixed, sigma=est.sigma2, pev=getattr(est, "pev", "auto"))
    _set(est, res)
    est.G_ = G
    est.genotypes_ = geno
    Sg = res.covariances[ID].to_numpy()
    # α = Z'Py Σ_g over all levels of G (Û = G α)
    Py = res.residuals.to_numpy() @ np.linalg.inv(res.covariances["Residual"].to_numpy())
    codes = G.index_of(res.record_levels[ID])
    ZtPy = np.zeros((G.n, len(traits)))
    np.add.at(ZtPy, codes, Py)
    alpha = ZtPy @ Sg
    est.dual_coef_ = pd.DataFrame(alpha, index=pd.Index(G.ids, name=ID), columns=traits)
    est.snp_effects_ = None
    if geno is not None and grm == "vanraden1":
        est.allele_freq_ = geno.allele_freq
        est.snp_effects_ = snp_effects(geno, alpha[G.index_of(geno.ids)], traits)
    return est


def snp_effects(geno: Genotypes, alpha: np.ndarray, traits) -> pd.DataFrame:
    """β̂_k = W'α_k/(2Σpq) per trait: columns ``effect_<trait>`` beside the SNP table."""
    from .snpblup import centred_crossprod

    freq = geno.allele_freq
    ok = geno.n_called > 0
    c = 2.0 * float(np.sum(freq[ok] * (1 - freq[ok])))
    t = geno.snps.copy()
    t["freq"] = freq
    for k, tr in enumerate(traits):  # one pass per trait (t is small)
        t[f"effect_{tr}"] = centred_crossprod(geno, alpha[:, k], freq) / c
    return t


def fit_pblup(est, X, y, data=None):
    from ..relationships.pedigree import pedigree_relationship

    if est.random:
        # extra random terms (e.g. "(1|MOTHER)", "diag(1|year)"): the general multi-trait
        # MME with the pedigree A⁻¹ for the animal term
        from ..multitrait.fit import check_traits
        from ..multitrait.general import fit_general_traits
        from ..relationships.pedigree import pedigree_inverse
        from ..spec.formula import across_trait_diagonal, random_terms

        traits = [str(t) for t in est.traits]
        terms = random_terms(est.random)  # the user's text, read once
        diag = across_trait_diagonal(terms)
        if est.sigma2 is not None and not isinstance(est.sigma2, dict):
            raise ModelError(
                'PedigreeBLUP(traits=..., random=..., sigma2=...) takes {"Sigma": [one matrix per '
                'term, the animal term first], "Residual": matrix}'
            )
        kept, notes = check_traits(records_of(y, traits, data), traits, ID, allow_missing=True)
        res = fit_general_traits(
            kept,
            traits,
            [(ID, False)] + [(t.name, t.name in diag) for t in terms],
            cov_inverse={ID: pedigree_inverse(X)},
            fixed=est.fixed,
            sigma=est.sigma2,
            formula=f"cbind({', '.join(traits)}) ~ {est.fixed or '1'} + (1|{ID}) + {est.random}",
            notes=notes,
        )
        _set(est, res)
        return est
    from ..relationships.pedigree import pedigree_inverse

    A = pedigree_inverse(X)
    if A.n <= DENSE_A_MAX:  # small pedigrees: the dense A, the spectral fast path
        A = pedigree_relationship(X)
    # (larger ones: the sparse A⁻¹ on the general multi-trait MME)
    traits = [str(t) for t in est.traits]
    frame = records_of(y, traits, data)
    res = fit_traits(frame, traits, ID, A, fixed=est.fixed, sigma=est.sigma2)
    _set(est, res)
    return est


def _set(est, res):
    est.result_ = res
    est.variance_components_ = res.variance_components
    est.fixed_effects_ = res.fixed_effects
    est.solver_ = res.solver
    est.covariances_ = res.covariances
    est.correlations_ = res.correlations
    b = res.blups[res.term]
    est.gebv_ = pd.DataFrame(
        {"gebv": b["blup"], "pev": b["pev"], "reliability": b["reliability"], "n_records": b["n_records"]}
    )
    est.h2_ = res.heritability["h2"]
    est.h2_se_ = res.heritability["se"]


def predict(est, X=None) -> pd.DataFrame:
    """GEBVs of every trait: fitted individuals (X None or ids) or new genotypes."""
    wide = est.result_.gebv
    if X is None:
        return wide
    if isinstance(X, Genotypes):
        if getattr(est, "snp_effects_", None) is None:
            raise ModelError("predicting new genotypes needs a fit on genotypes with grm='vanraden1'")
        from .snpblup import predict_from_snp_effects

        out = {}
        for tr in est.result_.traits:
            eff = est.snp_effects_.drop(columns=[c for c in est.snp_effects_ if c.startswith("effect_")])
            eff["effect"] = est.snp_effects_[f"effect_{tr}"]
            out[tr] = predict_from_snp_effects(X, eff)
        return pd.DataFrame(out)
    ids = [str(i) for i in ([X] if isinstance(X, str) else X)]
    unknown = [i for i in ids if i not in wide.index]
    if unknown:
        raise DataError(f"{len(unknown)} id(s) not in the fitted model: {format_ids(unknown)}")
    return wide.loc[ids]

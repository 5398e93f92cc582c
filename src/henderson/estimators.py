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

from .data._ids import str_ids
from .data.genotypes import Genotypes
from .data.pedigree import Pedigree
from .errors import DataError, ModelError, format_ids
from .models import fit_gblup, fit_pblup, fit_snpblup, predict_from_snp_effects
from .models._align import ID, with_notes
from .models.snpblup import centred_crossprod, h2_note
from .relationships.container import Relationship, as_relationship
from .relationships.genomic import genomic_relationship


def _bv_table(res, name="gebv") -> pd.DataFrame:
    t = res.blups[ID]
    return pd.DataFrame(
        {name: t["blup"], "pev": t["pev"], "reliability": t["reliability"], "n_records": t["n_records"]}
    )


def _bv_of_ids(table: pd.DataFrame, X, what: str) -> pd.Series:
    """Breeding values of the ids in X; unknown ids are a DataError naming them."""
    if isinstance(X, (str, bytes)):
        X = [X]
    ids = str_ids(X)
    unknown = pd.unique(pd.Index(ids)[~pd.Index(ids).isin(table.index)])  # in the user's order
    if len(unknown):
        raise DataError(
            f"{len(unknown)} id(s) not in the {what}: {format_ids(unknown)}; "
            "only animals of the fitted model can be predicted by id"
        )
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
        raise ModelError(
            "predicted phenotypes with fixed effects beyond the intercept are not "
            "supported yet; add the fixed part yourself from fixed_effects_"
        )


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
    scheduler : dask.distributed.Client or str, optional
        Build G from genotypes on a Dask cluster (one task per chunk of SNPs; see
        docs/scaling.md). Default: in-process.
    traits : list of str, optional
        Multi-trait GBLUP: y is a DataFrame by id with these columns, Var(g) = Σ_g ⊗ G,
        Var(e) = Σ_e ⊗ I (:mod:`henderson.multitrait`; complete records). Then
        ``covariances_``/``correlations_`` are trait × trait tables, ``gebv_`` is indexed
        by (id, trait), ``h2_`` a Series by trait, ``predict`` a DataFrame by trait,
        ``fixed`` may be a dict {trait: formula part}, ``sigma2`` a pair (Σ_g, Σ_e).

    Attributes
    ----------
    result_ : FitResult
    variance_components_, fixed_effects_ : DataFrame
    gebv_ : DataFrame indexed by id: ``gebv, pev, reliability, n_records``
    h2_, h2_se_ : float
        h² = σ²_g/(σ²_g + σ²_e) and its delta-method SE: σ²_g is the genetic
        variance of an individual with Gᵢᵢ = 1 (rrBLUP's and sommer's convention). When
        mean(diag G) is far from 1 — inbred lines coded 0/2 have mean(diag G) ≈ 2 —
        the genetic variance of the sample is σ²_g·(mean(diag G) − mean(G)) (Legarra
        2016, Theor. Popul. Biol. 107:26: D_K) and the heritability on that scale differs;
        the fit notes (``result_.notes``) give both.
    dual_coef_ : Series by id, α with ĝ = Gα (α = σ²_g Z'Py)
    snp_effects_ : DataFrame or None
        Fitted on Genotypes with ``grm="vanraden1"``: the equivalent SNP-BLUP effects
        β̂ = W'α/(2Σpq) (one pass over the genotypes; ĝ = Wβ̂), columns ``snp, chrom,
        pos, allele1, allele2, freq, effect``, to score new animals. None otherwise.
    G_ : Relationship
    """

    def __init__(
        self,
        method="reml",
        grm="vanraden1",
        fixed=None,
        sigma2=None,
        pev="auto",
        missing="error",
        scheduler=None,
        traits=None,
    ):
        self.traits = traits
        self.method = method
        self.grm = grm
        self.fixed = fixed
        self.sigma2 = sigma2
        self.pev = pev
        self.missing = missing
        self.scheduler = scheduler

    def fit(self, X, y, data=None):
        """X: Genotypes (G is built) or a G Relationship/DataFrame; y: Series by id.

        With ``traits=[...]``: y is a DataFrame by id with those columns, and the
        multi-trait model Var(g) = Σ_g ⊗ G is fitted (:mod:`henderson.multitrait`).
        """
        if self.traits is not None:
            from .models.multitrait import fit_gblup as _fit_mt

            return _fit_mt(self, X, y, data)
        if isinstance(X, Genotypes):
            self.genotypes_ = X
            self.allele_freq_ = X.allele_freq
            G = genomic_relationship(X, method=self.grm, scheduler=self.scheduler)
        else:
            self.genotypes_ = None
            G = as_relationship(X, kind="G")
        res = fit_gblup(
            y,
            G,
            fixed=self.fixed,
            data=data,
            method=self.method,
            sigma2=self.sigma2,
            pev=self.pev,
            missing=self.missing,
        )
        self._set_common(res)
        self.y_, self.data_ = y, data  # the records, for henderson.association
        self.G_ = G
        self.gebv_ = _bv_table(res)
        vc = res.variance_components
        self.h2_, self.h2_se_ = float(vc.loc[ID, "ratio"]), float(vc.loc[ID, "ratio_se"])
        s_g, s_e = float(res.sigma2[ID]), float(res.sigma2["Residual"])
        codes = G.index_of(res.record_levels[ID])
        alpha = np.bincount(codes, weights=res.residuals.to_numpy() / s_e, minlength=G.n) * s_g
        self.dual_coef_ = pd.Series(alpha, index=pd.Index(G.ids, name=ID), name="alpha")
        d_scale = float(G.diagonal().mean()) - G.mean()  # no dense copy of a sparse/dask G
        self.result_ = with_notes(res, after=(h2_note(s_g, s_e, d_scale),))
        self.snp_effects_ = None
        if self.genotypes_ is not None and self.grm == "vanraden1":
            self.snp_effects_ = self._snp_effects(alpha)
        return self

    def _snp_effects(self, alpha) -> pd.DataFrame:
        """β̂ = W'α/(2Σpq): G = WW'/(2Σpq) gives ĝ = Gα = Wβ̂ (SNP-BLUP at equal σ²)."""
        geno, freq = self.genotypes_, self.allele_freq_
        ok = geno.n_called > 0  # SNPs genomic_relationship used
        c = 2.0 * float(np.sum(freq[ok] * (1 - freq[ok])))
        t = geno.snps.copy()
        t["freq"] = freq
        t["effect"] = centred_crossprod(geno, alpha[self.G_.index_of(geno.ids)], freq) / c
        return t

    def attach_genotypes(self, genotypes: Genotypes) -> GBLUP:
        """Deprecated: fit on the genotypes instead (``GBLUP().fit(genotypes, y)`` builds G
        and keeps what the SNP effects need).

        After a fit on a G built (VanRaden 1) from ``genotypes``: back-solve ``snp_effects_``,
        the same effects a fit on the genotypes gives (β̂ = W'α/2Σpq). ``genotypes``
        must hold the individuals of the fitted G, matched by id.
        """
        import warnings

        warnings.warn(
            "GBLUP.attach_genotypes is deprecated: fit on the genotypes (GBLUP().fit(genotypes, y)), "
            "which builds G and back-solves snp_effects_",
            FutureWarning,
            stacklevel=2,
        )
        self._check_fitted()
        missing = np.setdiff1d(np.asarray(self.G_.ids, dtype=str), np.asarray(genotypes.ids, dtype=str))
        if len(missing):
            raise DataError(
                f"{len(missing)} individual(s) of the fitted G are not in the genotypes: " + format_ids(missing)
            )
        self.genotypes_ = genotypes
        self.allele_freq_ = genotypes.allele_freq
        self.snp_effects_ = self._snp_effects(self.dual_coef_.to_numpy()) if self.grm == "vanraden1" else None
        return self

    def predict(self, X=None) -> pd.Series:
        """GEBVs: of the fitted individuals (X None or a list of ids), or of new genotypes.

        New individuals: ĝ_new = G_new,fit α = W_new β̂ with G_new,fit = W_new W'/(2Σpq),
        centred with the fitted allele frequencies (``grm="vanraden1"`` only); SNPs are
        matched by id and counted allele (swaps flipped and reported, mismatches an
        error: :func:`~henderson.models.predict_from_snp_effects`).
        """
        self._check_fitted()
        if self.traits is not None:  # a DataFrame: one column per trait
            from .models.multitrait import predict as _predict_mt

            return _predict_mt(self, X)
        if X is None:
            return self.gebv_["gebv"]
        if isinstance(X, Genotypes):
            if self.snp_effects_ is None:
                raise ModelError("predicting new genotypes needs a GBLUP fitted on genotypes with grm='vanraden1'")
            return predict_from_snp_effects(X, self.snp_effects_)
        return _bv_of_ids(self.gebv_, X, "fitted relationship matrix")


class SNPBLUP(_Base):
    """SNP-BLUP (RR-BLUP): y = Xb + ZWβ + e, β ~ N(0, Iσ²_β), W centred marker counts.

    Parameters
    ----------
    method : {"reml", "ml"}
    space : {"auto", "marker", "individual"}
        Solve in marker space (MME of order m + p) or individual space (the N × N
        kernel WW' over all N genotyped individuals, phenotyped or not); ``auto`` takes
        marker space when m < N, and reports the choice and why in ``space_`` and the
        fit notes.
    fixed, sigma2 ((σ²_β, σ²_e)), missing, pev : as :class:`GBLUP`
    snp_se : bool or "auto"
        SEs of the SNP effects (√PEV, rrBLUP's ``u.SE``). Marker space: one MME
        inverse, always computed under ``auto``. Individual space: O(n²m), computed
        under ``auto`` up to n²m = 2·10¹⁰ (a second or two), otherwise NaN with a note;
        ``True`` forces it. Not computed when ``pev=False`` unless ``True``.

    Attributes
    ----------
    snp_effects_ : DataFrame (snp, chrom, pos, allele1, allele2, freq, effect, se)
    gebv_ : DataFrame indexed by id
    sigma2_beta_, sigma2_g_ (= 2Σpq σ²_β), allele_freq_, space_
    h2_, h2_se_ : float
        σ²_g/(σ²_g + σ²_e) (rrBLUP's convention; see :class:`GBLUP` for the scale of
        σ²_g when mean(diag G) ≠ 1, e.g. inbred lines; the notes give both values).
    """

    def __init__(
        self,
        method="reml",
        space="auto",
        fixed=None,
        sigma2=None,
        missing="error",
        pev="auto",
        snp_se="auto",
        traits=None,
    ):
        self.traits = traits
        self.method = method
        self.space = space
        self.fixed = fixed
        self.sigma2 = sigma2
        self.missing = missing
        self.pev = pev
        self.snp_se = snp_se

    def fit(self, X, y, data=None):
        if not isinstance(X, Genotypes):
            raise DataError("SNPBLUP.fit needs Genotypes (henderson.read_genotypes or Genotypes.from_frame)")
        if self.traits is not None:  # GBLUP on VanRaden-1 G, SNP effects back-solved per trait
            from .models.multitrait import fit_gblup as _fit_mt

            _fit_mt(self, X, y, data)
            c = 2.0 * float(np.sum(X.allele_freq[X.n_called > 0] * (1 - X.allele_freq[X.n_called > 0])))
            self.sigma2_beta_ = self.covariances_["genetic"] / c
            self.space_ = "individual"
            return self
        f = fit_snpblup(
            y,
            X,
            fixed=self.fixed,
            data=data,
            method=self.method,
            sigma2=self.sigma2,
            space=self.space,
            missing=self.missing,
            pev=self.pev,
            snp_se=self.snp_se,
        )
        self._set_common(f.result)
        self.y_, self.data_ = y, data  # the records, for henderson.association
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
        """GEBVs of new genotypes: (X − 2p_train)β̂, SNPs matched by id and counted allele.

        Swapped alleles are flipped (counted, reported by a :class:`DataWarning`);
        mismatched alleles are an error (:func:`~henderson.models.predict_from_snp_effects`).
        """
        self._check_fitted()
        if self.traits is not None:
            from .models.multitrait import predict as _predict_mt

            return _predict_mt(self, X)
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
    h2_, h2_se_ : float
        σ²_a over the sum of all variance components (σ²_a + extra terms + σ²_e), the
        usual animal-model heritability (σ²_a is the additive variance of the
        non-inbred base animals, A = 1 on their diagonal), with its delta-method SE.
    """

    def __init__(self, method="reml", fixed=None, random=None, sigma2=None, missing="error", traits=None):
        self.traits = traits
        self.method = method
        self.fixed = fixed
        self.random = random
        self.sigma2 = sigma2
        self.missing = missing

    def fit(self, X, y, data=None):
        if not isinstance(X, (Pedigree, pd.DataFrame)):
            raise DataError("PedigreeBLUP.fit needs a Pedigree (henderson.read_pedigree) or a DataFrame id/sire/dam")
        if self.traits is not None:  # dense A, complete records (see henderson.multitrait)
            from .models.multitrait import fit_pblup as _fit_mt

            return _fit_mt(self, X, y, data)
        res = fit_pblup(
            y,
            X,
            fixed=self.fixed,
            data=data,
            random=self.random,
            method=self.method,
            sigma2=self.sigma2,
            missing=self.missing,
        )
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
        if self.traits is not None:
            from .models.multitrait import predict as _predict_mt

            return _predict_mt(self, X)
        if X is None:
            return self.gebv_["gebv"]
        return _bv_of_ids(self.gebv_, X, "pedigree")


class SingleStepGBLUP(_Base):
    """Single-step GBLUP: the animal model with H⁻¹ (pedigree + genotypes), every animal an EBV.

    ``fit(pedigree, genotypes, y)``. H⁻¹ is :func:`~henderson.single_step_inverse`
    with BLUPF90's preGSf90 defaults (each a parameter here); variances by REML, or
    given (``sigma2``, the BLUPF90 workflow of fixed variances).

    Parameters
    ----------
    method : {"reml", "ml"}
    fixed : str, optional
    sigma2 : (σ²_u, σ²_e), optional
    tuning, alpha, beta, tau, omega, apy_core, seed, a22_inverse :
        As :func:`~henderson.single_step_inverse` (defaults: "mean", 0.95, 0.05, 1, 1).
    lazy : bool
        H⁻¹ with A₂₂⁻¹ as an operator (``single_step_inverse(lazy=True)``). With
        ``sigma2`` the model is solved by PCG and the genotyped block is never formed (no
        SNP-effect variances: they need the direct MME's C²²); with REML the direct MME
        forms the block on demand.
    pcg_tol : float, optional
        Relative-residual tolerance of that PCG (default :data:`henderson.solvers.pcg.TOL`).
    missing : {"error", "drop"}
        Phenotyped ids absent from the pedigree.
    genotyped_missing : {"error", "add"}
        Genotyped ids absent from the pedigree: error, or added as founders (counted).
    snp_effects : bool or "auto"
        Back-solve ssSNP effects with their variances (postGSf90) when fitted on
        Genotypes; ``auto`` does so when k²m ≤ 2e10 (the variance costs O(k²m)).
    traits : list of str, optional
        Multi-trait single-step (:mod:`henderson.multitrait.single_step`): ``y`` is then a
        DataFrame by id with these columns (NaN where not recorded), ``sigma2`` is
        (Σ_g, Σ_e) or None for REML (the general multi-trait engine with K⁻¹ = H⁻¹);
        ``gebv_``, ``pev_``, ``reliability_`` are (animals × traits) tables,
        ``sigma_g_``, ``sigma_e_`` the (co)variances used. One intercept per trait;
        no SNP effects.

    Attributes
    ----------
    gebv_ (alias ``ebv_``) : DataFrame by animal id: ``gebv, pev, reliability, n_records, genotyped``
    Hinv_ : Relationship (H⁻¹)
    snp_effects_ : DataFrame or None (snp, ..., effect, var, z, p_value)
    G_ : Relationship or None
        G* of the genotyped animals (blended and tuned, as in H⁻¹), with
        ``info["scale"]`` = 2Σpq when fitted on Genotypes; with ``allele_freq_`` (the
        genotyped animals' frequencies) and :meth:`genotyped_pec`, what
        :func:`henderson.association` back-solves SNP tests from (postGSf90's formula).
    variance_components_, fixed_effects_, result_, h2_, h2_se_
    """

    def __init__(
        self,
        method="reml",
        fixed=None,
        sigma2=None,
        tuning="mean",
        alpha=0.95,
        beta=0.05,
        tau=1.0,
        omega=1.0,
        apy_core=None,
        seed=0,
        a22_inverse="auto",
        missing="error",
        genotyped_missing="error",
        snp_effects="auto",
        traits=None,
        lazy=False,
        pcg_tol=None,
    ):
        self.method = method
        self.fixed = fixed
        self.sigma2 = sigma2
        self.traits = traits
        self.tuning = tuning
        self.alpha = alpha
        self.beta = beta
        self.tau = tau
        self.omega = omega
        self.apy_core = apy_core
        self.seed = seed
        self.a22_inverse = a22_inverse
        self.missing = missing
        self.genotyped_missing = genotyped_missing
        self.snp_effects = snp_effects
        self.lazy = lazy
        self.pcg_tol = pcg_tol

    def fit(self, pedigree, genotypes, y, data=None):
        """pedigree: Pedigree/DataFrame; genotypes: Genotypes, a G, or None; y: Series by id
        (with ``traits``: a DataFrame by id with those columns)."""
        from .models.ssgblup import fit_ssgblup, snp_effects_single_step

        if self.traits is not None:
            return self._fit_traits(pedigree, genotypes, y)

        f = fit_ssgblup(
            y,
            pedigree,
            genotypes,
            fixed=self.fixed,
            data=data,
            method=self.method,
            sigma2=self.sigma2,
            missing=self.missing,
            tuning=self.tuning,
            alpha=self.alpha,
            beta=self.beta,
            tau=self.tau,
            omega=self.omega,
            apy_core=self.apy_core,
            seed=self.seed,
            a22_inverse=self.a22_inverse,
            genotyped_missing=self.genotyped_missing,
            **({"lazy": True} if self.lazy else {}),
            **({"tol": self.pcg_tol} if self.pcg_tol is not None else {}),
        )
        res = f.result
        self._set_common(res)
        self.fit_ = f
        self.Hinv_ = f.Hinv
        table = _bv_table(res)
        gids = f.Hinv.info.get("genotyped", np.array([], dtype=object))
        table["genotyped"] = table.index.isin(pd.Index(gids))
        self.gebv_ = table
        vc = res.variance_components
        self.h2_, self.h2_se_ = float(vc.loc[ID, "ratio"]), float(vc.loc[ID, "ratio_se"])
        self.snp_effects_ = None
        self._pec = None  # C^gg, computed once (genotyped_pec) and shared with snp_effects_
        self._set_genotyped_g(f.Hinv.info, genotypes, gids)
        if isinstance(genotypes, Genotypes) and genotypes.n:
            k, m = len(gids), genotypes.p
            want = self.snp_effects is True or (self.snp_effects == "auto" and float(k) * k * m <= 2e10)
            if want:
                if f.spec is None:  # PCG with a lazy H⁻¹: no MME, so no C²² for the variances
                    self.snp_effects_ = snp_effects_single_step(f, genotypes, variances=False)
                else:
                    pec = self.genotyped_pec() if self.apy_core is None and float(res.sigma2[ID]) > 0 else None
                    C22 = None if pec is None else pec.to_numpy()
                    self.snp_effects_ = snp_effects_single_step(f, genotypes, C22=C22)
        return self

    def _set_genotyped_g(self, info: dict, genotypes, gids) -> None:
        """``G_`` (the G* that H⁻¹ used, with its 2Σpq) and ``allele_freq_`` (from genotypes)."""
        self.G_ = self.allele_freq_ = None
        if "G_star" in info:
            scale = info.get("genotypes_info", {}).get("scale")
            if isinstance(genotypes, Genotypes):
                freq = genotypes.subset(ids=gids).allele_freq  # as snp_effects_single_step centres W
                ok = np.isfinite(freq)
                scale = 2.0 * float(np.sum(freq[ok] * (1.0 - freq[ok])))
                self.allele_freq_ = freq
            self.G_ = Relationship(
                gids,
                info["G_star"],
                kind="G",
                info={"method": "G* (blended, tuned) of single-step H⁻¹", "scale": scale},
            )

    def _fit_traits(self, pedigree, genotypes, y):
        """Multi-trait single-step, REML or at given (Σ_g, Σ_e) (:mod:`henderson.multitrait.single_step`)."""
        from .multitrait.single_step import fit_ssgblup_traits

        traits = [str(t) for t in self.traits]
        if self.lazy:
            raise ModelError(
                "SingleStepGBLUP(traits=[...]) builds H⁻¹ with its dense genotyped block; lazy=True "
                "(A22⁻¹ as an operator) is for single-trait fits: pass lazy=False"
            )
        if self.sigma2 is not None and len(self.sigma2) != 2:
            raise DataError(
                "SingleStepGBLUP(traits=[...]): sigma2 must be (Sigma_g, Sigma_e), two "
                f"{len(traits)} x {len(traits)} matrices, or None for REML"
            )
        sg, se = (None, None) if self.sigma2 is None else self.sigma2
        if not isinstance(y, pd.DataFrame) or set(traits) - set(map(str, y.columns)):
            raise DataError(f"with traits={traits}, y must be a DataFrame by id with those columns")
        Y = y.rename(columns=str)[traits]
        f = fit_ssgblup_traits(
            Y, pedigree, genotypes, sigma_g=sg, sigma_e=se,
            tuning=self.tuning, alpha=self.alpha, beta=self.beta, tau=self.tau, omega=self.omega,
            apy_core=self.apy_core, seed=self.seed, a22_inverse=self.a22_inverse, missing=self.genotyped_missing,
        )  # fmt: skip
        self.fit_ = f
        self.Hinv_ = f.Hinv
        self.gebv_ = f.ebv
        self.pev_, self.reliability_ = f.pev, f.reliability
        self.fixed_effects_ = f.fixed
        self.sigma_g_, self.sigma_e_ = f.info["sigma_g"], f.info["sigma_e"]
        self.snp_effects_ = self.G_ = self.allele_freq_ = None
        return self

    def genotyped_pec(self) -> pd.DataFrame:
        """C^gg: prediction-error covariance of the genotyped animals' GEBVs, (k, k) by id.

        The genotyped block of σ²_e C⁻¹ of the single-step MME, by k sparse solves
        (:func:`~henderson.models.ssgblup.pev_block`); computed once per fit. This is
        what :func:`henderson.association` reads to back-solve SNP tests (Aguilar et al.
        2019, as postGSf90).
        """
        from .models.ssgblup import pev_block

        self._check_fitted()
        if self.G_ is None:
            raise ModelError(
                "genotyped_pec needs a single-step fit with genotyped animals (this one is pedigree BLUP: no G)"
            )
        if self.apy_core is not None:
            raise ModelError(
                "association from an APY single-step fit is not supported: the back-solve "
                "uses G*'s full inverse, but H⁻¹ holds the APY inverse; refit without apy_core"
            )
        if getattr(self, "_pec", None) is None:
            gids = self.G_.ids
            self._pec = pd.DataFrame(pev_block(self.fit_, gids), index=gids, columns=gids)
        return self._pec

    @property
    def ebv_(self) -> pd.DataFrame:
        return self.gebv_

    def predict(self, X=None) -> pd.Series:
        """(G)EBVs of all pedigree animals (X None) or of the ids in X."""
        self._check_fitted()
        if X is None:
            return self.gebv_["gebv"]
        return _bv_of_ids(self.gebv_, X, "pedigree")

"""Association from the fitted genetic model: SNP tests, windows, Manhattan and QQ plots.

``association(fit_or_estimator, genotypes, method=...)`` gives one tidy table per call:

* ``method="backsolve"`` (default for a fitted GBLUP / SNP-BLUP / single-step model):
  the model's SNP effects back-solved with their exact sampling variances
  (:mod:`~henderson.gwas.backsolve`);
* ``method="mlma"``: each SNP a fixed effect in the mixed model, variances from the
  null model (P3D, default) or per SNP (``p3d=False``), optionally LOCO
  (:mod:`~henderson.gwas.mlma`).

:func:`variance_windows` turns back-solved effects into the share of genetic
variance per window; :func:`genomic_control` is λ_GC.
"""

from __future__ import annotations

import pandas as pd

from .._threads import blas_threads_for
from ..errors import DataError
from ._model import design_of, fitted_model
from ._source import GenotypeSource
from ._table import genomic_control
from .backsolve import backsolve as _backsolve
from .mlma import mlma as _mlma
from .windows import parse_window, variance_windows

__all__ = ["association", "variance_windows", "genomic_control", "parse_window"]

METHODS = ("backsolve", "mlma")


def association(
    model,
    genotypes,
    *,
    method: str = "backsolve",
    p3d: bool = True,
    loco: bool = False,
    fixed: str | None = None,
    data: pd.DataFrame | None = None,
    missing: str = "error",
    block_size: int | None = None,
) -> pd.DataFrame:
    """SNP association tests from a fitted genetic model (or phenotypes, for MLMA).

    Parameters
    ----------
    model : fitted GBLUP or SNPBLUP, a fitted single-step estimator (see
        :func:`henderson.gwas._model.fitted_model` for the hook), or — with
        ``method="mlma"`` — phenotypes as a Series indexed by id.
    genotypes : Genotypes, or the path of a PLINK fileset (read block by block, so
        memory stays bounded), holding every individual of the model.
    method : {"backsolve", "mlma"}
    p3d : bool
        MLMA: variance ratio once in the null model (True, EMMAX/P3D) or re-estimated
        by REML for every SNP (False, as GEMMA ``-lmm 1``).
    loco : bool
        MLMA: leave the tested SNP's chromosome out of G (needs a map, ≥ 2 chromosomes).
    fixed, data, missing : with phenotypes as ``model``: the fixed part of the formula
        (covariates, columns of ``data`` indexed by id) and what to do with phenotyped
        ids without genotypes. A fitted estimator brings its own.
    block_size : int, optional
        SNPs per block.

    Returns
    -------
    DataFrame, one row per SNP in the genotypes' order:
    ``snp, chrom, pos, allele1`` (the counted, tested allele) ``, allele2, freq``
    (of allele1 among the model's individuals) ``, effect`` (per copy of allele1)
    ``, se, z, p, tested`` (False for monomorphic SNPs, reported in a warning), and
    for MLMA ``lambda`` (σ²_g/σ²_e used). ``attrs["method"]`` states how the
    numbers were computed, ``attrs["notes"]`` what was noticed, ``attrs["lambda_gc"]``
    the genomic-control λ.

    Notes
    -----
    Back-solve (Gualdrón Duarte et al. 2014): β̂ = σ²_β W'Z'Py, Var(β̂) = σ⁴_β
    diag(W'Z'PZW), z = β̂/√Var(β̂), p two-sided normal. MLMA: GEMMA's Wald F test
    with F(1, n − c − 1). See docs/theory.md.

    Examples
    --------
    >>> import henderson
    >>> from henderson._testing.genotypes import simulate_genotypes
    >>> import numpy as np, pandas as pd
    >>> geno = simulate_genotypes(60, 200, seed=1)
    >>> y = pd.Series(np.random.default_rng(1).normal(size=60), index=geno.ids, name="y")
    >>> gb = henderson.GBLUP(sigma2=(1.0, 1.0)).fit(geno, y)
    >>> tab = henderson.association(gb, geno)
    >>> list(tab.columns[:10])
    ['snp', 'chrom', 'pos', 'allele1', 'allele2', 'freq', 'effect', 'se', 'z', 'p']
    """
    if method not in METHODS:
        raise DataError(f"method must be one of {METHODS}, not {method!r}")
    source = GenotypeSource(genotypes, block_size)
    # small problems on one BLAS thread: spinning threads on a busy machine make small
    # Cholesky and triangular solves hundreds of times slower (see henderson._threads)
    with blas_threads_for(len(source.ids)):
        table, how, notes = _run(model, source, method, p3d, loco, fixed, data, missing)
    table.attrs["method"] = how
    table.attrs["notes"] = list(notes)
    table.attrs["lambda_gc"] = genomic_control(table["p"])
    return table


def _run(model, source, method, p3d, loco, fixed, data, missing):
    if method == "backsolve":
        if isinstance(model, pd.Series):
            raise DataError(
                "method='backsolve' needs a fitted model (GBLUP, SNPBLUP or single step); "
                "with phenotypes use method='mlma' or fit henderson.GBLUP first"
            )
        if loco or not p3d:
            raise DataError("loco= and p3d= are options of method='mlma', not of 'backsolve'")
        fm = fitted_model(model)
        table, how, notes = _backsolve(fm, source)
    else:
        G = sigma2 = None
        if isinstance(model, pd.Series):
            design = design_of(model, source.ids, fixed=fixed, data=data, missing=missing)
        else:
            if fixed is not None or data is not None:
                raise DataError(
                    "fixed= and data= come from the fitted model; pass phenotypes instead "
                    "of a fitted model to choose them"
                )
            fm = fitted_model(model)
            if fm.design is None:
                raise DataError(f"method='mlma' needs the records of the fitted {fm.kind}")
            design = fm.design
            if fm.kind == "GBLUP":
                G = fm.G
                if fm.estimator.method == "reml" and not loco:
                    sigma2 = (fm.sigma2_g, fm.sigma2_e)  # the fitted null model (REML)
        table, how, notes = _mlma(design, source, p3d=p3d, loco=loco, G=G, sigma2=sigma2)
        notes = list(design.notes) + notes
    return table, how, notes

"""Seeded simulator of an animal model: a pedigree with records, for tests and benchmarks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .pedigree import simulate_pedigree


def simulate_animal_model(
    n: int,
    generations: int = 10,
    *,
    sigma2_a: float = 1.0,
    sigma2_herd: float = 0.5,
    sigma2_e: float = 2.0,
    herds: int | None = None,
    record_rate: float = 1.0,
    repeats: int = 1,
    sigma2_pe: float = 0.0,
    seed: int = 0,
):
    """Pedigree, A⁻¹, records and true values of y = μ + sex + herd + a (+ pe) + e.

    Parameters
    ----------
    n, generations : int
        Animals and generations (:func:`simulate_pedigree`, seeded by ``seed``).
    sigma2_a, sigma2_herd, sigma2_e, sigma2_pe : float
        Additive genetic, herd, residual and permanent-environment variances.
    herds : int, optional
        Number of herds (default n // 500, at least 2); animals are assigned at random.
    record_rate : float
        Probability that an animal has records (the others are in the pedigree only).
    repeats : int
        Records per recorded animal (with a permanent-environment effect when
        ``sigma2_pe > 0``).

    Returns
    -------
    dict with ``pedigree`` (DataFrame id/sire/dam), ``ainv`` (Relationship, A⁻¹),
    ``records`` (DataFrame id, herd, sex, y), ``bv`` (Series of true breeding values
    by id) and ``sigma2`` (the simulating variances: a, herd, e).

    Notes
    -----
    Breeding values are exact draws from N(0, σ²ₐA): uᵢ = ½(u_s + u_d) + √dᵢ zᵢ with
    the Mendelian-sampling variances dᵢ of A⁻¹ (inbreeding included).
    """
    from ..relationships.pedigree import pedigree_inverse
    from ..solvers._pcg_kernels import pedigree_sample

    rng = np.random.default_rng(seed)
    ped = simulate_pedigree(n, generations, seed=seed)
    ainv = pedigree_inverse(ped)
    par = ainv.info["parents"]
    bv = np.empty(ainv.n)
    pedigree_sample(par["order"], par["sire"], par["dam"], np.sqrt(par["d"]), rng.standard_normal(ainv.n), bv)
    bv *= np.sqrt(sigma2_a)
    herds = herds or max(2, n // 500)
    has = np.flatnonzero(rng.random(ainv.n) < record_rate)
    herd_of = rng.integers(herds, size=ainv.n)
    sex = rng.integers(2, size=ainv.n)
    herd_eff = np.sqrt(sigma2_herd) * rng.standard_normal(herds)
    pe = np.sqrt(sigma2_pe) * rng.standard_normal(ainv.n)
    rows = np.repeat(has, repeats)
    y = (
        10.0
        + 0.5 * sex[rows]
        + herd_eff[herd_of[rows]]
        + bv[rows]
        + pe[rows]
        + np.sqrt(sigma2_e) * rng.standard_normal(len(rows))
    )
    records = pd.DataFrame(
        {
            "id": ainv.ids[rows],
            "herd": (herd_of[rows] + 1).astype(str),
            "sex": np.where(sex[rows] == 1, "M", "F"),
            "y": y,
        }
    )
    return {
        "pedigree": ped,
        "ainv": ainv,
        "records": records,
        "bv": pd.Series(bv, index=pd.Index(ainv.ids, name="id"), name="bv"),
        "sigma2": {"a": sigma2_a, "herd": sigma2_herd, "pe": sigma2_pe, "e": sigma2_e},
    }

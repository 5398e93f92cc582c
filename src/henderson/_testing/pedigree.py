"""Seeded pedigree simulator for tests and benchmarks."""

from __future__ import annotations

import numpy as np
import pandas as pd


def simulate_pedigree(
    n: int,
    generations: int,
    founders: int | None = None,
    unknown_rate: float = 0.05,
    seed: int = 0,
    sires_per_generation: int | None = None,
    shuffle: bool = False,
) -> pd.DataFrame:
    """Random mating in discrete generations, with inbreeding and unknown parents.

    Generation 0 holds ``founders`` animals with unknown parents; the other
    ``n - founders`` animals are split evenly over generations 1..``generations``.
    Each animal of generation g gets a sire drawn from a few males of generation
    g - 1 (``sires_per_generation``, as in breeding programmes: a small number of
    sires makes inbreeding build up) and a dam from its females; each parent is
    then made unknown with probability ``unknown_rate``. Sires are always male and
    dams female, so no id is both sire and dam.

    Parameters
    ----------
    n : int
        Number of animals (rows), founders included.
    generations : int
        Generations after the founders.
    founders : int, optional
        Animals in generation 0; default ``max(2, n // (generations + 1))``.
    unknown_rate : float
        Probability that each parent of a non-founder is recorded as unknown.
    seed : int
        Seed of ``numpy.random.default_rng``.
    sires_per_generation : int, optional
        Males used as sires per generation; default about 5 % of the males (>= 1).
    shuffle : bool
        Shuffle the rows (parents no longer precede offspring).

    Returns
    -------
    DataFrame, n rows: ``id``, ``sire``, ``dam`` as str (ids ``"1" .. "n"``),
    unknown parents missing (NaN).
    """
    rng = np.random.default_rng(seed)
    if founders is None:
        founders = max(2, n // (generations + 1))
    founders = min(max(int(founders), 1), n)
    rest = n - founders
    sizes = [founders]
    if generations:
        sizes += [rest // generations + (g < rest % generations) for g in range(generations)]
    else:
        sizes = [n]
    sire = np.full(n, -1, np.int64)
    dam = np.full(n, -1, np.int64)
    # Balanced sexes per generation (alternating, then shuffled) so both exist.
    male = np.empty(n, np.bool_)
    start = 0
    prev_m = prev_f = np.empty(0, np.int64)
    for size in sizes:
        idx = np.arange(start, start + size)
        sex = (np.arange(size) + rng.integers(2)) % 2 == 0
        male[idx] = rng.permutation(sex)
        if start > 0 and size > 0:
            pool_m = prev_m if len(prev_m) else np.flatnonzero(male[:start])
            pool_f = prev_f if len(prev_f) else np.flatnonzero(~male[:start])
            if len(pool_m):
                k = sires_per_generation or max(1, len(pool_m) // 20)
                used = rng.choice(pool_m, size=min(k, len(pool_m)), replace=False)
                sire[idx] = rng.choice(used, size=size)
            if len(pool_f):
                dam[idx] = rng.choice(pool_f, size=size)
            sire[idx[rng.random(size) < unknown_rate]] = -1
            dam[idx[rng.random(size) < unknown_rate]] = -1
        prev_m, prev_f = idx[male[idx]], idx[~male[idx]]
        start += size
    ids = (np.arange(n) + 1).astype(str).astype(object)
    ext = np.append(ids, np.nan)  # index -1 -> NaN
    frame = pd.DataFrame({"id": ids, "sire": ext[sire], "dam": ext[dam]})
    if shuffle:
        frame = frame.iloc[rng.permutation(n)].reset_index(drop=True)
    return frame


def simulate_breeding_values(frame: pd.DataFrame, sigma2: float = 1.0, seed: int = 0) -> pd.Series:
    """True breeding values down a pedigree: u = (I − P)⁻¹ φ, φᵢ ~ N(0, dᵢσ²).

    P holds 1/2 at each known parent; dᵢ = 1/2, 3/4 or 1 for two, one or no known
    parents (inbreeding ignored). One sparse triangular solve, no loop over animals.

    Parameters
    ----------
    frame : DataFrame with ``id, sire, dam`` (unknown parents missing), any row order
    sigma2 : float
        Additive genetic variance of the base animals.
    seed : int

    Returns
    -------
    Series indexed by id, named ``"u"``.
    """
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve_triangular

    from ..io.pedigree import read_pedigree

    ped = read_pedigree(frame[["id", "sire", "dam"]])  # codes parents-first
    n = len(ped)
    ks, kd = ped.sire >= 0, ped.dam >= 0
    rows = np.concatenate([np.flatnonzero(ks), np.flatnonzero(kd)])
    cols = np.concatenate([ped.sire[ks], ped.dam[kd]])
    L = sp.identity(n, format="csr") - sp.csr_matrix((np.full(len(rows), 0.5), (rows, cols)), shape=(n, n))
    d = 1.0 - 0.25 * (ks.astype(float) + kd.astype(float))
    phi = np.random.default_rng(seed).normal(size=n) * np.sqrt(d * sigma2)
    u = spsolve_triangular(L.tocsr(), phi, lower=True)
    return pd.Series(u, index=pd.Index(ped.ids, name="id"), name="u").reindex(frame["id"].astype(str))

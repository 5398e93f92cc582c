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

"""The Pedigree container: ids the user sees, integer codes the kernels use.

Animals are coded ``0 .. n-1`` so that parents come before their offspring (sorted
by generation, ties kept in the user's order); an unknown parent is ``-1``. Users
never need the codes: every public function takes and returns ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import DataError, PedigreeError, format_ids
from ._ids import str_ids


@dataclass(frozen=True, eq=False)
class Pedigree:
    """A checked, sorted pedigree.

    Build one with :func:`henderson.io.pedigree.read_pedigree`; the constructor
    only checks that the arrays are consistent.

    Attributes
    ----------
    ids : ndarray of str, shape (n,)
        Animal ids by code: ``ids[c]`` is the animal with code ``c``. Parents come
        before offspring.
    sire, dam : int64 ndarray, shape (n,)
        Parent codes, ``-1`` when unknown; always smaller than the animal's own code.
    generation : int64 ndarray, shape (n,)
        Longest ancestral path: 0 if both parents are unknown, else one more than
        the larger generation of the known parents. Non-decreasing in code.
    input_order : int64 ndarray, shape (n,)
        Codes in the user's order: added founders first (in order of first
        appearance as a parent), then the animals in the order of their rows.
    added_founders : tuple of str
        Parents that had no row of their own and were added as founders.
    n_duplicates_dropped : int
        Exact duplicate rows that were dropped.
    source : str
        Where the pedigree came from (a path or ``"<DataFrame>"``), for messages.
    """

    ids: np.ndarray
    sire: np.ndarray
    dam: np.ndarray
    generation: np.ndarray
    input_order: np.ndarray
    added_founders: tuple = ()
    n_duplicates_dropped: int = 0
    source: str = "<pedigree>"
    _index: pd.Index = field(default=None, repr=False)

    def __post_init__(self):
        ids = np.asarray(self.ids, dtype=object)
        n = len(ids)
        arrays = {}
        for name in ("sire", "dam", "generation", "input_order"):
            a = np.ascontiguousarray(getattr(self, name), dtype=np.int64)
            if a.shape != (n,):
                raise DataError(f"Pedigree.{name} has shape {a.shape}, expected ({n},)")
            a.setflags(write=False)
            arrays[name] = a
        ids.setflags(write=False)
        code = np.arange(n)
        for name in ("sire", "dam"):
            bad = (arrays[name] >= code) | (arrays[name] < -1)
            if bad.any():
                raise PedigreeError(
                    f"Pedigree codes are not sorted parents-first: {name} of "
                    + format_ids(ids[bad])
                    + " does not precede it (build pedigrees with read_pedigree)"
                )
        if n and np.any(np.diff(arrays["generation"]) < 0):
            raise PedigreeError("Pedigree codes are not sorted by generation")
        if not np.array_equal(np.sort(arrays["input_order"]), code):
            raise DataError("Pedigree.input_order is not a permutation of the codes")
        index = pd.Index(ids)
        if index.has_duplicates:
            dup = index[index.duplicated()].unique()
            raise PedigreeError("duplicated ids in Pedigree: " + format_ids(dup))
        object.__setattr__(self, "ids", ids)
        for name, a in arrays.items():
            object.__setattr__(self, name, a)
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "added_founders", tuple(str(i) for i in self.added_founders))

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        ngen = int(self.generation[-1]) + 1 if len(self) else 0
        return (
            f"Pedigree(n={len(self)}, generations={ngen}, founders={self.n_founders}, "
            f"added_founders={len(self.added_founders)}, source={self.source!r})"
        )

    # Copying a frozen container is never needed (see Relationship).
    def __deepcopy__(self, memo):
        return self

    @property
    def n_founders(self) -> int:
        """Animals with both parents unknown (including added founders)."""
        return int(np.count_nonzero((self.sire < 0) & (self.dam < 0)))

    @property
    def n_founders_added(self) -> int:
        """Parents without a row of their own, added as founders."""
        return len(self.added_founders)

    @property
    def ids_in_input_order(self) -> np.ndarray:
        """Ids in the user's order (added founders first)."""
        return self.ids[self.input_order]

    def codes_of(self, ids) -> np.ndarray:
        """Integer codes of ``ids``; a :class:`DataError` names every unknown id.

        Parameters
        ----------
        ids : iterable of str, shape (k,)

        Returns
        -------
        int64 ndarray, shape (k,)
        """
        ids = str_ids(ids)
        pos = self._index.get_indexer(ids)
        if (pos < 0).any():
            missing = ids[pos < 0]
            raise DataError(f"{len(missing)} id(s) not in the pedigree ({self.source}): " + format_ids(missing))
        return pos.astype(np.int64)

    def to_frame(self, order: str = "input") -> pd.DataFrame:
        """The pedigree as a DataFrame with columns ``id, sire, dam, generation``.

        Parameters
        ----------
        order : {"input", "sorted"}
            ``"input"``: the user's order (added founders first); ``"sorted"``:
            parents before offspring (code order).

        Returns
        -------
        DataFrame, n rows; unknown parents are missing (NaN).
        """
        if order == "input":
            codes = self.input_order
        elif order == "sorted":
            codes = np.arange(len(self))
        else:
            raise DataError(f"order must be 'input' or 'sorted', not {order!r}")
        ext = np.append(self.ids, np.nan)  # code -1 picks the trailing NaN
        return pd.DataFrame(
            {
                "id": self.ids[codes],
                "sire": ext[self.sire[codes]],
                "dam": ext[self.dam[codes]],
                "generation": self.generation[codes],
            }
        )

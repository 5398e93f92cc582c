"""The one relationship type: a matrix that carries its ids.

Every relationship or covariance matrix in henderson (A, A⁻¹, G, a user's K) travels
as a :class:`Relationship`, so nothing is ever matched by position alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data._ids import str_ids
from ..data.genotypes import subset_info
from ..errors import DataError, format_ids


@dataclass(frozen=True, eq=False)
class Relationship:
    """A square relationship (or inverse relationship) matrix with its ids.

    Parameters
    ----------
    ids : array-like of str, shape (n,)
        Row and column ids, unique.
    matrix : ndarray or scipy.sparse matrix or dask array, shape (n, n)
        The matrix itself. Dense for G and A, sparse for A⁻¹; a dask array keeps a
        matrix on disk or in chunks lazily: ids, ``subset``, ``diagonal`` and ``mean``
        stay lazy or block-wise, and a fit computes the dense block it needs.
    inverse : bool
        True when ``matrix`` is an inverse (e.g. A⁻¹ from Henderson's rules).
    kind : str
        A short label: ``"A"``, ``"Ainv"``, ``"G"``, ``"K"``, ...
    info : dict
        Provenance and diagnostics (method, allele-frequency source, logdet, ...).

    Notes
    -----
    Instances are immutable and ``copy.deepcopy`` returns the same object, so
    scikit-learn's ``clone`` never copies a large G. Immutability is enforced without
    copying: a dense ``matrix`` is a read-only view of the array given (the caller's
    own array keeps its flags), and a sparse one is stored in canonical CSR/CSC form
    over read-only views of its data and index arrays. Copy (``rel.dense().copy()``)
    before modifying.

    Per-id entries of ``info`` (a Series by id such as ``fid`` or ``inbreeding``, or
    the positional arrays in :data:`~henderson.data.genotypes.PER_ID_INFO`) follow
    their ids through :meth:`subset`.
    """

    ids: np.ndarray
    matrix: Any
    inverse: bool = False
    kind: str = "K"
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        ids = str_ids(self.ids)
        object.__setattr__(self, "ids", ids)
        shape = self.matrix.shape
        if len(shape) != 2 or shape[0] != shape[1]:
            raise DataError(f"relationship matrix {self.kind} must be square, got shape {shape}")
        if shape[0] != len(ids):
            raise DataError(f"relationship matrix {self.kind} has {shape[0]} rows but {len(ids)} ids")
        dup = pd.Index(ids)
        if dup.has_duplicates:
            raise DataError(
                f"relationship matrix {self.kind} has duplicated ids: " + format_ids(dup[dup.duplicated()].unique())
            )
        object.__setattr__(self, "matrix", _read_only(self.matrix))

    # scikit-learn's clone deep-copies parameters; a relationship is immutable,
    # so sharing it is safe and avoids copying an n x n matrix per fold.
    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def is_sparse(self) -> bool:
        return sp.issparse(self.matrix)

    def index_of(self, ids) -> np.ndarray:
        """Integer positions of ``ids`` in this matrix; error naming any unknown id."""
        ids = str_ids(ids)
        pos = pd.Index(self.ids).get_indexer(ids)
        if (pos < 0).any():
            missing = ids[pos < 0]
            raise DataError(
                f"{len(missing)} id(s) not found in relationship matrix {self.kind}: " + format_ids(missing)
            )
        return pos

    @property
    def is_dask(self) -> bool:
        """True when the matrix is a lazy dask array (computed block-wise when needed)."""
        return hasattr(self.matrix, "compute") and hasattr(self.matrix, "chunks")

    def diagonal(self) -> np.ndarray:
        """The diagonal, shape (n,), without forming a dense copy of a sparse or dask matrix."""
        m = self.matrix
        if sp.issparse(m):
            return np.asarray(m.diagonal(), dtype=np.float64)
        if self.is_dask:
            import dask.array as da

            return np.asarray(da.diagonal(m).compute(), dtype=np.float64)
        return np.diag(np.asarray(m)).astype(np.float64)

    def mean(self) -> float:
        """Mean of all n² entries (e.g. for mean(diag G) − mean(G), Legarra 2016)."""
        m = self.matrix
        v = m.mean()
        return float(v.compute() if hasattr(v, "compute") else v)

    def dense(self) -> np.ndarray:
        """The matrix as a dense float64 ndarray."""
        m = self.matrix
        if sp.issparse(m):
            return m.toarray()
        if hasattr(m, "compute"):
            m = m.compute()
        return np.asarray(m, dtype=np.float64)

    def subset(self, ids) -> Relationship:
        """The sub-matrix for ``ids`` (in that order); only for non-inverse matrices."""
        if self.inverse:
            raise DataError(
                "cannot subset an inverse relationship matrix by ids: the inverse of a "
                "sub-matrix is not the sub-matrix of the inverse"
            )
        pos = self.index_of(ids)
        new_ids = self.ids[pos]
        m = self.matrix
        if sp.issparse(m) or self.is_dask:  # one axis at a time; dask stays lazy
            sub = m[pos][:, pos]
        else:
            sub = np.asarray(m)[np.ix_(pos, pos)]
        info = subset_info(self.info, self.ids, new_ids)
        return Relationship(new_ids, sub, inverse=False, kind=self.kind, info=info)

    def to_frame(self) -> pd.DataFrame:
        """A dense DataFrame indexed and labelled by ids."""
        return pd.DataFrame(self.dense(), index=pd.Index(self.ids, name="id"), columns=self.ids)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, inverse: bool = False, kind: str = "K") -> Relationship:
        """Build from a square DataFrame whose index and columns are the same ids."""
        idx, cols = str_ids(frame.index), str_ids(frame.columns)
        if not np.array_equal(idx, cols):
            if set(idx) == set(cols):
                frame = frame.copy()
                frame.columns = cols
                frame = frame[idx]
            else:
                extra = sorted(set(idx) ^ set(cols))
                raise DataError(f"relationship matrix {kind}: row and column ids differ: " + format_ids(extra))
        values = frame.to_numpy(dtype=np.float64)
        return cls(idx, values, inverse=inverse, kind=kind)

    def __repr__(self) -> str:
        store = "sparse" if self.is_sparse else type(self.matrix).__name__
        inv = " inverse" if self.inverse else ""
        return f"Relationship(kind={self.kind!r}{inv}, n={self.n}, storage={store})"


def _read_only(m):
    """``m`` made read-only without copying its values (see Relationship's notes)."""
    if isinstance(m, np.ndarray):
        m = m.view()  # the caller's array keeps its own flags
        m.flags.writeable = False
        return m
    if sp.issparse(m):
        if m.format not in ("csr", "csc"):
            m = m.tocsr()
        if not m.has_canonical_format:  # scipy would otherwise sort/sum in place later
            m = m.copy()
            m.sum_duplicates()
        parts = []
        for a in (m.data, m.indices, m.indptr):
            v = a.view()
            v.flags.writeable = False
            parts.append(v)
        return type(m)(tuple(parts), shape=m.shape)
    return m  # dask arrays are immutable already


def as_relationship(obj, *, inverse: bool = False, kind: str = "K") -> Relationship:
    """Coerce a DataFrame or Relationship into a :class:`Relationship`.

    Bare numpy arrays are refused: a matrix without ids cannot be matched to records.
    """
    if not isinstance(obj, Relationship) and hasattr(obj, "to_relationship"):
        obj = obj.to_relationship()  # e.g. SparsePlusDenseInverse (single-step H⁻¹ in blocks)
    if isinstance(obj, Relationship):
        if inverse and not obj.inverse:
            raise DataError(f"expected an inverse relationship matrix, got {obj!r}")
        if not inverse and obj.inverse:
            raise DataError(f"expected a relationship matrix, got an inverse: {obj!r} (use cov_inverse=)")
        return obj
    if isinstance(obj, pd.DataFrame):
        return Relationship.from_frame(obj, inverse=inverse, kind=kind)
    raise DataError(
        f"a relationship matrix must be a pandas DataFrame indexed by ids or a "
        f"henderson Relationship, not {type(obj).__name__}: matrices without ids "
        "cannot be matched to records"
    )

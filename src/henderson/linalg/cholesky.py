"""Sparse supernodal Cholesky with log-determinant, solves and the selected inverse.

``SymbolicCholesky(pattern)`` does everything that depends only on where the
nonzeros are — ordering, elimination tree, supernodes, row lists, where each entry
of A lands in L — once. ``.factor(values)`` then costs one numeric factorisation,
and ``Factor.selected_inverse()`` gives A⁻¹ on the pattern of L (Takahashi) in the
same memory as L. This is what CHOLMOD-based REML programs (e.g. ASReml, WOMBAT,
remlf90) compute per iteration; here it is numba over LAPACK (see docs/theory.md,
"Sparse Cholesky and selected inverse").
"""

from __future__ import annotations

import ctypes

import numpy as np
import scipy.sparse as sp

from ..errors import NotPositiveDefiniteError
from . import _numeric as K
from . import _symbolic as S
from .ordering import candidate_orders


def return_freed_heap() -> None:
    """Give the heap's free pages back to the OS (glibc ``malloc_trim``; elsewhere a no-op).

    The symbolic analysis allocates and frees ~1.4 × the factor's size in arrays of a
    few MiB (orderings tried, L's pattern, column counts). glibc keeps such freed chunks
    in its heap, where the factor and the selected inverse's workspace — allocated by
    mmap — cannot reuse them: at 100,000 animals 64 MiB stayed resident through REML
    (benchmarks/results/sparse_memory.md).
    """
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):  # not glibc
        pass


def _upper_lower(pattern: sp.spmatrix, order: np.ndarray):
    P = sp.csc_matrix(pattern, dtype=float, copy=True)
    P.data[:] = 1.0  # the pattern: stored zeros count
    P = P[order][:, order]
    P = (P + P.T).tocsc()
    P.sum_duplicates()
    P.sort_indices()
    U = sp.triu(P, format="csc")
    L = sp.tril(P, format="csc")
    L.sort_indices()
    return U, L


class SymbolicCholesky:
    """Symbolic analysis of the Cholesky factor of a symmetric pattern.

    Parameters
    ----------
    pattern : sparse, shape (n, n)
        Symmetric sparsity pattern (one triangle or both; values ignored).
    last : int
        The last ``last`` rows are ordered last, in their order (fixed effects), and
        no supernode straddles row n − last: ``Factor.logdet(limit=n − last)`` and
        ``selected_inverse(limit=n − last)`` then concern that leading block.
    ordering : {"auto", "metis", "rcm", "given"} or ndarray
        "auto" keeps the candidate with the fewest nonzeros in L.

    Attributes
    ----------
    perm : ndarray (n,)
        New → old: row i of the factor is row ``perm[i]`` of A.
    nnz : int
        Nonzeros of L (lower triangle, diagonal included).
    ordering : str
        Name of the ordering used.
    """

    def __init__(self, pattern, *, last: int = 0, ordering="auto"):
        self._analyse(pattern, last, ordering)
        return_freed_heap()  # the analysis's scratch, before any factor is allocated

    def _analyse(self, pattern, last: int, ordering) -> None:
        n = pattern.shape[0]
        self.n = n
        self.last = int(last)
        if isinstance(ordering, str):
            cands = candidate_orders(pattern, last)
            if ordering != "auto":
                cands = {ordering: cands[ordering]}
        else:
            cands = {"given-permutation": np.asarray(ordering, dtype=np.int64)}
        best = None
        for name, order in cands.items():
            U, _ = _upper_lower(pattern, order)
            parent = S.etree(n, U.indptr.astype(np.int64), U.indices.astype(np.int64))
            post = S.postorder(parent)
            if self.last and not np.array_equal(np.sort(post[n - last :]), np.arange(n - last, n)):
                post = np.arange(n)  # keep the trailing block last (it is rarely needed)
            order = order[post]
            U, L = _upper_lower(pattern, order)
            Up, Ui = U.indptr.astype(np.int64), U.indices.astype(np.int64)
            parent = S.etree(n, Up, Ui)
            cc = S.column_counts(n, Up, Ui, parent, 2**62 if best is None else best[0])
            if cc is None:  # more fill than the best so far: abandoned early
                continue
            nnz = int(cc.sum())
            if best is None or nnz < best[0]:
                best = (nnz, name, order, L, parent, cc)
        if best is None:  # pragma: no cover - the first candidate runs without a bound
            raise RuntimeError("no fill-reducing ordering was analysed")
        self.nnz, self.ordering, self.perm, L, parent, cc = best
        self.iperm = np.empty(n, np.int64)
        self.iperm[self.perm] = np.arange(n)
        self.first = S.supernode_partition(parent, cc, n - self.last if self.last else -1)
        self.rptr, self.rows, self.snode, ok = S.supernode_rows(
            n, L.indptr.astype(np.int64), L.indices.astype(np.int64), parent, self.first, cc
        )
        if not ok:  # pragma: no cover - guards the row-structure theorem
            raise RuntimeError("symbolic Cholesky: supernode row lists do not match the column counts")
        w = np.diff(self.first)
        nr = np.diff(self.rptr)
        self.off = np.concatenate([[0], np.cumsum(nr * w)]).astype(np.int64)
        self.size = int(self.off[-1])
        m = nr - w
        self._work = K.panel_workspace(m)  # PANEL × m: update / Z_RR panels
        self._mw = int(max((m * w).max(initial=0), 1))
        #: dpotrf block of wide supernodes (OpenBLAS threaded-dsyrk overflow; _numeric.POTRF_BLOCK)
        self._potrf_block = K.POTRF_BLOCK
        self.flops = float((cc.astype(float) ** 2).sum())

    @property
    def n_supernodes(self) -> int:
        return len(self.first) - 1

    def positions(self, i, j) -> np.ndarray:
        """Index in the value array of entries (i, j) of A (either triangle); −1 if
        the entry is not in the pattern of L."""
        a = self.iperm[np.asarray(i, dtype=np.int64)]
        b = self.iperm[np.asarray(j, dtype=np.int64)]
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        return S.storage_positions(hi, lo, self.first, self.snode, self.rptr, self.rows, self.off)

    def diagonal_positions(self) -> np.ndarray:
        """Value-array index of each diagonal entry, in A's order."""
        idx = np.arange(self.n)
        return self.positions(idx, idx)

    def assembly_map(self, A: sp.spmatrix):
        """(which entries of ``A.tocoo()``, their positions): the lower-in-factor-order
        half of a symmetric matrix with this pattern, to assemble values fast."""
        A = sp.coo_matrix(A)
        a, b = self.iperm[A.row], self.iperm[A.col]
        keep = np.flatnonzero(a >= b)
        pos = self.positions(A.row[keep], A.col[keep])
        if np.any(pos < 0):
            raise ValueError("matrix has entries outside the analysed pattern")
        return keep, pos

    def factor(self, values: np.ndarray) -> Factor:
        """Numeric factorisation of values already placed in the value array (length
        ``size``); consumes ``values``."""
        relmap = np.empty(self.n, np.int64)
        work = np.empty(self._work)
        bad = K.factorize(
            values, self.first, self.rptr, self.rows, self.off, self.snode, work, relmap, self._potrf_block
        )
        if bad >= 0:
            raise NotPositiveDefiniteError(
                f"the matrix is not positive definite (pivot {bad} of the factor, row "
                f"{int(self.perm[bad])} of the matrix)"
            )
        return Factor(self, values)

    def factor_matrix(self, A: sp.spmatrix) -> Factor:
        """Factor a symmetric matrix with (a subset of) this pattern."""
        A = sp.coo_matrix(A)
        keep, pos = self.assembly_map(A)
        x = np.zeros(self.size)
        K.scatter_add(x, pos, A.data[keep].astype(float), 1.0)
        return self.factor(x)


class Factor:
    """Numeric Cholesky factor A = P'LL'P of one matrix (see :class:`SymbolicCholesky`)."""

    def __init__(self, symbolic: SymbolicCholesky, x: np.ndarray):
        self.symbolic = symbolic
        self.x: np.ndarray | None = x

    def values(self) -> np.ndarray:
        """The factor's value array (an error once ``selected_inverse(overwrite=True)`` consumed it)."""
        if self.x is None:
            raise ValueError("this factor was consumed by selected_inverse(overwrite=True)")
        return self.x

    def logdet(self, limit: int | None = None) -> float:
        """log|A|, or log|A[:limit, :limit]| for the leading block (``limit = n − last``)."""
        x = self.values()
        s = self.symbolic
        return float(K.logdet(x, s.first, s.rptr, s.off, s.n if limit is None else limit))

    def solve(self, b: np.ndarray) -> np.ndarray:
        """A⁻¹b for b of shape (n,) or (n, k), in A's order."""
        x = self.values()
        s = self.symbolic
        b = np.asarray(b, dtype=float)
        one = b.ndim == 1
        B = np.ascontiguousarray((b[:, None] if one else b)[s.perm])
        K.solve_inplace(x, s.first, s.rptr, s.rows, s.off, B)
        out = np.empty_like(B)
        out[s.perm] = B
        return out[:, 0] if one else out

    def selected_inverse(self, limit: int | None = None, overwrite: bool = False) -> SelectedInverse:
        """A⁻¹ (or A[:limit, :limit]⁻¹) on the pattern of L, by the Takahashi equations.

        ``overwrite=True`` writes the selected inverse into the factor's own value array
        (no second array of the factor's size; the factor is consumed and cannot solve
        afterwards). This is exact, not an approximation: the sweep runs from the last
        supernode to the first and reads supernode J of L only while it computes
        supernode J of Z, whose entries it writes after those reads; every other read is
        of Z in supernodes after J, already final.
        """
        s = self.symbolic
        x = self.values()
        z = x if overwrite else np.zeros(s.size)
        relmap = np.empty(s.n, np.int64)
        K.selected_inverse(
            x,
            z,
            overwrite,
            s.first,
            s.rptr,
            s.rows,
            s.off,
            s.snode,
            relmap,
            np.empty(s._work),
            np.empty(s._mw),
            np.empty(s._mw),
            s.n if limit is None else limit,
        )
        if overwrite:
            if limit is not None and limit < s.n:  # supernodes past the limit still hold L
                first_out = int(np.searchsorted(s.first[:-1], limit))
                z[s.off[first_out] :] = 0.0
            self.x = None
        return SelectedInverse(s, z)


class SelectedInverse:
    """Entries of A⁻¹ on the pattern of L: ``diag()``, ``at(pos)`` for positions."""

    def __init__(self, symbolic: SymbolicCholesky, z: np.ndarray):
        self.symbolic = symbolic
        self.z = z

    def diag(self) -> np.ndarray:
        """diag(A⁻¹) in A's order."""
        return K.gather(self.z, self.symbolic.diagonal_positions())

    def at(self, pos: np.ndarray) -> np.ndarray:
        """Values at value-array positions (from ``symbolic.positions`` / ``assembly_map``)."""
        return K.gather(self.z, np.asarray(pos, dtype=np.int64))

    def entries(self, i, j) -> np.ndarray:
        pos = self.symbolic.positions(i, j)
        if np.any(pos < 0):
            raise ValueError("entry outside the pattern of L: not computed by the selected inverse")
        return self.at(pos)

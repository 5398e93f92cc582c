"""Pedigree relationships: inbreeding, A⁻¹ by Henderson's rules, A (tabular or Colleau).

All results are labelled by ids. Matrices and series come in the pedigree's
*input order* (``Pedigree.ids_in_input_order``: parents added as founders first,
then animals in the order of the user's rows), never in the internal sorted order.
See ``docs/theory_pedigree.md`` for the equations.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._memory import available_bytes as available_memory
from ..data import _pedigree_kernels as K
from ..data._ids import str_ids
from ..data.pedigree import Pedigree
from ..errors import DataError, DataWarning, check_missing_mode, format_ids, unknown_ids
from .container import Relationship

#: Memory budget (bytes) of one Colleau column block; n x block x 8 bytes.
_COLLEAU_BLOCK_BYTES = 256 * 2**20


def _as_pedigree(ped) -> Pedigree:
    if isinstance(ped, Pedigree):
        return ped
    if isinstance(ped, pd.DataFrame):
        from ..io.pedigree import read_pedigree

        return read_pedigree(ped)
    raise DataError(f"expected a henderson Pedigree or a DataFrame id/sire/dam, not {type(ped).__name__}")


def _processing_order(sire, dam, generation) -> np.ndarray:
    """Codes by generation, then sire, then dam: full sibs adjacent (see inbreeding_lap)."""
    return np.lexsort((dam, sire, generation)).astype(np.int64)


def _inbreeding_codes(ped: Pedigree):
    """(F, d) by code, computed once per Pedigree and cached on the frozen object."""
    cached = ped.__dict__.get("_F_d")
    if cached is None:
        order = _processing_order(ped.sire, ped.dam, ped.generation)
        cached = K.inbreeding_lap(ped.sire, ped.dam, ped.generation, order)
        for a in cached:
            a.setflags(write=False)
        object.__setattr__(ped, "_F_d", cached)  # derived data only; ped stays immutable
    return cached


def inbreeding(ped) -> pd.Series:
    """Inbreeding coefficients by Meuwissen & Luo (1992).

    ``F_i = a_ii - 1`` with ``a_ii = sum_j L_ij**2 d_j`` over the ancestors j of i,
    where ``L = T`` of ``A = T D T'`` is traced backwards through the pedigree and
    ``d_j = 1/2 - (F_s + F_d)/4`` (``F = -1`` for an unknown parent). Ancestors are
    bucketed by generation (Sargolzaei & Iwaisaki 2005), so the cost is
    proportional to the number of ancestors of each inbred-candidate animal.

    Parameters
    ----------
    ped : Pedigree or DataFrame (id, sire, dam)

    Returns
    -------
    Series, shape (n,), named ``"F"``, indexed by id in input order.

    References
    ----------
    Meuwissen THE, Luo Z (1992) Computing inbreeding coefficients in large
    populations. Genet Sel Evol 24:305-313.
    """
    ped = _as_pedigree(ped)
    F, _ = _inbreeding_codes(ped)
    order = ped.input_order
    return pd.Series(F[order], index=pd.Index(ped.ids[order], name="id"), name="F")


def pedigree_inverse(ped) -> Relationship:
    """A⁻¹ by Henderson's (1976) rules with Quaas' (1976) inbreeding.

    ``A⁻¹ = (I - P)' D⁻¹ (I - P) = sum_i (1/d_i) c_i c_i'`` where row i of P holds
    1/2 at each known parent and ``c_i`` has 1 at i and -1/2 at each known parent.
    So each animal adds ``1/d_i`` to its diagonal, ``-1/(2 d_i)`` between itself and
    each parent and ``1/(4 d_i)`` between (and on) its parents.

    Parameters
    ----------
    ped : Pedigree or DataFrame (id, sire, dam)

    Returns
    -------
    Relationship
        ``kind="Ainv"``, ``inverse=True``, ``matrix`` a ``scipy.sparse.csr_matrix``
        of shape (n, n) in input order, and ``info`` with ``"logdet"`` = log|A| =
        ``sum_i log d_i`` (needed by REML), ``"inbreeding"`` (Series) and ``"method"``.

    References
    ----------
    Henderson CR (1976) A simple method for computing the inverse of a numerator
    relationship matrix used in prediction of breeding values. Biometrics 32:69-83.
    Quaas RL (1976) Computing the diagonal elements and inverse of a large
    numerator relationship matrix. Biometrics 32:949-953.
    """
    ped = _as_pedigree(ped)
    F, d = _inbreeding_codes(ped)
    near = _warn_fully_inbred(ped, F, d)
    n = len(ped)
    position = np.empty(n, np.int64)
    position[ped.input_order] = np.arange(n)  # code -> row in input order
    rows, cols, vals = K.ainv_triplets(ped.sire, ped.dam, d, position)
    # The COO -> CSR conversion sums the duplicated (parent, parent) contributions.
    mat = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
    mat.sum_duplicates()
    order = ped.input_order
    ids = ped.ids[order]
    return Relationship(
        ids,
        mat,
        inverse=True,
        kind="Ainv",
        info={
            "method": "Henderson (1976) rules with Quaas (1976) inbreeding",
            "logdet": float(np.sum(np.log(d))),
            "inbreeding": pd.Series(F[order], index=pd.Index(ids, name="id"), name="F"),
            "source": ped.source,
            # parents by position and Mendelian-sampling variances: u ~ N(0, A) by the
            # recursion, for sampled PEV (henderson.solvers.pev_sampling)
            "parents": _parents_by_position(ped, d, position),
            "fully_inbred": near,
            "max_inverse_diagonal_term": float(1.0 / d.min()) if n else 0.0,
        },
    )


def _parents_by_position(ped: Pedigree, d: np.ndarray, position: np.ndarray) -> dict:
    """Sire and dam positions (−1 unknown), d and a parents-first order, all in input order."""
    sire = np.where(ped.sire >= 0, position[np.maximum(ped.sire, 0)], -1)
    dam = np.where(ped.dam >= 0, position[np.maximum(ped.dam, 0)], -1)
    n = len(ped)
    out = {"sire": np.empty(n, np.int64), "dam": np.empty(n, np.int64), "d": np.empty(n)}
    out["sire"][position], out["dam"][position], out["d"][position] = sire, dam, d
    # codes are parents-first (see Pedigree), so code order mapped to positions is too
    out["order"] = position.astype(np.int64)
    return out


def check_dense_memory(n: int, what: str, copies: float = 2.0) -> None:
    """Refuse, before allocating, a dense n x n float64 matrix that memory cannot hold.

    ``copies`` counts the working copies the computation makes (the tabular A and its
    reordering: 2). The message gives the size needed and the sparse alternative.
    """
    need = copies * 8.0 * n * n
    have = available_memory()
    if need <= have:
        return
    gib = 2.0**30
    raise DataError(
        f"a dense {what} for {n:,} animals needs about {need / gib:.1f} GiB ({copies:g} x {n:,}² x 8 bytes), "
        f"but only {have / gib:.1f} GiB of memory are available. Use the sparse inverse instead: "
        "pedigree_inverse(ped) (henderson ainv; pblup and fit --pedigree use it), which holds about "
        f"{7 * n * 12 / 2**20:.0f} MiB for this pedigree, or ask for the relationships of the animals "
        "you need only (pedigree_relationship(ped, ids=...))"
    )


#: inbreeding at or above this is "fully inbred" (the animal is, to 6 digits, a copy of
#: its parent): A is then numerically singular and 1/d_i, its A⁻¹ term, exceeds ~1e6
FULLY_INBRED = 1.0 - 1e-6


def _warn_fully_inbred(ped: Pedigree, F: np.ndarray, d: np.ndarray) -> tuple:
    """Ids with F >= :data:`FULLY_INBRED`, named in a DataWarning (never silent)."""
    near = np.flatnonzero(F >= FULLY_INBRED)
    if not len(near):
        return ()
    ids = ped.ids[near]
    warnings.warn(
        DataWarning(
            f"pedigree {ped.source}: {len(near)} animal(s) have inbreeding F >= 1 - 1e-6 (e.g. after "
            f"about 20 generations of selfing or full-sib mating): {format_ids(ids)}. Each is "
            f"genetically a copy of its parents, so A is numerically singular and A⁻¹ holds terms up "
            f"to 1/d = {1.0 / d[near].min():.3g}; an animal model cannot separate these animals from "
            "their ancestors. Keep one representative per inbred line, or use genomic relationships"
        ),
        stacklevel=3,
    )
    return tuple(str(i) for i in ids)


def _symmetrize_inplace(m: np.ndarray, block: int = 1024) -> np.ndarray:
    """m := (m + m')/2 in place, one block row against its block column at a time."""
    k = m.shape[0]
    for a in range(0, k, block):
        b = min(a + block, k)
        d = m[a:b, a:b]
        d[...] = 0.5 * (d + d.T)
        if b < k:
            avg = 0.5 * (m[a:b, b:] + m[b:, a:b].T)
            m[a:b, b:] = avg
            m[b:, a:b] = avg.T
    return m


def _ancestor_subpedigree(ped: Pedigree, ids: np.ndarray):
    """The wanted animals and their ancestors only (what their relationships and F depend on).

    Returns (sire, dam, d, cols, F): parent codes in the sub-pedigree (−1 unknown,
    parents first), Mendelian-sampling variances d, the positions ``cols`` of ``ids`` in
    it, and every sub-pedigree animal's inbreeding F.
    """
    codes = ped.codes_of(ids)
    keep = np.zeros(len(ped), np.bool_)
    keep[codes] = True
    mask = K.ancestors_mask(ped.sire, ped.dam, keep)
    sub = np.flatnonzero(mask)  # increasing codes: still parents-first
    newcode = np.full(len(ped), -1, np.int64)
    newcode[sub] = np.arange(len(sub))
    s = np.where(ped.sire[sub] >= 0, newcode[ped.sire[sub]], -1)
    dm = np.where(ped.dam[sub] >= 0, newcode[ped.dam[sub]], -1)
    gen = ped.generation[sub]
    F, d = K.inbreeding_lap(s, dm, gen, _processing_order(s, dm, gen))
    return s, dm, d, newcode[codes], F


def colleau_product(ped, ids, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A₂₂ X without forming A₂₂ (Colleau 2002), and the ids' inbreeding.

    Parameters
    ----------
    ped : Pedigree or DataFrame (id, sire, dam)
    ids : array of str, shape (k,)
        Animals of A₂₂ (all in the pedigree), in X's row order.
    X : ndarray, shape (k, r)

    Returns
    -------
    (AX, F) : ndarray (k, r) and ndarray (k,)
        A[ids, ids] @ X by two sparse triangular passes over the ids' ancestors per
        block of columns (O(n_anc r) time, n_anc × block memory); F of the ids, so
        diag(A₂₂) = 1 + F.
    """
    ped = _as_pedigree(ped)
    ids = str_ids(ids)
    s, dm, d, cols, F = _ancestor_subpedigree(ped, ids)
    X = np.asarray(X, dtype=np.float64).reshape(len(ids), -1)
    r = X.shape[1]
    out = np.empty((len(ids), r))
    block = max(1, min(r, _COLLEAU_BLOCK_BYTES // (8 * max(len(s), 1))))
    for b in range(0, r, block):
        Y = np.zeros((len(s), min(block, r - b)))
        Y[cols] = X[:, b : b + block]
        out[:, b : b + block] = K.colleau_block(s, dm, d, Y)[cols]
    return out, F[cols]


def pedigree_relationship(ped, ids=None, *, missing: str = "error") -> Relationship:
    """The numerator relationship matrix A, for all animals or for a subset.

    Without ``ids``, the tabular method: ``a_ij = (a_js + a_jd)/2`` for j older than
    i and ``a_ii = 1 + a_sd/2`` (O(n²) memory: a few tens of thousands of animals).

    With ``ids`` (e.g. the genotyped animals, for A22 in single-step), Colleau's
    (2002) indirect method on the ancestors of ``ids`` only:
    ``A X = (I - P)⁻¹ D (I - P)⁻ᵀ X`` with X the indicator columns of ``ids``,
    computed by two sparse triangular solves per block of columns. Cost
    O(n_anc k) time and O(k²) memory for k ids and n_anc ancestors.

    Parameters
    ----------
    ped : Pedigree or DataFrame (id, sire, dam)
    ids : iterable of str, shape (k,), optional
        Animals wanted, in the order wanted.
    missing : {"error", "drop"}
        Ids not in the pedigree: an :class:`AlignmentError` naming them, or dropped
        (order of the others kept) with a :class:`DataWarning` giving the count and
        the ids; ``info["n_dropped_not_in_pedigree"]`` counts them.

    Returns
    -------
    Relationship
        ``kind="A"``, dense float64 ``matrix`` of shape (n, n) in input order, or
        (k, k) in the order of ``ids``.

    References
    ----------
    Henderson CR (1976) Biometrics 32:69-83. Colleau JJ (2002) An indirect approach
    to the extensive calculation of relationship coefficients. Genet Sel Evol
    34:409-421.
    """
    ped = _as_pedigree(ped)
    if ids is None:
        check_dense_memory(len(ped), "A (tabular)")
        A = K.tabular_a(ped.sire, ped.dam)
        order = ped.input_order
        A = A[np.ix_(order, order)]
        return Relationship(ped.ids[order], A, kind="A", info={"method": "tabular", "source": ped.source})
    check_missing_mode(missing)
    ids = str_ids(ids)
    known = ped._index.get_indexer(ids) >= 0
    if not known.all():
        absent = ids[~known]
        unknown_ids(
            f"pedigree_relationship: {len(absent)} of {len(ids)} id(s) are not in the pedigree "
            f"({ped.source}): {format_ids(absent)}",
            missing,
            dropped=f"dropped them, {int(known.sum())} left",
            left=int(known.sum()),
            stacklevel=2,
        )
        ids = ids[known]
    s, dm, d, cols, _ = _ancestor_subpedigree(ped, ids)
    sub = s  # one entry per ancestor
    k = len(cols)
    check_dense_memory(k, "A for the requested ids")
    out = np.empty((k, k))
    block = max(1, min(k, _COLLEAU_BLOCK_BYTES // (8 * max(len(sub), 1))))
    for b in range(0, k, block):
        c = cols[b : b + block]
        X = np.zeros((len(sub), len(c)))
        X[c, np.arange(len(c))] = 1.0
        out[:, b : b + block] = K.colleau_block(s, dm, d, X)[cols]
    # Round-off differs between the two triangles; make A exactly symmetric, in place
    # by blocks (0.5 * (out + out.T) holds two more k × k temporaries: 6.4 GB at k = 20,000)
    _symmetrize_inplace(out)
    info = {"method": "Colleau (2002)", "source": ped.source, "n_dropped_not_in_pedigree": int((~known).sum())}
    return Relationship(ids, out, kind="A", info=info)

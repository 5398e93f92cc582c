"""Numba kernels for pedigrees: sorting, inbreeding, A⁻¹ triplets, tabular A, Colleau.

Conventions shared by every kernel
----------------------------------
* Animals are integer codes ``0 .. n-1`` and parents always have smaller codes than
  their offspring (the :class:`~henderson.data.pedigree.Pedigree` guarantees it),
  except in :func:`topological_generations`, which is what establishes that order.
* An unknown parent is ``-1``.
* ``generation`` is the longest ancestral path (LAP): 0 for an animal with both
  parents unknown, else ``1 + max(generation of known parents)``. Codes sorted by
  generation are therefore contiguous per generation, which the inbreeding kernel
  uses to bucket ancestors without a heap.

Only plain loops over arrays live here; checks and messages are in the callers.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def topological_generations(sire, dam):
    """Generation (LAP) of each animal by Kahn's algorithm, in O(n).

    Parameters
    ----------
    sire, dam : int64 arrays, shape (n,)
        Parent positions in any order, ``-1`` unknown.

    Returns
    -------
    generation : int64 array, shape (n,)
        ``-1`` for animals on or below a pedigree loop (never released).
    """
    n = sire.shape[0]
    # Children lists in CSR form: each animal points to its offspring.
    nchild = np.zeros(n + 1, np.int64)
    indeg = np.zeros(n, np.int64)
    for i in range(n):
        if sire[i] >= 0:
            nchild[sire[i] + 1] += 1
            indeg[i] += 1
        if dam[i] >= 0:
            nchild[dam[i] + 1] += 1
            indeg[i] += 1
    for i in range(n):
        nchild[i + 1] += nchild[i]
    fill = nchild[:-1].copy()
    child = np.empty(nchild[n], np.int64)
    for i in range(n):
        if sire[i] >= 0:
            child[fill[sire[i]]] = i
            fill[sire[i]] += 1
        if dam[i] >= 0:
            child[fill[dam[i]]] = i
            fill[dam[i]] += 1
    gen = np.full(n, -1, np.int64)
    queue = np.empty(n, np.int64)
    head = 0
    tail = 0
    for i in range(n):
        if indeg[i] == 0:
            gen[i] = 0
            queue[tail] = i
            tail += 1
    while head < tail:
        p = queue[head]
        head += 1
        for k in range(nchild[p], nchild[p + 1]):
            c = child[k]
            if gen[p] + 1 > gen[c]:
                gen[c] = gen[p] + 1
            indeg[c] -= 1
            if indeg[c] == 0:
                queue[tail] = c
                tail += 1
    # Animals never released keep in-degree > 0; mark them -1 for the caller.
    for i in range(n):
        if indeg[i] > 0:
            gen[i] = -1
    return gen


@numba.njit(cache=True)
def _trace_inbreeding(i, par, start, Ld, anc, count):
    """F of animal i by tracing its ancestors (one Meuwissen & Luo step).

    ``par[j] = (sire, dam, generation of sire, generation of dam)`` and
    ``Ld[j] = (L_j, d_j)`` are packed per animal so that visiting an ancestor touches
    two cache lines instead of six: the kernel is bound by random memory access.
    ``Ld[:, 0]``, ``anc`` and ``count`` are one thread's work arrays, left zeroed.
    """
    f = -1.0
    Ld[i, 0] = 1.0
    t = max(par[i, 2], par[i, 3]) + 1
    anc[start[t]] = i
    count[t] = 1
    while t >= 0:
        # Bucket t may only grow while a bucket > t is processed (parents are in
        # strictly earlier generations), so its length is final here.
        for k in range(start[t], start[t] + count[t]):
            j = anc[k]
            lj = Ld[j, 0]
            ps = par[j, 0]
            pd = par[j, 1]
            if ps >= 0:
                if Ld[ps, 0] == 0.0:
                    g = par[j, 2]
                    anc[start[g] + count[g]] = ps
                    count[g] += 1
                Ld[ps, 0] += 0.5 * lj
            if pd >= 0:
                if Ld[pd, 0] == 0.0:
                    g = par[j, 3]
                    anc[start[g] + count[g]] = pd
                    count[g] += 1
                Ld[pd, 0] += 0.5 * lj
            f += lj * lj * Ld[j, 1]
            Ld[j, 0] = 0.0
        count[t] = 0
        t -= 1
    return f


@numba.njit(cache=True)
def inbreeding_lap(sire, dam, generation, order):
    """Inbreeding coefficients by Meuwissen & Luo (1992), ancestors bucketed by LAP.

    For animal i the row of T (A = T D T') is traced back through its ancestors:
    ``L_i = 1``, and each ancestor j passes ``L_j / 2`` to each known parent. Then
    ``F_i = sum_j L_j**2 d_j - 1`` with ``d_j = 1/2 - (F_s + F_d)/4`` (``F = -1``
    for an unknown parent). Ancestors must be visited after all of their descendants
    in i's pedigree; processing them by decreasing generation guarantees it
    (Sargolzaei & Iwaisaki 2005), and since codes are sorted by generation each
    bucket is a fixed slice of one work array, so no heap or sort is needed.

    Serial on purpose: a ``parallel=True`` version (threads splitting each
    generation) cost ~0.1 s of thread start-up per call and gained nothing
    measurable on the 2-core benchmark machine, where the loop is memory-bound.

    Parameters
    ----------
    sire, dam : int64 arrays, shape (n,)
        Parent codes (< own code), ``-1`` unknown.
    generation : int64 array, shape (n,)
        LAP generation, non-decreasing in code.
    order : int64 array, shape (n,)
        Processing order: any permutation with non-decreasing generation (animals of
        one generation do not depend on each other). Sorting each generation by
        (sire, dam) makes full sibs consecutive (they share F) and keeps a sire's
        ancestors in cache across its progeny.

    Returns
    -------
    F : float64 array, shape (n,)
    d : float64 array, shape (n,)
        Mendelian-sampling variances (diagonal of D).
    """
    n = sire.shape[0]
    F = np.zeros(n)
    d = np.zeros(n)
    ngen = 0
    if n > 0:
        ngen = generation[n - 1] + 1
    start = np.zeros(ngen + 1, np.int64)
    par = np.empty((n, 4), np.int32)
    for i in range(n):
        start[generation[i] + 1] += 1
        par[i, 0] = sire[i]
        par[i, 1] = dam[i]
        par[i, 2] = generation[sire[i]] if sire[i] >= 0 else -1
        par[i, 3] = generation[dam[i]] if dam[i] >= 0 else -1
    for g in range(ngen):
        start[g + 1] += start[g]
    Ld = np.zeros((n, 2))
    anc = np.empty(n, np.int32)
    count = np.zeros(ngen, np.int64)
    prev = -1
    for k in range(n):
        i = order[k]
        s = sire[i]
        dm = dam[i]
        fs = F[s] if s >= 0 else -1.0
        fd = F[dm] if dm >= 0 else -1.0
        d[i] = 0.5 - 0.25 * (fs + fd)
        Ld[i, 1] = d[i]
        if s < 0 or dm < 0:
            continue  # F = 0: an unknown parent shares no ancestor with the other
        if prev >= 0 and sire[prev] == s and dam[prev] == dm:
            F[i] = F[prev]  # full sib of the previous animal
        else:
            F[i] = _trace_inbreeding(i, par, start, Ld, anc, count)
        prev = i
    return F, d


@numba.njit(cache=True)
def ainv_triplets(sire, dam, d, position):
    """COO triplets of A⁻¹ by Henderson's (1976) rules with Quaas' (1976) inbreeding.

    For animal i with b = 1/d_i and known parents p, q in {s, d}:
    ``A⁻¹[i,i] += b``, ``A⁻¹[i,p] = A⁻¹[p,i] -= b/2``, ``A⁻¹[p,q] += b/4``.
    Duplicated (row, col) pairs are summed by the sparse constructor.

    Parameters
    ----------
    sire, dam : int64 arrays, shape (n,)
    d : float64 array, shape (n,)
        Mendelian-sampling variances.
    position : int64 array, shape (n,)
        Row/column of each code in the output matrix (lets the caller choose the
        id order without permuting a sparse matrix afterwards).

    Returns
    -------
    rows, cols : int32 arrays, shape (m,)
    vals : float64 array, shape (m,)
        ``m <= 9 n``.
    """
    n = sire.shape[0]
    rows = np.empty(9 * n, np.int32)
    cols = np.empty(9 * n, np.int32)
    vals = np.empty(9 * n)
    par = np.empty(3, np.int64)
    w = np.empty(3)
    m = 0
    for i in range(n):
        b = 1.0 / d[i]
        # Row i of (I - P)' scaled: coefficient 1 for i, -1/2 for each known parent;
        # A⁻¹ = sum_i b_i c_i c_i', so all pairs of c_i's entries are emitted.
        k = 0
        par[k] = position[i]
        w[k] = 1.0
        k += 1
        if sire[i] >= 0:
            par[k] = position[sire[i]]
            w[k] = -0.5
            k += 1
        if dam[i] >= 0:
            par[k] = position[dam[i]]
            w[k] = -0.5
            k += 1
        for a in range(k):
            for c in range(k):
                rows[m] = par[a]
                cols[m] = par[c]
                vals[m] = b * w[a] * w[c]
                m += 1
    return rows[:m], cols[:m], vals[:m]


@numba.njit(cache=True)
def tabular_a(sire, dam):
    """Dense A by the tabular method (Emik & Terrill 1949; Henderson 1976).

    ``a_ij = (a_js + a_jd) / 2`` for j < i and ``a_ii = 1 + a_sd / 2``, with terms
    of unknown parents dropped. O(n²) time and memory.

    Returns
    -------
    A : float64 array, shape (n, n), in code order.
    """
    n = sire.shape[0]
    A = np.zeros((n, n))
    for i in range(n):
        s = sire[i]
        dm = dam[i]
        for j in range(i):
            v = 0.0
            if s >= 0:
                v += 0.5 * A[j, s]
            if dm >= 0:
                v += 0.5 * A[j, dm]
            A[i, j] = v
            A[j, i] = v
        diag = 1.0
        if s >= 0 and dm >= 0:
            diag += 0.5 * A[s, dm]
        A[i, i] = diag
    return A


@numba.njit(cache=True)
def colleau_block(sire, dam, d, X):
    """A @ X by Colleau's (2002) indirect method, A = (I - P)⁻¹ D (I - P)⁻ᵀ.

    Two sparse triangular solves with T⁻¹ = I - P (P has 1/2 at each known parent):
    first ``(I - P)' W = X`` backwards (offspring pass half of their value to their
    parents), then ``(I - P) Z = D W`` forwards (each animal gets half of its parents'
    values). O(n k) time for k columns, no matrix is ever formed.

    Parameters
    ----------
    sire, dam : int64 arrays, shape (n,)
    d : float64 array, shape (n,)
    X : float64 array, shape (n, k), C-contiguous

    Returns
    -------
    Z : float64 array, shape (n, k), ``A @ X``.
    """
    n, k = X.shape
    W = X.copy()
    for i in range(n - 1, -1, -1):
        s = sire[i]
        dm = dam[i]
        if s >= 0:
            for c in range(k):
                W[s, c] += 0.5 * W[i, c]
        if dm >= 0:
            for c in range(k):
                W[dm, c] += 0.5 * W[i, c]
    for i in range(n):
        s = sire[i]
        dm = dam[i]
        for c in range(k):
            v = d[i] * W[i, c]
            if s >= 0:
                v += 0.5 * W[s, c]
            if dm >= 0:
                v += 0.5 * W[dm, c]
            W[i, c] = v  # parents already hold Z (smaller codes): in place is safe
    return W


@numba.njit(cache=True)
def ancestors_mask(sire, dam, keep):
    """Mark ``keep`` animals and all their ancestors (one backward pass over codes)."""
    n = sire.shape[0]
    mask = keep.copy()
    for i in range(n - 1, -1, -1):
        if mask[i]:
            if sire[i] >= 0:
                mask[sire[i]] = True
            if dam[i] >= 0:
                mask[dam[i]] = True
    return mask

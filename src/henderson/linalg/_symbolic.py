"""Symbolic analysis of a sparse Cholesky factorisation (numba kernels).

Given the pattern of a symmetric matrix in its fill-reducing order, these kernels
compute what the numeric phase needs and what does not depend on the values:

- the elimination tree (Liu 1986: parent(j) = min{i > j : Lᵢⱼ ≠ 0}), by the
  ancestor path-compression algorithm (Davis 2006, *Direct Methods for Sparse Linear
  Systems*, §4.1, ``cs_etree``);
- a postorder of that tree (``cs_post``), which makes supernodes contiguous;
- the column counts of L, by walking each row subtree once (O(|L|));
- supernodes: runs of columns j, j+1, … with parent(j) = j + 1 and
  |L₍:,ⱼ₎| = |L₍:,ⱼ₊₁₎| + 1, i.e. identical structure below the diagonal block
  (Ashcraft & Grimes 1989); a run never crosses ``boundary`` (the first fixed-effect
  equation), so the leading block's factor and selected inverse are whole supernodes;
- each supernode's sorted row list: its own columns, then the union of A's entries
  below them and of its children's row lists (the row-structure theorem).
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True)
def etree(n, Up, Ui):
    """Elimination tree from the upper triangle in CSC (column k holds rows i ≤ k)."""
    parent = np.full(n, -1, np.int64)
    anc = np.full(n, -1, np.int64)
    for k in range(n):
        for p in range(Up[k], Up[k + 1]):
            i = Ui[p]
            while i != -1 and i < k:
                nxt = anc[i]
                anc[i] = k
                if nxt == -1:
                    parent[i] = k
                i = nxt
    return parent


@nb.njit(cache=True)
def postorder(parent):
    """post[k] = the node visited k-th in a depth-first postorder of the forest."""
    n = len(parent)
    head = np.full(n, -1, np.int64)
    nxt = np.full(n, -1, np.int64)
    for j in range(n - 1, -1, -1):
        if parent[j] != -1:
            nxt[j] = head[parent[j]]
            head[parent[j]] = j
    post = np.empty(n, np.int64)
    stack = np.empty(n, np.int64)
    k = 0
    for root in range(n):
        if parent[root] != -1:
            continue
        top = 0
        stack[0] = root
        while top >= 0:
            p = stack[top]
            c = head[p]
            if c == -1:
                top -= 1
                post[k] = p
                k += 1
            else:
                head[p] = nxt[c]
                top += 1
                stack[top] = c
    return post


@nb.njit(cache=True)
def column_counts(n, Up, Ui, parent, cap):
    """|L₍:,ⱼ₎| (diagonal included): row k of L is the subtree of the etree that A's
    column k reaches, so each (k, j) entry is counted once. O(|L|); stops and returns
    None once the total passes ``cap`` (a candidate ordering already beaten)."""
    cc = np.zeros(n, np.int64)
    mark = np.full(n, -1, np.int64)
    total = 0
    for k in range(n):
        mark[k] = k
        cc[k] += 1
        total += 1
        for p in range(Up[k], Up[k + 1]):
            i = Ui[p]
            while i < k and mark[i] != k:
                cc[i] += 1
                total += 1
                mark[i] = k
                i = parent[i]
        if total > cap:
            return None
    return cc


@nb.njit(cache=True)
def supernode_partition(parent, cc, boundary):
    """First column of each supernode (length ns + 1, ends with n), relaxed.

    Fundamental supernodes first (identical structure). Then, as CHOLMOD does
    (``nrelax``/``zrelax`` defaults), a supernode is merged into its parent when the
    parent's columns follow its own and the merged block stays small or nearly full:
    at most 4 columns; or ≤ 16 columns and < 80 % explicit zeros; or ≤ 48 and < 10 %;
    or < 5 % at any size. The zeros are stored and computed as zeros; what is gained
    is fewer, wider BLAS blocks (pedigree MMEs have ~99 % single-column fundamental
    supernodes). Nothing merges across ``boundary``.
    """
    n = len(parent)
    fund = np.empty(n + 1, np.int64)
    ns = 0
    if n:
        fund[0] = 0
        ns = 1
    for j in range(1, n):
        if not (parent[j - 1] == j and cc[j - 1] == cc[j] + 1 and j != boundary):
            fund[ns] = j
            ns += 1
    fund[ns] = n
    first = np.empty(ns + 1, np.int64)
    g = 0
    if ns:
        first[0] = 0
        g = 1
    start = 0  # first column of the current group
    true_nz = 0  # true nonzeros of the group's columns
    for s in range(ns):
        f, l = fund[s], fund[s + 1]
        for c in range(f, l):
            true_nz += cc[c]
        if s + 1 == ns:
            break
        # try to extend the group [start, l) with the next fundamental supernode
        nf, nl = fund[s + 1], fund[s + 2]
        ok = parent[l - 1] == nf and nf != boundary
        if ok:
            W = nl - start
            nr = W + cc[nl - 1] - 1  # rows of the merged block
            stored = W * nr - W * (W - 1) // 2
            tnz = true_nz
            for c in range(nf, nl):
                tnz += cc[c]
            z = 1.0 - tnz / stored
            ok = W <= 4 or (W <= 16 and z < 0.8) or (W <= 48 and z < 0.1) or z < 0.05
        if not ok:
            first[g] = nf
            g += 1
            start = nf
            true_nz = 0
    first[g] = n
    return first[: g + 1].copy()


@nb.njit(cache=True)
def supernode_rows(n, Lp, Li, parent, first, cc):
    """Row lists of the supernodes (CSR-like ``rptr``, ``rows``), sorted ascending.

    ``Lp, Li``: the lower triangle of A (CSC, rows ≥ column). Returns (rptr, rows, ok);
    ``ok`` is False if a list's length differs from the column count (a bug guard).
    """
    ns = len(first) - 1
    snode = np.empty(n, np.int64)
    for s in range(ns):
        for j in range(first[s], first[s + 1]):
            snode[j] = s
    rptr = np.zeros(ns + 1, np.int64)
    for s in range(ns):  # its columns, then the last column's rows below the block
        rptr[s + 1] = rptr[s] + (first[s + 1] - first[s]) + cc[first[s + 1] - 1] - 1
    rows = np.empty(rptr[ns], np.int64)
    # children in the supernodal tree, as linked lists
    head = np.full(ns, -1, np.int64)
    nxt = np.full(ns, -1, np.int64)
    for s in range(ns - 1, -1, -1):
        last = first[s + 1] - 1
        if parent[last] != -1:
            ps = snode[parent[last]]
            nxt[s] = head[ps]
            head[ps] = s
    mark = np.full(n, -1, np.int64)
    ok = True
    for s in range(ns):
        f, l = first[s], first[s + 1]
        base = rptr[s]
        cnt = 0
        for c in range(f, l):
            rows[base + cnt] = c
            mark[c] = s
            cnt += 1
        for c in range(f, l):
            for p in range(Lp[c], Lp[c + 1]):
                i = Li[p]
                if i >= l and mark[i] != s:
                    mark[i] = s
                    if base + cnt < rptr[s + 1]:
                        rows[base + cnt] = i
                    cnt += 1
        ch = head[s]
        while ch != -1:
            wc = first[ch + 1] - first[ch]
            for q in range(rptr[ch] + wc, rptr[ch + 1]):
                i = rows[q]
                if i >= l and mark[i] != s:
                    mark[i] = s
                    if base + cnt < rptr[s + 1]:
                        rows[base + cnt] = i
                    cnt += 1
            ch = nxt[ch]
        if cnt != rptr[s + 1] - base:
            ok = False
            break
        rows[base + (l - f) : base + cnt] = np.sort(rows[base + (l - f) : base + cnt])
    return rptr, rows, snode, ok


@nb.njit(cache=True)
def storage_positions(I, J, first, snode, rptr, rows, off):
    """Index in the supernodal value array of each lower entry (I[t] ≥ J[t]); −1 if absent."""
    out = np.empty(len(I), np.int64)
    for t in range(len(I)):
        i, j = I[t], J[t]
        s = snode[j]
        a, b = rptr[s], rptr[s + 1]
        nr = b - a
        lo, hi = a, b
        while lo < hi:  # binary search for i in the sorted row list
            mid = (lo + hi) // 2
            if rows[mid] < i:
                lo = mid + 1
            else:
                hi = mid
        if lo < b and rows[lo] == i:
            out[t] = off[s] + (j - first[s]) * nr + (lo - a)
        else:
            out[t] = -1
    return out

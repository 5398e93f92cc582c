"""Numeric supernodal Cholesky, solves and selected inverse (numba kernels).

Storage: supernode s owns columns first[s] … first[s+1]−1 and the sorted rows
``rows[rptr[s]:rptr[s+1]]`` (its own columns first). Its values are one dense
column-major block of nr × w numbers at ``x[off[s]:]`` (nr rows, leading dimension
nr), so the diagonal block L_JJ and the block below it, L_RJ, are BLAS operands.
The selected inverse Z uses the same layout and the same memory as L.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ._lapack import gemm, gemm_tn, potrf_lower, potri_lower, syrk_lower, trsm


@nb.njit(cache=True)
def _map_rows(relmap, rows, a, b):
    for q in range(a, b):
        relmap[rows[q]] = q - a


#: columns of the update (factorisation) and of Z_RR (selected inverse) formed at a time:
#: the workspace is PANEL × m instead of m × m (m = rows below a supernode; ~2,400 at
#: 100,000 animals, where m² doubles is 45 MiB), and a dgemm with k = PANEL runs near
#: the BLAS peak
PANEL = 256


def panel_workspace(m: np.ndarray) -> int:
    """Length of the panel workspace for supernodes with m rows below them."""
    m = np.asarray(m, dtype=np.int64)
    return int(max((np.minimum(m, PANEL) * m).max(initial=0), 1))


#: columns of a supernode's diagonal block factorised per dpotrf call. OpenBLAS's threaded
#: dpotrf (0.3.30 in scipy's wheel, SkylakeX) writes past its packing buffer inside
#: dsyrk_thread_LN when the block is large: with 2 threads a 16,000-column dpotrf segfaults
#: in dgemm_otcopy, 14,000 does not; one thread is unaffected (benchmarks/results/
#: segv_potrf.md). Larger diagonal blocks are therefore factorised by ``potrf_blocked`` in
#: blocks of this many columns, with the trailing update done by dsyrk/dgemm panels whose
#: dsyrk never exceeds ``UPDATE_PANEL`` rows.
POTRF_BLOCK = 4096
#: columns of the trailing update formed per dsyrk (diagonal block) + dgemm (rows below)
UPDATE_PANEL = 1024


@nb.njit(cache=True)
def potrf_blocked(x, o, w, ld, nb):
    """Cholesky of the w × w lower block at x[o:] (leading dimension ld), nb columns at a
    time; LAPACK info (0 = ok, else the 1-based failing column).

    Right-looking blocked Cholesky (as LAPACK's dpotrf, with our own block size): for each
    block of nb columns, L11 = chol(A11) (dpotrf on an nb × nb block), L21 = A21 L11⁻ᵀ
    (dtrsm), A22 −= L21 L21' (lower triangle, ``UPDATE_PANEL`` columns at a time: dsyrk on
    the panel's diagonal block, dgemm below it). No BLAS/LAPACK call sees a symmetric
    block of more than max(nb, UPDATE_PANEL) rows. Only the w × w block is touched.
    """
    if w <= nb:
        return potrf_lower(x, o, w, ld)
    for j0 in range(0, w, nb):
        j1 = min(w, j0 + nb)
        b = j1 - j0
        d = o + j0 + j0 * ld  # A11
        info = potrf_lower(x, d, b, ld)
        if info != 0:
            return j0 + info
        if j1 == w:
            break
        trsm("R", "T", w - j1, b, x, d, ld, x, d + b, ld)  # L21 := A21 L11⁻ᵀ
        for a0 in range(j1, w, UPDATE_PANEL):  # A22 −= L21 L21'
            a1 = min(w, a0 + UPDATE_PANEL)
            syrk_lower(a1 - a0, b, -1.0, x, o + a0 + j0 * ld, ld, 1.0, x[o + a0 + a0 * ld :], ld)
            if a1 < w:
                gemm(
                    "N", "T", w - a1, a1 - a0, b, -1.0, x, o + a1 + j0 * ld, ld, x, o + a0 + j0 * ld, ld,
                    1.0, x, o + a1 + a0 * ld, ld,
                )  # fmt: skip
    return 0


@nb.njit(cache=True)
def factorize(x, first, rptr, rows, off, snode, work, relmap, nb):
    """Right-looking supernodal Cholesky in place; returns −1, or the failing column.

    For each supernode J: L_JJ = chol(A_JJ) (LAPACK dpotrf; ``potrf_blocked`` in blocks of
    ``nb`` columns, ``POTRF_BLOCK`` in use, for wide supernodes), L_RJ = A_RJ L_JJ⁻ᵀ
    (dtrsm), then the update L_RJ L_RJ' is subtracted from the columns of the
    ancestor supernodes it touches (scatter through the target's row map). The update
    is formed PANEL columns at a time (dsyrk for the panel's diagonal block, dgemm for
    the rows below it), into a workspace of PANEL × m numbers (``panel_workspace``).
    """
    ns = len(first) - 1
    for s in range(ns):
        f = first[s]
        w = first[s + 1] - f
        nr = rptr[s + 1] - rptr[s]
        o = off[s]
        m = nr - w
        info = potrf_blocked(x, o, w, nr, nb)
        if info != 0:
            return f + info - 1
        if m == 0:
            continue
        trsm("R", "T", m, w, x, o, nr, x, o + w, nr)
        R0 = rptr[s] + w
        for a0 in range(0, m, PANEL):
            a1 = min(m, a0 + PANEL)
            bw, ld = a1 - a0, m - a0
            # work[(b − a0) + (aa − a0)·ld] = (L_RJ L_RJ')[b, aa] for aa in [a0, a1), b ≥ aa
            syrk_lower(bw, w, 1.0, x, o + w + a0, nr, 0.0, work, ld)
            if a1 < m:
                gemm("N", "T", m - a1, bw, w, 1.0, x, o + w + a1, nr, x, o + w + a0, nr, 0.0, work, bw, ld)
            a = a0
            while a < a1:
                t = snode[rows[R0 + a]]
                lt = first[t + 1]
                _map_rows(relmap, rows, rptr[t], rptr[t + 1])
                nrt = rptr[t + 1] - rptr[t]
                a2 = a
                while a2 < a1 and rows[R0 + a2] < lt:
                    a2 += 1
                for aa in range(a, a2):
                    base = off[t] + (rows[R0 + aa] - first[t]) * nrt
                    col = (aa - a0) * ld - a0
                    for b in range(aa, m):
                        x[base + relmap[rows[R0 + b]]] -= work[col + b]
                a = a2
    return -1


@nb.njit(cache=True)
def logdet(x, first, rptr, off, limit):
    """2 Σ log Lⱼⱼ over the columns j < limit (log|A| of the leading block)."""
    total = 0.0
    for s in range(len(first) - 1):
        f = first[s]
        if f >= limit:
            break
        nr = rptr[s + 1] - rptr[s]
        for c in range(min(first[s + 1], limit) - f):
            total += np.log(x[off[s] + c * nr + c])
    return 2.0 * total


@nb.njit(cache=True)
def solve_inplace(x, first, rptr, rows, off, B):
    """B := A⁻¹B for B of shape (n, k), C-ordered, in the factor's (permuted) order."""
    ns = len(first) - 1
    k = B.shape[1]
    for s in range(ns):  # L y = b
        f = first[s]
        nr = rptr[s + 1] - rptr[s]
        o = off[s]
        for c in range(first[s + 1] - f):
            col = f + c
            d = x[o + c * nr + c]
            for t in range(k):
                B[col, t] /= d
            for r in range(c + 1, nr):
                v = x[o + c * nr + r]
                row = rows[rptr[s] + r]
                for t in range(k):
                    B[row, t] -= v * B[col, t]
    for s in range(ns - 1, -1, -1):  # L' x = y
        f = first[s]
        nr = rptr[s + 1] - rptr[s]
        o = off[s]
        for c in range(first[s + 1] - f - 1, -1, -1):
            col = f + c
            for r in range(c + 1, nr):
                v = x[o + c * nr + r]
                row = rows[rptr[s] + r]
                for t in range(k):
                    B[col, t] -= v * B[row, t]
            d = x[o + c * nr + c]
            for t in range(k):
                B[col, t] /= d


@nb.njit(cache=True)
def selected_inverse(x, z, same, first, rptr, rows, off, snode, relmap, G, Y, ZR, limit):
    """Takahashi recurrences: Z = A⁻¹ on the pattern of L (same layout as ``x``).

    With Y = L_RJ L_JJ⁻¹ and Z_RR gathered from the supernodes already done,

        Z_RJ = −Z_RR Y,   Z_JJ = (L_JJ L_JJ')⁻¹ − Y' Z_RJ

    (Takahashi, Fagan & Chen 1973; Erisman & Tinney 1975), processed from the last
    supernode to the first. Every Z entry needed lies in the pattern of L, because
    the rows R of a column form a clique in it. With ``limit`` < n only the leading
    block A[:limit, :limit] is inverted (its factor is L's leading block): rows ≥ limit
    are left out and their Z entries set to 0. Only the lower triangle of each
    diagonal block is kept (its strict upper triangle is set to 0).

    Workspace: Z_RR is gathered PANEL columns at a time into ``G`` (PANEL × m numbers,
    ``panel_workspace``), and Z_RJ accumulated by two dgemm per panel (the panel's
    rows, and its transpose for the rows above it); Z_JJ is formed in place in Z's
    own diagonal block (dpotri there), so no w × w or m × m array is needed. ``z`` may
    be ``x`` itself (``same`` True; L is read at supernode J only before Z's J is
    written).
    """
    ns = len(first) - 1
    for s in range(ns - 1, -1, -1):
        f = first[s]
        if f >= limit:
            continue
        w = first[s + 1] - f
        nr = rptr[s + 1] - rptr[s]
        o = off[s]
        R0 = rptr[s] + w
        m = 0
        while m < nr - w and rows[R0 + m] < limit:
            m += 1
        for c in range(w):
            for b in range(m):
                Y[b + c * m] = x[o + c * nr + w + b]
        trsm("R", "N", m, w, x, o, nr, Y, 0, max(m, 1))
        for c in range(w):
            for b in range(m):
                ZR[b + c * m] = 0.0
        for a0 in range(0, m, PANEL):
            a1 = min(m, a0 + PANEL)
            bw, ld = a1 - a0, m - a0
            a = a0
            while a < a1:  # gather Z[b, aa] for aa in [a0, a1), b ≥ aa (lower triangle)
                t = snode[rows[R0 + a]]
                lt = first[t + 1]
                _map_rows(relmap, rows, rptr[t], rptr[t + 1])
                nrt = rptr[t + 1] - rptr[t]
                a2 = a
                while a2 < a1 and rows[R0 + a2] < lt:
                    a2 += 1
                for aa in range(a, a2):
                    base = off[t] + (rows[R0 + aa] - first[t]) * nrt
                    col = (aa - a0) * ld - a0
                    for b in range(aa, m):
                        G[col + b] = z[base + relmap[rows[R0 + b]]]
                a = a2
            for c in range(bw):  # the panel's diagonal block made symmetric
                for r in range(c + 1, bw):
                    G[c + r * ld] = G[r + c * ld]
            # Z_RJ[a0:m] −= Z[a0:m, a0:a1] Y[a0:a1];  Z_RJ[a0:a1] −= Z[a1:m, a0:a1]' Y[a1:m]
            gemm("N", "N", ld, w, bw, -1.0, G, 0, ld, Y, a0, max(m, 1), 1.0, ZR, a0, max(m, 1))
            if a1 < m:
                gemm("T", "N", bw, w, m - a1, -1.0, G, bw, ld, Y, a1, max(m, 1), 1.0, ZR, a0, max(m, 1))
        if not same:
            for c in range(w):
                for r in range(c, w):
                    z[o + c * nr + r] = x[o + c * nr + r]
        potri_lower(z, o, w, nr)
        for c in range(w):  # upper triangle: not referenced by dpotri, zero for dgemm's beta
            for r in range(c):
                z[o + c * nr + r] = 0.0
        if m:
            gemm_tn(w, w, m, -1.0, Y, m, ZR, m, 1.0, z, o, nr)
        for c in range(w):
            for r in range(c):
                z[o + c * nr + r] = 0.0
            for b in range(m):
                z[o + c * nr + w + b] = ZR[b + c * m]
            for b in range(m, nr - w):
                z[o + c * nr + w + b] = 0.0


@nb.njit(cache=True)
def gather(z, pos):
    out = np.empty(len(pos))
    for t in range(len(pos)):
        out[t] = z[pos[t]]
    return out


@nb.njit(cache=True)
def scatter_add(x, pos, values, scale):
    for t in range(len(pos)):
        x[pos[t]] += scale * values[t]

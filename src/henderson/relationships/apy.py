"""APY: the algorithm for proven and young (Misztal et al. 2014; Misztal 2016).

Split the k genotyped animals into c core (C) and k − c non-core (N) animals. APY
assumes the breeding values of non-core animals are conditionally independent given
the core:  g_N = P g_C + ε,  P = G_NC G_CC⁻¹,  Var(ε) = M diagonal with
mᵢ = gᵢᵢ − g_iC G_CC⁻¹ g_Ci. The implied covariance G_APY has an explicit sparse
inverse (Misztal 2016, Genetics 202:401, eq. 7):

    G_APY⁻¹ = [[G_CC⁻¹, 0], [0, 0]] + [[−P'], [I]] M⁻¹ [[−P, I]]

i.e. a dense c × c block G_CC⁻¹ + P'M⁻¹P, a dense c × (k − c) block −P'M⁻¹ and a
diagonal M⁻¹: c² + 2c(k − c) + (k − c) entries instead of k², and only one c × c
inversion (O(c³ + c²k) instead of O(k³)). log|G_APY| = log|G_CC| + Σ log mᵢ.

With every animal in the core, G_APY = G and the inverse is exactly G⁻¹.

The core size: Pocrnic et al. (2016, Genetics 203:573) showed that the number of
largest eigenvalues of G explaining ~98 % of its variance (trace) is a good core
size; :func:`apy_core_size` reports that number.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ..errors import DataError, NotPositiveDefiniteError, format_ids
from .container import Relationship, as_relationship


def apy_core_size(G, fraction: float = 0.98) -> int:
    """Number of largest eigenvalues of G that explain ``fraction`` of its variance.

    Parameters
    ----------
    G : Relationship or DataFrame, shape (k, k)
    fraction : float in (0, 1]
        Share of Σλᵢ = trace(G) to explain (Pocrnic et al. 2016 used 0.98).

    Returns
    -------
    int : the smallest r with Σᵢ₌₁ʳ λᵢ ≥ fraction · Σ λᵢ (λ in decreasing order,
    negative round-off eigenvalues counted as 0). O(k³) (``eigvalsh``).
    """
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"fraction must be in (0, 1], got {fraction}")
    G = as_relationship(G, kind="G")
    lam = np.clip(np.linalg.eigvalsh(G.dense())[::-1], 0.0, None)
    cum = np.cumsum(lam)
    return int(min(np.searchsorted(cum, fraction * cum[-1] * (1 - 1e-12)) + 1, len(lam)))


def choose_core(ids, core, seed: int = 0) -> np.ndarray:
    """Core ids: ``core`` ids as given (checked), or ``core`` of them drawn at random (seeded)."""
    ids = np.asarray(ids, dtype=object)
    k = len(ids)
    if np.ndim(core) == 0:
        c = int(core)
        if not 1 <= c <= k:
            raise DataError(f"APY core size must be between 1 and the {k} genotyped animals, got {core}")
        rng = np.random.default_rng(seed)
        return ids[np.sort(rng.choice(k, size=c, replace=False))]
    core = np.asarray([str(i) for i in core], dtype=object)
    absent = ~np.isin(core, ids)
    if absent.any():
        raise DataError(f"{int(absent.sum())} APY core id(s) are not genotyped: {format_ids(core[absent])}")
    if len(set(core)) != len(core):
        raise DataError("APY core ids are duplicated")
    return core


def apy_inverse(G, core, *, seed: int = 0) -> Relationship:
    """G_APY⁻¹, sparse plus a dense core block (Misztal 2016).

    Parameters
    ----------
    G : Relationship or DataFrame, shape (k, k)
        The genomic relationships (after blending/tuning, as preGSf90 applies APY).
    core : int or array of str
        Number of core animals drawn at random (``seed``), or their ids;
        :func:`apy_core_size` suggests a number.
    seed : int

    Returns
    -------
    Relationship
        ``kind="Ginv_APY"``, ``inverse=True``, CSR (k, k) in G's id order; ``info``:
        ``logdet`` (log|G_APY|), ``core`` (ids), ``n_core``, ``m`` (Series of mᵢ by
        non-core id).
    """
    G = as_relationship(G, kind="G")
    ids = G.ids
    core_ids = choose_core(ids, core, seed)
    cpos = G.index_of(core_ids)
    is_core = np.zeros(G.n, bool)
    is_core[cpos] = True
    npos = np.flatnonzero(~is_core)
    g = G.dense()
    Gcc = g[np.ix_(cpos, cpos)]
    L, info = sla.lapack.dpotrf(Gcc, lower=1, clean=1)
    if info != 0:
        raise NotPositiveDefiniteError(
            "G of the APY core animals is singular or not positive definite: blend G (beta > 0) or "
            "choose a smaller core (apy_core_size)"
        )
    logdet = 2.0 * float(np.log(np.diag(L)).sum())
    Gcn = g[np.ix_(cpos, npos)]
    X = sla.solve_triangular(L, Gcn, lower=True)  # L⁻¹G_CN
    m = g[npos, npos] - np.einsum("ij,ij->j", X, X)  # gᵢᵢ − g_iC G_CC⁻¹ g_Ci
    if np.any(m <= 0):
        bad = ids[npos][m <= 0]
        raise NotPositiveDefiniteError(
            f"APY: non-core animal(s) fully explained by the core (m <= 0): {format_ids(bad)}; blend G (beta > 0)"
        )
    logdet += float(np.log(m).sum())
    Pt = sla.solve_triangular(L, X, lower=True, trans="T")  # G_CC⁻¹ G_CN = P', c × n
    Linv = sla.solve_triangular(L, np.eye(len(cpos)), lower=True)
    cc = Linv.T @ Linv + (Pt / m) @ Pt.T  # G_CC⁻¹ + P'M⁻¹P
    cn = -(Pt / m)  # −P'M⁻¹
    k = G.n
    # in G's order: dense rows of the core (cc | cn), the cn' columns and M⁻¹ on non-core rows
    R = np.empty((len(cpos), k))
    R[:, cpos] = cc
    R[:, npos] = cn
    del cc
    mat = (
        block_csr(k, cpos, np.arange(k), R)
        + block_csr(k, npos, cpos, cn.T)
        + sp.csr_matrix((1.0 / m, (npos, npos)), shape=(k, k))
    ).tocsr()
    mat.sum_duplicates()
    import pandas as pd

    info = {
        "method": "APY (Misztal 2016)",
        "logdet": logdet,
        "core": core_ids,
        "n_core": len(cpos),
        "m": pd.Series(m, index=pd.Index(ids[npos], name="id"), name="m"),
    }
    return Relationship(ids, mat, inverse=True, kind="Ginv_APY", info=info)


def block_csr(n: int, rows: np.ndarray, cols: np.ndarray, block: np.ndarray) -> sp.csr_matrix:
    """An n × n CSR matrix holding the dense ``block`` at (rows, cols), no COO detour.

    Rows and columns are sorted first, so the CSR arrays are written directly
    (indices = the sorted columns, repeated per row): no k²-long row/column index
    arrays or sort, which is what bounds the memory of H⁻¹ and G_APY⁻¹ assembly.
    """
    ro, co = np.argsort(rows), np.argsort(cols)
    rows, cols = np.asarray(rows)[ro], np.asarray(cols)[co]
    block = (
        block[np.ix_(ro, co)]
        if (np.any(ro != np.arange(len(ro))) or np.any(co != np.arange(len(co))))
        else np.ascontiguousarray(block)
    )
    counts = np.zeros(n, np.int64)
    counts[rows] = len(cols)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    idx = np.int32 if max(n, indptr[-1]) < 2**31 else np.int64
    indices = np.tile(cols.astype(idx), len(rows))
    S = sp.csr_matrix((block.ravel(), indices, indptr.astype(idx)), shape=(n, n))
    S.has_sorted_indices = True
    return S

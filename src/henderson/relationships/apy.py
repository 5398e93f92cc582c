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

import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.linalg import blas

from ..data._ids import str_ids
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
    core = str_ids(core)
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
    L, info = _potrf(Gcc, clean=True)
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
    mat = _apy_csr(G.n, cpos, npos, cc, cn, m)
    del cc
    import pandas as pd

    info = {
        "method": "APY (Misztal 2016)",
        "logdet": logdet,
        "core": core_ids,
        "n_core": len(cpos),
        "m": pd.Series(m, index=pd.Index(ids[npos], name="id"), name="m"),
    }
    return Relationship(ids, mat, inverse=True, kind="Ginv_APY", info=info)


class ApyInverse:
    """G_APY⁻¹ kept in blocks and applied as products (Misztal 2016, eq. 7).

    With the core C (c animals) and the non-core N (n animals), P = G_NC G_CC⁻¹ and
    M = diag(mᵢ), mᵢ = gᵢᵢ − g_iC G_CC⁻¹ g_Ci:

        G_APY⁻¹ = [[G_CC⁻¹, 0], [0, 0]] + [[−P'], [I]] M⁻¹ [[−P, I]]

    is held as the Cholesky factor L of G_CC (c × c), G_CN (c × n) and m (n,): c² +
    cn + n numbers, the same as the CSR form's, with no P formed (P = G_NC L⁻ᵀL⁻¹ is
    applied through L). A product costs two pairs of triangular solves with L (c²
    each) and two products with G_CN (cn each):

        t = G_CC⁻¹ v_C,   w = M⁻¹ (v_N − G_NC t),   (G_APY⁻¹ v)_N = w,
        (G_APY⁻¹ v)_C = t − G_CC⁻¹ G_CN w.

    It is the block form :class:`~henderson.solvers.pcg_general.GeneralPCG` takes as a
    genomic block (``k``, ``@``, :meth:`diagonal`), and :func:`apy_inverse` 's CSR is
    :meth:`to_relationship`. Built by :func:`apy_inverse_from_genotypes`.

    Attributes
    ----------
    ids : ndarray of str, shape (k,)
    core_pos, noncore_pos : ndarray of int, shapes (c,), (n,)
        Positions of the core and non-core animals in ``ids``.
    m : ndarray, shape (n,)
    logdet : float
        log|G_APY| = log|G_CC| + Σ log mᵢ.
    info : dict
    """

    kind = "Ginv_APY"
    inverse = True

    def __init__(self, ids, core_pos, noncore_pos, chol_cc, g_cn, m, logdet: float, info: dict | None = None):
        self.ids = np.asarray(ids, dtype=object)
        self.core_pos = np.asarray(core_pos, dtype=np.int64)
        self.noncore_pos = np.asarray(noncore_pos, dtype=np.int64)
        self._L = chol_cc
        self._gcn = g_cn
        self.m = np.asarray(m, dtype=np.float64)
        self.logdet = float(logdet)
        self.info = dict(info or {})
        self._diag: np.ndarray | None = None

    @property
    def k(self) -> int:
        """Number of genotyped animals (the order of G_APY⁻¹)."""
        return len(self.ids)

    n_levels = k

    def _cc_solve(self, B: np.ndarray) -> np.ndarray:
        """G_CC⁻¹ B by the Cholesky factor (LAPACK potrs)."""
        return sla.cho_solve((self._L, True), B, check_finite=False)

    def __matmul__(self, V: np.ndarray) -> np.ndarray:
        """G_APY⁻¹ V for V of shape (k,) or (k, r) (class notes)."""
        V = np.asarray(V, dtype=np.float64)
        if V.shape[0] != self.k:
            raise DataError(f"APY inverse: the operand has {V.shape[0]} rows, expected {self.k}")
        t = self._cc_solve(V[self.core_pos])
        m = self.m if V.ndim == 1 else self.m[:, None]
        w = (V[self.noncore_pos] - self._gcn.T @ t) / m
        out = np.empty_like(V)
        out[self.noncore_pos] = w
        out[self.core_pos] = t - self._cc_solve(self._gcn @ w)
        return out

    def apply_inverse(self, x: np.ndarray) -> np.ndarray:
        """G_APY⁻¹ x (the level-covariance protocol's name for the product)."""
        return self @ x

    def diagonal(self, block: int = 2048) -> np.ndarray:
        """diag(G_APY⁻¹), shape (k,): diag(G_CC⁻¹) + Σⱼ (G_CC⁻¹g_Cj)²/mⱼ on the core,
        1/mᵢ off it. Computed once (c²n flops, by blocks of non-core animals), cached."""
        if self._diag is None:
            c = len(self.core_pos)
            Linv, _ = sla.lapack.dtrtri(self._L, lower=1)
            dc = np.einsum("ij,ij->j", Linv, Linv) if c else np.zeros(0)  # diag(L⁻ᵀL⁻¹)
            del Linv
            for b0 in range(0, len(self.m), block):
                Pt = self._cc_solve(self._gcn[:, b0 : b0 + block])  # G_CC⁻¹ G_CN, c × b
                dc += (Pt * Pt) @ (1.0 / self.m[b0 : b0 + block])
            d = np.empty(self.k)
            d[self.core_pos] = dc
            d[self.noncore_pos] = 1.0 / self.m
            self._diag = d
        return self._diag

    def dense(self) -> np.ndarray:
        """G_APY⁻¹ as a dense (k, k) array (small k: it is k² numbers)."""
        from .pedigree import check_dense_memory

        check_dense_memory(self.k, "the dense APY inverse", copies=1.5)
        return self @ np.eye(self.k)

    def logdet_inverse(self) -> float:
        """log|G_APY⁻¹| = −log|G_APY|."""
        return -self.logdet

    def to_relationship(self) -> Relationship:
        """The CSR form of :func:`apy_inverse` (c² + 2cn + n non-zeros; ``info["logdet"]``
        = log|G_APY|): what ``cov_inverse=`` and :func:`single_step_inverse` take."""
        cpos, npos = self.core_pos, self.noncore_pos
        Pt = self._cc_solve(self._gcn)  # G_CC⁻¹ G_CN = P', c × n
        cn = -(Pt / self.m)
        cc = self._cc_solve(np.eye(len(cpos))) - cn @ Pt.T  # G_CC⁻¹ + P'M⁻¹P
        del Pt
        mat = _apy_csr(self.k, cpos, npos, cc, cn, self.m)
        info = dict(self.info)
        info["logdet"] = self.logdet
        return Relationship(self.ids, mat, inverse=True, kind="Ginv_APY", info=info)

    def __repr__(self) -> str:
        return f"ApyInverse(k={self.k}, core={len(self.core_pos)}, blocks: L_CC, G_CN, m)"


def apy_inverse_from_dense(G, core, *, seed: int = 0) -> ApyInverse:
    """G_APY⁻¹ in blocks (:class:`ApyInverse`) from a formed G (Misztal 2016).

    The block form of :func:`apy_inverse` (same core for the same ``core`` and ``seed``):
    the Cholesky factor of G_CC, G_CN and m, no CSR. For a G already formed (given, or
    blended with a formed A₂₂); from genotypes use :func:`apy_inverse_from_genotypes`,
    which never forms the k × k G.

    Parameters
    ----------
    G : Relationship or DataFrame, shape (k, k)
    core : int or array of str
        Number of core animals drawn at random (``seed``), or their ids.
    seed : int

    Returns
    -------
    ApyInverse
        ``info``: ``core`` (ids), ``n_core``, ``m`` (Series by non-core id).
    """
    import pandas as pd

    G = as_relationship(G, kind="G")
    ids = np.asarray(G.ids, dtype=object)
    core_ids = choose_core(ids, core, seed)
    cpos = G.index_of(core_ids)
    is_core = np.zeros(G.n, bool)
    is_core[cpos] = True
    npos = np.flatnonzero(~is_core)
    g = G.dense()
    L, bad = _potrf(g[np.ix_(cpos, cpos)], clean=True)
    if bad != 0:
        raise NotPositiveDefiniteError(
            "G of the APY core animals is singular or not positive definite: blend G (beta > 0) or "
            "choose a smaller core (apy_core_size)"
        )
    gcn = np.asfortranarray(g[np.ix_(cpos, npos)])
    X = sla.solve_triangular(L, gcn, lower=True, check_finite=False)
    m = g[npos, npos] - np.einsum("ij,ij->j", X, X)
    del X
    if np.any(m <= 0):
        raise NotPositiveDefiniteError(
            f"APY: non-core animal(s) fully explained by the core (m <= 0): {format_ids(ids[npos][m <= 0])}; "
            "blend G (beta > 0)"
        )
    logdet = 2.0 * float(np.log(np.diag(L)).sum()) + float(np.log(m).sum())
    info = {
        "method": "APY (Misztal 2016), from a formed G",
        "core": core_ids,
        "n_core": len(cpos),
        "m": pd.Series(m, index=pd.Index(ids[npos], name="id"), name="m"),
    }
    return ApyInverse(ids, cpos, npos, L, gcn, m, logdet, info)


def _apy_csr(k, cpos, npos, cc, cn, m) -> sp.csr_matrix:
    """G_APY⁻¹ as CSR in G's order: dense core rows (cc | cn), the cn' columns, M⁻¹."""
    R = np.empty((len(cpos), k))
    R[:, cpos] = cc
    R[:, npos] = cn
    mat = (
        block_csr(k, cpos, np.arange(k), R)
        + block_csr(k, npos, cpos, cn.T)
        + sp.csr_matrix((1.0 / m, (npos, npos)), shape=(k, k))
    ).tocsr()
    mat.sum_duplicates()
    return mat


def apy_inverse_from_genotypes(
    genotypes,
    core,
    *,
    seed: int = 0,
    pedigree=None,
    alpha: float = 1.0,
    beta: float = 0.0,
    tuning: str | None = None,
    grm: str = "vanraden1",
    allele_freq=None,
    block_size: int | None = None,
) -> ApyInverse:
    """G*_APY⁻¹ from the genotypes by blocks, never forming the k × k G (Misztal 2016).

    Only G*_CC (c × c), G*_CN (c × n) and diag(G*_NN) are computed: by SNP blocks, the
    core's and the non-core's codes are multiplied with BLAS (the exact float32 GEMM
    of :func:`~henderson.genomic_relationship` on hard calls without missing calls,
    float64 otherwise), centred by rank-one corrections. G_CC is factored once and
    mᵢ = g*ᵢᵢ − ‖L⁻¹g*_Ci‖² comes by blocks of non-core animals. Cost: k·c·m (GEMM,
    float32) + c²n + c³/3 (float64) flops; memory: the genotypes + c·n·(8 + 4) bytes
    (G_CN and its float32 accumulator) + c² · 12.

    Parameters
    ----------
    genotypes : Genotypes or DataFrame (ids × SNPs, 0/1/2)
        The k genotyped animals.
    core : int or array of str
        Number of core animals drawn at random (``seed``), or their ids.
    seed : int
    pedigree : Pedigree or DataFrame, optional
        Needed for blending (``beta > 0``) and tuning: A₂₂'s core columns, row sums and
        diagonal come by Colleau's method (:func:`~henderson.relationships.pedigree.colleau_product`),
        never the k × k A₂₂.
    alpha, beta : float
        G_w = αG + βA₂₂, as :func:`single_step_inverse` (defaults here: no blending).
    tuning : {None, "mean"}
        ``"mean"``: G* = a + bG_w with mean diagonal and off-diagonal equal to A₂₂'s
        (preGSf90 ``tunedG 2``); the means of G come from the column sums of the
        centred genotypes (1'G1 = ‖W'1‖²/s), not from G.
    grm, allele_freq, block_size :
        As :func:`~henderson.genomic_relationship` (``grm`` is its ``method``).

    Returns
    -------
    ApyInverse
        Equal to :func:`apy_inverse` of the formed, blended and tuned G* with the same
        core (tested to 1e-10); ``info``: ``core`` (ids), ``n_core``, ``tuning_a``,
        ``tuning_b``, ``G_stats``, ``scale``, ``timings``.

    References
    ----------
    Misztal I (2016) Genetics 202:401. Aguilar I et al. (2010) J Dairy Sci 93:743
    (blending, tuning).
    """
    import pandas as pd

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    geno = _checked_apy_input(genotypes, pedigree, alpha, beta, tuning, grm)
    ids = np.asarray(geno.ids, dtype=object)
    k = len(ids)
    core_ids = choose_core(ids, core, seed)
    cpos = pd.Index(ids).get_indexer(core_ids)
    is_core = np.zeros(k, bool)
    is_core[cpos] = True
    npos = np.flatnonzero(~is_core)

    t = time.perf_counter()
    g = _core_blocks_of_g(geno, grm, allele_freq, block_size, cpos, npos)
    stats = {"G": _means_from(g.diag.sum(), g.total, k)}
    timings["G_blocks"] = time.perf_counter() - t

    ta, tb = 0.0, 1.0
    if pedigree is not None and (beta > 0 or tuning is not None):
        t = time.perf_counter()
        ta, tb = _blend_and_tune(g, pedigree, ids, cpos, npos, alpha, beta, tuning, stats)
        timings["blend_tune"] = time.perf_counter() - t
    elif alpha != 1.0:
        g.scale_by(alpha)
    stats["G_star"] = _means_from(g.diag.sum(), g.total, k)

    t = time.perf_counter()
    L, m, logdet = _core_factor_and_m(g, ids, npos)
    timings["core_factor_and_m"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    info = {
        "method": "APY (Misztal 2016), from genotypes by blocks",
        "core": core_ids,
        "n_core": len(cpos),
        "m": pd.Series(m, index=pd.Index(ids[npos], name="id"), name="m"),
        "scale": g.scale,
        "tuning_a": ta,
        "tuning_b": tb,
        "G_stats": stats,
        "timings": timings,
    }
    return ApyInverse(ids, cpos, npos, L, g.cn, m, logdet, info)


def _checked_apy_input(genotypes, pedigree, alpha: float, beta: float, tuning: str | None, grm: str):
    """The genotypes as :class:`Genotypes`, once the blending and tuning arguments are checked."""
    import pandas as pd

    from ..data.genotypes import Genotypes
    from . import genomic as gm

    geno = genotypes
    if isinstance(geno, pd.DataFrame):
        geno = Genotypes.from_frame(geno)
    if not isinstance(geno, Genotypes):
        raise DataError(f"apy_inverse_from_genotypes takes Genotypes or a DataFrame, not {type(geno).__name__}")
    if not (0.0 < alpha <= 1.0 and 0.0 <= beta <= 1.0):
        raise DataError(f"blending weights must be 0 < alpha <= 1 and 0 <= beta <= 1, got alpha={alpha}, beta={beta}")
    if tuning not in (None, "mean"):
        raise DataError(f"tuning must be None or 'mean', not {tuning!r}")
    if (beta > 0 or tuning is not None) and pedigree is None:
        raise DataError("blending (beta > 0) and tuning='mean' need A22: pass pedigree=")
    gm._check_arguments(geno, grm, "auto")
    return geno


@dataclass
class _CoreCross:
    """Numerators of G_CC (c × c, lower triangle) and G_CN (c × n), F-ordered for BLAS."""

    cc: np.ndarray
    cn: np.ndarray

    @classmethod
    def zeros(cls, c: int, n: int, dtype=np.float64) -> _CoreCross:
        return cls(np.zeros((c, c), dtype, order="F"), np.zeros((c, n), dtype, order="F"))


@dataclass
class _CoreG:
    """G's core blocks and diagonal: G_CC (lower triangle and diagonal), G_CN, diag(G), 1'G1."""

    cc: np.ndarray
    cn: np.ndarray
    diag: np.ndarray
    total: float
    scale: float

    def scale_by(self, alpha: float) -> None:
        self.cc *= alpha
        self.cn *= alpha
        self.diag *= alpha
        self.total *= alpha


class _BlockSums:
    """Running sums over SNP blocks for G's core blocks.

    The C×C and C×N numerators (float32 on raw integer codes, added into float64 before
    float32 stops being exact; float64 for centred blocks), ‖wᵢ‖², ‖W'1‖², yang's
    diagonal term, and the centring terms of the raw-code blocks (s = Xc, c'c).
    """

    def __init__(self, k: int, cpos, npos):
        self.cpos, self.npos = cpos, npos
        self.c, self.n = len(cpos), len(npos)
        self.acc32: _CoreCross | None = None
        self.acc64: _CoreCross | None = None
        self.s = np.zeros(k)  # X c of the float32 blocks (centring)
        self.ccc = 0.0  # c'c of the float32 blocks
        self.m32 = 0  # SNPs in the float32 numerators since they were last flushed
        self.wdiag = np.zeros(k)  # ‖w_i‖² (the centred codes' diagonal of WW')
        self.diag_extra = np.zeros(k)  # yang's diagonal term
        self.colsum_sq = 0.0  # ‖W'1‖²

    def add_codes(self, x: np.ndarray, cvec: np.ndarray, exact_limit: int) -> None:
        """A float32 block of raw codes ``x`` (k, b) whose centring is ``cvec`` = 2p."""
        k, b = x.shape
        if self.acc32 is not None and 4 * (self.m32 + b) >= exact_limit:
            self.acc64 = _flush32(self.acc32, self.acc64, self.c, self.n)
            self.m32 = 0
        if self.acc32 is None:
            self.acc32 = _CoreCross.zeros(self.c, self.n, np.float32)
        _cross(x, self.cpos, self.npos, self.acc32.cc, self.acc32.cn)
        self.wdiag += np.einsum("ij,ij->i", x, x)  # exact: integers < 2**24
        self.colsum_sq += float(np.sum((x.sum(axis=0, dtype=np.float64) - k * cvec) ** 2))
        self.ccc += float(cvec @ cvec)
        self.m32 += b

    def add_centred(self, w: np.ndarray) -> None:
        """A float64 block of centred (and scaled) codes ``w`` (k, b)."""
        if self.acc64 is None:
            self.acc64 = _CoreCross.zeros(self.c, self.n)
        _cross(w, self.cpos, self.npos, self.acc64.cc, self.acc64.cn)
        self.wdiag += np.einsum("ij,ij->i", w, w)
        self.colsum_sq += float(np.sum(w.sum(axis=0) ** 2))

    def numerators(self) -> tuple[np.ndarray, np.ndarray]:
        """(W_C W_C', W_C W_N') in float64, the raw-code blocks centred; frees the accumulators.

        Centring of the float32 (raw code) part: WW' = XX' − s1' − 1s' + (c'c)11'.
        """
        self.wdiag += -2.0 * self.s + self.ccc
        gcc, gcn = _merged_numerators(self.acc32, self.acc64, self.c, self.n)
        self.acc32 = self.acc64 = None
        s, ccc = self.s, self.ccc
        if ccc or s.any():
            sc, sn = s[self.cpos], s[self.npos]
            gcc -= sc[:, None]
            gcc -= sc[None, :]
            gcc += ccc
            for j0 in range(0, self.n, 4096):
                blk = gcn[:, j0 : j0 + 4096]
                blk -= sc[:, None]
                blk -= sn[None, j0 : j0 + 4096]
                blk += ccc
        return gcc, gcn


def _core_blocks_of_g(geno, grm: str, allele_freq, block_size: int | None, cpos, npos) -> _CoreG:
    """G_CC, G_CN and diag(G) by SNP blocks (float32 GEMM on exact integer codes, else float64)."""
    from . import genomic as gm

    k = geno.n
    p, _ = gm._resolve_freq(geno, allele_freq)
    pq = p * (1.0 - p)
    use, _, _ = gm._snps_used(geno, grm, p, pq)
    scale = gm._scale(grm, pq, use, int(use.sum()))
    try_f32 = grm == "vanraden1" and geno.is_integer
    b = block_size or gm.default_block_size(k, 4 if try_f32 else 8, target_mb=256.0)
    sums = _BlockSums(k, cpos, npos)
    for blk in gm.code_blocks(geno, grm, p, pq, use, b, try_f32, sums.s, sums.diag_extra):
        if blk.centring is not None:
            sums.add_codes(blk.values, blk.centring, gm._EXACT_F32)
        else:
            sums.add_centred(blk.values)
    gcc, gcn = sums.numerators()
    gcc /= scale
    gcn /= scale
    gdiag = sums.wdiag / scale
    if grm == "yang":
        gdiag += sums.diag_extra / scale + 1.0
    gcc[np.diag_indices(len(cpos))] = gdiag[cpos]
    g_sum = (sums.colsum_sq - sums.wdiag.sum()) / scale + gdiag.sum()  # 1'G1
    return _CoreG(gcc, gcn, gdiag, g_sum, scale)


def _flush32(acc32: _CoreCross, acc64: _CoreCross | None, c: int, n: int) -> _CoreCross:
    """Add the float32 numerators into the float64 ones (before float32 loses integers); zero them."""
    if acc64 is None:
        acc64 = _CoreCross.zeros(c, n)
    acc64.cc += acc32.cc
    acc64.cn += acc32.cn
    acc32.cc[...] = 0.0
    acc32.cn[...] = 0.0
    return acc64


def _merged_numerators(acc32: _CoreCross | None, acc64: _CoreCross | None, c: int, n: int):
    """(G_CC, G_CN) numerators in float64: the float64 ones plus the float32 rest, by column blocks."""
    if acc64 is None:  # every block on the float32 path: the result takes new memory
        if acc32 is None:  # pragma: no cover - _snps_used refuses a G without SNPs
            raise DataError("no SNP is used for G")
        gcn = np.empty((c, n), order="F")
        for j0 in range(0, n, 4096):
            gcn[:, j0 : j0 + 4096] = acc32.cn[:, j0 : j0 + 4096]
        return acc32.cc.astype(np.float64, order="F"), gcn
    gcc, gcn = acc64.cc, acc64.cn
    if acc32 is not None:
        gcc += acc32.cc
        for j0 in range(0, n, 4096):
            gcn[:, j0 : j0 + 4096] += acc32.cn[:, j0 : j0 + 4096]
    return gcc, gcn


def _blend_and_tune(g: _CoreG, pedigree, ids, cpos, npos, alpha, beta, tuning, stats) -> tuple[float, float]:
    """G_w = αG + βA₂₂ and, for ``tuning="mean"``, G* = a + bG_w, in place; returns (a, b).

    A₂₂'s core columns, row sums and diagonal come by Colleau's products.
    """
    from .pedigree import colleau_product

    k, c = len(ids), len(cpos)
    X = np.zeros((k, c + 1))
    X[cpos, np.arange(c)] = 1.0
    X[:, c] = 1.0
    AX, F = colleau_product(pedigree, ids, X)
    del X
    a_diag = 1.0 + F
    a_sum = float(AX[:, c].sum())
    a_cc = AX[cpos, :c]
    a_cc = 0.5 * (a_cc + a_cc.T)  # both triangles as Colleau's A22 has them
    a_cn = AX[npos, :c].T
    del AX
    stats["A22"] = _means_from(a_diag.sum(), a_sum, k)
    if alpha != 1.0:
        g.cc *= alpha
        g.cn *= alpha
        g.diag *= alpha
    if beta > 0:
        g.cc += beta * a_cc
        g.cn += beta * a_cn
        g.diag += beta * a_diag
    g.total = alpha * g.total + beta * a_sum
    if tuning != "mean":
        return 0.0, 1.0
    ad, ao = stats["A22"]["mean_diag"], stats["A22"]["mean_offdiag"]
    if np.allclose(a_diag, 1.0, atol=1e-12) and abs(a_sum - a_diag.sum()) <= 1e-12 * k:
        raise DataError(
            f"tuning='mean' matches G to A22, but A22 of the {k} genotyped animals is the identity: "
            "they have no pedigree information (e.g. "
            f"{format_ids(ids, 5)}). Give a pedigree that links them, or set tuning=None"
        )
    gw = _means_from(g.diag.sum(), g.total, k)
    if np.isclose(gw["mean_diag"], gw["mean_offdiag"]):
        raise DataError("mean diagonal and mean off-diagonal of G are equal: cannot tune (tuning=None)")
    tb = (ad - ao) / (gw["mean_diag"] - gw["mean_offdiag"])
    ta = ad - tb * gw["mean_diag"]
    for block in (g.cc, g.cn, g.diag):
        block *= tb
        block += ta
    g.total = k * k * ta + tb * g.total
    return ta, tb


def _potrf(a: np.ndarray, overwrite: bool = False, clean: bool = False):
    """dpotrf (lower) that splits cores above 12k animals (OpenBLAS's threaded dsyrk
    segfaults at ≥ 16k: :mod:`henderson.linalg.dense_safe`)."""
    from ..linalg import dense_safe

    return dense_safe.potrf(a, overwrite=overwrite, clean=clean)


def _core_factor_and_m(g: _CoreG, ids, npos) -> tuple[np.ndarray, np.ndarray, float]:
    """G_CC's Cholesky factor L (in place), mᵢ = g*ᵢᵢ − ‖L⁻¹g*_Ci‖² by blocks, and log|G_APY|."""
    n = len(npos)
    L, bad = _potrf(g.cc, overwrite=True, clean=True)
    if bad != 0:
        raise NotPositiveDefiniteError(
            "G of the APY core animals is singular or not positive definite: blend G (beta > 0) or "
            "choose a smaller core (apy_core_size)"
        )
    logdet = 2.0 * float(np.log(np.diag(L)).sum())
    m = g.diag[npos].copy()
    for j0 in range(0, n, 2048):
        Xb = sla.solve_triangular(L, g.cn[:, j0 : j0 + 2048], lower=True, check_finite=False)
        m[j0 : j0 + 2048] -= np.einsum("ij,ij->j", Xb, Xb)
    if np.any(m <= 0):
        raise NotPositiveDefiniteError(
            f"APY: non-core animal(s) fully explained by the core (m <= 0): {format_ids(ids[npos][m <= 0])}; "
            "blend G (beta > 0)"
        )
    logdet += float(np.log(m).sum())
    return L, m, logdet


def _cross(x: np.ndarray, cpos, npos, acc_cc: np.ndarray, acc_cn: np.ndarray) -> None:
    """acc_cc += x_C x_C' (lower triangle) and acc_cn += x_C x_N' for a (k, b) block x.

    Both accumulators are F-ordered, so BLAS updates them in place; x_C and x_N are the
    row-gathered (C-ordered) copies, passed transposed (F-ordered) with no further copy.
    """
    xc, xn = x[cpos], x[npos]
    gemm = blas.sgemm if x.dtype == np.float32 else blas.dgemm
    if len(cpos):
        if x.dtype == np.float32:
            out = blas.ssyrk(1.0, xc.T, beta=1.0, c=acc_cc, trans=1, lower=1, overwrite_c=1)
        else:
            from ..linalg import dense_safe  # dsyrk split above 12k core animals (OpenBLAS crash)

            out = dense_safe.syrk_lower(xc.T, trans=True, beta=1.0, c=acc_cc)
        if out is not acc_cc:
            acc_cc[...] = out
    if len(cpos) and len(npos):
        out = gemm(1.0, xc.T, xn.T, beta=1.0, c=acc_cn, trans_a=1, overwrite_c=1)
        if out is not acc_cn:
            acc_cn[...] = out


def _means_from(trace: float, total: float, k: int) -> dict:
    """Mean diagonal and mean off-diagonal from the trace and the sum of all entries."""
    return {"mean_diag": trace / k, "mean_offdiag": (total - trace) / (k * (k - 1)) if k > 1 else np.nan}


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

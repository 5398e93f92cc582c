"""Single-step genomic relationships: H⁻¹ over all pedigree animals.

    H⁻¹ = A⁻¹ + [[0, 0], [0, τ G*⁻¹ − ω A₂₂⁻¹]]        (Aguilar et al. 2010; Christensen & Lund 2010)

A⁻¹ is Henderson's sparse inverse over every pedigree animal; the second block is
dense over the k genotyped animals. G* is G prepared as BLUPF90's preGSf90 does by
default (Masuda, *BLUPF90 tutorial*, "Tuning and input/output of relationship
matrices"; Lourenco et al. 2020, Genes 11:790):

1. G = WW'/(2Σpq), VanRaden (2008) method 1 with the current allele frequencies
   (``whichfreq 2``) -- :func:`~henderson.genomic_relationship`;
2. blended, G_w = αG + βA₂₂, α = 0.95, β = 0.05 (``AlphaBeta 0.95 0.05``);
3. tuned, G* = a + b G_w with a, b such that mean(diag G*) = mean(diag A₂₂) and
   mean(offdiag G*) = mean(offdiag A₂₂) (``tunedG 2``; Vitezica et al. 2011, Chen et al.
   2011, Christensen et al. 2012). preGSf90 saves the blended matrix before the tuned
   one (``saveG all``: G_Alpha_Beta, then G_suggest), so blending comes first; with
   α + β = 1 the means of G* equal those of A₂₂ in either order;
4. τ = ω = 1 (``TauOmega 1 1``).

A₂₂⁻¹ is never taken from the full A. Two exact routes (``a22_inverse``):

- ``"sparse"``: on the pedigree pruned to the genotyped animals and their ancestors,
  partition A⁻¹ into non-genotyped (1) and genotyped (2) animals; then
  A₂₂⁻¹ = A⁻¹₂₂ − A⁻¹₂₁ (A⁻¹₁₁)⁻¹ A⁻¹₁₂ (Strandén & Mäntysaari 2014; Masuda et al.
  2017), one supernodal Cholesky of A⁻¹₁₁ (:mod:`henderson.linalg`) and k solves
  with it, 256 right-hand sides at a time;
- ``"dense"``: A₂₂ by Colleau's (2002) indirect method, then a dense Cholesky inverse.

``"auto"`` takes ``"dense"``: blending and tuning need A₂₂ itself anyway, and the
k³ BLAS-3 inverse beat the k sparse solves at the sizes measured
(``benchmarks/results/single_step.md``).

log|H| (for REML) and diag(H) (for reliabilities) come from the block inverse of H⁻¹:
H₂₂ = T⁻¹ with T = τG*⁻¹ + (1 − ω)A₂₂⁻¹, log|H| = log|A| − log|A₂₂| − log|T|, and
H₁₁ = A₁₁ + M(H₂₂ − A₂₂)M' with M = A₁₂A₂₂⁻¹ = −(A⁻¹₁₁)⁻¹A⁻¹₁₂ (docs/theory.md).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data import _pedigree_kernels as K
from ..data.genotypes import Genotypes
from ..data.pedigree import Pedigree
from ..errors import DataError, DataWarning, NotPositiveDefiniteError, format_ids
from .apy import apy_inverse, block_csr
from .container import Relationship, as_relationship
from .pedigree import _as_pedigree, _processing_order, pedigree_inverse

#: (non-genotyped animals) x (genotyped animals) up to which ``diag="auto"`` computes
#: the exact diag(H) of non-genotyped animals (k sparse solves of that size).
DIAG_BUDGET = 2e9
TUNINGS = (None, "mean")


def _check_settings(tuning, alpha, beta, tau, omega, missing, a22_inverse) -> None:
    if tuning not in TUNINGS:
        raise DataError(f"tuning must be 'mean' (preGSf90 tunedG 2) or None (no tuning), not {tuning!r}")
    for name, v in (("alpha", alpha), ("beta", beta), ("tau", tau), ("omega", omega)):
        if not (isinstance(v, (int, float, np.floating, np.integer)) and np.isfinite(v)):
            raise DataError(f"{name} must be a finite number, got {v!r}")
    if not 0.0 < alpha <= 1.0:
        raise DataError(f"blending weight alpha (on G) must be in (0, 1], got alpha={alpha}")
    if not 0.0 <= beta <= 1.0:
        raise DataError(f"blending weight beta (on A22) must be in [0, 1], got beta={beta}")
    if not tau > 0.0:
        raise DataError(f"tau (the weight of G⁻¹ in H⁻¹) must be > 0, got tau={tau}")
    if not 0.0 <= omega <= 1.0:
        raise DataError(
            f"omega (the weight of A22⁻¹ in H⁻¹) must be in [0, 1], got omega={omega}: "
            "omega > 1 can make H⁻¹ indefinite (H22⁻¹ = tau G⁻¹ + (1 - omega) A22⁻¹)"
        )
    if missing not in ("error", "add"):
        raise DataError(f"missing must be 'error' or 'add' (genotyped ids absent from the pedigree), not {missing!r}")
    if a22_inverse not in ("auto", "sparse", "dense"):
        raise DataError(f"a22_inverse must be 'auto', 'sparse' or 'dense', not {a22_inverse!r}")


def _as_genomic(genotypes_or_G, grm: str) -> tuple[Relationship, Genotypes | None]:
    """G (a Relationship) and the genotypes it came from (None when G was given)."""
    from .genomic import genomic_relationship

    x = genotypes_or_G
    if isinstance(x, pd.DataFrame):
        idx, cols = [str(i) for i in x.index], [str(c) for c in x.columns]
        if not (x.shape[0] == x.shape[1] and idx == cols):
            x = Genotypes.from_frame(x)  # duplicated ids are a DataError naming them
    if isinstance(x, Genotypes):
        return genomic_relationship(x, method=grm), x
    return as_relationship(x, kind="G"), None


def _add_founders(ped: Pedigree, absent: np.ndarray) -> Pedigree:
    from ..io.pedigree import read_pedigree

    frame = ped.to_frame("input")[["id", "sire", "dam"]]
    extra = pd.DataFrame({"id": absent, "sire": np.nan, "dam": np.nan})
    out = read_pedigree(pd.concat([extra, frame], ignore_index=True))
    return out


def _owned(m) -> np.ndarray:
    """A float64 matrix built by this module, made writable: the Relationship container
    freezes its matrix, but nobody else holds this one (a copy only if it cannot be)."""
    m = np.asarray(m, dtype=np.float64)
    try:
        m.flags.writeable = True
    except ValueError:
        m = m.copy()
    return m


def _fortran_view(m: np.ndarray) -> np.ndarray:
    """A Fortran-ordered view of a symmetric matrix (its transpose when C-ordered): LAPACK
    then works in place instead of on a copy."""
    if m.flags.f_contiguous:
        return m
    if m.flags.c_contiguous:
        return m.T
    return np.asfortranarray(m)


def _chol(m: np.ndarray, what: str, hint: str, overwrite: bool = False) -> np.ndarray:
    """Lower Cholesky factor of symmetric ``m`` (in ``m``'s memory when ``overwrite``,
    which then no longer holds ``m``); a clear error when not positive definite."""
    a = _fortran_view(m) if overwrite else m
    from ..linalg import dense_safe  # dpotrf that survives OpenBLAS's threaded-dsyrk crash at ≥ 16k

    dmax = float(np.max(np.diag(a)))
    c, info = dense_safe.potrf(a, overwrite=overwrite)
    # an exactly singular matrix (VanRaden's G: G1 = 0) can factor with a pivot of
    # round-off size; a pivot² below 1e-10 of the largest diagonal is singular here
    if info != 0 or np.min(np.diag(c)) ** 2 < 1e-10 * dmax:
        if overwrite:
            detail = f"Cholesky pivot {info if info else int(np.argmin(np.diag(c))) + 1} is not positive"
        else:
            detail = f"smallest eigenvalue {float(np.linalg.eigvalsh(m)[0]):.3g}"
        raise NotPositiveDefiniteError(f"{what} is singular or not positive definite ({detail}): {hint}")
    return c


def _mirror_lower(m: np.ndarray, block: int = 1024) -> np.ndarray:
    """Copy the lower triangle onto the upper one, in place, a column block at a time
    (no k² index arrays, no k² temporary)."""
    k = m.shape[0]
    for a in range(0, k, block):
        b = min(a + block, k)
        d = m[a:b, a:b]
        iu = np.triu_indices(b - a, 1)
        d[iu] = d.T[iu]
        if b < k:
            m[a:b, b:] = m[b:, a:b].T
    return m


def _inverse_from_chol(c: np.ndarray, overwrite: bool = False) -> np.ndarray:
    """Symmetric inverse from a lower Cholesky factor (in the factor's memory when
    ``overwrite``)."""
    from ..linalg import dense_safe

    inv, info = dense_safe.potri(c, overwrite=overwrite)
    if info != 0:
        raise NotPositiveDefiniteError(f"Cholesky inverse failed (LAPACK info {info})")
    return _mirror_lower(inv)


def _logdet_chol(c: np.ndarray) -> float:
    return 2.0 * float(np.log(np.diag(c)).sum())


def _pruned(ped: Pedigree, gcodes: np.ndarray):
    """The genotyped animals and their ancestors: (sire, dam, d, position of genotyped)."""
    keep = np.zeros(len(ped), np.bool_)
    keep[gcodes] = True
    sub = np.flatnonzero(K.ancestors_mask(ped.sire, ped.dam, keep))  # increasing: parents first
    new = np.full(len(ped), -1, np.int64)
    new[sub] = np.arange(len(sub))
    s = np.where(ped.sire[sub] >= 0, new[ped.sire[sub]], -1)
    dm = np.where(ped.dam[sub] >= 0, new[ped.dam[sub]], -1)
    gen = ped.generation[sub]
    _, d = K.inbreeding_lap(s, dm, gen, _processing_order(s, dm, gen))
    return s, dm, d, new[gcodes]


class _SupernodalSPD:
    """Supernodal Cholesky (:mod:`henderson.linalg`) of a sparse SPD matrix, with the
    ``solve`` of SuperLU's interface: the k right-hand sides of a block are solved
    together (numba over the supernodes, vectorised over the columns)."""

    def __init__(self, B: sp.spmatrix):
        from ..linalg import SymbolicCholesky

        B = sp.csc_matrix(B)
        try:
            self.factor = SymbolicCholesky(B).factor_matrix(B)
        except NotPositiveDefiniteError as exc:
            raise NotPositiveDefiniteError(f"the non-genotyped block of A⁻¹ is not positive definite: {exc}") from exc
        self.logdet = self.factor.logdet()

    def solve(self, b: np.ndarray) -> np.ndarray:
        return self.factor.solve(b)


def _solve_blocks(lu, rhs: sp.spmatrix, block: int = 256):
    """Yield (columns, lu⁻¹ rhs[:, columns]) over column blocks (bounded memory)."""
    rhs = rhs.tocsc()
    for a in range(0, rhs.shape[1], block):
        b = min(a + block, rhs.shape[1])
        yield slice(a, b), lu.solve(rhs[:, a:b].toarray())


def a22_inverse_sparse(ped, ids) -> tuple[np.ndarray, float]:
    """A₂₂⁻¹ by the partition of the pruned pedigree's A⁻¹, and log|A₂₂|.

    ``A₂₂⁻¹ = A⁻¹₂₂ − A⁻¹₂₁ (A⁻¹₁₁)⁻¹ A⁻¹₁₂`` over the genotyped animals (2) and their
    non-genotyped ancestors (1); ``log|A₂₂| = log|A_pruned| + log|A⁻¹₁₁|``.

    Parameters
    ----------
    ped : Pedigree
    ids : array of str, shape (k,)

    Returns
    -------
    (ndarray of shape (k, k) in the order of ``ids``, float)
    """
    ped = _as_pedigree(ped)
    s, dm, d, gpos = _pruned(ped, ped.codes_of(ids))
    n = len(s)
    rows, cols, vals = K.ainv_triplets(s, dm, d, np.arange(n, dtype=np.int64))
    B = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
    B.sum_duplicates()
    others = np.setdiff1d(np.arange(n), gpos)
    B22 = B[gpos][:, gpos].toarray()
    logdet_a = float(np.sum(np.log(d)))
    if len(others) == 0:
        return _sym(B22), logdet_a
    B11 = B[others][:, others]
    B12 = B[others][:, gpos]
    f = _SupernodalSPD(B11)
    lu, logdet_b11 = f, f.logdet
    out = B22
    B21 = B12.T.tocsr()
    for cols_, X in _solve_blocks(lu, B12):
        out[:, cols_] -= B21 @ X
    return _sym(out), logdet_a + logdet_b11


def _sym(m: np.ndarray) -> np.ndarray:
    m += m.T
    m *= 0.5
    return m


def _tune_mean(g: np.ndarray, a22: np.ndarray, ids) -> tuple[float, float]:
    """a, b of G* = a + bG with G*'s mean diagonal and off-diagonal equal to A₂₂'s."""
    k = g.shape[0]
    if k < 2:
        raise DataError("tuning='mean' needs at least 2 genotyped animals; use tuning=None")
    ad, ao = np.trace(a22) / k, (a22.sum() - np.trace(a22)) / (k * (k - 1))
    # A22 ≥ 0 entrywise, so a zero off-diagonal sum means no relationships at all
    # (checked without forming a k × k identity or difference)
    if np.allclose(np.diag(a22), 1.0, atol=1e-12) and abs(float(a22.sum()) - float(np.trace(a22))) <= 1e-12 * k:
        raise DataError(
            f"tuning='mean' matches G to A22, but A22 of the {k} genotyped animals is the identity: "
            "they have no pedigree information (no known parents or relatives among them, e.g. "
            f"{format_ids(ids, 5)}). Give a pedigree that links them, or set tuning=None"
        )
    gd, go = np.trace(g) / k, (g.sum() - np.trace(g)) / (k * (k - 1))
    if np.isclose(gd, go):
        raise DataError("mean diagonal and mean off-diagonal of G are equal: cannot tune (tuning=None)")
    b = (ad - ao) / (gd - go)
    return ad - b * gd, b


def single_step_inverse(
    pedigree,
    genotypes_or_G,
    *,
    tuning: str | None = "mean",
    alpha: float = 0.95,
    beta: float = 0.05,
    tau: float = 1.0,
    omega: float = 1.0,
    missing: str = "error",
    a22_inverse: str = "auto",
    apy_core=None,
    seed: int = 0,
    grm: str = "vanraden1",
    diag="auto",
    keep_g_inverse: bool = False,
    as_blocks: bool = False,
    lazy: bool = False,
):
    """H⁻¹ of single-step GBLUP over all pedigree animals, as BLUPF90's preGSf90 builds it.

    Parameters
    ----------
    pedigree : Pedigree or DataFrame (id, sire, dam), n animals
    genotypes_or_G : Genotypes (or a genotype DataFrame by id) or G (Relationship or square DataFrame)
        k genotyped animals. Genotypes give G by :func:`~henderson.genomic_relationship`
        (``grm``, default VanRaden 1 with current allele frequencies = preGSf90's
        ``whichfreq 2``); a G is used as given (before blending and tuning).
    tuning : {"mean", None}
        ``"mean"``: G* = a + bG_w with mean diag and mean off-diag equal to A₂₂'s
        (preGSf90 ``tunedG 2``, its default); None: no tuning (``tunedG 0``).
    alpha, beta : float
        G_w = αG + βA₂₂ (preGSf90 ``AlphaBeta``, default 0.95, 0.05). α in (0, 1], β in
        [0, 1]; β = 0 with α = 1 is no blending (G must then be positive definite).
    tau, omega : float
        Weights of G*⁻¹ and A₂₂⁻¹ (preGSf90 ``TauOmega``, default 1, 1); τ > 0, ω in [0, 1].
    missing : {"error", "add"}
        Genotyped ids absent from the pedigree: an error naming them, or added as
        founders (unknown parents) with a :class:`DataWarning` giving their count
        (``info["n_added_founders"]``).
    a22_inverse : {"auto", "sparse", "dense"}
        How A₂₂⁻¹ is computed (module notes).
    apy_core : None, int or array of str
        APY (Misztal 2016): replace G*⁻¹ by the sparse-plus-block inverse of
        :func:`~henderson.apy_inverse` with this core (a count drawn at random with
        ``seed``, or ids).
    diag : {"auto", True, False}
        Compute diag(H) (for reliabilities): genotyped animals from H₂₂, others exactly
        by k sparse solves; ``auto`` does the latter when (n − k)·k ≤ ``DIAG_BUDGET``.
    as_blocks : bool
        Return a :class:`~henderson.relationships.h_inverse.SparsePlusDenseInverse`
        (A⁻¹ and the dense block τG*⁻¹ − ωA₂₂⁻¹ kept apart, with log|H⁻¹| and the
        same ``info``) instead of one CSR matrix with the block filled in.
    keep_g_inverse : bool
        Keep G*⁻¹ (dense k × k, G's id order; APY's when ``apy_core``) in
        ``info["G_star_inverse"]`` and G* in ``info["G_star"]``, for back-solving SNP
        effects (:func:`~henderson.models.ssgblup.snp_effects_single_step`).
    lazy : bool
        Return a :class:`~henderson.relationships.single_step_lazy.LazySingleStepInverse`:
        A₂₂⁻¹ is applied as an operator (a sparse Cholesky of the pruned pedigree's A⁻¹₁₁),
        never formed; the block τG*⁻¹ − ωA₂₂⁻¹ is formed only when a direct solver asks
        (``dense_block()``), PCG applies it as products (``block_operator()``). With
        ``apy_core`` and genotypes neither G nor A₂₂ is ever k × k. log|H| is NaN until
        formed when ω ≠ 1; ``a22_inverse="dense"`` and ``diag=True`` are refused
        (:mod:`henderson.relationships.single_step_lazy`).

    Returns
    -------
    Relationship
        ``kind="Hinv"``, ``inverse=True``, a ``scipy.sparse.csr_matrix`` (n, n) in the
        pedigree's input order with the dense genotyped block filled in. ``info``:
        ``logdet`` (log|H|), ``diag`` (diag H, NaN where not computed), ``genotyped``
        (ids), ``settings``, ``tuning_a``/``tuning_b``, ``G_stats`` (means of diag and
        off-diag of G, G*, A₂₂), ``n_added_founders``, ``timings``, ``notes``.

    Notes
    -----
    Genotyped animals duplicated are a :class:`DataError` (raised by the genotype or
    relationship container, naming them). A G that is not positive definite without
    blending (VanRaden's G with current frequencies is always singular: G1 = 0) is an
    error suggesting ``beta > 0`` or ``tuning="mean"``.

    References
    ----------
    Legarra A, Aguilar I, Misztal I (2009) J Dairy Sci 92:4656. Aguilar I et al. (2010)
    J Dairy Sci 93:743. Christensen OF, Lund MS (2010) Genet Sel Evol 42:2. Misztal I
    (2016) Genetics 202:401 (APY).
    """
    if lazy:
        from .single_step_lazy import single_step_inverse_lazy

        return single_step_inverse_lazy(
            pedigree,
            genotypes_or_G,
            tuning=tuning,
            alpha=alpha,
            beta=beta,
            tau=tau,
            omega=omega,
            missing=missing,
            a22_inverse=a22_inverse,
            apy_core=apy_core,
            seed=seed,
            grm=grm,
            diag=diag,
            keep_g_inverse=keep_g_inverse,
        )
    t0 = time.perf_counter()
    _check_settings(tuning, alpha, beta, tau, omega, missing, a22_inverse)
    ped = _as_pedigree(pedigree)
    t = time.perf_counter()
    G, geno = _as_genomic(genotypes_or_G, grm)
    t_g = time.perf_counter() - t
    gids = np.asarray(G.ids, dtype=object)
    g_info = {k_: v for k_, v in G.info.items() if k_ in ("method", "allele_freq", "scale", "n_snps_used")}
    notes = []
    known = ped._index.get_indexer(gids) >= 0
    n_added = 0
    if not known.all():
        absent = gids[~known]
        if missing == "error":
            from ..errors import AlignmentError

            raise AlignmentError(
                f"{len(absent)} of {len(gids)} genotyped id(s) are not in the pedigree ({ped.source}): "
                f"{format_ids(absent)}; add them to the pedigree, or pass missing='add' to add them "
                "as founders (unknown parents)"
            )
        n_added = len(absent)
        msg = (
            f"{n_added} genotyped id(s) not in the pedigree were added as founders with unknown "
            f"parents: {format_ids(absent)}"
        )
        warnings.warn(msg, DataWarning, stacklevel=2)
        notes.append(msg)
        ped = _add_founders(ped, absent)
    timings = {"G_form": t_g}
    t = time.perf_counter()
    Ainv = pedigree_inverse(ped)
    timings["A_inverse"] = time.perf_counter() - t
    k = len(gids)
    # "auto" is Colleau + dense Cholesky inverse: k SuperLU solves (one column at a time,
    # memory-bound) cost more than the k³/3 BLAS-3 inverse at every size measured
    # (benchmarks/results/single_step.md: 50,000 animals / 3,000 genotyped, 22.6 s vs 8.1 s)
    method = "dense" if a22_inverse == "auto" else a22_inverse
    need_a22 = beta > 0 or tuning is not None or method == "dense"
    n_other = Ainv.n - k
    want = diag is True or (diag == "auto" and float(n_other) * k <= DIAG_BUDGET)
    want_other = bool(n_other and want)
    # Memory: each k × k matrix is 8k² bytes (3.2 GB at k = 20,000). G is built here
    # (or copied once from the caller's), A22 once by Colleau; blending and tuning are in
    # place, then A22 and G* are factored and inverted in their own memory unless they
    # are needed later (diag(H), keep_g_inverse, APY). Peak: G + A22 + the genotypes.
    a22 = None
    if need_a22:
        t = time.perf_counter()
        from .pedigree import pedigree_relationship

        a22 = _owned(pedigree_relationship(ped, gids).matrix)  # Colleau (2002), G's order
        timings["A22_colleau"] = time.perf_counter() - t

    # G*: blend, then tune (preGSf90's order; module notes)
    t = time.perf_counter()
    if geno is not None:
        g = _owned(G.dense())  # built here: ours to modify
        del G
    else:
        g = np.array(G.dense(), dtype=np.float64)  # the caller's G: one copy
    stats = {"G": _means(g)}
    if alpha != 1.0:
        g *= alpha
    if beta > 0:
        assert a22 is not None  # formed: need_a22 when beta > 0
        for r0 in range(0, k, 1024):  # row blocks: no k × k temporary for beta * A22
            g[r0 : r0 + 1024] += beta * a22[r0 : r0 + 1024]
    ta, tb = 0.0, 1.0
    if tuning == "mean":
        assert a22 is not None  # formed: need_a22 when tuning is set
        ta, tb = _tune_mean(g, a22, gids)
        g *= tb
        g += ta
    stats["G_star"] = _means(g)
    if a22 is not None:
        stats["A22"] = _means(a22)
    timings["G_blend_tune"] = time.perf_counter() - t

    t = time.perf_counter()
    if method == "dense":
        assert a22 is not None  # formed: need_a22 when method == "dense"
        keep_a22 = want_other  # diag(H) of non-genotyped animals needs A22 itself
        ca = _chol(a22, "A22", "the pedigree of the genotyped animals is inconsistent", overwrite=not keep_a22)
        logdet_a22 = _logdet_chol(ca)
        a22inv = _inverse_from_chol(ca, overwrite=True)  # ca is a copy or a22's memory
        del ca
        if not keep_a22:
            a22 = None  # its memory now holds A22⁻¹
    else:
        a22inv, logdet_a22 = a22_inverse_sparse(ped, gids)
        if not want_other:
            a22 = None
    timings[f"A22_inverse_{method}"] = time.perf_counter() - t

    t = time.perf_counter()
    hint = (
        "blend G with A22 (beta > 0, e.g. alpha=0.95, beta=0.05 as preGSf90) or tune it "
        "(tuning='mean'); VanRaden's G with current allele frequencies is always singular"
    )
    gdiag = np.diag(g).copy()
    if apy_core is not None:
        gstar = Relationship(gids, g, kind="G")
        ginv_rel = apy_inverse(gstar, apy_core, seed=seed)
        ginv = ginv_rel.dense()
        logdet_g = float(ginv_rel.info["logdet"])
        notes.append(f"APY inverse of G* with {ginv_rel.info['n_core']} core animals (Misztal 2016)")
    else:
        keep_g = keep_g_inverse or want_other  # G* itself is needed later
        what = "G" if (beta == 0 and tuning is None) else "the blended/tuned G*"
        cg = _chol(g, what, hint, overwrite=not keep_g)
        logdet_g = _logdet_chol(cg)
        ginv = _inverse_from_chol(cg, overwrite=True)
        del cg
        if not keep_g:
            del g  # its memory now holds G*⁻¹ (G* is read below only when keep_g)
    timings["G_inverse"] = time.perf_counter() - t

    # T = H22⁻¹ = τG*⁻¹ + (1 − ω)A22⁻¹; log|H| = log|A| − log|A22| − log|T|
    t = time.perf_counter()
    # in place where the operands are ours: k × k matrices dominate the memory
    block = ginv * tau if keep_g_inverse else ginv
    if not keep_g_inverse:
        block *= tau
        del ginv
    if omega == 1.0:
        logdet_t = k * np.log(tau) - logdet_g
        h22 = None  # = G*/τ (G_APY/τ with APY)
    else:
        T = block + (1.0 - omega) * a22inv
        ct = _chol(T, "H22⁻¹ = tau G⁻¹ + (1 - omega) A22⁻¹", "choose other tau/omega")
        logdet_t = _logdet_chol(ct)
        h22 = _inverse_from_chol(ct)
        del T, ct
    if omega != 1.0:
        a22inv *= omega
    block -= a22inv
    del a22inv
    logdet_h = float(Ainv.info["logdet"]) - logdet_a22 - logdet_t
    pos = Ainv.index_of(gids)
    if as_blocks:
        mat = None
    else:
        mat = _embed(Ainv.matrix, pos, block)
        del block
    if a22 is not None and not want_other:
        a22 = None
    timings["assemble"] = time.perf_counter() - t

    t = time.perf_counter()
    F = Ainv.info["inbreeding"].to_numpy()
    hdiag = np.full(len(F), np.nan)
    if h22 is None:
        h22_diag = gdiag / tau  # diag G_APY = diag G* as well
    else:
        h22_diag = np.diag(h22)
    hdiag[pos] = h22_diag
    if want_other:
        h22_full = h22 if h22 is not None else (g / tau if apy_core is None else _apy_g(g, ginv_rel) / tau)
        other = np.setdiff1d(np.arange(Ainv.n), pos)
        hdiag[other] = 1.0 + F[other] + _mdm_diag(Ainv.matrix, other, pos, h22_full - _a22_or(a22, ped, gids))
    elif n_other:
        notes.append(
            f"diag(H) of the {n_other} non-genotyped animals not computed ((n - k) k = "
            f"{float(n_other) * k:.3g} > {DIAG_BUDGET:.3g}; pass diag=True): their "
            "reliabilities are missing"
        )
    timings["diag"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    info = {
        "method": "H⁻¹ = A⁻¹ + [[0,0],[0, tau G*⁻¹ - omega A22⁻¹]] (Aguilar et al. 2010)",
        "logdet": logdet_h,
        "diag": hdiag,
        "genotyped": gids,
        "settings": {
            "tuning": tuning,
            "alpha": alpha,
            "beta": beta,
            "tau": tau,
            "omega": omega,
            "a22_inverse": method,
            "apy_core": None if apy_core is None else (int(apy_core) if np.ndim(apy_core) == 0 else len(apy_core)),
            "grm": grm,
        },
        "tuning_a": ta,
        "tuning_b": tb,
        "G_stats": stats,
        "n_added_founders": n_added,
        "inbreeding": Ainv.info["inbreeding"],
        "timings": timings,
        "notes": notes,
        "source": ped.source,
    }
    if keep_g_inverse:
        info["G_star_inverse"] = ginv  # noqa: F821 (kept above when keep_g_inverse)
        info["G_star"] = g
    if geno is not None:
        info["genotypes_info"] = g_info
    if as_blocks:
        from .h_inverse import SparsePlusDenseInverse

        return SparsePlusDenseInverse(Ainv.ids, Ainv.matrix, block, pos, logdet=-logdet_h, info=info)
    return Relationship(Ainv.ids, mat, inverse=True, kind="Hinv", info=info)


def _a22_or(a22, ped, gids) -> np.ndarray:
    """A₂₂ (formed by Colleau if it was not needed before)."""
    if a22 is not None:
        return a22
    from .pedigree import pedigree_relationship

    return np.array(pedigree_relationship(ped, gids).matrix)


def _apy_g(g: np.ndarray, ginv_rel: Relationship) -> np.ndarray:
    """G_APY, the covariance APY implies: G with G_nn replaced by G_nc G_cc⁻¹ G_cn + M."""
    return np.linalg.inv(ginv_rel.dense())


def _means(m: np.ndarray) -> dict:
    k = m.shape[0]
    tr = float(np.trace(m))
    return {"mean_diag": tr / k, "mean_offdiag": (float(m.sum()) - tr) / (k * (k - 1)) if k > 1 else np.nan}


def _embed(Ainv: sp.csr_matrix, pos: np.ndarray, block: np.ndarray) -> sp.csr_matrix:
    """A⁻¹ + the dense block at (pos, pos) as one canonical CSR matrix (no COO detour)."""
    out = (Ainv + block_csr(Ainv.shape[0], pos, pos, block)).tocsr()
    out.sum_duplicates()
    return out


def _mdm_diag(Ainv: sp.csr_matrix, other: np.ndarray, pos: np.ndarray, D: np.ndarray, block: int = 256) -> np.ndarray:
    """diag(M D M') with M = −(A⁻¹₁₁)⁻¹A⁻¹₁₂, by D = USU' and k sparse solves.

    diag(M D M') = Σⱼ sⱼ (M uⱼ)²: the eigenvectors are taken a block at a time, so
    memory is (n − k) × block, not (n − k) × k.
    """
    B = Ainv.tocsr()
    B11 = B[other][:, other]
    B12 = B[other][:, pos]
    lu = _SupernodalSPD(B11)
    s, U = np.linalg.eigh(_sym(D.copy()))
    out = np.zeros(len(other))
    for a in range(0, len(s), block):
        b = min(a + block, len(s))
        Y = lu.solve(np.asarray(B12 @ U[:, a:b]))  # −M u_j (sign irrelevant when squared)
        Y *= Y
        out += Y @ s[a:b]
    return out

"""G against the pedigree: blending with A22, tuning to its base, diagnostics.

A22 is the pedigree relationship matrix of the genotyped individuals. Every function
matches G and A22 by ids; ids of G absent from A22 are an :class:`AlignmentError`
naming them, or (``missing="drop"``) are dropped with a :class:`DataWarning` that
gives their count and some of them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError, check_missing_mode, format_ids, unknown_ids
from .container import Relationship, as_relationship


def _aligned(G, A22, missing: str = "error", caller: str = "") -> tuple[Relationship, np.ndarray]:
    """G (restricted to ids in A22 with ``missing="drop"``) and A22 dense in G's order.

    Raises :class:`AlignmentError` naming the ids of G absent from A22 (``"error"``),
    or drops them from G with a :class:`DataWarning` giving their count (``"drop"``).
    """
    check_missing_mode(missing)
    G = as_relationship(G, kind="G")
    A22 = as_relationship(A22, kind="A22")
    known = pd.Index(A22.ids).get_indexer(G.ids) >= 0
    if not known.all():
        absent = G.ids[~known]
        unknown_ids(
            f"{caller}: {len(absent)} of {G.n} id(s) of G are not in the pedigree "
            f"relationships A22: {format_ids(absent)}",
            missing,
            dropped=f"dropped them, {int(known.sum())} left",
            left=int(known.sum()),
            stacklevel=3,
        )
        G = G.subset(G.ids[known])
    return G, A22.subset(G.ids).dense()


def blend(G, A22, w: float = 0.05, *, missing: str = "error") -> Relationship:
    """G_w = (1 - w) G + w A22, matched by ids (VanRaden 2008; Aguilar et al. 2010).

    Parameters
    ----------
    G : Relationship or DataFrame, shape (n, n)
    A22 : Relationship or DataFrame
        Pedigree relationships containing G's ids (extra ids are ignored).
    w : float in [0, 1]
        Weight on A22; a small w makes G positive definite.
    missing : {"error", "drop"}
        Ids of G absent from A22: an :class:`AlignmentError` naming them, or drop
        them from the result with a :class:`DataWarning` giving the count and ids.

    Returns
    -------
    Relationship with G's ids (those kept), ``kind="G"``; ``info["n_dropped_not_in_A22"]``.
    """
    if not 0.0 <= w <= 1.0:
        raise DataError(f"blending weight w must be in [0, 1], got {w}")
    n_in = as_relationship(G, kind="G").n
    G, a = _aligned(G, A22, missing, "blend")
    out = G.dense() * (1.0 - w)
    out += w * a
    info = {**G.info, "blend_w": w, "n_dropped_not_in_A22": n_in - G.n}
    return Relationship(G.ids, out, kind="G", info=info)


def tune_to_pedigree(G, A22, *, missing: str = "error") -> Relationship:
    """Scale G to the pedigree base: G* = a + b G (Christensen et al. 2012, GSE 44:37).

    ``a`` and ``b`` solve ``mean(diag G*) = mean(diag A22)`` and
    ``mean(offdiag G*) = mean(offdiag A22)`` (A22 matched to G's ids).
    ``missing`` as in :func:`blend`.
    """
    n_in = as_relationship(G, kind="G").n
    G, a22 = _aligned(G, A22, missing, "tune_to_pedigree")
    g = G.dense()
    n = g.shape[0]
    if n < 2:
        raise DataError("tune_to_pedigree needs at least 2 individuals")
    gd, go = _diag_offdiag_means(g)
    ad, ao = _diag_offdiag_means(a22)
    if np.isclose(gd, go):
        raise DataError("mean diagonal and mean off-diagonal of G are equal: cannot tune")
    b = (ad - ao) / (gd - go)
    a = ad - b * gd
    out = g * b
    out += a
    info = {**G.info, "tuned_a": a, "tuned_b": b, "n_dropped_not_in_A22": n_in - G.n}
    return Relationship(G.ids, out, kind="G", info=info)


def _diag_offdiag_means(g: np.ndarray) -> tuple[float, float]:
    """Means of the diagonal and of the off-diagonal elements, without an n x n mask."""
    n = g.shape[0]
    d = np.trace(g)
    return d / n, (g.sum() - d) / (n * (n - 1))


def relationship_diagnostics(G, A22=None, *, missing: str = "error") -> pd.Series:
    """Summary of a genomic relationship matrix, optionally against A22.

    Returns
    -------
    Series with ``n``, ``mean_diag``, ``sd_diag``, ``mean_offdiag``, ``sd_offdiag``,
    ``min_eigenvalue`` (O(n³) ``eigvalsh``) and, when A22 is given (matched by ids),
    ``corr_diag`` and ``corr_offdiag`` (Pearson) with A22 and ``mean_diag_A22``,
    ``mean_offdiag_A22``. ``missing`` as in :func:`blend` (with ``"drop"`` every
    statistic is over the ids in both, and ``n_dropped_not_in_A22`` counts the others).
    """
    G = as_relationship(G, kind="G")
    n_in = G.n
    if A22 is not None:
        G, a = _aligned(G, A22, missing, "relationship_diagnostics")
    g = G.dense()
    n = g.shape[0]
    off = ~np.eye(n, dtype=bool)
    out = {
        "n": n,
        "mean_diag": np.diag(g).mean(),
        "sd_diag": np.diag(g).std(ddof=1) if n > 1 else np.nan,
        "mean_offdiag": g[off].mean() if n > 1 else np.nan,
        "sd_offdiag": g[off].std(ddof=1) if n > 2 else np.nan,
        "min_eigenvalue": float(np.linalg.eigvalsh(g)[0]),
    }
    if A22 is not None:
        out["n_dropped_not_in_A22"] = n_in - n
        out["mean_diag_A22"] = np.diag(a).mean()
        out["mean_offdiag_A22"] = a[off].mean() if n > 1 else np.nan
        out["corr_diag"] = np.corrcoef(np.diag(g), np.diag(a))[0, 1] if n > 2 else np.nan
        out["corr_offdiag"] = np.corrcoef(g[off], a[off])[0, 1] if n > 2 else np.nan
    return pd.Series(out, dtype=float)

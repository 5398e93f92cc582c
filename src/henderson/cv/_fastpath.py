"""The fixed-variance fast path of :func:`~henderson.cv.cross_validate`.

Turns splits (record positions of y) into the rows ``cross_validate`` assembles, from
one :class:`~henderson.cv.fast.FixedVarianceCV` factorisation: GBLUP directly,
SNP-BLUP through K = Z W W' Z' with the allele-coding correction of the breeding
values, ĝ_F += 2(p_a − p_T)'β̂ (Strandén & Christensen 2011, GSE 43:25; see
:mod:`henderson.cv.evaluate`). Returns None where the path is not exact (the caller
then fits every fold).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._threads import blas_threads_for
from ..models._align import ID, genetic_spec, records_frame
from ..models.snpblup import centred_crossprod, centred_markers
from ..relationships.genomic import genomic_relationship
from ._snps import informative_snps, n_uninformative_leave_one_out, two_sum_pq
from .fast import FixedVarianceCV, rank_error, training_keeps_rank


def record_design(model, known_ids, y: pd.Series, data):
    """y, X, record ids and fixed-effect names of the phenotyped records, and their
    positions in ``y`` (records are matched to ``known_ids`` by id)."""
    frame, formula, *_ = records_frame(y, known_ids, fixed=getattr(model, "fixed", None), data=data)
    spec = genetic_spec(frame, formula)
    rows = frame.index.get_indexer(spec.record_index)
    # frame rows are the non-missing records of y, in y's order (absent ids were refused)
    kept = np.flatnonzero(pd.to_numeric(pd.Series(y.to_numpy()), errors="coerce").notna().to_numpy())
    ids = frame[ID].to_numpy(dtype=object)[rows]
    return spec.y, spec.X, ids, spec.x_names, kept[rows]


def _row(bv, yhat, h2, s_g, s_e, dropped=None) -> dict:
    return {"bv": bv, "yhat": yhat, "h2": h2, "sigma2_g": s_g, "sigma2_e": s_e, "n_snps_dropped": dropped}


def fast_rows(kind, model, K, geno, y, data, sigma2, splits, progress=None, strict=False):
    """See :func:`_fast_rows`; small problems run BLAS single-threaded (as the solvers do,
    :mod:`henderson._threads`: on this busy 2-core machine wheat's 1,198 records took
    0.83 s with two OpenBLAS threads, 0.11 s with one)."""
    with blas_threads_for(int(pd.to_numeric(y, errors="coerce").notna().sum())):
        return _fast_rows(kind, model, K, geno, y, data, sigma2, splits, progress, strict)


def _splits_allow_fast(splits, where: pd.Index, n: int, Xd: np.ndarray, strict: bool) -> bool:
    """Every split trains on all other phenotyped records (else: brute force) and keeps
    the fixed effects estimable (else None, or with ``strict`` the error naming the fold)."""
    for s in splits:
        if len(s.train_pos) + len(s.test_pos) != n or (where.get_indexer(s.test_pos) < 0).any():
            return False
    if Xd.shape[1] > 1:  # (an intercept alone keeps its rank with any training record)
        for s in splits:
            if not training_keeps_rank(Xd, where.get_indexer(s.test_pos)):
                if strict:
                    raise rank_error(s.fold)
                return False
    return True


def _marker_kernel(sub, z: np.ndarray) -> np.ndarray:
    """K = WW' of the records (``z``: each record's line in ``sub``), by G's blocked
    exact-SYRK kernel (G·2Σp_a q_a): no N × m float copy."""
    G = genomic_relationship(sub, method="vanraden1")
    return np.multiply(G.matrix, G.info["scale"])[np.ix_(z, z)]


def _fast_rows(kind, model, K, geno, y, data, sigma2, splits, progress=None, strict=False):
    """Rows (dicts: bv, ŷ, h², σ²_g, σ²_e, n_snps_dropped) per split, or None.

    A fold whose training part cannot estimate the fixed effects (it holds every record
    of a level, e.g. leave-environment-out with ``fixed="env"``) has no exact fast
    solution: None (the caller fits every fold, predicting ĝ and leaving ŷ NaN for the
    unseen level), or with ``strict`` the error naming the fold.

    At held SNP-BLUP variances σ²_g is reported on the scale 2Σp_a q_a of all
    genotyped individuals (:func:`~henderson.cv._snps.two_sum_pq`), as in the
    brute-force path.
    """
    s_k, s_e = (float(v) for v in sigma2)
    if kind == "snpblup" and geno.n_missing > 0:
        return None  # W_T ≠ W_a + 1·2(p_a − p_T)' for mean-imputed calls
    ids_all = K.ids if kind == "gblup" else geno.ids
    yv, Xd, rec_ids, x_names, rec_pos = record_design(model, ids_all, y, data)
    if "(Intercept)" not in x_names and kind == "snpblup":
        return None  # centring invariance needs an intercept
    n = len(rec_ids)
    where = pd.Index(rec_pos)
    if not _splits_allow_fast(splits, where, n, Xd, strict):
        return None
    one_per_id = not pd.Index(rec_ids).has_duplicates
    if kind == "gblup":
        kpos = K.index_of(rec_ids)
        Kr = K.dense()[np.ix_(kpos, kpos)]
        h2, s_g, lines = s_k / (s_k + s_e), s_k, None
    else:
        lines = _Lines(geno, rec_ids)  # SNP-BLUP trains on lines, not records
        Kr = _marker_kernel(lines.geno, lines.z)
        s_g = two_sum_pq(geno) * s_k
        h2 = s_g / (s_g + s_e)
    st = FixedVarianceCV.build(yv, Xd, Kr, s_k, s_e)
    rows = []

    def done(s, row):
        rows.append(row)
        if progress is not None:
            progress(len(rows), len(splits), s.progress_info("fast"))

    if one_per_id and all(len(s.test_pos) == 1 for s in splits) and n == len(splits):  # leave one out
        for s, row in _loo_rows(st, rec_ids, lines, splits, where, (h2, s_g, s_e), s_k):
            done(s, row)
        return rows
    for s in splits:
        t = where.get_indexer(s.test_pos)
        yhat, bv, u = st.fold(t, label=s.fold, check_rank=False)  # checked above
        drop = None
        if lines is not None:
            shift, drop = lines.fold_shift(s_k, u, t)
            bv = bv + shift
        done(s, _row(bv, yhat, h2, s_g, s_e, drop))
    return rows


def _loo_rows(st: FixedVarianceCV, rec_ids, lines, splits, where, figures: tuple[float, float, float], s_k: float):
    """(split, row) of every leave-one-out split, from one closed-form pass over the records.

    SNP-BLUP's shifts are vectorised over individuals: β̂(−i) for all i is m × n anyway.
    """
    yhat, bv = st.leave_one_out(rec_ids)
    drop = None
    if lines is not None:
        shift, drop = lines.loo_shift(s_k, st.loo_u())
        bv = bv + shift
    for s in splits:
        j = where.get_loc(s.test_pos[0])
        yield s, _row(bv[j : j + 1], yhat[j : j + 1], *figures, None if drop is None else int(drop[j]))


class _Lines:
    """SNP-BLUP's genotyped lines of the records: ĝ on the training lines' frequencies p_T
    is ĝ on all lines' frequencies p_a plus 2(p_a − p_T)'β̂ (centring invariance)."""

    def __init__(self, geno, rec_ids):
        self.ids = pd.unique(rec_ids)
        self.z = pd.Index(self.ids).get_indexer(rec_ids)  # each record's line
        self.geno = geno.subset(ids=self.ids)
        self.p_a = self.geno.allele_freq

    def loo_shift(self, s_k: float, loo_u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Leave-one-out: the shift of each left-out ĝ and the SNPs uninformative without it
        (``loo_u``: the records' leave-one-out u as columns)."""
        W, _ = centred_markers(self.geno, self.p_a)
        dos = self.geno.dosages.astype(np.float64)
        B = s_k * (W.T @ loo_u)  # β̂(−i) as columns (m, n)
        n = dos.shape[0]
        p_t = (dos.sum(0)[:, None] - dos.T) / (2.0 * (n - 1))  # training freqs (m, n)
        return np.einsum("mi,mi->i", 2.0 * (self.p_a[:, None] - p_t), B), n_uninformative_leave_one_out(dos)

    def fold_shift(self, s_k: float, u: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, int]:
        """One fold (test records ``t``): the shift of the test ĝ and the SNPs left uninformative."""
        beta = s_k * centred_crossprod(self.geno, np.bincount(self.z, weights=u, minlength=len(self.ids)), self.p_a)
        tr = np.ones(len(self.z), bool)
        tr[t] = False
        train = self.geno.subset(ids=self.ids[np.unique(self.z[tr])])  # the fold's training lines
        return 2.0 * (self.p_a - train.allele_freq) @ beta, int(np.count_nonzero(~informative_snps(train)))

"""From formula + data + covariances to a :class:`ModelSpec` of arrays with ids.

The spec is what every solver consumes: the response ``y``, a full-rank fixed-effect
matrix ``X`` with column names, and random terms that each carry their level ids,
the integer code of every record's level, and how their covariance enters the
mixed model equations:

- ``"iid"``: u ~ N(0, σ²I); the MME penalty is I/γ.
- ``"factor"``: u ~ N(0, σ²K) with K = FF' given dense; the term is refitted as
  u = Fv, v ~ N(0, σ²I), so a singular (positive semi-definite) K is fine.
- ``"inverse"``: u ~ N(0, σ²K) with K⁻¹ given (sparse pedigree A⁻¹); penalty K⁻¹/γ.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.linalg as sla
import scipy.sparse as sp

from .._threads import blas_threads_for
from ..errors import DataError, DataWarning, ModelError, NotPositiveDefiniteError, format_ids
from ..relationships.container import as_relationship
from .formula import ParsedFormula, RandomTermSpec, parse_formula
from .levels import DenseKernel, Factored, Identity, LevelCovariance, SparseInverse

#: relative eigenvalue tolerance below which K is treated as singular (PSD): such
#: directions get no column in the factor F of K = FF' (numerical noise of a Gram
#: matrix is ~1e-13 relative).
EIG_TOL = 1e-9

#: K is declared indefinite when its smallest eigenvalue is below −PSD_TOL·λ_max. The
#: same rule holds in every solver (spec check, dense factor, spectral reduction).
#: Rounding noise of a Gram matrix is ~1e-13 relative and a G written with 6 decimals
#: is off by ~1e-6 per entry; real indefiniteness (a typo, a bad blend) is far larger.
PSD_TOL = 1e-6


@dataclass(frozen=True, eq=False)
class RandomTerm:
    """A random term ready for the mixed model equations.

    Attributes
    ----------
    name : str
        Display name (``"Name"``, ``"batch:cask"``).
    levels : ndarray of str, shape (q,)
        Level ids, in the order of the BLUP vector.
    codes : ndarray of int, shape (n,)
        Level index of every record.
    covariance : LevelCovariance
        K across the levels (:mod:`henderson.spec.levels`): :class:`Identity`,
        :class:`DenseKernel`, :class:`Markers` or :class:`SparseInverse`.
    k_diag : ndarray, shape (q,)
        diag(K), for reliabilities 1 − PEV/(σ²Kᵢᵢ).
    n_records : ndarray of int, shape (q,)
        Records per level (levels with none are predicted through K).
    """

    name: str
    levels: np.ndarray
    codes: np.ndarray
    covariance: LevelCovariance
    k_diag: np.ndarray
    n_records: np.ndarray | None = None
    source: str = "iid"
    #: the Relationship's ``info`` (e.g. a pedigree A⁻¹'s parents, for sampling u ~ N(0, σ²K))
    info: dict = field(default_factory=dict)

    @property
    def kernel(self) -> np.ndarray | None:
        """K (q × q) for a :class:`DenseKernel`, else None."""
        return self.covariance.K if isinstance(self.covariance, DenseKernel) else None

    @property
    def penalty(self):
        """K⁻¹ (q × q, sparse or dense) for a :class:`SparseInverse`, else None."""
        return self.covariance.Kinv if isinstance(self.covariance, SparseInverse) else None

    @property
    def logdet_k(self) -> float:
        """log|K| that −2 log L adds per variance (0 for iid and factored K)."""
        return self.covariance.logdet_contribution()

    @property
    def q(self) -> int:
        return len(self.levels)

    @property
    def factor(self) -> np.ndarray | None:
        """F (q × r) with K = FF', computed on first use (the spectral solver never needs it)."""
        return self.covariance.factor if isinstance(self.covariance, Factored) else None

    @property
    def rank(self) -> int:
        """Number of MME equations of this term (r for a factor, q otherwise)."""
        F = self.factor
        return F.shape[1] if F is not None else self.q

    def design(self) -> sp.csr_matrix | np.ndarray:
        """Z̃ (n × rank): the incidence Z, or ZF for a factored covariance."""
        n = len(self.codes)
        F = self.factor
        if F is not None:
            return F[self.codes]
        return sp.csr_matrix((np.ones(n), (np.arange(n), self.codes)), shape=(n, self.q))


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """Everything a solver needs, with ids attached. Built by :func:`build_spec`."""

    formula: ParsedFormula
    y: np.ndarray
    X: np.ndarray
    x_names: list[str]
    terms: tuple[RandomTerm, ...]
    record_index: pd.Index
    n_dropped: int = 0
    dropped_by_column: dict = field(default_factory=dict)
    aliased: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def p(self) -> int:
        return self.X.shape[1]


def _check_columns(data: pd.DataFrame, needed: list[str]) -> None:
    missing = [c for c in needed if c not in data.columns]
    if missing:
        raise DataError(
            f"column(s) {format_ids(missing)} not found in the data; columns present: "
            + ", ".join(map(str, data.columns))
        )


def _fixed_variables(fixed: str, data: pd.DataFrame) -> list[str]:
    from formulaic import Formula

    try:
        req = Formula(fixed).required_variables
    except Exception as exc:  # formulaic raises its own parse errors
        raise ModelError(f"cannot parse the fixed part {fixed!r}: {exc}") from exc
    names = sorted(str(v) for v in req)
    _check_columns(data, names)
    return names


def _check_no_infinite(data: pd.DataFrame, columns: list[str]) -> None:
    """DataError naming the column and rows holding ±inf (NaN means missing: dropped).

    An inf is not a missing value: dropping it silently would hide a data error, and
    keeping it breaks the linear algebra (LAPACK scaling noise, NaN variances).
    """
    for c in columns:
        col = data[c]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            continue
        inf = np.isinf(col.to_numpy(dtype=np.float64, na_value=np.nan))
        if inf.any():
            rows = data.index[inf]
            raise DataError(
                f"column {c!r} has {int(inf.sum())} infinite value(s), at data index "
                f"{format_ids(rows)}: fix them, or set them to NaN to drop those records"
            )


def _drop_missing(data: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, int, dict]:
    na = data[columns].isna()
    by_col = {c: int(na[c].sum()) for c in columns if na[c].any()}
    keep = ~na.any(axis=1)
    return data.loc[keep], int((~keep).sum()), by_col


def complete_response(
    data: pd.DataFrame, kept: pd.DataFrame, n_dropped: int, by_col: dict, response: str, notes: list
) -> np.ndarray:
    """The response of the complete records, shape (n,); the dropped rows counted in
    ``notes`` and a DataWarning. DataError when none is left or y is not numeric."""
    if n_dropped:
        detail = ", ".join(f"{c}: {k}" for c, k in by_col.items())
        msg = f"{n_dropped} of {len(data)} records dropped for missing values ({detail})"
        notes.append(msg)
        warnings.warn(msg, DataWarning, stacklevel=4)
    if len(kept) == 0:
        raise DataError("no complete records left after dropping rows with missing values")
    y = pd.to_numeric(kept[response], errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(y).any():
        bad = kept.index[np.isnan(y)][:5]
        raise DataError(f"response {response!r} is not numeric at rows {format_ids(bad)}")
    return y


def _fixed_matrix(fixed: str, data: pd.DataFrame) -> tuple[np.ndarray, list[str], list[str]]:
    """Full-rank X from formulaic; numerically aliased columns dropped, as lme4 does."""
    from formulaic import model_matrix

    mm = model_matrix(fixed, data, ensure_full_rank=True, na_action="raise")
    names = ["(Intercept)" if c == "Intercept" else str(c) for c in mm.columns]
    X = np.asarray(mm, dtype=np.float64)
    if X.shape[1] == 0:
        return X, names, []
    # Unpivoted QR: |R_jj| is the norm of column j orthogonal to columns 1..j-1, so a
    # tiny R_jj marks a column aliased with earlier ones; keeping the earlier one
    # matches lme4 (which drops the later columns of a rank-deficient X).
    # The QR is redone after each removal because the Householder vector built on an
    # (almost) zero column points in an arbitrary direction and would distort R
    # for the columns after it.
    keep = list(range(X.shape[1]))
    norms = np.linalg.norm(X, axis=0)
    tol = max(X.shape) * np.finfo(float).eps * 100
    while keep:
        r = sla.qr(X[:, keep], mode="r", check_finite=False)[0]
        d = np.abs(np.diag(r))
        small = np.flatnonzero(d <= tol * np.maximum(norms[keep], 1e-300))
        if small.size == 0:
            break
        del keep[small[0]]
    if len(keep) < X.shape[1]:
        aliased = [names[i] for i in range(len(names)) if i not in set(keep)]
        return X[:, keep], [names[i] for i in keep], aliased
    return X, names, []


def _column_labels(col: pd.Series) -> np.ndarray:
    """A grouping column as string ids.

    A float column whose values are all whole numbers (an integer id column that pandas
    made float because it has missing values) gives '12', not '12.0', so its ids match
    the ids of a pedigree or a relationship matrix.
    """
    if pd.api.types.is_float_dtype(col.dtype):
        v = col.to_numpy()
        ok = np.isfinite(v)
        if ok.all() and np.all(v == np.round(v)):
            return col.astype(np.int64).astype(str).to_numpy(dtype=object)
    return col.astype(str).to_numpy(dtype=object)


def _group_labels(data: pd.DataFrame, spec: RandomTermSpec) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each record's level id (``a:b`` for a combination) and the per-column ids."""
    cols = [_column_labels(data[c]) for c in spec.columns]
    out = cols[0]
    for c in cols[1:]:
        out = out + ":" + c
    return out, cols


def term_labels(data: pd.DataFrame, spec: RandomTermSpec) -> np.ndarray:
    """Each record's level id of a random term, as the model labels it (``a:b`` joined)."""
    return _group_labels(data, spec)[0]


def _natural_rank(values: np.ndarray) -> np.ndarray:
    """Rank of each string in natural order: numerically when every value is a
    non-negative integer ('2' < '10', as R sorts an integer factor), else as text.

    Hashes the values once (``pandas.factorize``, O(n)) and sorts only the distinct ones.
    """
    inv, uniq = pd.factorize(values)
    u = pd.Series(uniq, dtype=object)
    if len(u) and u.str.fullmatch(r"\d+").all():
        stripped = u.str.lstrip("0")
        # (length, digits) orders integers of any size exactly; ties ('7', '007') by text
        order = np.lexsort((u.to_numpy(dtype=str), stripped.to_numpy(dtype=str), stripped.str.len().to_numpy()))
    else:
        order = np.argsort(u.to_numpy(dtype=str), kind="stable")
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[order] = np.arange(len(uniq))
    return rank[inv]


def _iid_levels(labels: np.ndarray, columns: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Level ids of an iid term in natural order, and each record's level code.

    ``labels`` (n,) are the records' level ids, ``columns`` the per-column ids they
    were joined from. Ids stay strings (they are labels); a combination ``a:b`` is
    ordered by ``a``, then ``b``, each column in natural order.
    """
    key = np.zeros(len(labels), dtype=np.int64)
    for col in columns:  # mixed radix: rank of a, then of b within a, ...
        r = _natural_rank(col)
        key = key * (int(r.max()) + 1 if len(r) else 1) + r
    _, first, codes = np.unique(key, return_index=True, return_inverse=True)
    return labels[first].astype(object), codes.ravel()


def _check_symmetric(
    K: np.ndarray, name: str, ids: np.ndarray, rows: int = 512, what: str = "covariance", symbol: str = "K"
) -> None:
    """Error naming the most asymmetric pair; in row blocks, so no n × n temporary."""
    n = K.shape[0]
    scale = 1e-8 * max(1.0, float(np.abs(np.diag(K)).max()) if n else 1.0)
    for a in range(0, n, rows):
        b = min(a + rows, n)
        diff = np.abs(K[a:b] - K[:, a:b].T)
        if diff.max() > scale:
            i, j = np.unravel_index(np.argmax(diff), diff.shape)
            i += a
            raise NotPositiveDefiniteError(
                f"{what} for {name!r} is not symmetric: {symbol}[{ids[i]!r}, {ids[j]!r}] = "
                f"{K[i, j]:.6g} but {symbol}[{ids[j]!r}, {ids[i]!r}] = {K[j, i]:.6g}"
            )


def psd_error(
    name: str, ids, w_min: float, w_max: float, loadings: np.ndarray, what: str = ""
) -> NotPositiveDefiniteError:
    """The error every solver raises for an indefinite covariance: it names the ids.

    ``loadings`` (one per id) are the absolute entries of the eigenvector of the
    smallest eigenvalue: the ids with the largest are the ones to check first.
    """
    load = np.abs(np.asarray(loadings, dtype=float))
    worst = np.argsort(load)[::-1][:5]
    worst = worst[load[worst] >= 0.01 * load[worst[0]]]  # ids that really load on it
    return NotPositiveDefiniteError(
        f"covariance for {name!r} is not positive semi-definite{what}: smallest eigenvalue "
        f"{w_min:.4g} (largest {w_max:.4g}); ids loading most on that eigenvector: "
        + format_ids(np.asarray(ids, dtype=object)[worst])
        + ". Check the matrix, or blend it with a positive definite one "
        "(e.g. 0.99 K + 0.01 I)."
    )


def _largest_eigenvalue(K: np.ndarray, steps: int = 8) -> float:
    """λ_max(K) from a few power steps (a lower bound; floored at max diag K).

    Only sets the scale of the PSD tolerance, so a factor-of-two error is harmless;
    each step is one O(N²) product, negligible next to the O(N³) check it scales.
    """
    v = np.asarray(np.random.default_rng(0).standard_normal(K.shape[0]))
    est = 0.0
    with blas_threads_for(K.shape[0]):  # threaded gemv spins on a busy machine (0.18 s at N = 1,309)
        for _ in range(steps):
            w = K @ v
            nrm = float(np.linalg.norm(w))
            if nrm == 0.0:
                break
            est = float(v @ w) / float(v @ v)
            v = w / nrm
    return max(est, float(np.diag(K).max()), 1e-300)


def check_psd(K: np.ndarray, name: str, ids: np.ndarray) -> None:
    """Error naming ids unless K (symmetric, finite) is PSD within :data:`PSD_TOL`.

    One Cholesky of K + δI, δ = PSD_TOL·λ_max: it succeeds for every K whose
    smallest eigenvalue is above −δ (a PSD but singular G included), so the usual
    cost is N³/3 flops (~3 s at N = 10,000). Only when it fails is the smallest
    eigenpair computed (LAPACK ``dsyevr``), to decide and to name the ids that load
    on it.
    """
    n = K.shape[0]
    if n == 0:
        return
    from ..linalg import dense_safe

    lam_max = _largest_eigenvalue(K)
    delta = PSD_TOL * lam_max
    A = np.array(K.T, order="F")  # K symmetric: its transpose's copy is Fortran-ordered
    A[np.diag_indices(n)] += delta
    with blas_threads_for(n):  # see henderson._threads
        # split above 12k rows (OpenBLAS threaded-dsyrk crash: linalg.dense_safe)
        _, info = dense_safe.potrf(A, overwrite=True)
    del A
    if info == 0:
        return
    w, Q = sla.eigh(K, driver="evr", subset_by_index=[0, 0])
    if w[0] < -delta:
        raise psd_error(name, ids, float(w[0]), lam_max, Q[:, 0])


def _factor_of(K: np.ndarray, name: str, ids: np.ndarray) -> np.ndarray:
    """F with K = FF' (columns for positive eigenvalues only); errors for non-PSD K."""
    from ..linalg import dense_safe

    try:  # fast path for positive definite K
        # split above 12k rows (OpenBLAS threaded-dsyrk crash: linalg.dense_safe)
        return dense_safe.cholesky_lower(K)
    except np.linalg.LinAlgError:
        pass
    w, Q = sla.eigh(K, driver="evd")
    if w.min() < -PSD_TOL * max(w.max(), 1e-300):
        raise psd_error(name, ids, float(w.min()), float(w.max()), Q[:, 0])
    keep = w > EIG_TOL * max(w.max(), 1e-300)
    return Q[:, keep] * np.sqrt(w[keep])


def _check_finite(K, name: str, ids: np.ndarray, what: str) -> None:
    """Error naming the ids whose row of K (or K⁻¹) holds NaN or inf.

    A row sum is non-finite exactly when the row holds a NaN or an inf (barring
    overflow near 1e308), so no N × N boolean temporary is needed.
    """
    if sp.issparse(K):
        K = sp.csr_matrix(K)
        if np.isfinite(K.data).all():
            return
        rows = np.repeat(np.arange(K.shape[0]), np.diff(K.indptr))[~np.isfinite(K.data)]
        bad = np.unique(rows)
    else:
        sums = K.sum(axis=1)
        if np.isfinite(sums).all():
            return
        bad = np.flatnonzero(~np.isfinite(sums))
    raise DataError(
        f"{what} for {name!r} has NaN or infinite values in the rows of {len(bad)} id(s): "
        + format_ids(np.asarray(ids, dtype=object)[bad])
    )


def _check_symmetric_sparse(P, name: str, ids: np.ndarray) -> None:
    """Error naming the most asymmetric pair of a sparse K⁻¹ (solvers read one triangle)."""
    P = sp.csr_matrix(P)
    diff = (P - P.T).tocoo()
    if diff.nnz == 0:
        return
    scale = 1e-8 * max(1.0, float(np.abs(P.diagonal()).max()) if P.shape[0] else 1.0)
    k = int(np.argmax(np.abs(diff.data)))
    if abs(diff.data[k]) > scale:
        i, j = int(diff.row[k]), int(diff.col[k])
        raise NotPositiveDefiniteError(
            f"inverse covariance for {name!r} is not symmetric: Kinv[{ids[i]!r}, {ids[j]!r}] = "
            f"{P[i, j]:.6g} but Kinv[{ids[j]!r}, {ids[i]!r}] = {P[j, i]:.6g}"
        )


def _inverse_diag(Kinv, info: dict, ids: np.ndarray) -> np.ndarray:
    """diag(K) when only K⁻¹ is given: 1 + F for a pedigree's A (no inversion)."""
    if "diag" in info:
        return np.asarray(info["diag"], dtype=float)
    F = info.get("inbreeding")
    if isinstance(F, pd.Series):
        return 1.0 + F.reindex(pd.Index(ids)).to_numpy(dtype=float)
    q = Kinv.shape[0]
    if q <= 20000:
        dense = Kinv.toarray() if sp.issparse(Kinv) else np.asarray(Kinv)
        return np.diag(sla.inv(dense))
    return np.full(q, np.nan)


def _logdet_of_inverse(Kinv, info: dict) -> float:
    """log|K| from K⁻¹ (a pedigree's A⁻¹ brings it in ``info['logdet']``)."""
    if "logdet" in info:
        return float(info["logdet"])
    dense = Kinv.toarray() if sp.issparse(Kinv) else np.asarray(Kinv)
    sign, ld = np.linalg.slogdet(dense)
    if sign <= 0:
        raise NotPositiveDefiniteError("the inverse covariance given in cov_inverse is not positive definite")
    return -float(ld)


def _random_term(spec: RandomTermSpec, labels: np.ndarray, columns: list[np.ndarray], cov, cov_inverse) -> RandomTerm:
    """:func:`random_term` for a parsed term (its ``name``)."""
    return random_term(spec.name, labels, cov, cov_inverse, columns=columns)


def random_term(
    name: str, labels: np.ndarray, cov=None, cov_inverse=None, *, columns: list[np.ndarray] | None = None
) -> RandomTerm:
    """A :class:`RandomTerm` from arrays with ids: every record's level id and K (or K⁻¹).

    Parameters
    ----------
    name : str
        The term's name (``"id"``, ``"batch:cask"``).
    labels : ndarray of str, shape (n,)
        Level id of every record.
    cov, cov_inverse : Relationship or DataFrame, optional
        K, or K⁻¹, across the levels (at most one): the level covariance becomes a
        :class:`DenseKernel` or :class:`SparseInverse`, with every record's level
        looked up by id (a recorded level absent from K is an error naming it). Neither:
        :class:`Identity` over the recorded levels, in natural order.
    columns : list of ndarray of str, optional
        The per-column ids ``labels`` were joined from (``a:b``), which order iid levels
        column by column; default ``[labels]``.
    """
    columns = [labels] if columns is None else columns
    if cov is not None and cov_inverse is not None:
        raise ModelError(f"term {name!r} got both cov= and cov_inverse=; give one")
    rel = None
    if cov is not None:
        rel = as_relationship(cov, inverse=False, kind=f"K[{name}]")
    elif cov_inverse is not None:
        rel = as_relationship(cov_inverse, inverse=True, kind=f"Kinv[{name}]")
    if rel is None:
        levels, codes = _iid_levels(labels, columns)
        counts = np.bincount(codes, minlength=len(levels))
        levels = levels.astype(object)
        return RandomTerm(name, levels, codes, Identity(levels), k_diag=np.ones(len(levels)), n_records=counts)
    levels = rel.ids
    pos = pd.Index(levels).get_indexer(labels)
    if (pos < 0).any():
        missing = pd.unique(labels[pos < 0])
        raise DataError(
            f"{len(missing)} level(s) of {name!r} have records but are not in the covariance "
            f"matrix given for it: " + format_ids(missing)
        )
    counts = np.bincount(pos, minlength=len(levels))
    if rel.inverse:
        return _inverse_term(name, rel, pos, counts)
    return _kernel_term(name, rel, pos, counts)


def _inverse_term(name: str, rel, pos: np.ndarray, counts: np.ndarray) -> RandomTerm:
    """A term whose K⁻¹ is given (:class:`SparseInverse`), checked finite and symmetric."""
    levels = rel.ids
    Kinv = rel.matrix if sp.issparse(rel.matrix) else np.asarray(rel.matrix, dtype=float)
    _check_finite(Kinv, name, levels, "the inverse covariance")
    if sp.issparse(Kinv):
        _check_symmetric_sparse(Kinv, name, levels)
    else:
        _check_symmetric(Kinv, name, levels, what="inverse covariance", symbol="Kinv")
    return RandomTerm(
        name,
        levels,
        pos,
        SparseInverse(Kinv, levels, _logdet_of_inverse(Kinv, rel.info)),
        k_diag=_inverse_diag(Kinv, rel.info, levels),
        n_records=counts,
        source=rel.kind,
        info=rel.info,
    )


def _kernel_term(name: str, rel, pos: np.ndarray, counts: np.ndarray) -> RandomTerm:
    """A term whose K is given (:class:`DenseKernel`), checked finite, symmetric and PSD."""
    levels = rel.ids
    K = rel.dense()
    _check_finite(K, name, levels, "the covariance")
    _check_symmetric(K, name, levels)  # solvers read the lower triangle only
    if (counts == 0).any():
        # Levels without records: the solvers decompose only what the records see
        # (the spectral solver reduces ZKZ'), so the full K is checked here, once.
        # When every level has records the solvers' own decompositions cover all of K
        # (ZKZ' is congruent to K when Z has full column rank) and this O(N³) pass is
        # skipped: see docs/theory.md.
        check_psd(K, name, levels)
    return RandomTerm(
        name,
        levels,
        pos,
        DenseKernel(K, levels, name, _factor_of),
        k_diag=np.diag(K).copy(),
        n_records=counts,
        source=rel.kind,
    )


def _integer_covariate_notes(data: pd.DataFrame, x_names: list[str]) -> list[str]:
    """A note for each numeric column with a few whole-number values entering X as a
    covariate (a slope) — often a factor coded by numbers (herd 1..12, parity), which
    needs ``C(col)``. Two values span the same space as a factor, so they are not noted;
    a genuine covariate (days, doses) is fine: the note only says how it entered."""
    out = []
    for c in x_names:
        if c not in data.columns or not pd.api.types.is_numeric_dtype(data[c].dtype):
            continue
        v = data[c].to_numpy(dtype=float)
        k = len(np.unique(v))
        if 3 <= k <= 20 and np.all(v == np.round(v)):
            out.append(
                f"{c!r} has {k} whole-number values and entered as a covariate (one slope); "
                f"if it is a factor coded by numbers, write C({c}) in the formula"
            )
    return out


@dataclass(frozen=True, eq=False)
class FixedDesign:
    """The complete records of a model and its fixed part, as arrays with ids.

    Attributes
    ----------
    y : ndarray, shape (n,)
        The response of the complete records.
    X : ndarray, shape (n, p)
        Full-rank fixed-effect matrix (aliased columns dropped, as lme4 does).
    x_names : list of str, length p
    records : DataFrame
        The complete records (rows of the data, index kept): their level ids come from here.
    n_dropped, dropped_by_column : records dropped for missing values, in all and per column.
    aliased : list of str
        Dropped aliased columns.
    notes : list of str
    """

    y: np.ndarray
    X: np.ndarray
    x_names: list[str]
    records: pd.DataFrame
    n_dropped: int = 0
    dropped_by_column: dict = field(default_factory=dict)
    aliased: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def fixed_design(response: str, fixed: str, data: pd.DataFrame, group_columns=()) -> FixedDesign:
    """The complete records of ``data`` and their fixed-effect design.

    Parameters
    ----------
    response : str
        Column of y.
    fixed : str
        The fixed part (formulaic syntax: ``"1"``, ``"Env"``, ``"0 + C(herd) + x"``).
    data : DataFrame
        One row per record.
    group_columns : sequence of str
        Columns of the random terms' level ids: a record missing one is dropped too.

    Rows with a missing (NaN) response, predictor or grouping column are dropped, counted
    in ``notes`` and warned; infinite values are an error naming the column and rows.
    """
    needed = [response] + _fixed_variables(fixed, data) + list(group_columns)
    _check_columns(data, needed)
    needed = list(dict.fromkeys(needed))
    _check_no_infinite(data, needed)
    kept, n_dropped, by_col = _drop_missing(data, needed)
    notes: list[str] = []
    y = complete_response(data, kept, n_dropped, by_col, response, notes)
    X, x_names, aliased = _fixed_matrix(fixed, kept)
    if aliased:
        msg = f"fixed-effect columns aliased with others and dropped: {', '.join(aliased)}"
        notes.append(msg)
        warnings.warn(msg, DataWarning, stacklevel=4)
    notes += _integer_covariate_notes(kept, x_names)
    return FixedDesign(y, X, x_names, kept, n_dropped, by_col, aliased, notes)


def record_labels(records: pd.DataFrame, spec: RandomTermSpec) -> tuple[np.ndarray, list[np.ndarray]]:
    """Every record's level id of a random term (``a:b`` joined) and the per-column ids."""
    return _group_labels(records, spec)


def model_spec(formula: ParsedFormula, design: FixedDesign, terms) -> ModelSpec:
    """A :class:`ModelSpec` from arrays with ids: the complete records' design and the
    random terms on them (:func:`random_term`, one level per record each).

    ``formula`` describes the model (its ``text`` labels the results); nothing is parsed.
    """
    terms = tuple(terms)
    n = len(design.y)
    for t in terms:
        if len(t.codes) != n:
            raise ModelError(f"random term {t.name!r} has {len(t.codes)} record levels for {n} records")
    if np.ptp(design.y) == 0:
        raise DataError(f"response {formula.response!r} is constant ({design.y[0]!r}): nothing to fit")
    return ModelSpec(
        formula,
        design.y,
        design.X,
        design.x_names,
        terms,
        design.records.index,
        design.n_dropped,
        design.dropped_by_column,
        design.aliased,
        design.notes,
    )


def with_expanded_fixed(parsed: ParsedFormula, data: pd.DataFrame) -> tuple[ParsedFormula, pd.DataFrame]:
    """``leg(x, k)`` in the fixed part replaced by its columns (:func:`~henderson.spec.legendre.expand_fixed`)."""
    from .legendre import expand_fixed

    fixed_expanded, data = expand_fixed(parsed.fixed, data)
    if fixed_expanded != parsed.fixed:
        parsed = ParsedFormula(parsed.response, fixed_expanded, parsed.random, parsed.text)
    return parsed, data


def build_spec(
    formula: str | ParsedFormula, data: pd.DataFrame, cov: dict | None = None, cov_inverse: dict | None = None
) -> ModelSpec:
    """Build a :class:`ModelSpec` from an lme4-style formula and a data frame.

    Parameters
    ----------
    formula : str
        ``"response ~ fixed + (1|group) + ..."``.
    data : DataFrame
        One row per record.
    cov : dict, optional
        ``{group: K}``: a known covariance for a grouping factor, K a DataFrame indexed
        by level ids or a :class:`~henderson.Relationship`.
    cov_inverse : dict, optional
        ``{group: Kinv}``: the inverse covariance (e.g. sparse pedigree A⁻¹).

    Rows with a missing (NaN) response, predictor or grouping factor are dropped; the
    count is returned in the spec and warned. Infinite values are an error naming the
    column and the rows. Levels of an iid term are ordered naturally (numerically
    when all ids are integers, as R orders an integer factor; otherwise as text).
    The arrays go through :func:`fixed_design`, :func:`random_term` and :func:`model_spec`,
    which the genetic models call directly.
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    parsed = parse_formula(formula)
    structured = [t.text for t in parsed.random if t.structured]
    if structured:
        # one-variance terms only here; henderson.fit routes structured terms to the
        # general engine (spec/terms.py, solvers/general.py)
        raise ModelError(
            f"random term(s) {structured} have several components or a structure: "
            "fit them with henderson.fit (the general engine), not build_spec"
        )
    parsed, data = with_expanded_fixed(parsed, data)
    cov, cov_inverse = dict(cov or {}), dict(cov_inverse or {})
    term_names = {t.name for t in parsed.random}
    for key in list(cov) + list(cov_inverse):
        if key not in term_names:
            raise ModelError(
                f"a covariance was given for {key!r}, which is not a random term of the formula; "
                f"random terms: {sorted(term_names) or 'none'}"
            )
    group_cols = sorted({c for t in parsed.random for c in t.columns})
    design = fixed_design(parsed.response, parsed.fixed, data, group_cols)
    terms = []
    for t in parsed.random:
        labels, columns = record_labels(design.records, t)
        terms.append(random_term(t.name, labels, cov.get(t.name), cov_inverse.get(t.name), columns=columns))
    return model_spec(parsed, design, terms)

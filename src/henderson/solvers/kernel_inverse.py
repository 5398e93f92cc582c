"""Dense covariances with a sparse inverse go to the sparse MME.

A pedigree relationship matrix A given dense (``cov={"animal": A}``) is the usual way
to pass a known covariance, but its inverse is sparse: Henderson's rules give at
most 3 + 6·(animals with parents) nonzeros. Handled as a dense K, each AI iteration
factors and inverts a dense C over every animal (O(q³)); through K⁻¹, the sparse
solver does the same model in a fraction of that.

:func:`sparse_inverse_spec` inverts K once from its Cholesky factor (which the spec
already made for the dense route: ``RandomTerm.factor`` is chol(K) when K is positive
definite), keeps K⁻¹'s entries above :data:`DROP_TOL` relative to its largest, and
hands the term to the sparse solver as ``kind="inverse"`` with log|K| from the same
factor. It only does so when the kept entries are few (:data:`MAX_DENSITY`) and the
dropped ones are rounding noise: the largest dropped entry must be below the
tolerance by construction, and no entry may lie between ``DROP_TOL`` and
``GAP``·max (a K⁻¹ with genuinely small entries stays dense). For a pedigree A the
nonzeros of A⁻¹ are ≥ 1/4 of the smallest Mendelian-sampling precision and the
rounding noise of the inverse is ~1e-16 relative, so the gap is twelve orders wide
and the model is the same to rounding (tested against the sparse A⁻¹ to 1e-8).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from .._threads import blas_threads_for
from ..linalg import dense_safe
from ..spec.levels import Factored, SparseInverse

#: entries of K⁻¹ below this fraction of its largest magnitude are rounding noise
DROP_TOL = 1e-11
#: ... and none may lie between DROP_TOL and GAP (otherwise K⁻¹ is not clearly sparse)
GAP = 1e-6
#: K⁻¹ is handed to the sparse solver only when at most this fraction of it is kept
MAX_DENSITY = 0.05
#: terms with fewer levels stay dense (the dense MME is fast there)
MIN_LEVELS = 500


def sparse_inverse(K_factor: np.ndarray):
    """(K⁻¹ as CSC with the noise dropped, log|K|) from the lower Cholesky factor of K,
    or None if K⁻¹ is not clearly sparse."""
    q = K_factor.shape[0]
    with blas_threads_for(q):
        inv, info = dense_safe.potri(K_factor)  # one dpotri up to 12k (OpenBLAS dsyrk crash above)
    if info != 0:
        return None
    # dpotri fills the lower triangle (the upper still holds K's factor's zeros)
    rows, cols = np.tril_indices(q)
    vals = inv[rows, cols]
    a = np.abs(vals)
    scale = float(a.max())
    kept = a > DROP_TOL * scale
    if (a[kept] < GAP * scale).any() or 2 * kept.sum() - q > MAX_DENSITY * q * q:
        return None
    r, c, v = rows[kept], cols[kept], vals[kept]
    off = r != c
    P = sp.csc_matrix(
        (np.concatenate([v, v[off]]), (np.concatenate([r, c[off]]), np.concatenate([c, r[off]]))), shape=(q, q)
    )
    logdet_k = 2.0 * float(np.log(np.diag(K_factor)).sum())
    return P, logdet_k


def sparse_inverse_spec(spec):
    """``spec`` with every large dense-K term whose K⁻¹ is sparse turned into an
    ``"inverse"`` term (K⁻¹ given), or None when no term qualifies."""
    terms, changed = [], False
    for t in spec.terms:
        if isinstance(t.covariance, Factored) and t.kernel is not None and t.q >= MIN_LEVELS:
            with blas_threads_for(t.q):  # chol(K), made once and cached on the term
                F = t.factor
            square_lower = F.shape == (t.q, t.q) and not np.triu(F, 1).any()
            got = sparse_inverse(F) if square_lower else None  # eigen-factor: K singular
            if got is not None:
                P, logdet_k = got
                t = dataclasses.replace(t, covariance=SparseInverse(P, t.levels, logdet_k))
                changed = True
        terms.append(t)
    return dataclasses.replace(spec, terms=tuple(terms)) if changed else None

"""Matrix-free preconditioned conjugate gradients on Henderson's MME (iteration on data).

At given variance components the MME (random equations first, fixed last, as in
:mod:`henderson.solvers.sparse`) are

    C s = r,   C = T'T + ⊕ₖ λₖPₖ (⊕ 0 for X),   r = T'y,   λₖ = σ²ₑ/σ²ₖ,

with T = [Z̃₁ … Z̃_K X] and Pₖ = Kₖ⁻¹ (I for iid terms and for a dense K refitted as
u = Fv). C is never formed: ``C x`` is one forward pass ``t = T x`` and one adjoint
pass ``T't`` over the records (numba, :mod:`henderson.solvers._pcg_kernels`) plus the
sparse products λₖPₖxₖ; a dense K enters as the products F v and F'w ("a dense
genomic block applied as a product"). Cost per round: O(n(K + p) + nnz(P) + q·r_F).

Preconditioner (``"block"``, the default): per level, the diagonal block of C over
the random terms that share that level's id (e.g. an animal's additive and
permanent-environment effects), and the whole p × p X'X block of the fixed effects;
``"jacobi"`` keeps only diag(C). Both are inverted once, before iterating.

Convergence: ‖r − Cx‖/‖r‖ ≤ ``tol`` (default 1e-10) on the *true* residual (the
recurrence residual is re-checked by one extra product before stopping). Rounds,
the final relative residual and the history are returned in :class:`PCGInfo`; a
run that stops at ``max_rounds`` is a :class:`~henderson.ConvergenceWarning`
carrying the history.

Before iterating, C is checked to be positive definite by construction: it is when X
has full column rank and every Pₖ is positive definite, so a fixed-effect column
confounded with others (or with no records) and a level whose K⁻¹ diagonal is not
positive (a level with no records and no relationships) are errors naming the
column or the level ids.

Extension points (see docs/theory.md): a term is a pair (level map, penalty
product); multi-trait and correlated terms make the per-level blocks g × g with
Σ⁻¹ ⊗ Pₖ as penalty, and an H⁻¹ (sparse + dense genomic block) is one more penalty
product. This class covers single-trait iid, sparse-K⁻¹ and dense-K terms; multi-trait,
correlated (maternal) and single-step H⁻¹/APY models are :mod:`henderson.solvers.pcg_general`,
which shares :func:`pcg_loop`.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg as sla
import scipy.sparse as sp

from ..errors import ConvergenceWarning, ModelError, NotPositiveDefiniteError, format_ids
from ..spec.levels import Factored, SparseInverse
from ..spec.model import ModelSpec
from . import _pcg_kernels as kern

#: default relative residual ‖r − Cx‖/‖r‖ at convergence
TOL = 1e-10


@dataclass(frozen=True)
class PCGInfo:
    """How a PCG solve went: rounds, final relative residual ‖r − Cx‖/‖r‖, history."""

    rounds: int
    rel_residual: float
    history: np.ndarray
    converged: bool
    preconditioner: str
    tol: float
    seconds: float

    def log(self) -> pd.DataFrame:
        return pd.DataFrame({"round": np.arange(len(self.history)), "rel_residual": self.history})


class PCGMME:
    """The MME at fixed σ² as a linear operator, its preconditioner, and a PCG solve.

    Parameters
    ----------
    spec : ModelSpec
    sigma2 : array, shape (K + 1,)
        σ²₁ … σ²_K, σ²ₑ. A term with σ²ₖ = 0 is dropped (its BLUPs are 0), as in the
        dense and sparse solvers.
    preconditioner : {"block", "jacobi"}

    Attributes
    ----------
    spans : dict
        term k → (a, b) slice of the equation vector (empty for dropped terms); the
        fixed effects are the last ``p`` equations.
    m : int
        Number of equations.
    """

    name = "pcg"

    def __init__(self, spec: ModelSpec, sigma2, preconditioner: str = "block"):
        if preconditioner not in ("block", "jacobi"):
            raise ModelError(f"preconditioner must be 'block' or 'jacobi', not {preconditioner!r}")
        s = np.asarray(sigma2, dtype=np.float64)
        K = len(spec.terms)
        if s.shape != (K + 1,):
            raise ModelError(f"sigma2 needs {K + 1} values (terms, then residual)")
        if not np.all(np.isfinite(s)) or not s[-1] > 0 or np.any(s[:-1] < 0):
            raise ModelError(f"variance components must be finite, >= 0, and the residual > 0: got {s.tolist()}")
        self.spec, self.sigma2, self.preconditioner = spec, s, preconditioner
        self.active = s[:-1] > 0
        self.terms = [k for k in range(K) if self.active[k]]
        self.lam = {k: s[-1] / s[k] for k in self.terms}
        self.X = np.ascontiguousarray(spec.X, dtype=np.float64)
        self.n, self.p = spec.n, spec.p
        self.y = np.ascontiguousarray(spec.y, dtype=np.float64)
        # equation spans (rank r for a factored dense K, q otherwise) and level spans
        self.spans, self.level_spans = {}, {}
        pos = lpos = 0
        for k in range(K):
            t = spec.terms[k]
            if not self.active[k]:
                self.spans[k] = (pos, pos)
                continue
            r = t.rank if isinstance(t.covariance, Factored) else t.q
            self.spans[k] = (pos, pos + r)
            self.level_spans[k] = (lpos, lpos + t.q)
            pos += r
            lpos += t.q
        self.nz, self.m, self.n_levels = pos, pos + self.p, lpos
        self.codes = np.ascontiguousarray(
            np.column_stack([spec.terms[k].codes for k in self.terms]).astype(np.int64)
            if self.terms
            else np.empty((self.n, 0), np.int64)
        )
        self.level_offsets = np.array([self.level_spans[k][0] for k in self.terms], dtype=np.int64)
        # x[:nz] is the level vector itself unless a dense K is refitted as u = Fv
        self._direct_levels = all(not isinstance(spec.terms[k].covariance, Factored) for k in self.terms)
        self._penalties = {}
        for k in self.terms:
            t = spec.terms[k]
            if isinstance(t.covariance, SparseInverse):
                P = sp.csr_matrix(t.penalty) if sp.issparse(t.penalty) else sp.csr_matrix(np.asarray(t.penalty))
                P.sum_duplicates()
                self._penalties[k] = (
                    P.indptr.astype(np.int64),
                    P.indices.astype(np.int64),
                    P.data.astype(np.float64),
                    P.diagonal(),
                )
        self._t = np.empty(self.n)
        self._ls = np.empty(self.n_levels)
        self._xt = np.empty(self.p)
        self.counts = {k: np.bincount(spec.terms[k].codes, minlength=spec.terms[k].q).astype(float) for k in self.terms}
        self._check_definite()
        self._build_preconditioner()

    # -- the operator -----------------------------------------------------------------
    def _levels(self, x: np.ndarray) -> np.ndarray:
        """Level values of all active terms, concatenated (u = F v for a dense K)."""
        if self._direct_levels:
            return x[: self.nz]
        lv = np.empty(self.n_levels)
        for k in self.terms:
            a, b = self.spans[k]
            la, lb = self.level_spans[k]
            t = self.spec.terms[k]
            lv[la:lb] = t.factor @ x[a:b] if isinstance(t.covariance, Factored) else x[a:b]
        return lv

    def apply_t(self, x: np.ndarray) -> np.ndarray:
        """T x, shape (n,): the fitted values Xb + Σ Z̃ₖuₖ of an equation vector x."""
        out = np.empty(self.n)
        kern.forward(
            self.X,
            self.codes,
            self.level_offsets,
            np.ascontiguousarray(self._levels(x)),
            np.ascontiguousarray(x[self.nz :]),
            out,
        )
        return out

    def apply_tt(self, t: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """T't, shape (m,)."""
        out = np.empty(self.m) if out is None else out
        kern.adjoint(
            self.X, self.codes, self.level_offsets, np.ascontiguousarray(t, dtype=np.float64), self._ls, self._xt
        )
        for k in self.terms:
            a, b = self.spans[k]
            la, lb = self.level_spans[k]
            t_k = self.spec.terms[k]
            cv = t_k.covariance
            out[a:b] = cv.factor.T @ self._ls[la:lb] if isinstance(cv, Factored) else self._ls[la:lb]
        out[self.nz :] = self._xt
        return out

    def rhs(self, y: np.ndarray | None = None) -> np.ndarray:
        """r = T'y (the data's y by default)."""
        return self.apply_tt(self.y if y is None else y)

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """C x = T'(T x) + ⊕ λₖPₖxₖ, shape (m,)."""
        kern.forward(
            self.X,
            self.codes,
            self.level_offsets,
            np.ascontiguousarray(self._levels(x)),
            np.ascontiguousarray(x[self.nz :]),
            self._t,
        )
        out = self.apply_tt(self._t)
        for k in self.terms:
            a, b = self.spans[k]
            if k in self._penalties:
                indptr, indices, data, _ = self._penalties[k]
                kern.csr_matvec_add(indptr, indices, data, x[a:b], self.lam[k], out[a:b])
            else:
                out[a:b] += self.lam[k] * x[a:b]
        return out

    # -- several vectors at once (stochastic REML: samples in lockstep) ---------------------
    def _need_direct(self) -> None:
        if not self._direct_levels:
            raise ModelError("several right-hand sides at once need iid or sparse K⁻¹ terms (no dense-K factor)")

    def apply_t_multi(self, Xm: np.ndarray) -> np.ndarray:
        """T X for X (m, S): fitted values (n, S)."""
        self._need_direct()
        out = np.empty((self.n, Xm.shape[1]))
        kern.forward_multi(
            self.X,
            self.codes,
            self.level_offsets,
            np.ascontiguousarray(Xm[: self.nz]),
            np.ascontiguousarray(Xm[self.nz :]),
            out,
        )
        return out

    def apply_tt_multi(self, Tm: np.ndarray) -> np.ndarray:
        """T'T_m for T_m (n, S): shape (m, S)."""
        self._need_direct()
        S = Tm.shape[1]
        out = np.empty((self.m, S))
        xt = np.empty((self.p, S))
        kern.adjoint_multi(
            self.X, self.codes, self.level_offsets, np.ascontiguousarray(Tm, dtype=np.float64), out[: self.nz], xt
        )
        out[self.nz :] = xt
        return out

    def penalty_multi(self, k: int, V: np.ndarray) -> np.ndarray:
        """Pₖ V for V (qₖ, S) (V itself for an iid term)."""
        if k not in self._penalties:
            return V
        indptr, indices, data, _ = self._penalties[k]
        out = np.zeros_like(V)
        kern.csr_matmat_add(indptr, indices, data, np.ascontiguousarray(V), 1.0, out)
        return out

    def matmat(self, Xm: np.ndarray) -> np.ndarray:
        """C X for X (m, S), one pass over the records for all S columns."""
        out = self.apply_tt_multi(self.apply_t_multi(Xm))
        for k in self.terms:
            a, b = self.spans[k]
            if k in self._penalties:
                indptr, indices, data, _ = self._penalties[k]
                kern.csr_matmat_add(indptr, indices, data, np.ascontiguousarray(Xm[a:b]), self.lam[k], out[a:b])
            else:
                out[a:b] += self.lam[k] * Xm[a:b]
        return out

    def precondition_multi(self, Rm: np.ndarray) -> np.ndarray:
        """M⁻¹ R for R (m, S)."""
        Z = np.empty_like(Rm)
        kern.scale_rows(self._diag_inv, Rm, Z)
        for group, Binv in self._groups:
            R3 = np.stack([Rm[self.spans[j][0] : self.spans[j][1]] for j in group], axis=1)  # (q, g, S)
            Z3 = np.einsum("qij,qjs->qis", Binv, R3)
            for i, j in enumerate(group):
                a, b = self.spans[j]
                Z[a:b] = Z3[:, i]
        if self.p:
            Z[self.nz :] = self._fixed_inv @ Rm[self.nz :]
        return Z

    def solve_multi(self, B: np.ndarray, X0: np.ndarray | None = None, tol: float = TOL, max_rounds: int | None = None):
        """Solve C X = B for S right-hand sides (m, S) by S PCG recurrences in lockstep.

        Each column has its own step lengths (it is exactly PCG on that column); a column
        stops moving once its recurrence residual is <= ``tol`` relative to its ‖b‖, and
        at the end the true residuals are checked and any column above ``tol`` is re-run
        from where it stopped. Returns X (m, S) and the number of rounds.
        """
        B = np.ascontiguousarray(B, dtype=np.float64)
        max_rounds = max_rounds or max(1000, int(20 * np.sqrt(self.m)))
        X = np.zeros_like(B) if X0 is None else np.array(X0, dtype=np.float64)
        bn = np.sqrt(np.einsum("ij,ij->j", B, B))
        bn[bn == 0] = 1.0
        total = 0
        for _attempt in range(3):
            R = B - self.matmat(X) if (X0 is not None or _attempt) else B.copy()
            rel = np.sqrt(np.einsum("ij,ij->j", R, R)) / bn
            active = rel > tol
            if not active.any():
                break
            Z = self.precondition_multi(R)
            D = Z.copy()
            rz = kern.dot_cols(R, Z)
            rounds = 0
            while active.any() and rounds < max_rounds:
                Q = self.matmat(D)
                dq = kern.dot_cols(D, Q)
                alpha = np.where(active, rz / np.where(active, dq, 1.0), 0.0)
                rel = np.sqrt(kern.cg_step_multi(X, R, D, Q, alpha)) / bn
                active &= rel > tol
                Z = self.precondition_multi(R)
                rz_new = kern.dot_cols(R, Z)
                beta = np.where(active, rz_new / np.where(active, rz, 1.0), 0.0)
                kern.new_direction_multi(D, Z, beta)
                rz = rz_new
                rounds += 1
            total += rounds
        return X, total

    # -- checks and preconditioner -------------------------------------------------------
    def _check_definite(self) -> None:
        """C is positive definite iff X has full column rank and each Pₖ is PD; check the
        parts that can fail cheaply, naming the column or the levels at fault."""
        XtX = self.X.T @ self.X
        self._xtx = XtX
        names = list(self.spec.x_names)
        if self.p:
            try:
                sla.cholesky(XtX, lower=True)
            except np.linalg.LinAlgError:
                bad = _first_dependent_column(XtX)
                raise NotPositiveDefiniteError(
                    f"the mixed model equations are singular: fixed-effect column {names[bad]!r} "
                    + (
                        "has no records (all zeros)"
                        if XtX[bad, bad] == 0
                        else "is confounded with the columns before it"
                    )
                    + "; drop or merge it"
                ) from None
        for k in self.terms:
            t = self.spec.terms[k]
            if k not in self._penalties:
                continue
            diag = self._penalties[k][3]
            bad = ~(np.isfinite(diag) & (diag > 0))
            if bad.any():
                ids = t.levels[bad]
                none = bad & (self.counts[k] == 0)
                why = (
                    "have no records and no relationships (zero diagonal in K⁻¹)"
                    if none[bad].all()
                    else "have a diagonal of K⁻¹ that is not positive"
                )
                raise NotPositiveDefiniteError(
                    f"the mixed model equations are singular: {int(bad.sum())} level(s) of {t.name!r} "
                    f"{why}: {format_ids(ids)}"
                )

    def _build_preconditioner(self) -> None:
        """Per-level blocks over terms sharing level ids ("block"), or diag(C) ("jacobi")."""
        self._diag_inv = np.empty(self.nz)
        self._groups = []  # (term list, (q, g, g) inverse blocks)
        done = set()
        for k in self.terms:
            if k in done:
                continue
            t = self.spec.terms[k]
            group = [k]
            if self.preconditioner == "block" and not isinstance(t.covariance, Factored):
                group += [
                    j
                    for j in self.terms
                    if j > k
                    and j not in done
                    and not isinstance(self.spec.terms[j].covariance, Factored)
                    and np.array_equal(self.spec.terms[j].levels, t.levels)
                ]
            done.update(group)
            diags = [self._diag_of(j) for j in group]
            if len(group) == 1:
                a, b = self.spans[k]
                self._diag_inv[a:b] = 1.0 / diags[0]
                continue
            g, q = len(group), t.q
            B = np.zeros((q, g, g))
            for i, _j in enumerate(group):
                B[:, i, i] = diags[i]
            col = {j: i for i, j in enumerate(self.terms)}
            for i in range(g):
                for l in range(i + 1, g):
                    c = np.zeros(q)
                    kern.level_block_counts(self.codes, col[group[i]], col[group[l]], q, c)
                    B[:, i, l] = B[:, l, i] = c
            self._groups.append((group, np.linalg.inv(B)))
        if self.p:
            if self.preconditioner == "block":
                self._fixed_inv = sla.inv(self._xtx)
            else:
                self._fixed_inv = np.diag(1.0 / np.diag(self._xtx))

    def _diag_of(self, k: int) -> np.ndarray:
        t = self.spec.terms[k]
        if isinstance(t.covariance, Factored):
            F = t.covariance.factor
            return np.einsum("ij,i,ij->j", F, self.counts[k], F) + self.lam[k]
        if k in self._penalties:
            return self.counts[k] + self.lam[k] * self._penalties[k][3]
        return self.counts[k] + self.lam[k]

    def precondition(self, r: np.ndarray) -> np.ndarray:
        """M⁻¹ r."""
        z = np.empty_like(r)
        z[: self.nz] = self._diag_inv * r[: self.nz]
        for group, Binv in self._groups:
            R = np.column_stack([r[self.spans[j][0] : self.spans[j][1]] for j in group])
            Z = np.einsum("qij,qj->qi", Binv, R)
            for i, j in enumerate(group):
                a, b = self.spans[j]
                z[a:b] = Z[:, i]
        if self.p:
            z[self.nz :] = self._fixed_inv @ r[self.nz :]
        return z

    # -- PCG ------------------------------------------------------------------------------
    def solve(
        self,
        r: np.ndarray | None = None,
        x0: np.ndarray | None = None,
        tol: float = TOL,
        max_rounds: int | None = None,
        warn: bool = True,
    ) -> tuple[np.ndarray, PCGInfo]:
        """Solve C x = r by PCG from ``x0`` (default 0); r defaults to T'y.

        Returns the solution (m,) and :class:`PCGInfo`. Not reaching ``tol`` within
        ``max_rounds`` (default max(1000, 2√m·10)) warns with the residual history
        (``ConvergenceWarning.log``) when ``warn``.
        """
        b = self.rhs() if r is None else np.asarray(r, dtype=np.float64)
        return pcg_loop(self.matvec, self.precondition, b, self.m, x0, tol, max_rounds, self.preconditioner, warn)

    # -- warm starts -----------------------------------------------------------------------
    def start_from(self, previous) -> np.ndarray:
        """An equation vector from a previous :class:`~henderson.FitResult` (matched by ids
        and coefficient names; unknown levels start at 0) or an array of shape (m,)."""
        if isinstance(previous, np.ndarray) or isinstance(previous, (list, tuple)):
            x = np.asarray(previous, dtype=np.float64)
            if x.shape != (self.m,):
                raise ModelError(f"x0 has shape {x.shape}, expected ({self.m},): one value per MME equation")
            return x
        x = np.zeros(self.m)
        for k in self.terms:
            t = self.spec.terms[k]
            tab = previous.blups.get(t.name)
            if tab is None:
                continue
            u = tab["blup"].reindex(pd.Index(t.levels)).fillna(0.0).to_numpy(dtype=float)
            a, b = self.spans[k]
            cv = t.covariance
            x[a:b] = np.linalg.lstsq(cv.factor, u, rcond=None)[0] if isinstance(cv, Factored) else u
        fe = previous.fixed_effects["estimate"].reindex(pd.Index(self.spec.x_names)).fillna(0.0)
        x[self.nz :] = fe.to_numpy(dtype=float)
        return x

    def term_values(self, x: np.ndarray, k: int) -> np.ndarray:
        """BLUPs of term k (q,) from an equation vector (zeros for a dropped term)."""
        t = self.spec.terms[k]
        if not self.active[k]:
            return np.zeros(t.q)
        a, b = self.spans[k]
        return t.factor @ x[a:b] if isinstance(t.covariance, Factored) else x[a:b].copy()


def pcg_loop(matvec, precondition, b, m, x0=None, tol=TOL, max_rounds=None, preconditioner="block", warn=True):
    """Preconditioned conjugate gradients for C x = b with C applied by ``matvec``.

    Stops on the *true* relative residual ‖b − Cx‖/‖b‖ <= ``tol`` (the recurrence
    residual is confirmed by one extra product, and PCG restarts from the true residual
    if they disagree). ``max_rounds`` defaults to max(1000, 20√m). Returns x (m,) and
    :class:`PCGInfo`; not converging warns (when ``warn``) with the residual history.
    """
    t0 = time.perf_counter()
    b = np.ascontiguousarray(b, dtype=np.float64)
    max_rounds = max_rounds or max(1000, int(20 * np.sqrt(m)))
    x = np.zeros(m) if x0 is None else np.array(x0, dtype=np.float64)
    if x.shape != (m,):
        raise ModelError(f"x0 has shape {x.shape}, expected ({m},): one value per MME equation")
    bnorm = np.sqrt(kern.dot(b, b))
    if bnorm == 0.0:
        return np.zeros(m), PCGInfo(0, 0.0, np.zeros(1), True, preconditioner, tol, 0.0)
    res = b - matvec(x) if x0 is not None else b.copy()
    hist = [np.sqrt(kern.dot(res, res)) / bnorm]
    converged = hist[0] <= tol
    z = precondition(res)
    d = z.copy()
    rz = kern.dot(res, z)
    rounds = 0
    while not converged and rounds < max_rounds:
        q = matvec(d)
        alpha = rz / kern.dot(d, q)
        rel = np.sqrt(kern.cg_step(x, res, d, q, alpha)) / bnorm
        rounds += 1
        if rel <= tol:  # confirm on the true residual (the recurrence drifts)
            res = b - matvec(x)
            rel = np.sqrt(kern.dot(res, res)) / bnorm
            hist.append(rel)
            if rel <= tol:
                converged = True
                break
            z = precondition(res)  # restart from the true residual
            d = z.copy()
            rz = kern.dot(res, z)
            continue
        hist.append(rel)
        z = precondition(res)
        rz_new = kern.dot(res, z)
        kern.new_direction(d, z, rz_new / rz)
        rz = rz_new
    info = PCGInfo(rounds, hist[-1], np.asarray(hist), converged, preconditioner, tol, time.perf_counter() - t0)
    if not converged and warn:
        warnings.warn(
            ConvergenceWarning(
                f"PCG did not reach ‖r − Cx‖/‖r‖ <= {tol:g} in {rounds} rounds (last {hist[-1]:.3g}); "
                "the solution is not converged: raise max_rounds, or check the model for "
                "near-confounded effects. The warning's .log holds the residual history.",
                log=info.log(),
            ),
            stacklevel=3,
        )
    return x, info


@dataclass(frozen=True)
class MultiPCGInfo:
    """How a lockstep solve of S right-hand sides went, per column: rounds, the final
    *true* relative residual ‖bₛ − Cxₛ‖/‖bₛ‖ and whether it reached ``tol``."""

    rounds: np.ndarray
    rel_residual: np.ndarray
    converged: np.ndarray
    tol: float
    seconds: float
    products: int

    @property
    def all_converged(self) -> bool:
        return bool(self.converged.all())


def pcg_multi(matmat, precondition, B, X0=None, tol=TOL, max_rounds=None, warn=True):
    """Block PCG: S independent PCG recurrences on C X = B in lockstep, one product C D per round.

    Each column keeps its own step lengths, so it is exactly PCG on that column (no block
    Krylov space): what is shared is the pass over the records, which serves all columns
    (``matmat`` applies C to an (m, S') block). A column whose recurrence residual reaches
    ``tol`` relative to ‖bₛ‖ is confirmed on its true residual; once confirmed it leaves
    the working block, so later rounds apply C to the unconverged columns only. A column
    whose true residual disagrees restarts from it. Returns X (m, S) and
    :class:`MultiPCGInfo`; a column not converged in ``max_rounds`` (default
    max(1000, 20√m)) is a :class:`~henderson.ConvergenceWarning` when ``warn``.
    """
    t0 = time.perf_counter()
    B = np.ascontiguousarray(B, dtype=np.float64)
    m, S = B.shape
    max_rounds = max_rounds or max(1000, int(20 * np.sqrt(m)))
    X = np.zeros((m, S)) if X0 is None else np.array(X0, dtype=np.float64)
    if X.shape != (m, S):
        raise ModelError(f"X0 has shape {X.shape}, expected {(m, S)}")
    bn = np.sqrt(np.einsum("ij,ij->j", B, B))
    rounds = np.zeros(S, dtype=np.int64)
    final = np.zeros(S)
    conv = bn == 0
    X[:, conv] = 0.0
    bn_safe = np.where(conv, 1.0, bn)
    R = B - matmat(X) if X0 is not None else B.copy()
    products = int(X0 is not None)
    rel0 = np.sqrt(np.einsum("ij,ij->j", R, R)) / bn_safe
    conv |= rel0 <= tol
    final[conv] = np.where(bn[conv] == 0, 0.0, rel0[conv])
    cols = np.flatnonzero(~conv)  # working columns, in the order of the working arrays
    Xw, Rw, Bw = X[:, cols].copy(), R[:, cols].copy(), B[:, cols]
    Zw = precondition(Rw)
    Dw = Zw.copy()
    rz = kern.dot_cols(Rw, Zw)
    rnd = 0
    while cols.size and rnd < max_rounds:
        Q = matmat(Dw)
        products += 1
        alpha = rz / kern.dot_cols(Dw, Q)
        rel = np.sqrt(kern.cg_step_multi(Xw, Rw, Dw, Q, alpha)) / bn_safe[cols]
        rnd += 1
        rounds[cols] += 1
        hit = np.flatnonzero(rel <= tol)
        restart = np.zeros(cols.size, dtype=bool)
        keep = np.ones(cols.size, dtype=bool)
        if hit.size:  # confirm on the true residual (the recurrence drifts)
            Rt = Bw[:, hit] - matmat(np.ascontiguousarray(Xw[:, hit]))
            products += 1
            trel = np.sqrt(np.einsum("ij,ij->j", Rt, Rt)) / bn_safe[cols[hit]]
            ok = trel <= tol
            X[:, cols[hit[ok]]] = Xw[:, hit[ok]]
            final[cols[hit[ok]]] = trel[ok]
            conv[cols[hit[ok]]] = True
            keep[hit[ok]] = False
            bad = hit[~ok]
            Rw[:, bad] = Rt[:, ~ok]
            restart[bad] = True
        Zw = precondition(Rw)
        rz_new = kern.dot_cols(Rw, Zw)
        beta = np.where(restart, 0.0, rz_new / rz)
        kern.new_direction_multi(Dw, Zw, beta)
        rz = rz_new
        if not keep.all():
            cols = cols[keep]
            Xw, Rw, Dw, rz = (np.ascontiguousarray(Xw[:, keep]), np.ascontiguousarray(Rw[:, keep]),
                              np.ascontiguousarray(Dw[:, keep]), rz[keep])  # fmt: skip
            Bw = B[:, cols]
    if cols.size:  # not converged within max_rounds: their true residuals
        X[:, cols] = Xw
        Rt = Bw - matmat(Xw)
        final[cols] = np.sqrt(np.einsum("ij,ij->j", Rt, Rt)) / bn_safe[cols]
    info = MultiPCGInfo(rounds, final, conv.copy(), tol, time.perf_counter() - t0, products)
    if not conv.all() and warn:
        bad = np.flatnonzero(~conv)
        warnings.warn(
            ConvergenceWarning(
                f"block PCG: {bad.size} of {S} right-hand sides did not reach ‖b − Cx‖/‖b‖ <= {tol:g} in "
                f"{max_rounds} rounds (worst {final[bad].max():.3g}); raise max_rounds, or check the model "
                "for near-confounded effects",
                log=pd.DataFrame({"column": bad, "rel_residual": final[bad]}),
            ),
            stacklevel=3,
        )
    return X, info


def _first_dependent_column(XtX: np.ndarray) -> int:
    """Index of the first column of X that depends on the columns before it."""
    p = XtX.shape[0]
    scale = max(float(np.abs(np.diag(XtX)).max()), 1e-300)
    for j in range(p):
        sub = XtX[: j + 1, : j + 1]
        if np.linalg.matrix_rank(sub, tol=1e-10 * scale) <= j:
            return j
    return p - 1

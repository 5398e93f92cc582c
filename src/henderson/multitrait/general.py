"""The general multi-trait engine: Henderson's MME over the stacked *observed* trait values.

Model (records i = 1..n, traits k = 1..t; only observed values y_ik are stacked, record by
record, so that a record missing some traits keeps the others):

    y = X b + Σ_j W_j u_j + e,
    Var(u_j) = Σ_j ⊗ K_j   (trait-major: u_j = [u_j,trait 1; u_j,trait 2; ...]),
    Var(e) = R = ⊕_i R₀[O_i, O_i],

where O_i are the traits observed on record i, Σ_j is unstructured (or diagonal for
``diag(1|g)``) and K_j is I (iid levels), a known K given by its inverse (pedigree A⁻¹,
sparse) or a dense K. X is block-diagonal over traits (each trait has its own design on
its own observed records); W_j maps the value (i, k) to level ``codes_j[i]`` of trait k.
R⁻¹ is block-diagonal by record: one inverse R₀[O, O]⁻¹ per missing-pattern subset O.

With T = [W_1 ... W_J X], G⁻¹ = ⊕_j Σ_j⁻¹ ⊗ K_j⁻¹ and C = T'R⁻¹T + (G⁻¹ ⊕ 0):

    −2 log L_REML = (N − p) log 2π + log|R| + log|G| + log|C| + y'Py,
    y'Py = y'R⁻¹y − r'C⁻¹r,  r = T'R⁻¹y,
    log|G| = Σ_j (q_j log|Σ_j| + t log|K_j|),  log|R| = Σ_O m_O log|R₀[O, O]|

(Henderson 1973; Meyer 1989 for the multi-trait REML on the MME; N = number of observed
values, p = rank of X). Derivatives are exact (matrix forms of the EM/AI-REML formulas;
e.g. Misztal's AIREMLF90 notes, Meyer & Smith 1996):

    ∂(−2logL)/∂Σ_j = q_j Σ_j⁻¹ − Σ_j⁻¹ (Û_j'K_j⁻¹Û_j + T_j) Σ_j⁻¹,
        T_j[k, l] = tr(K_j⁻¹ C^{u_jk u_jl});
    ∂(−2logL)/∂R₀ = Σ_i embed_O_i [R_i⁻¹ − R_i⁻¹ (ê_i ê_i' + W_i C⁻¹ W_i') R_i⁻¹];

the traces need C⁻¹ only on the pattern of C (K_j⁻¹ across the trait blocks, and the
rows of one record), so the sparse path takes them from the selected inverse of the
supernodal Cholesky factor (:mod:`henderson.linalg`). The average information is
AI = ½ F'PF with working variates F = [∂V/∂θ_a P y], computed as
½ (F'R⁻¹F − B'C⁻¹B), B = T'R⁻¹F: one multi-right-hand-side solve.

Two back ends compute the same numbers: ``"dense"`` (C as a dense array, LAPACK Cholesky
and full inverse; moderate sizes) and ``"sparse"`` (scipy.sparse C, one symbolic analysis,
supernodal factor and selected inverse; pedigree A⁻¹ and iid terms).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.linalg as sla
import scipy.sparse as sp

from .._threads import blas_threads_for
from ..errors import ModelError, NotPositiveDefiniteError
from ..linalg import dense_safe
from ..results import stage_timings
from ..spec.levels import Factored, Identity
from .spectral import LOG2PI

if TYPE_CHECKING:
    from .protocol import MultiTraitPrepared
    from .vform import MultiTraitVForm

#: a dense MME up to this many equations with the "auto" back end (and no sparse K⁻¹)
DENSE_MAX = 3000
#: largest dense MME (equations) formed; beyond it a clear error
DENSE_LIMIT = 20000


@dataclass
class GeneralTerm:
    """One random term across traits.

    Parameters
    ----------
    name : str
    codes : ndarray of int, shape (n,)
        Level of each record (0..q−1).
    levels : ndarray of str, shape (q,)
    Kinv : sparse or ndarray (q, q), or None
        K⁻¹ (None: iid levels, K = I).
    logdet_K : float
        log|K| (0 for iid).
    diag : bool
        Σ diagonal across traits (``diag(1|g)``).
    L : ndarray (q, r), optional
        A dense K given as K = LL' (r = rank K): the term is written u = (I_t ⊗ L) v,
        Var(v) = Σ ⊗ I_r, so a singular K (e.g. VanRaden's G, rank n − 1) needs no
        inverse and V is exactly Σ ⊗ ZKZ' + R. ``Kinv``/``logdet_K`` are then unused.
    K : ndarray (q, q), optional
        A dense K as given; the MME engine forms ``L`` from it (:func:`kernel_root`) when
        it is built, the observation-space engine (:mod:`henderson.multitrait.vform`)
        uses K itself and never decomposes it.
    """

    name: str
    codes: np.ndarray
    levels: np.ndarray
    Kinv: object = None
    logdet_K: float = 0.0
    diag: bool = False
    L: np.ndarray | None = None
    K: np.ndarray | None = None

    @property
    def q(self) -> int:
        return len(self.levels)

    @property
    def r(self) -> int:
        """Number of effects per trait in the MME (q, or rank K with ``L``; q for a dense
        K not yet decomposed)."""
        return self.q if self.L is None else int(self.L.shape[1])

    @property
    def dense(self) -> bool:
        """A dense K (given as K or as its root L)."""
        return self.L is not None or self.K is not None


def term_pairs(t: int, diag: bool) -> list[tuple[int, int]]:
    """Parameters of a t × t matrix: lower triangle in ASReml order, or the diagonal."""
    return [(k, k) for k in range(t)] if diag else [(k, l) for k in range(t) for l in range(k + 1)]


class TraitParameters:
    """θ layout, start values, scales and the EM-REML step shared by the multi-trait
    engines (the MME here and the V-form of :mod:`henderson.multitrait.vform`).

    θ layout: for each term its ``term_pairs`` entries, then the residual's lower triangle.
    Subclasses set these attributes and define ``evaluate``.
    """

    t: int
    n: int
    Y: np.ndarray
    terms: list[GeneralTerm]
    params: list[tuple[int, tuple[int, int]]]
    patterns: np.ndarray
    pat_count: np.ndarray

    def evaluate(self, theta, derivatives: bool = False) -> dict:
        raise NotImplementedError

    def em_divisor(self, j: int) -> int:
        """Number of independent effects per trait of term j (rank K_j): EM's Σ_j = S_j/r_j."""
        return self.terms[j].r

    # θ <-> matrices -------------------------------------------------------------------
    def unpack(self, theta):
        t = self.t
        mats = [np.zeros((t, t)) for _ in self.terms] + [np.zeros((t, t))]
        for x, (j, (k, l)) in zip(theta, self.params):
            S = mats[j]
            S[k, l] = S[l, k] = x
        return mats[:-1], mats[-1]

    def pack(self, Sigmas, R0) -> np.ndarray:
        mats = list(Sigmas) + [R0]
        return np.array([mats[j][k, l] for j, (k, l) in self.params])

    def m2ll(self, theta) -> float:
        return self.evaluate(theta)["m2ll"]

    def em_update(self, ev) -> np.ndarray:
        """EM-REML: Σ_j = S_j/q_j; R₀ from the expected complete residuals (missing traits
        imputed by their conditional expectation and variance given the observed ones)."""
        t = self.t
        Sig = []
        for j, tm in enumerate(self.terms):
            S = ev["S_terms"][j] / self.em_divisor(j)
            Sig.append(np.diag(np.diag(S)) if tm.diag else S)
        R0 = ev["R0"]
        Rn = np.zeros((t, t))
        for g, O in enumerate(self.patterns):
            o, mm = np.flatnonzero(O), np.flatnonzero(~O)
            Sg = ev["Qs"][g][np.ix_(o, o)]
            Bm = R0[np.ix_(mm, o)] @ np.linalg.inv(R0[np.ix_(o, o)])
            Bf = np.zeros((t, len(o)))
            Bf[o] = np.eye(len(o))
            Bf[mm] = Bm
            Rn += Bf @ Sg @ Bf.T
            if len(mm):
                cv = R0[np.ix_(mm, mm)] - Bm @ R0[np.ix_(o, mm)]
                Rn[np.ix_(mm, mm)] += self.pat_count[g] * cv
        Rn /= self.n
        return self.pack(Sig, 0.5 * (Rn + Rn.T))

    def start(self) -> np.ndarray:
        """Σ_j = R₀ = (phenotypic covariance)/(J + 1) from pairwise-complete data."""
        Yd = pd.DataFrame(self.Y)
        Sp = Yd.cov().to_numpy()
        Sp = np.where(np.isfinite(Sp), Sp, 0.0)
        d = np.sqrt(np.diag(Sp))
        Cr = Sp / np.outer(d, d)
        w, v = np.linalg.eigh(Cr)
        Cr = (v * np.maximum(w, 0.05)) @ v.T
        Cr /= np.sqrt(np.outer(np.diag(Cr), np.diag(Cr)))
        Sp = Cr * np.outer(d, d)
        f = 1.0 / (len(self.terms) + 1)
        Sig = [np.diag(np.diag(Sp)) * f if tm.diag else Sp * f for tm in self.terms]
        return self.pack(Sig, Sp * f)

    def unit(self) -> np.ndarray:
        """Scale of each θ (s_k s_l, phenotypic SDs) for scale-free steps."""
        s = np.sqrt(np.nanvar(self.Y, axis=0))
        return np.array([s[k] * s[l] for _, (k, l) in self.params])


class MultiTraitMME(TraitParameters):
    """Prepared multi-trait MME (structure fixed; values change with θ).

    Parameters
    ----------
    Y : ndarray (n, t)
        Records; NaN where a trait is missing (every row has at least one value).
    Xs : list of t ndarrays (n_k, p_k)
        Fixed design of trait k on the records where trait k is observed (in record order).
    terms : list of GeneralTerm
    backend : {"auto", "dense", "sparse"}

    θ layout: for each term its ``term_pairs`` entries, then the residual's lower triangle.
    """

    def __init__(self, Y, Xs, terms, backend: str = "auto"):
        for tm in terms:  # a dense K enters as its root K = LL' (formed once, kept on the term)
            if tm.K is not None and tm.L is None:
                tm.L = kernel_root(tm.K, tm.name)
        Y = np.asarray(Y, dtype=float)
        self.Y = Y
        n, t = Y.shape
        self.n, self.t = n, t
        M = ~np.isnan(Y)
        if not M.any(axis=1).all():
            raise ModelError("every record must have at least one trait (internal)")
        self.M = M
        N = int(M.sum())
        self.N = N
        pos = np.full((n, t), -1, dtype=np.int64)
        pos[M] = np.arange(N)  # record-major stacking
        self.pos = pos
        rec, tr = np.nonzero(M)
        self.rec, self.tr = rec, tr
        self.y = Y[M]
        self.terms = list(terms)
        # fixed part: block-diagonal over traits
        pks = [x.shape[1] for x in Xs]
        self.pks = pks
        self.p = int(sum(pks))
        xo = np.concatenate([[0], np.cumsum(pks)]).astype(int)
        qs = [tm.r * t for tm in self.terms]
        self.offsets = np.concatenate([[0], np.cumsum(qs)]).astype(int)
        self.nu = int(self.offsets[-1])
        self.dim = self.nu + self.p
        rows, cols, vals = [], [], []
        for j, tm in enumerate(self.terms):
            if tm.L is None:
                rows.append(np.arange(N))
                cols.append(self.offsets[j] + tr * tm.q + tm.codes[rec])
                vals.append(np.ones(N))
            else:  # row (i, k) of W_j is row codes[i] of L in the block of trait k
                r = tm.r
                rows.append(np.repeat(np.arange(N), r))
                cols.append((self.offsets[j] + tr * r)[:, None].repeat(r, axis=1).ravel() + np.tile(np.arange(r), N))
                vals.append(tm.L[tm.codes[rec]].ravel())
        for k, x in enumerate(Xs):
            rk = pos[M[:, k], k]
            if x.shape[0] != len(rk):
                raise ModelError(f"design of trait {k} has {x.shape[0]} rows, trait has {len(rk)} values (internal)")
            rr, cc = np.nonzero(x)
            rows.append(rk[rr])
            cols.append(self.nu + xo[k] + cc)
            vals.append(x[rr, cc])
        self.T = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(N, self.dim)
        )
        # missing patterns and the pairs (a, b) of values of one record (R⁻¹'s pattern)
        pats, pid = np.unique(M, axis=0, return_inverse=True)
        self.patterns, self.pid = pats, pid.ravel()
        self.pat_count = np.bincount(self.pid, minlength=len(pats))
        pa, pb, pk, pl, pp = [], [], [], [], []
        for k in range(t):
            for l in range(t):
                both = M[:, k] & M[:, l]
                pa.append(pos[both, k])
                pb.append(pos[both, l])
                pk.append(np.full(both.sum(), k))
                pl.append(np.full(both.sum(), l))
                pp.append(self.pid[both])
        self.pa, self.pb = np.concatenate(pa), np.concatenate(pb)
        self.pk, self.pl, self.pp = np.concatenate(pk), np.concatenate(pl), np.concatenate(pp)
        # K⁻¹ of each term as COO; G⁻¹ pattern
        self.kinv = []
        for tm in self.terms:
            if tm.Kinv is None or tm.L is not None:
                Ki = sp.identity(tm.r, format="coo")
            else:
                Ki = sp.coo_matrix(tm.Kinv)
            self.kinv.append(Ki)
        # structural pattern of C
        Rpat = sp.csr_matrix((np.ones(len(self.pa)), (self.pa, self.pb)), shape=(N, N))
        TRT = (self.T.T @ Rpat @ self.T).tocsc()
        gblocks = []
        for j, tm in enumerate(self.terms):
            S = np.eye(t) if tm.diag else np.ones((t, t))
            B = sp.kron(sp.csr_matrix(S), abs(self.kinv[j]).tocsr()).tocoo()
            o = self.offsets[j]
            gblocks.append(sp.coo_matrix((B.data, (B.row + o, B.col + o)), shape=(self.dim, self.dim)))
        pattern = (abs(TRT) + sum(gblocks, sp.csc_matrix((self.dim, self.dim))) + sp.identity(self.dim)).tocsc()
        has_sparse_k = any(tm.Kinv is not None and sp.issparse(tm.Kinv) for tm in self.terms)
        has_dense_k = any(tm.L is not None for tm in self.terms)
        if backend == "auto":
            # a dense K makes its block of C dense: the dense back end, whatever the size
            backend = "dense" if has_dense_k else ("sparse" if (has_sparse_k or self.dim > DENSE_MAX) else "dense")
        if backend == "dense" and self.dim > DENSE_LIMIT:
            raise ModelError(
                f"the multi-trait MME have {self.dim} equations ({t} traits × levels of "
                f"{', '.join(tm.name for tm in self.terms)}): too many for the dense back end "
                f"(limit {DENSE_LIMIT}; C and C⁻¹ would take {2 * self.dim**2 * 8 / 2**30:.1f} GiB). "
                "With complete records and one K the spectral fast path has no such limit; with a "
                "pedigree give A⁻¹ (cov_inverse=) for the sparse back end"
            )
        if backend not in ("dense", "sparse"):
            raise ModelError(f"backend must be 'auto', 'dense' or 'sparse', not {backend!r}")
        self.backend = backend
        self.name = f"multitrait-mme-{backend}"
        # C⁻¹ entries the traces need: (a) K⁻¹ across trait blocks, (b) pairs of nonzeros
        # of T within a record
        self.tr_idx = []  # per term: list over (k, l) of (rows, cols, vals)
        for j, tm in enumerate(self.terms):
            Ki, o, q = self.kinv[j], self.offsets[j], tm.r
            d = {}
            for k in range(t):
                for l in range(t):
                    if tm.diag and k != l:  # only the variances are parameters (and in C's pattern)
                        continue
                    d[(k, l)] = (o + k * q + Ki.row, o + l * q + Ki.col, Ki.data.astype(float))
            self.tr_idx.append(d)
        if backend == "dense":
            self.Td = self.T.toarray()
        if backend == "sparse":
            from ..linalg import SymbolicCholesky

            Tc = self.T
            na = np.diff(Tc.indptr)
            ea = np.repeat(np.arange(len(self.pa)), na[self.pa] * na[self.pb])
            # within each pair, all (nonzero of row a) × (nonzero of row b)
            start_a, start_b = Tc.indptr[self.pa], Tc.indptr[self.pb]
            cnt_b = na[self.pb]
            within = np.arange(len(ea)) - np.repeat(
                np.cumsum(na[self.pa] * cnt_b) - na[self.pa] * cnt_b, na[self.pa] * cnt_b
            )
            ia = start_a[ea] + within // cnt_b[ea]
            ib = start_b[ea] + within % cnt_b[ea]
            self.q_pair, self.q_c, self.q_d = ea, Tc.indices[ia], Tc.indices[ib]
            self.q_v = Tc.data[ia] * Tc.data[ib]

            self.symbolic = SymbolicCholesky(pattern, last=self.p)
            self.q_pos = self.symbolic.positions(self.q_c, self.q_d)
            self.tr_pos = [{kl: self.symbolic.positions(r, c) for kl, (r, c, _) in d.items()} for d in self.tr_idx]
            if np.any(self.q_pos < 0) or any(np.any(v < 0) for d in self.tr_pos for v in d.values()):
                raise RuntimeError("selected-inverse entries outside the factor's pattern (internal)")
        self.params = [(j, kl) for j, tm in enumerate(self.terms) for kl in term_pairs(t, tm.diag)] + [
            (-1, kl) for kl in term_pairs(t, False)
        ]

    # evaluation -----------------------------------------------------------------------
    def _rinv(self, R0):
        t = self.t
        inv = np.zeros((len(self.patterns), t, t))
        logdet = 0.0
        for g, O in enumerate(self.patterns):
            idx = np.flatnonzero(O)
            Ro = R0[np.ix_(idx, idx)]
            try:
                c = np.linalg.cholesky(Ro)
            except np.linalg.LinAlgError as exc:
                raise NotPositiveDefiniteError("residual covariance not positive definite") from exc
            logdet += self.pat_count[g] * 2.0 * np.log(np.diag(c)).sum()
            inv[g][np.ix_(idx, idx)] = np.linalg.inv(Ro)
        vals = inv[self.pp, self.pk, self.pl]
        Ri = sp.csr_matrix((vals, (self.pa, self.pb)), shape=(self.N, self.N))
        return inv, Ri, logdet

    def evaluate(self, theta, derivatives: bool = False) -> dict:
        """−2 log L (and score ∂ℓ/∂θ, AI) at θ; see the module docstring."""
        Sigmas, R0 = self.unpack(theta)
        t = self.t
        rinv, Ri, logdet_r = self._rinv(R0)
        logdet_g = 0.0
        gb = []
        Sinv = []
        for j, tm in enumerate(self.terms):
            S = Sigmas[j]
            try:
                c = np.linalg.cholesky(S)
            except np.linalg.LinAlgError as exc:
                raise NotPositiveDefiniteError(f"covariance of term {tm.name!r} not positive definite") from exc
            logdet_g += tm.r * 2.0 * np.log(np.diag(c)).sum() + (t * tm.logdet_K if tm.L is None else 0.0)
            Si = np.linalg.inv(S)
            Sinv.append(Si)
            B = sp.kron(sp.csr_matrix(Si), self.kinv[j].tocsr()).tocoo()
            o = self.offsets[j]
            gb.append(sp.coo_matrix((B.data, (B.row + o, B.col + o)), shape=(self.dim, self.dim)))
        Riy = Ri @ self.y
        r = self.T.T @ Riy
        if self.backend == "dense":
            Td = self.Td
            Cd = Td.T @ (Ri @ Td) + sum(gb, sp.csr_matrix((self.dim, self.dim))).toarray()
            C = Cd
            try:
                # split above 12k rows (OpenBLAS threaded-dsyrk crash: linalg.dense_safe)
                cf = (dense_safe.cholesky_lower(Cd), True)
            except np.linalg.LinAlgError as exc:
                raise NotPositiveDefiniteError("the MME are not positive definite") from exc
            logdet_c = 2.0 * float(np.log(np.diag(cf[0])).sum())

            def solve(b):
                return sla.cho_solve(cf, b, check_finite=False)
        else:
            C = (self.T.T @ (Ri @ self.T) + sum(gb, sp.csr_matrix((self.dim, self.dim)))).tocsc()
            fac = self.symbolic.factor_matrix(C)
            logdet_c = fac.logdet()
            solve = fac.solve
        sol = solve(r)
        ypy = float(self.y @ Riy - r @ sol)
        m2ll = (self.N - self.p) * LOG2PI + logdet_r + logdet_g + logdet_c + ypy
        out = dict(m2ll=float(m2ll), sol=sol, Sigmas=Sigmas, R0=R0, Sinv=Sinv, rinv=rinv, Ri=Ri, solve=solve, C=C)
        if not derivatives:
            return out
        ehat = self.y - self.T @ sol
        if self.backend == "dense":
            Cinv = sla.cho_solve(cf, np.eye(self.dim), check_finite=False)
            TC = Td @ Cinv
            qpair = np.einsum("ij,ij->i", TC[self.pa], Td[self.pb])
            traces = [{kl: float(v @ Cinv[rr, cc]) for kl, (rr, cc, v) in d.items()} for d in self.tr_idx]
            diag_cinv = np.diag(Cinv).copy()
        else:
            Z = fac.selected_inverse()
            qpair = np.bincount(self.q_pair, weights=self.q_v * Z.at(self.q_pos), minlength=len(self.pa))
            traces = [
                {kl: float(d[kl][2] @ Z.at(p)) for kl, p in dp.items()} for d, dp in zip(self.tr_idx, self.tr_pos)
            ]
            diag_cinv = Z.diag()
        # Q_i summed per pattern: Σ_i W_i C⁻¹ W_i' (t × t embedded), and Σ ê ê'
        npat = len(self.patterns)
        Qs = np.zeros((npat, t, t))
        np.add.at(Qs, (self.pp, self.pk, self.pl), qpair + ehat[self.pa] * ehat[self.pb])
        # residual derivative matrix and EM pieces
        DR = np.zeros((t, t))
        for g, O in enumerate(self.patterns):
            idx = np.flatnonzero(O)
            Ri_o = rinv[g][np.ix_(idx, idx)]
            DR[np.ix_(idx, idx)] += self.pat_count[g] * Ri_o - Ri_o @ Qs[g][np.ix_(idx, idx)] @ Ri_o
        Ds, Ss, Us = [], [], []
        for j, tm in enumerate(self.terms):
            o, q = self.offsets[j], tm.r
            U = sol[o : o + q * t].reshape(t, q).T  # q × t
            Ki = self.kinv[j].tocsr()
            # diag terms: off-diagonal traces are not needed (0 here; only diag(S) is used)
            S = U.T @ (Ki @ U) + np.array([[traces[j].get((k, l), 0.0) for l in range(t)] for k in range(t)])
            S = 0.5 * (S + S.T)
            Si = Sinv[j]
            Ds.append(q * Si - Si @ S @ Si)
            Ss.append(S)
            Us.append(U)
        mats = Ds + [DR]
        score = np.array([-0.5 * (mats[j][k, l] * (1.0 if k == l else 2.0)) for j, (k, l) in self.params])
        # AI: working variates F (N × n_θ)
        Py = Ri @ ehat
        F = np.zeros((self.N, len(self.params)))
        for a, (j, (k, l)) in enumerate(self.params):
            if j >= 0:
                E = np.zeros((t, t))
                E[k, l] = E[l, k] = 1.0
                V = Us[j] @ Sinv[j] @ E  # q × t
                o = self.offsets[j]
                F[:, a] = self.T[:, o : o + V.size] @ V.T.ravel()
            else:
                sel = (self.pk == k) & (self.pl == l)
                F[self.pa[sel], a] += Py[self.pb[sel]]
                if k != l:
                    sel = (self.pk == l) & (self.pl == k)
                    F[self.pa[sel], a] += Py[self.pb[sel]]
        RF = Ri @ F
        B = self.T.T @ RF
        ai = 0.5 * (F.T @ RF - B.T @ solve(B))
        ai = 0.5 * (ai + ai.T)
        if self.backend == "dense":
            out["Cinv"] = Cinv
        out.update(score=score, ai=ai, ehat=ehat, Py=Py, Qs=Qs, S_terms=Ss, U=Us, diag_cinv=diag_cinv, D=mats)
        return out


@dataclass
class GeneralOptimum:
    """A multi-trait REML fit by the shared optimiser (:func:`optimise_general`).

    ``theta`` is in the engine's layout (residual covariances fixed at 0 included),
    ``ev`` the engine's evaluation dict at it (with derivatives), ``prepared`` the
    :class:`~henderson.multitrait.protocol.MultiTraitPrepared` it ran on and ``ai`` the
    average information over its free parameters (``prepared.free``, the data's units)."""

    theta: np.ndarray
    m2ll: float
    iterations: int
    converged: bool
    log: pd.DataFrame
    ev: dict
    prepared: MultiTraitPrepared
    ai: np.ndarray
    boundary: list = dataclasses.field(default_factory=list)


def optimise_general(
    state: MultiTraitMME | MultiTraitVForm, *, start=None, max_iter: int = 300, traits=None, fixed_zero=()
) -> GeneralOptimum:
    """AI-REML of a multi-trait engine on the shared structured-model optimiser
    (:func:`henderson.reml.general.optimise_general` through
    :class:`~henderson.multitrait.protocol.MultiTraitPrepared`): AI steps in the Cholesky
    factor of every Σ (each trial PSD), EM fallback, the boundary rule and the
    ``newton_check`` stopping rule of the single-trait engines.

    Parameters
    ----------
    state : MultiTraitMME or MultiTraitVForm
    start : ndarray, optional
        θ in the engine's layout.
    max_iter : int
    traits : list of str, optional
        Trait names (for the log's columns); default "0", "1", ...
    fixed_zero : list of (k, l)
        Residual covariances held at 0 (traits never recorded together).
    """
    from .protocol import MultiTraitPrepared, optimise_traits

    names = list(traits) if traits is not None else [str(k) for k in range(state.t)]
    prepared = MultiTraitPrepared(state, names, fixed_zero)
    opt = optimise_traits(prepared, start=start, max_iter=max_iter)
    ev = opt.evaluation
    return GeneralOptimum(
        theta=prepared.full(ev.theta),
        m2ll=float(ev.m2ll),
        iterations=int(opt.iterations),
        converged=bool(opt.converged),
        log=opt.log,
        ev=ev.detail,
        boundary=list(opt.boundary),
        prepared=prepared,
        ai=ev.ai / np.outer(prepared.unit, prepared.unit),
    )


# ---------------------------------------------------------------------------------------
# fit: frame + traits + terms → MultiTraitResult
# ---------------------------------------------------------------------------------------
#: eigenvalues of K below this (relative to the largest) are 0
EIG_TOL = 1e-10


def kernel_root(K: np.ndarray, name: str) -> np.ndarray:
    """L (q × r) with K = LL', r = rank K (eigenvalues ≤ EIG_TOL·max dropped; a clearly
    negative eigenvalue is an error naming the term)."""
    with blas_threads_for(len(K)):
        w, U = sla.eigh(K, driver="evd")
    top = max(float(w[-1]), 1e-300)
    if w[0] < -1e-8 * top:
        raise ModelError(
            f"the covariance given for {name!r} is not positive semi-definite (smallest eigenvalue {w[0]:.3g})"
        )
    keep = w > EIG_TOL * top
    return U[:, keep] * np.sqrt(w[keep])


def trait_reliability(P: np.ndarray, var: np.ndarray) -> np.ndarray:
    """1 − PEV/(diag(K)·σ²_trait) elementwise; 0 where the prior variance is 0 (a trait
    variance at 0: its BLUPs are 0), NaN where it is unknown (diag(K) NaN: a K⁻¹ without
    a pedigree's inbreeding above the size where diag(K) is computed) — never 0 for unknown."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isnan(var), np.nan, np.where(var > 0, 1.0 - P / var, 0.0))


def build_terms(kept: pd.DataFrame, terms, cov, cov_inverse) -> list[GeneralTerm]:
    """GeneralTerm per ``(name, diag)``: K from ``cov``/``cov_inverse`` by name, else iid."""
    from types import SimpleNamespace

    from ..spec.model import _random_term

    out = []
    for name, diag in terms:
        if name not in kept.columns:
            raise ModelError(f"random term (1|{name}): column {name!r} is not in the data")
        if kept[name].isna().any():
            raise ModelError(f"random term (1|{name}): column {name!r} has missing values on records with traits")
        labels = kept[name].astype(str).to_numpy().astype(object)
        spec = SimpleNamespace(name=name)  # the one field _random_term reads
        rt = _random_term(spec, labels, [labels], cov.get(name), cov_inverse.get(name))  # type: ignore[arg-type]
        iid = isinstance(rt.covariance, Identity)
        factored = isinstance(rt.covariance, Factored)
        if iid:
            Kinv, logdet, kd = None, 0.0, np.ones(len(rt.levels))
        elif not factored:  # K⁻¹ given (SparseInverse, or a single-step H⁻¹)
            Kinv, logdet, kd = rt.penalty, float(rt.logdet_k), np.asarray(rt.k_diag, dtype=float)
        else:  # dense K: decomposed (K = LL') only if the MME engine runs
            K = np.asarray(rt.kernel, dtype=float)
            Kinv, logdet, kd = None, 0.0, np.diag(K).copy()
        gt = GeneralTerm(
            name,
            np.asarray(rt.codes),
            np.asarray(rt.levels, dtype=str),
            Kinv,
            logdet,
            bool(diag),
            None,
            K if factored else None,
        )
        gt.k_diag = kd  # type: ignore[attr-defined]
        gt.iid = iid  # type: ignore[attr-defined]
        gt.info = getattr(rt, "info", None)  # type: ignore[attr-defined]  # a pedigree's parents (sampled PEV)
        out.append(gt)
    return out


def trait_designs_observed(kept: pd.DataFrame, traits, fixed) -> tuple[list, list, list, dict]:
    """Each trait's fixed design on the records where it is observed (aliased columns dropped)."""
    from ..spec.model import _fixed_matrix, _fixed_variables

    if fixed is None or isinstance(fixed, str):
        fixed = {t: (fixed or "1") for t in traits}
    elif isinstance(fixed, dict):
        unknown = [k for k in fixed if k not in traits]
        if unknown:
            raise ModelError(f"fixed= names trait(s) not in the model: {unknown}; traits: {list(traits)}")
        fixed = {t: fixed.get(t, "1") for t in traits}
    else:
        raise ModelError("fixed must be a formula part such as '1 + x' or a dict {trait: formula part}")
    Xs, names, notes = [], [], []
    for t in traits:
        sub = kept.loc[kept[t].notna().to_numpy()]
        cols = _fixed_variables(fixed[t], sub)
        miss = [c for c in cols if c not in sub.columns]
        if miss:
            raise ModelError(f"fixed effects of trait {t!r} use column(s) not in the data: {miss}")
        bad = [c for c in cols if sub[c].isna().any()]
        if bad:
            raise ModelError(
                f"covariate column(s) {bad} of trait {t!r} have missing values on records with "
                "that trait: give them values or drop those records yourself (and say so)"
            )
        X, xn, aliased = _fixed_matrix(fixed[t], sub)
        if aliased:
            notes.append(f"trait {t}: fixed-effect columns aliased with others and dropped: {', '.join(aliased)}")
        Xs.append(np.asarray(X, dtype=float))
        names.append(xn)
    return Xs, names, notes, fixed


def _components(tm: GeneralTerm) -> np.ndarray:
    """Label per level of a term: levels with a nonzero covariance path between them
    share a label (iid: each level its own; K⁻¹: connected components of its graph —
    K = (K⁻¹)⁻¹ is block-diagonal over them; K = LL': components of K's nonzeros)."""
    from scipy.sparse.csgraph import connected_components

    K = tm.K if tm.K is not None or tm.L is None else tm.L @ tm.L.T  # dense: K or its root L
    if K is not None:
        G = sp.csr_matrix(np.abs(K) > 1e-12 * max(float(np.abs(K).max()), 1e-300))
    elif tm.Kinv is not None:
        G = sp.csr_matrix(tm.Kinv)
    else:
        return np.arange(tm.q)
    return connected_components(G, directed=False)[1]


def check_identifiable(Y: np.ndarray, terms: list[GeneralTerm], traits) -> None:
    """A trait recorded only on individuals that have no other trait and no relationships
    with the individuals having the other traits: its genetic (and residual) covariances
    with the other traits never enter the likelihood (not identifiable). A clear error
    naming the trait and the count of such individuals.

    The values of trait k are coupled to the others when a record has trait k and
    another trait, or, through a term unstructured across traits, when a level of a
    trait-k record shares a level component (:func:`_components`) with a level of a
    record having another trait. ``diag(1|g)`` terms have no cross-trait parameters.
    """
    M = ~np.isnan(Y)
    t = M.shape[1]
    us = [tm for tm in terms if not tm.diag]
    if t < 2 or not us:
        return
    comps: list = []  # level components, formed only for a trait sharing no record
    for k in range(t):
        rk = M[:, k]
        others = np.delete(M, k, axis=1).any(axis=1)
        if (rk & others).any():
            continue
        comps = comps or [_components(tm) for tm in us]
        coupled = False
        for tm, comp in zip(us, comps):
            mine = np.unique(comp[tm.codes[rk]])
            theirs = np.unique(comp[tm.codes[others]])
            if np.intersect1d(mine, theirs).size:
                coupled = True
                break
        if not coupled:
            tm = us[0]
            n_ind = len(np.unique(tm.codes[rk]))
            rest = [traits[l] for l in range(t) if l != k]
            raise ModelError(
                f"trait {traits[k]!r} is recorded only on {n_ind} individual(s) ({tm.name}) that have no "
                f"other trait and no relationships with the individuals recording {rest} "
                f"(through {', '.join(repr(u.name) for u in us)}): its genetic and residual covariances "
                "with the other traits are not identifiable; fit it on its own, or give a relationship "
                "matrix linking those individuals"
            )


def _check_copies(kept: pd.DataFrame, traits) -> None:
    """Two traits that are copies up to scale and intercept on the records having both
    (pairwise |r| = 1) make R₀ singular: a clear error naming them."""
    Yd = kept[list(traits)]
    C = Yd.corr(min_periods=3).to_numpy()
    t = len(traits)
    for k in range(t):
        for l in range(k):
            if np.isfinite(C[k, l]) and abs(C[k, l]) > 1 - 1e-9:
                both = int((Yd.iloc[:, k].notna() & Yd.iloc[:, l].notna()).sum())
                raise ModelError(
                    f"traits {traits[l]!r} and {traits[k]!r} are copies of each other up to scale on "
                    f"the {both} records having both (correlation {C[k, l]:+.10f}): their residual "
                    "covariance matrix would be singular; fit one of them"
                )


def fit_general_traits(
    kept: pd.DataFrame,
    traits,
    terms,
    *,
    cov=None,
    cov_inverse=None,
    fixed=None,
    start=None,
    sigma=None,
    max_iter: int = 300,
    backend: str = "auto",
    formula: str | None = None,
    notes=(),
    pev=True,
):
    """Fit the multi-trait model on the general MME (missing traits, several terms, diag, A⁻¹).

    Parameters
    ----------
    kept : DataFrame
        Records (each with at least one trait; traits numeric, NaN where missing).
    traits : list of str
    terms : list of (name, diag)
        Random terms ``(1|name)`` (``diag=True`` for ``diag(1|name)``).
    cov, cov_inverse : dict name → K or K⁻¹ (terms not named are iid)
    fixed : str or dict trait → formula part
    start : dict with ``"Sigma"`` (list per term) and ``"Residual"``, optional
    sigma : same layout: known matrices, no estimation (BLUP at these values)
    backend : {"auto", "dense", "sparse", "vform"}
        ``"vform"``: REML over the observed values (:mod:`henderson.multitrait.vform`);
        ``"auto"`` takes it when :func:`henderson.multitrait.vform.prefer_vform` says so.
    pev : bool or "auto"
        PEV of the BLUPs. The MME back ends always have them; on the V-form they cost
        one N_obs² × q product per term after the fit ("auto": when N_obs·q·t < 10¹¹).

    Returns
    -------
    MultiTraitResult
        ``solver`` is ``"multitrait-mme-dense"``, ``"multitrait-mme-sparse"`` or
        ``"multitrait-vform"``.
    """
    import time

    from .._version import __version__
    from .reml import boundary_of, warn_boundary
    from .results import MultiTraitResult, correlation_tables, heritability_table
    from .spectral import vech_index

    t0 = time.perf_counter()
    traits = list(traits)
    t = len(traits)
    _check_copies(kept, traits)
    gterms = build_terms(kept, terms, dict(cov or {}), dict(cov_inverse or {}))
    Xs, x_names, notes1, fixed_d = trait_designs_observed(kept, traits, fixed)
    Y = kept[traits].to_numpy(dtype=float)
    check_identifiable(Y, gterms, traits)
    from .vform import VFORM_LIMIT, MultiTraitVForm, prefer_vform

    n_obs = int((~np.isnan(Y)).sum())
    state: MultiTraitMME | MultiTraitVForm
    if backend == "vform" or (backend == "auto" and prefer_vform(n_obs, gterms, t, sum(x.shape[1] for x in Xs))):
        state = MultiTraitVForm(Y, Xs, gterms)
        size = state.N
    else:
        state = MultiTraitMME(Y, Xs, gterms, backend=backend)
        size = state.dim if state.backend == "dense" else 0
    vform = isinstance(state, MultiTraitVForm)
    if pev == "auto":
        pev = n_obs * max(g.q for g in gterms) * t < 1e11
    t1 = time.perf_counter()

    # a residual covariance of two traits no record has together is not in the likelihood
    # (its score is 0, the AI singular): fixed at 0, as ASReml and BLUPF90 do
    from ..errors import FixedParameterWarning
    from .protocol import never_together

    fixed_zero = never_together(~np.isnan(Y)) if sigma is None else []
    fixed_msg = None
    if fixed_zero:
        fixed_msg = (
            "residual covariance fixed at 0 for traits "
            + ", ".join(f"{traits[l]!r} and {traits[k]!r}" for k, l in fixed_zero)
            + ": no record has both, so it does not enter the likelihood (as in ASReml and BLUPF90)"
        )
        warnings.warn(FixedParameterWarning(fixed_msg), stacklevel=3)

    def _theta(d):
        return state.pack([np.asarray(s, dtype=float) for s in d["Sigma"]], np.asarray(d["Residual"], dtype=float))

    # one BLAS thread below a few thousand equations (and always for the supernodal
    # factor, whose supernodes are small): see henderson._threads
    with blas_threads_for(size):
        if sigma is not None:
            theta = _theta(sigma)
            ev = state.evaluate(theta, derivatives=True)
            iterations, converged, log = 0, True, pd.DataFrame()
        else:
            opt = optimise_general(
                state,
                start=None if start is None else _theta(start),
                max_iter=max_iter,
                traits=traits,
                fixed_zero=fixed_zero,
            )
            theta, ev, iterations, converged, log = opt.theta, opt.ev, opt.iterations, opt.converged, opt.log
        if vform and pev:
            ev["PEV_terms"] = state.pev(ev)  # type: ignore[union-attr]
    t2 = time.perf_counter()
    Sigmas, R0 = state.unpack(theta)
    notes_in = list(notes)
    notes = list(notes) + notes1 + ([fixed_msg] if fixed_msg else [])
    if sigma is None and not vform and "Residual" in boundary_of(R0, R0, vech_index(t)):
        # the MME needs R₀⁻¹: near a singular R₀ its −2 log L (log|R| + log|C| + ...)
        # cancels catastrophically (off by ~1e-5 at R₀'s smallest eigenvalue ~1e-8) and the
        # optimiser stops short. The V-form factors V + XMX', exact there (see vform.py).
        why = (
            f"the Residual covariance reached a singular matrix (smallest eigenvalue "
            f"{np.linalg.eigvalsh(R0)[0]:.2g}) on the MME engine, which needs its inverse R₀⁻¹"
        )
        if backend == "auto" and n_obs <= VFORM_LIMIT:
            return fit_general_traits(
                kept,
                traits,
                terms,
                cov=cov,
                cov_inverse=cov_inverse,
                fixed=fixed,
                start={"Sigma": list(Sigmas), "Residual": R0},
                max_iter=max_iter,
                backend="vform",
                formula=formula,
                notes=notes_in
                + [why + ": the fit was finished by the V-form (REML over the observed values), exact there"],
                pev=pev,
            )
        mme_msg = why + ": its log-likelihood there is inaccurate (use solver='vform' or 'auto')"
        from ..errors import BoundaryWarning

        warnings.warn(BoundaryWarning(mme_msg), stacklevel=3)
        notes.append(mme_msg)
    cov_theta = None
    if sigma is None:
        free = opt.prepared.free
        try:  # the inverse AI over the free parameters; a fixed covariance has none
            cov_theta = np.zeros((len(theta), len(theta)))
            cov_theta[np.ix_(free, free)] = np.linalg.inv(opt.ai)
        except np.linalg.LinAlgError:
            cov_theta = None
            notes.append("the average-information matrix is singular: no standard errors")
    # the genetic term: the first with a known covariance, else the first
    gj = next((j for j, g in enumerate(gterms) if not g.iid), 0)  # type: ignore[attr-defined]
    term = gterms[gj].name
    boundary = boundary_of(Sigmas[gj], R0, vech_index(t)) if sigma is None else []
    if sigma is None:  # the other random terms on the boundary (a diag(1|g) variance at 0, ...)
        boundary += [b for b in opt.boundary if b not in (term, "Residual")]
    if cov_theta is not None and boundary:  # asymptotic SEs do not hold on the boundary
        js = {
            gj if b == "genetic" else (-1 if b == "Residual" else [g.name for g in gterms].index(b)) for b in boundary
        }
        on = np.array([j in js for j, _ in state.params])
        cov_theta[on, :] = np.nan
        cov_theta[:, on] = np.nan
    se = np.sqrt(np.maximum(np.diag(cov_theta), 0.0)) if cov_theta is not None else np.full(len(theta), np.nan)
    if cov_theta is not None:
        se[~np.isfinite(np.diag(cov_theta))] = np.nan
        se[np.setdiff1d(np.arange(len(theta)), opt.prepared.free)] = np.nan
    names = [f"{(gterms[j].name if j >= 0 else 'Residual')}:{traits[k]}:{traits[l]}" for j, (k, l) in state.params]
    vc = pd.DataFrame({"estimate": theta, "se": se}, index=pd.Index(names, name="parameter"))
    tr_idx = pd.Index(traits, name="trait")
    pidx = {p: i for i, p in enumerate(state.params)}

    def mat(vals, j):
        S = np.zeros((t, t))
        for (jj, (k, l)), x in zip(state.params, vals):
            if jj == j:
                S[k, l] = S[l, k] = x
        return pd.DataFrame(S, index=tr_idx, columns=traits)

    def sub_cov(j):
        if cov_theta is None:
            return None
        ii = [pidx.get((j, kl), -1) for kl in vech_index(t)]
        out = np.zeros((len(ii), len(ii)))
        ok = np.array([i >= 0 for i in ii])
        sel = np.array([i for i in ii if i >= 0])
        out[np.ix_(ok, ok)] = cov_theta[np.ix_(sel, sel)]
        return out

    covariances, covariance_se, correlations, correlation_se = {}, {}, {}, {}
    for j in list(range(len(gterms))) + [-1]:
        nm = gterms[j].name if j >= 0 else "Residual"
        S = Sigmas[j] if j >= 0 else R0
        covariances[nm] = mat(theta, j)
        covariance_se[nm] = mat(se, j)
        r, rse = correlation_tables(S, sub_cov(j), traits)
        correlations[nm], correlation_se[nm] = r, rse
    for d in (covariances, covariance_se, correlations, correlation_se):
        if term != "genetic":
            d["genetic"] = d[term]
    if cov_theta is not None:
        m = t * (t + 1) // 2
        ii = [pidx.get((gj, kl), -1) for kl in vech_index(t)] + [pidx[(-1, kl)] for kl in vech_index(t)]
        hcov = np.zeros((2 * m, 2 * m))
        ok = np.array([i >= 0 for i in ii])
        sel = np.array([i for i in ii if i >= 0])
        hcov[np.ix_(ok, ok)] = cov_theta[np.ix_(sel, sel)]
    else:
        hcov = None
    h2 = heritability_table(Sigmas[gj], R0, hcov, traits)
    if len(gterms) > 1:
        notes.append(
            f"heritabilities are Σ_{term},kk/(Σ_{term},kk + Σ_e,kk): the other random terms "
            f"({', '.join(g.name for g in gterms if g.name != term)}) are not in the denominator"
        )
    if vform:
        b, b_se = ev["b"], ev["b_se"]
    else:
        sol, dc = ev["sol"], ev["diag_cinv"]
        b = sol[state.nu :]  # type: ignore[union-attr]
        b_se = np.sqrt(np.maximum(dc[state.nu :], 0.0))  # type: ignore[union-attr]
    fe_idx = pd.MultiIndex.from_tuples(
        [(tr, c) for tr, xn in zip(traits, x_names) for c in xn], names=["trait", "coefficient"]
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        fe = pd.DataFrame({"estimate": b, "se": b_se, "t": b / b_se}, index=fe_idx)
    blups, record_levels = {}, {}
    for j, g in enumerate(gterms):
        q = g.q
        if vform:  # BLUPs and PEV of u itself, every level
            U = ev["U_terms"][j]
            P = ev["PEV_terms"][j] if "PEV_terms" in ev else np.full((q, t), np.nan)
        else:
            o, r = state.offsets[j], g.r  # type: ignore[union-attr]
            U = sol[o : o + r * t].reshape(t, r).T
            P = dc[o : o + r * t].reshape(t, r).T
        if g.L is not None and not vform:  # u = L v: û = L v̂, PEV(u_k) = diag(L C^{v_k v_k} L')
            U = g.L @ U
            if "Cinv" in ev:
                P = np.column_stack(
                    [
                        np.einsum(
                            "ij,jk,ik->i",
                            g.L,
                            ev["Cinv"][o + k * r : o + (k + 1) * r, o + k * r : o + (k + 1) * r],
                            g.L,
                        )
                        for k in range(t)
                    ]
                )
            else:
                P = np.full((q, t), np.nan)
                notes.append(f"PEV of {g.name} not computed on the sparse MME with a dense K")
        var = np.diag(Sigmas[j])[None, :] * g.k_diag[:, None]  # type: ignore[attr-defined]
        rel = trait_reliability(P, var)
        nrec = np.bincount(g.codes, minlength=q)
        blups[g.name] = pd.DataFrame(
            {"blup": U.ravel(), "pev": P.ravel(), "reliability": rel.ravel(), "n_records": np.repeat(nrec, t)},
            index=pd.MultiIndex.from_product([g.levels, traits], names=[g.name, "trait"]),
        )
        record_levels[g.name] = g.levels[g.codes]
    res_mat = np.full((state.n, t), np.nan)
    res_mat[state.M] = ev["ehat"]
    residuals = pd.DataFrame(res_mat, index=kept.index, columns=traits)
    fitted = pd.DataFrame(Y - res_mat, index=kept.index, columns=traits)
    m2ll = ev["m2ll"]
    loglik = -0.5 * m2ll
    df = state.p + (0 if sigma is not None else len(theta))
    n_records = pd.Series(state.M.sum(axis=0), index=tr_idx, name="records")
    if boundary:
        msg = warn_boundary(boundary, {"genetic": correlations[term], **correlations}, term)
        if msg:
            notes.append(msg)
    settings = {
        "formula": formula,
        "method": "reml",
        "traits": traits,
        "term": term,
        "terms": [(g.name, g.diag) for g in gterms],
        "fixed": fixed_d,
        "version": __version__,
        "solver": state.name,
    }
    res = MultiTraitResult(
        traits=traits,
        term=term,
        covariances=covariances,
        covariance_se=covariance_se,
        correlations=correlations,
        correlation_se=correlation_se,
        heritability=h2,
        variance_components=vc,
        vcov=cov_theta,
        fixed_effects=fe,
        blups=blups,
        loglik=float(loglik),
        aic=float(-2 * loglik + 2 * df),
        bic=float(-2 * loglik + df * np.log(state.N)),
        n_obs=state.n,
        n_records=n_records,
        method="reml",
        solver=state.name,
        iterations=int(iterations),
        converged=bool(converged),
        log=log,
        fitted=fitted,
        residuals=residuals,
        boundary=tuple(boundary),
        notes=tuple(notes),
        settings=settings,
        record_levels=record_levels,
    )
    return dataclasses.replace(res, timings=stage_timings(t0, prepare=t1, optimise=t2))

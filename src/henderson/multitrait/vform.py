"""Multi-trait REML in observation space: V over the *observed* trait values only.

The MME of :mod:`henderson.multitrait.general` have Σ_j r_j·t + p equations whatever the
number of observed values; with a dense K (G) that is a dense (q·t)³ problem per
evaluation even when 30 % of the values are missing. Here the model is evaluated on

    V = Σ_j Z_j (Σ_j ⊗ K_j) Z_j' + R,      R = ⊕_i R₀[O_i, O_i],

an N_obs × N_obs matrix (N_obs = observed (record, trait) values), with the values
stacked *trait-major* (all values of trait 1 in record order, then trait 2, ...). Block
(k, l) of V is

    V_kl = Σ_j Σ_j[k, l] K_j[c_k, c_l] + R₀[k, l] E_kl,

c_k the levels of the records observing trait k and E_kl[a, b] = 1 when value a of
trait k and value b of trait l are on the same record. One Cholesky factor of V gives
(Harville 1977; Searle, Casella & McCulloch 1992, ch. 6)

    −2 log L_REML = (N − p) log 2π + log|V| + log|X'V⁻¹X| + y'Py,
    P = V⁻¹ − V⁻¹X (X'V⁻¹X)⁻¹ X'V⁻¹,

the same number as the MME form (log|R| + log|G| + log|C| = log|V| + log|X'V⁻¹X|).
Derivatives (∂V/∂θ_a = V_a has the blocks (k, l) and (l, k) of one term or of R):

    ∂(−2 log L)/∂θ_a = tr(P V_a) − y'P V_a P y,
    tr(P V_a) = (2 −δ_kl) Σ (P_kl ∘ K_j[c_k, c_l])     (elementwise: O(N²), no product),
    y'P V_a P y = (2 − δ_kl) s_k' K_j s_l,   s_k = Z_k' (Py)_k  (level sums, q-vectors),
    AI_ab = ½ y'P V_a P V_b P y = ½ F_a' P F_b,   F_a = V_a P y  (from K s, O(q²t)).

BLUPs for every (level, trait), including levels or traits without records:
Û_j = K_j S_j Σ_j (S_j = [s_1 … s_t], q × t); b̂ = (X'V⁻¹X)⁻¹ X'V⁻¹y; ê = R P y.
PEV (when asked): Var(u_jk − û_jk) = Σ_kk K_ii − Σ_m,n Σ_km Σ_kn w_mn,
w_mn = colsum(H_m ∘ P_mn H_n), H_m = K_j[c_m, :] (one N² q product in all).
EM pieces (the fallback step of the optimiser, same formulas as the MME engine):
E[u'K⁻¹u | y] = Σ S'KS Σ + r Σ − Σ T Σ with T_kl = Σ (P_kl ∘ K[c_k, c_l]), and
the expected residual products per missing pattern Σ_i ê_iê_i' + m R_o − R_o (Σ_i P_ii) R_o.

Cost per evaluation: one Cholesky (N³/3); with derivatives also V⁻¹ (dpotri, 2N³/3)
and O(N²) per parameter. The MME dense back end costs about (4/3)·dim³ + N·dim² per
evaluation, so ``backend="auto"`` uses this form when a dense K makes the MME dense and
N_obs ≤ dim (:func:`prefer_vform`).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.linalg import lapack

from ..errors import ModelError, NotPositiveDefiniteError
from ..linalg import dense_safe
from .general import GeneralTerm, TraitParameters, term_pairs
from .spectral import LOG2PI

#: largest N_obs formed (V and P are N_obs² doubles each)
VFORM_LIMIT = 20000
#: rows per block when symmetrising P (bounded temporaries)
_BLOCK = 1024


def prefer_vform(N_obs: int, terms: list[GeneralTerm], t: int, p: int) -> bool:
    """The ``auto`` rule: the V-form when some term has a dense K (which makes the MME
    dense), no term has a K⁻¹ (those stay sparse on the MME), and the observed values are
    no more than the MME's equations, N_obs ≤ Σ_j q_j·t + p (q_j levels; for a dense K
    not yet decomposed its rank is taken as q_j: both forms are cubic in their size with
    similar constants), within :data:`VFORM_LIMIT`."""
    if not any(tm.dense for tm in terms):
        return False
    if any(not tm.dense and tm.Kinv is not None for tm in terms):
        return False
    return N_obs <= min(mme_equations(terms, t, p), VFORM_LIMIT)


#: K + KERNEL_TOL·max diag(K)·I must have a Cholesky factor (K PSD up to rounding)
KERNEL_TOL = 1e-8


def check_kernel_psd(K: np.ndarray, name: str) -> None:
    """A ModelError naming the term when its K is clearly not positive semi-definite.

    V = Σ ⊗ ZKZ' + R is positive definite for every PSD Σ only when K is PSD; a K with
    a clearly negative eigenvalue otherwise surfaces as "V not positive definite" at
    some θ. The test is one Cholesky factorisation of K + δI, δ = KERNEL_TOL·max diag K
    (a genomic G of rank n − 1 passes: its zero eigenvalue is ~1e-13 relative); on
    failure the smallest eigenvalue is computed for the message.
    """
    K = np.asarray(K, dtype=float)
    top = max(float(np.max(np.diag(K))), 1e-300) if K.size else 1.0
    A = np.array(K, order="F")
    A[np.diag_indices_from(A)] += KERNEL_TOL * top
    _, info = lapack.dpotrf(A, lower=1, overwrite_a=1, clean=0)
    del A
    if info == 0:
        return
    w0 = float(sla.eigh(K, eigvals_only=True, subset_by_index=[0, 0], check_finite=False)[0])
    raise ModelError(
        f"the covariance given for {name!r} is not positive semi-definite (smallest eigenvalue "
        f"{w0:.3g}, largest diagonal {top:.3g}): a relationship matrix must be PSD; check how it was built "
        "(e.g. blend a genomic G with A or add a small ridge)"
    )


def mme_equations(terms: list[GeneralTerm], t: int, p: int) -> int:
    """Number of equations of the multi-trait MME (Σ_j r_j t + p)."""
    return int(sum(tm.r for tm in terms) * t + p)


class MultiTraitVForm(TraitParameters):
    """Observation-space multi-trait REML (same θ layout and interface as
    :class:`henderson.multitrait.general.MultiTraitMME`, for ``optimise_general``).

    Parameters
    ----------
    Y : ndarray (n, t)
        Records; NaN where a trait is missing (every row has at least one value).
    Xs : list of t ndarrays (n_k, p_k)
        Fixed design of trait k on the records observing it (record order).
    terms : list of GeneralTerm
        K given as ``L`` (K = LL'), as ``Kinv`` (inverted densely here) or iid.
    """

    backend = "vform"
    name = "multitrait-vform"

    def __init__(self, Y, Xs, terms):
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
        if N > VFORM_LIMIT:
            raise ModelError(
                f"{N} observed trait values: too many for the observation-space multi-trait engine "
                f"(limit {VFORM_LIMIT}; V and P would take {2 * N**2 * 8 / 2**30:.1f} GiB)"
            )
        self.terms = list(terms)
        # record-major positions (the MME engine's order, used for ê in the results)
        pos = np.full((n, t), -1, dtype=np.int64)
        pos[M] = np.arange(N)
        # trait-major internal order
        self.recs = [np.flatnonzero(M[:, k]) for k in range(t)]
        nk = np.array([len(r) for r in self.recs])
        st = np.concatenate([[0], np.cumsum(nk)]).astype(int)
        self.sl = [slice(int(st[k]), int(st[k + 1])) for k in range(t)]
        self.perm = np.concatenate([pos[r, k] for k, r in enumerate(self.recs)])  # internal → record-major
        self.y = Y.T[M.T]  # trait-major
        pks = [x.shape[1] for x in Xs]
        self.pks, self.p = pks, int(sum(pks))
        X = np.zeros((N, self.p))
        xo = np.concatenate([[0], np.cumsum(pks)]).astype(int)
        for k, x in enumerate(Xs):
            if x.shape[0] != nk[k]:
                raise ModelError(f"design of trait {k} has {x.shape[0]} rows, trait has {nk[k]} values (internal)")
            X[self.sl[k], xo[k] : xo[k + 1]] = x
        self.X = X
        # V is evaluated as V + XMX', M = ⊕_k s_k²(X_k'X_k)⁻¹ (s_k² the observed variance of
        # trait k): the REML likelihood, P and b̂ do not change (K'(V + XMX')K = K'VK for the
        # error contrasts K), but V + XMX' stays positive definite where only K'VK is, e.g. at
        # a singular R₀ with a centred G, whose null vector 1 lies in the span of the intercepts;
        # there V itself is singular and log|V| + log|X'V⁻¹X| cancels catastrophically.
        # (X'(V + XMX')⁻¹X)⁻¹ = (X'V⁻¹X)⁻¹ + M: M is subtracted from b̂'s covariance.
        self._xm = np.zeros((N, self.p))  # XMX' = xm xm'
        self._M = np.zeros((self.p, self.p))
        for k, x in enumerate(Xs):
            if x.shape[1] == 0:
                continue
            yk = self.y[self.sl[k]]
            s2 = float(np.var(yk)) if len(yk) > 1 and np.var(yk) > 0 else 1.0
            q, r = np.linalg.qr(np.asarray(x, dtype=float))
            self._xm[self.sl[k], xo[k] : xo[k + 1]] = np.sqrt(s2) * q
            ri = sla.solve_triangular(r, np.eye(r.shape[0]), check_finite=False)
            self._M[xo[k] : xo[k + 1], xo[k] : xo[k + 1]] = s2 * (ri @ ri.T)
        # level covariance of each term (dense; None for iid) and each trait's level codes
        self.K = []
        for tm in self.terms:
            if tm.K is not None:
                self.K.append(np.asarray(tm.K, dtype=float))
            elif tm.L is not None:
                self.K.append(tm.L @ tm.L.T)
            elif tm.Kinv is not None:
                Ki = tm.Kinv.toarray() if sp.issparse(tm.Kinv) else np.asarray(tm.Kinv, dtype=float)
                try:
                    self.K.append(sla.inv(Ki, check_finite=False))
                except np.linalg.LinAlgError as exc:
                    raise ModelError(f"K⁻¹ of term {tm.name!r} is singular") from exc
            else:
                self.K.append(None)
        for tm, K in zip(self.terms, self.K):
            if K is not None and tm.K is not None:
                check_kernel_psd(K, tm.name)
        self.codes = [[tm.codes[r] for r in self.recs] for tm in self.terms]
        # values of one record: for each (k, l) the positions within blocks k and l
        self.pairs = {}
        for k in range(t):
            for l in range(t):
                _, ia, ib = np.intersect1d(self.recs[k], self.recs[l], assume_unique=True, return_indices=True)
                self.pairs[(k, l)] = (ia, ib, self.recs[k][ia])
        pats, pid = np.unique(M, axis=0, return_inverse=True)
        self.patterns, self.pid = pats, pid.ravel()
        self.pat_count = np.bincount(self.pid, minlength=len(pats))
        self.params = [(j, kl) for j, tm in enumerate(self.terms) for kl in term_pairs(t, tm.diag)] + [
            (-1, kl) for kl in term_pairs(t, False)
        ]
        self._cache: tuple | None = None
        self._ranks: list[int | None] = [tm.L.shape[1] if tm.L is not None else None for tm in self.terms]

    def em_update(self, ev) -> np.ndarray:
        """EM-REML step (the MME engine's formulas) with S_j = E[u_j'K_j⁻¹u_j | y] =
        Σ(S'KS)Σ + r_jΣ − ΣTΣ from this evaluation's pieces (r_j = rank K_j)."""
        S_terms = []
        for j, (Sg, Q, T) in enumerate(ev["EM_parts"]):
            ES = Sg @ Q @ Sg + self.em_divisor(j) * Sg - Sg @ T @ Sg
            S_terms.append(0.5 * (ES + ES.T))
        return super().em_update(dict(ev, S_terms=S_terms))

    def em_divisor(self, j: int) -> int:
        """rank K_j (pivoted Cholesky, LAPACK's default tolerance), formed at the first
        EM step: E[v'v] of K = LL' has rank K_j terms per trait."""
        rank = self._ranks[j]
        if rank is None:
            K = self.K[j]
            if K is None:
                rank = self.terms[j].q
            else:
                _, _, pivoted_rank, info = lapack.dpstrf(np.array(K, order="F"), lower=1)
                if info < 0:
                    raise ModelError(f"K of term {self.terms[j].name!r}: pivoted Cholesky failed (internal)")
                rank = int(pivoted_rank)
            self._ranks[j] = rank
        return rank

    # blocks --------------------------------------------------------------------------
    def _kblock(self, j: int, k: int, l: int) -> np.ndarray:
        """K_j[c_k, c_l] (n_k × n_l)."""
        ck, cl = self.codes[j][k], self.codes[j][l]
        K = self.K[j]
        if K is None:
            return (ck[:, None] == cl[None, :]).astype(float)
        return K[np.ix_(ck, cl)]

    def _kmul(self, j: int, S: np.ndarray) -> np.ndarray:
        """K_j S (q × t)."""
        K = self.K[j]
        return S.copy() if K is None else K @ S

    def _level_sums(self, j: int, v: np.ndarray) -> np.ndarray:
        """S (q × t): S[:, k] = Z_jk' v_k (sums of v over the values of trait k per level)."""
        q = self.terms[j].q
        return np.column_stack(
            [np.bincount(self.codes[j][k], weights=v[self.sl[k]], minlength=q) for k in range(self.t)]
        )

    # evaluation ----------------------------------------------------------------------
    def _factor(self, theta, Sigmas, R0, keep: bool):
        """Cholesky factor of V (lower, in a Fortran buffer) and log|V|. The factor of the
        last −2logL-only evaluation is kept: the optimiser asks for derivatives at the point
        it has just accepted, which then costs no second factorisation."""
        key = np.asarray(theta, dtype=float).tobytes()
        cached = self._cache
        self._cache = None
        if cached is not None and cached[0] == key:
            if keep:
                self._cache = cached
            return cached[1], cached[2]
        del cached
        t, N = self.t, self.N
        V = np.empty((N, N), order="F")
        for k in range(t):
            for l in range(k + 1):
                B = np.zeros((len(self.recs[k]), len(self.recs[l])))
                for j, tm in enumerate(self.terms):
                    if tm.diag and k != l:
                        continue
                    s = Sigmas[j][k, l]
                    if s != 0.0:
                        B += s * self._kblock(j, k, l)
                ia, ib, _ = self.pairs[(k, l)]
                B[ia, ib] += R0[k, l]
                V[self.sl[k], self.sl[l]] = B
        # + XMX' (see __init__), through the guarded syrk (OpenBLAS dsyrk crash)
        V = dense_safe.syrk_lower(self._xm, alpha=1.0, beta=1.0, c=V)
        c, info = dense_safe.potrf(V, overwrite=True)  # one dpotrf up to 12k (OpenBLAS dsyrk crash above)
        if info != 0:
            raise NotPositiveDefiniteError("V (the covariance of the observed values) is not positive definite")
        logdet_v = 2.0 * float(np.log(np.diag(c)).sum())
        if keep:
            self._cache = (key, c, logdet_v)
        return c, logdet_v

    def evaluate(self, theta, derivatives: bool = False, pev: bool = False) -> dict:
        """−2 log L (and score ∂ℓ/∂θ, AI, EM pieces, BLUPs; PEV when asked) at θ."""
        Sigmas, R0 = self.unpack(theta)
        t, N = self.t, self.N
        c, logdet_v = self._factor(theta, Sigmas, R0, keep=not derivatives)
        ViX, _ = lapack.dpotrs(c, self.X, lower=1)
        Viy, _ = lapack.dpotrs(c, self.y, lower=1)
        XVX = self.X.T @ ViX
        try:
            cx = sla.cholesky(0.5 * (XVX + XVX.T), lower=True, check_finite=False)
        except np.linalg.LinAlgError as exc:
            raise NotPositiveDefiniteError("X'V⁻¹X is not positive definite") from exc
        logdet_x = 2.0 * float(np.log(np.diag(cx)).sum())
        b = sla.cho_solve((cx, True), self.X.T @ Viy, check_finite=False)
        Py = Viy - ViX @ b
        ypy = float(self.y @ Py)
        m2ll = (N - self.p) * LOG2PI + logdet_v + logdet_x + ypy
        out = dict(m2ll=float(m2ll), Sigmas=Sigmas, R0=R0, b=b)
        if not derivatives:
            return out
        # P = V⁻¹ − A A', A = V⁻¹X L_x^{-T}; lower triangle, then mirrored by blocks
        P, info = dense_safe.potri(c, overwrite=True)
        if info != 0:
            raise NotPositiveDefiniteError("V (the covariance of the observed values) is not positive definite")
        A = sla.solve_triangular(cx, ViX.T, lower=True, check_finite=False).T
        P = dense_safe.syrk_lower(A, alpha=-1.0, beta=1.0, c=P)
        for i0 in range(0, N, _BLOCK):
            i1 = min(i0 + _BLOCK, N)
            P[i0:i1, i1:] = P[i1:, i0:i1].T
            blk = P[i0:i1, i0:i1]
            P[i0:i1, i0:i1] = np.tril(blk) + np.tril(blk, -1).T
        # random terms: level sums S, K S, traces T, quadratic forms
        Ss, KSs, Ts, Ds, S_terms, U_terms = [], [], [], [], [], []
        for j, tm in enumerate(self.terms):
            S = self._level_sums(j, Py)
            KS = self._kmul(j, S)
            T = np.zeros((t, t))
            for k in range(t):
                for l in range(k + 1):
                    if tm.diag and k != l:
                        continue
                    T[k, l] = T[l, k] = float(np.einsum("ab,ab->", P[self.sl[k], self.sl[l]], self._kblock(j, k, l)))
            Q = S.T @ KS
            Q = 0.5 * (Q + Q.T)
            Sg = Sigmas[j]
            D = T - Q
            if tm.diag:
                D = np.diag(np.diag(D))
            Ss.append(S)
            KSs.append(KS)
            Ts.append(T)
            Ds.append(D)
            S_terms.append((Sg, Q, T))  # E[u'K⁻¹u | y] needs rank K: formed in em_update
            U_terms.append(KS @ Sg)
        # residual: P within records, ê = R P y, expected residual products per pattern
        ehat = np.zeros(N)
        Pw = {}
        for (k, l), (ia, ib, _) in self.pairs.items():
            ok, ol = self.sl[k].start, self.sl[l].start
            Pw[(k, l)] = P[ok + ia, ol + ib]
            ehat[ok + ia] += R0[k, l] * Py[ol + ib]
        DR = np.zeros((t, t))
        npat = len(self.patterns)
        Qs = np.zeros((npat, t, t))
        Psum = np.zeros((npat, t, t))
        for (k, l), (ia, ib, rec) in self.pairs.items():
            ok, ol = self.sl[k].start, self.sl[l].start
            DR[k, l] = Pw[(k, l)].sum() - float(Py[ok + ia] @ Py[ol + ib])
            g = self.pid[rec]
            Qs[:, k, l] = np.bincount(g, weights=ehat[ok + ia] * ehat[ol + ib], minlength=npat)
            Psum[:, k, l] = np.bincount(g, weights=Pw[(k, l)], minlength=npat)
        for g, O in enumerate(self.patterns):
            idx = np.flatnonzero(O)
            Ro = R0[np.ix_(idx, idx)]
            Qs[g][np.ix_(idx, idx)] += self.pat_count[g] * Ro - Ro @ Psum[g][np.ix_(idx, idx)] @ Ro
        mats = Ds + [DR]
        score = np.array([-0.5 * (mats[j][k, l] * (1.0 if k == l else 2.0)) for j, (k, l) in self.params])
        # AI = ½ F'PF, F_a = V_a P y
        F = np.zeros((N, len(self.params)))
        for a, (j, (k, l)) in enumerate(self.params):
            if j >= 0:
                F[self.sl[k], a] += KSs[j][self.codes[j][k], l]
                if k != l:
                    F[self.sl[l], a] += KSs[j][self.codes[j][l], k]
            else:
                ia, ib, _ = self.pairs[(k, l)]
                F[self.sl[k].start + ia, a] += Py[self.sl[l].start + ib]
                if k != l:
                    F[self.sl[l].start + ib, a] += Py[self.sl[k].start + ia]
        PF = P @ F
        ai = 0.5 * (F.T @ PF)
        ai = 0.5 * (ai + ai.T)
        # b̂'s sampling covariance (X'V⁻¹X)⁻¹ = C^{bb}
        Cbb = sla.cho_solve((cx, True), np.eye(self.p), check_finite=False) - self._M
        e_rm = np.empty(N)
        e_rm[self.perm] = ehat
        out.update(
            score=score,
            ai=ai,
            Qs=Qs,
            EM_parts=S_terms,
            D=mats,
            U_terms=U_terms,
            b_se=np.sqrt(np.maximum(np.diag(Cbb), 0.0)),
            ehat=e_rm,
            Py=Py,
        )
        out["P"] = P
        if pev:
            out["PEV_terms"] = self.pev(out)
        return out

    def pev(self, ev: dict) -> list[np.ndarray]:
        """PEV (q × t) of every term from an evaluation with derivatives (its P)."""
        return [self._pev(j, ev["P"], ev["Sigmas"][j]) for j in range(len(self.terms))]

    def _pev(self, j: int, P: np.ndarray, Sg: np.ndarray) -> np.ndarray:
        """PEV (q × t) of term j: Σ_kk K_ii − Σ_mn Σ_km Σ_kn colsum(H_m ∘ P_mn H_n)."""
        t, q = self.t, self.terms[j].q
        K = self.K[j]
        H = [(np.eye(q)[self.codes[j][m]] if K is None else K[self.codes[j][m]]) for m in range(t)]  # H_m = K[c_m, :]
        W = np.zeros((t, t, q))
        for n in range(t):
            G = P[:, self.sl[n]] @ H[n]
            for m in range(t):
                W[m, n] = np.einsum("ai,ai->i", H[m], G[self.sl[m]])
        kd = np.ones(q) if K is None else np.diag(K)
        out = np.empty((q, t))
        for k in range(t):
            out[:, k] = Sg[k, k] * kd - np.einsum("m,n,mni->i", Sg[k], Sg[k], W)
        return out

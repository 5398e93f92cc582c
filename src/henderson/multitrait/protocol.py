"""The multi-trait engines behind the shared structured-model optimiser.

:func:`henderson.reml.general.optimise_general` (AI steps in the unconstrained
parameters φ of each Σ, EM fallback, the boundary rule and the ``newton_check``
stopping rule) sees a :class:`~henderson.solvers.protocol.Prepared`. This module gives
the three multi-trait engines one:

- :class:`~henderson.multitrait.spectral.MultiTraitTridiagonal` (one K, complete data),
  through :class:`SpectralEngine`, which gives it the θ layout and ``evaluate`` of the
  other two;
- :class:`~henderson.multitrait.general.MultiTraitMME` (dense or sparse MME);
- :class:`~henderson.multitrait.vform.MultiTraitVForm` (observation space).

θ is the engines' layout: per random term its lower triangle of Σ_j in ASReml order
(or its diagonal for ``diag(1|g)``), then the residual's. Each Σ is an
:class:`~henderson.spec.covariance.Unstructured` (or ``Diagonal``) structure, so the
optimiser moves in the Cholesky factor of every Σ and every trial Σ is PSD.

A residual covariance R₀[k, l] of two traits that no record has together never enters
the likelihood (the score is 0 and the AI singular along it). It is fixed at 0, as
ASReml and BLUPF90 do, by :class:`FixedZeroUnstructured`: its θ are the free entries
only, and φ is a Cholesky factor with the same zeros, in a trait order with no fill.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np

from ..errors import ModelError, NotPositiveDefiniteError
from ..solvers.protocol import Evaluation, Prepared
from ..spec.covariance import Diagonal, Structure, Unstructured

#: ε of the MME engines' Σ + ε·diag(s²) (s: phenotypic SDs); its effect on −2 log L is
#: ~ N_obs·ε, far below the stopping tolerances
MME_RIDGE = 1e-10


class FixedZeroUnstructured(Structure):
    """Unstructured Σ with some covariances fixed at 0.

    θ: the free lower-triangle entries (row order). φ: the entries of a lower-triangular
    L, on the same pattern, of P Σ P' = LL' for a trait order P in which the Cholesky
    factor has no fill on the zeros (found by trying orders; every pattern of up to 8
    traits whose graph is chordal has one). Σ = P'LL'P then has the zeros for every φ.

    Parameters
    ----------
    components : list of str
    zeros : list of (k, l)
        Pairs (k > l) fixed at 0.
    """

    kind = "us-fixed-zero"

    def __init__(self, components, zeros):
        super().__init__(components)
        S = self.size
        self.zeros = sorted({(max(k, l), min(k, l)) for k, l in zeros})
        self.pairs = [(i, j) for i in range(S) for j in range(i + 1) if (i, j) not in self.zeros]
        self.n_theta = len(self.pairs)
        self.order = self._no_fill_order()
        inv = np.empty(S, dtype=int)
        inv[self.order] = np.arange(S)
        # free pairs in the permuted (factor) coordinates, lower triangle
        self.lpairs = [(max(inv[i], inv[j]), min(inv[i], inv[j])) for i, j in self.pairs]

    def _no_fill_order(self) -> np.ndarray:
        S = self.size
        zero = np.zeros((S, S), dtype=bool)
        for k, l in self.zeros:
            zero[k, l] = zero[l, k] = True
        for perm in itertools.islice(itertools.permutations(range(S)), 50000):
            p = np.asarray(perm)
            Z = zero[np.ix_(p, p)]
            nz = ~Z
            ok = True
            for k in range(S):
                for l in range(k):
                    if Z[k, l] and np.any(nz[k, :l] & nz[l, :l]):
                        ok = False  # elimination of an earlier column fills (k, l)
                        break
                if not ok:
                    break
            if ok:
                return p
        raise ModelError(
            f"the residual covariances fixed at 0 ({', '.join(f'{self.components[k]}/{self.components[l]}' for k, l in self.zeros)}) "
            "have no Cholesky order without fill: this pattern of traits recorded together is not supported"
        )

    def sigma(self, theta):
        S = self.size
        out = np.zeros((S, S))
        for v, (i, j) in zip(theta, self.pairs):
            out[i, j] = out[j, i] = v
        return out

    def names(self, term):
        c = self.components
        return [f"{term}:{c[i]}:{c[j]}" for i, j in self.pairs]

    def is_variance(self):
        return np.array([i == j for i, j in self.pairs])

    def theta_scale(self, theta):
        d = np.abs(np.diag(self.sigma(theta)))
        return np.array([np.sqrt(d[i] * d[j]) for i, j in self.pairs])

    def em(self, M, theta):
        """M's free entries; if zeroing the others leaves Σ not positive definite, its
        correlations are shrunk towards 0 until it is (EM is the optimiser's fallback)."""
        M = np.asarray(M, dtype=float)
        d = np.sqrt(np.maximum(np.diag(M), 1e-300))
        R = M / np.outer(d, d)
        for k, l in self.zeros:
            R[k, l] = R[l, k] = 0.0
        off = R - np.diag(np.diag(R))
        for _ in range(60):
            if np.linalg.eigvalsh(np.eye(self.size) + off)[0] > 1e-8:
                break
            off *= 0.9
        S = (np.eye(self.size) + off) * np.outer(d, d)
        return np.array([S[i, j] for i, j in self.pairs])

    def project(self, theta, floor):
        return self.em(self.sigma(theta) + floor * np.eye(self.size), theta)

    def from_phi(self, phi):
        S = self.size
        L = np.zeros((S, S))
        for v, (i, j) in zip(phi, self.lpairs):
            L[i, j] = v
        Sp = L @ L.T
        inv = np.empty(S, dtype=int)
        inv[self.order] = np.arange(S)
        Sig = Sp[np.ix_(inv, inv)]
        return np.array([Sig[i, j] for i, j in self.pairs])

    def to_phi(self, theta):
        Sig = self.sigma(theta)
        p = self.order
        Sp = Sig[np.ix_(p, p)]
        try:
            L = np.linalg.cholesky(Sp)
        except np.linalg.LinAlgError:  # PSD but singular: the factor of the nearest PD Σ
            w, Q = np.linalg.eigh(Sp)
            L = np.linalg.cholesky((Q * np.maximum(w, 1e-12 * max(w.max(), 1e-300))) @ Q.T)
        return np.array([L[i, j] for i, j in self.lpairs])


def never_together(M: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (k > l) of traits that no record has together (M: records × traits observed)."""
    M = np.asarray(M, dtype=bool)
    both = M.T.astype(np.int64) @ M.astype(np.int64)
    t = M.shape[1]
    return [(k, l) for k in range(t) for l in range(k) if both[k, l] == 0]


class SpectralEngine:
    """:class:`~henderson.multitrait.spectral.MultiTraitTridiagonal` with the θ layout and
    ``evaluate`` dict of the MME and V-form engines (one term, Σ_g then Σ_e).

    Parameters
    ----------
    state : MultiTraitSpectral or MultiTraitTridiagonal
    term : str
        Name of the genetic term.
    start : (Σ_g, Σ_e)
        Starting matrices (``reml.start_values``).
    """

    def __init__(self, state, term: str, start):
        from .spectral import vech_index

        self.state, self.t, self.name = state, state.t, state.name
        self.terms = [SimpleNamespace(name=term, diag=False)]
        idx = vech_index(self.t)
        self.params = [(0, kl) for kl in idx] + [(-1, kl) for kl in idx]
        self._start = start

    def unpack(self, theta):
        from .spectral import unvech

        m = len(self.params) // 2
        return [unvech(theta[:m], self.t)], unvech(theta[m:], self.t)

    def pack(self, Sigmas, R0):
        from .spectral import vech

        return np.concatenate([vech(Sigmas[0]), vech(R0)])

    def start(self) -> np.ndarray:
        return self.pack([self._start[0]], self._start[1])

    def evaluate(self, theta, derivatives: bool = False) -> dict:
        (Sg,), Se = self.unpack(theta)
        pc = self.state.pieces(Sg, Se)
        out = dict(m2ll=pc["m2ll"], Sg=Sg, Se=Se, pc=pc)
        return self.with_derivatives(out) if derivatives else out

    def with_derivatives(self, ev: dict) -> dict:
        """``ev`` with score and AI from the pieces it holds (no second evaluation)."""
        if "score" in ev:
            return ev
        Sg, Se, pc = ev["Sg"], ev["Se"], ev["pc"]
        score, _ = self.state.score(Sg, Se, pc)
        ai = self.state.average_information(Sg, Se, pc)
        return dict(ev, score=score, ai=ai)

    def em_update(self, ev: dict) -> np.ndarray:
        Sg, Se = self.state.em_update(ev["Sg"], ev["Se"], ev["pc"])
        return self.pack([Sg], Se)


class MultiTraitPrepared(Prepared):
    """A multi-trait engine as a :class:`~henderson.solvers.protocol.Prepared`.

    ``engine`` is a :class:`SpectralEngine`, :class:`~henderson.multitrait.general.MultiTraitMME`
    or :class:`~henderson.multitrait.vform.MultiTraitVForm`: ``params``, ``terms``, ``t``,
    ``evaluate(θ, derivatives)`` (a dict with ``m2ll`` and, with derivatives, ``score``
    = ∂ℓ/∂θ and ``ai``), ``em_update(ev)`` and ``start()``. The optimiser's θ is the
    engine's without the residual covariances in ``fixed_zero`` (held at 0);
    :meth:`full` puts them back. ``Evaluation.detail`` is the engine's dict.

    Parameters
    ----------
    engine : object
    traits : list of str
    fixed_zero : list of (k, l), optional
        Residual covariances of traits never recorded together (k > l).
    """

    def __init__(self, engine, traits, fixed_zero=()):
        self.engine = engine
        self.traits = [str(x) for x in traits]
        self.fixed_zero = sorted({(max(k, l), min(k, l)) for k, l in fixed_zero})
        zero_idx = {a for a, (j, kl) in enumerate(engine.params) if j == -1 and kl in self.fixed_zero}
        self.free = np.array([a for a in range(len(engine.params)) if a not in zero_idx], dtype=int)
        structures, slices, names, terms = [], [], [], []
        pos = 0
        for tm in engine.terms:
            st = Diagonal(self.traits) if tm.diag else Unstructured(self.traits)
            structures.append(st)
            slices.append(slice(pos, pos + st.n_theta))
            names += st.names(tm.name)
            terms.append(SimpleNamespace(name=tm.name))
            pos += st.n_theta
        res = FixedZeroUnstructured(self.traits, self.fixed_zero) if self.fixed_zero else Unstructured(self.traits)
        structures.append(res)
        slices.append(slice(pos, pos + res.n_theta))
        names += res.names("Residual")
        pos += res.n_theta
        if pos != len(self.free):
            raise ModelError("multi-trait θ layout does not match the engine's (internal)")
        spec = SimpleNamespace(structures=structures, slices=slices, terms=terms, n_theta=pos, theta_names=names)
        # the optimiser works in trait-scaled units, θ_kl/(s_k s_l) (s: phenotypic SDs): the
        # AI of Yield (variance ~10³) and a colour score (~10⁻⁵) is too badly scaled otherwise
        sd = np.sqrt(np.nanvar(np.asarray(engine.Y if hasattr(engine, "Y") else engine.state.Y, dtype=float), axis=0))
        sd = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
        self.unit = np.array([sd[k] * sd[l] for _, (k, l) in engine.params])[self.free]
        # the MME need Σ⁻¹: each random term's Σ evaluated at Σ + ε·diag(s²), so that a Σ on the
        # boundary (a variance at 0, a correlation of ±1) is a point like any other, as on
        # the V-form and spectral engines, which need no inverse of Σ
        self.ridge = np.zeros(len(engine.params))
        if type(engine).__name__ == "MultiTraitMME":
            # random terms only: R₀ stays a PD requirement (its inverse enters every record's
            # equations; a near-singular R₀ + ε makes T'R⁻¹T meaningless, and such a trial fails)
            diag = np.array([k == l and j >= 0 for j, (k, l) in engine.params])
            self.ridge[diag] = MME_RIDGE * np.array([sd[k] ** 2 for _, (k, l) in engine.params])[diag]
        super().__init__(f"multitrait:{engine.name}", engine, names)
        self._spec = spec

    @property
    def spec(self):
        return self._spec

    @property
    def par_tol(self) -> float:
        return 1e-8

    # θ of the optimiser <-> the engine's -----------------------------------------------
    def full(self, theta) -> np.ndarray:
        """The engine's θ (fixed residual covariances at 0) from the optimiser's."""
        out = np.zeros(len(self.engine.params))
        out[self.free] = np.asarray(theta, dtype=float) * self.unit
        return out

    def reduce(self, theta_full) -> np.ndarray:
        """The optimiser's θ (free entries, trait-scaled) from the engine's."""
        return np.asarray(theta_full, dtype=float)[self.free] / self.unit

    def evaluate(
        self, theta, *, method: str = "reml", derivatives: bool = False, pev: bool = False, solutions: bool = True
    ) -> Evaluation:
        # solutions: the protocol's flag; the multi-trait engines' are by-products (always given)
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (len(self.names),):
            raise ValueError(f"theta needs {len(self.names)} values ({', '.join(self.names)}), got shape {theta.shape}")
        if method != "reml":
            raise ModelError("multi-trait models are fitted by REML only")
        native = self.engine.evaluate(self.full(theta) + self.ridge, derivatives=derivatives)
        return self._wrap(theta, native)

    def _wrap(self, theta, native) -> Evaluation:
        score = ai = None
        if "score" in native:
            f = self.free
            score = np.asarray(native["score"])[f] * self.unit
            ai = np.asarray(native["ai"])[np.ix_(f, f)] * np.outer(self.unit, self.unit)
        m2ll = float(native["m2ll"])
        if not np.isfinite(m2ll):
            raise NotPositiveDefiniteError("−2 log L is not finite at these covariance matrices")
        return Evaluation(theta, "reml", m2ll, score, ai, np.zeros(0), {}, None, None, native)

    def complete(self, ev: Evaluation) -> Evaluation:
        if ev.score is not None:
            return ev
        add = getattr(self.engine, "with_derivatives", None)
        if add is not None:
            native = add(ev.detail)
        else:
            native = self.engine.evaluate(self.full(ev.theta) + self.ridge, derivatives=True)
        return self._wrap(ev.theta, native)

    def em_step(self, ev: Evaluation) -> np.ndarray:
        """The engine's EM-REML update; fixed residual covariances back at 0 (and the
        residual projected to a PD matrix with those zeros)."""
        full = self.engine.em_update(ev.detail)
        new = self.reduce(full)
        if self.fixed_zero:
            _, R0 = self.engine.unpack(full)
            new[self.spec.slices[-1]] = self.spec.structures[-1].em(R0, None)
        return new

    def start(self) -> np.ndarray:
        theta = self.reduce(self.engine.start())
        if self.fixed_zero:
            sl = self.spec.slices[-1]
            theta[sl] = self.spec.structures[-1].em(self.spec.structures[-1].sigma(theta[sl]), None)
        return theta

    def release(self, ev: Evaluation) -> Evaluation:
        return ev

    def restore(self, ev: Evaluation) -> Evaluation:
        return ev


def optimise_traits(prepared: MultiTraitPrepared, *, start=None, max_iter: int = 300):
    """Run :func:`henderson.reml.general.optimise_general` on a multi-trait engine.

    ``start`` is in the engine's θ layout (full). Returns the optimiser's
    :class:`~henderson.reml.general.GeneralOptim` (θ reduced; ``prepared.full`` expands).
    """
    from ..reml.general import optimise_general

    s = None if start is None else prepared.reduce(start)
    opt = optimise_general(prepared, start=s, max_iter=max_iter)
    log = opt.log.copy()
    for name, u in zip(prepared.names, prepared.unit):  # the log in the data's units
        if name in log.columns:
            log[name] = log[name] * u
    opt.log = log
    return opt

"""Covariance structures Σ(θ) across the components of a random term.

A random term with S components (intercept and slopes, the levels of a factor such as
Env, two correlated terms, traits) has Var(vec U) = Σ(θ) ⊗ K, U the q × S matrix of its
effects. Each structure maps its parameters θ to Σ and gives ∂Σ/∂θⱼ, which is all the
REML score and average information need (docs/theory.md, "Covariance structures").

θ names follow ASReml and the shared references: ``<term>:<ci>:<cj>`` for element
(i, j) of Σ, lower triangle in row order (1:1, 2:1, 2:2, 3:1, ...); a one-component
term's variance is the term name alone.

| structure | θ | Σ |
|---|---|---|
| :class:`Scalar` | σ² | [[σ²]] |
| :class:`Diagonal` | σ²₁ … σ²_S | diag(σ²) |
| :class:`CompoundSymmetry` | v, c | v on the diagonal, c off it |
| :class:`Unstructured` | lower triangle of Σ | Σ |
| :class:`FactorAnalytic` | loadings Λ (S × d, λᵢⱼ = 0 for j > i), ψ | ΛΛ' + diag(ψ) |
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelError


class Structure:
    """Base class: Σ(θ) of size S × S. Subclasses set ``n_theta`` and the maps."""

    kind = "structure"

    def __init__(self, components):
        self.components = tuple(str(c) for c in components)
        self.size = len(self.components)

    # -- the map θ → Σ ------------------------------------------------------------
    def sigma(self, theta: np.ndarray) -> np.ndarray:
        """Σ(θ), shape (S, S)."""
        raise NotImplementedError

    def dsigma(self, theta: np.ndarray) -> np.ndarray:
        """∂Σ/∂θⱼ for every j, shape (n_theta, S, S)."""
        raise NotImplementedError

    def names(self, term: str) -> list[str]:
        """θ names in the references' convention."""
        raise NotImplementedError

    def is_variance(self) -> np.ndarray:
        """(n_theta,) bool: θⱼ is a variance (bounded below by 0)."""
        raise NotImplementedError

    def theta_scale(self, theta: np.ndarray) -> np.ndarray:
        """Natural scale of each θⱼ: Σᵢᵢ for a variance, √(ΣᵢᵢΣⱼⱼ) for a covariance.

        Used for scale-free convergence tests and scaled score, as the references
        (``max |θ − own| / √(ΣᵢᵢΣⱼⱼ)``)."""
        raise NotImplementedError

    # -- starting values, EM and keeping Σ PSD --------------------------------------
    def start(self, variances: np.ndarray) -> np.ndarray:
        """θ with the given component variances and no covariance."""
        return self.em(np.diag(np.asarray(variances, dtype=float)), None)

    def em(self, M: np.ndarray, theta) -> np.ndarray:
        """θ whose Σ best fits a PSD moment matrix M (the EM-REML M-step).

        The complete-data log-likelihood of U is −½[q log|Σ| + q tr(Σ⁻¹M)], maximised
        over the structure; for US that is M itself, for DIAG its diagonal, for CS the
        means of its diagonal and off-diagonal (the CS family is closed under that
        projection), for FA one Rubin–Thayer EM step from the current θ."""
        raise NotImplementedError

    def project(self, theta: np.ndarray, floor: float) -> np.ndarray:
        """θ moved to the nearest Σ with every eigenvalue ≥ ``floor`` (PSD, tiny margin)."""
        raise NotImplementedError

    def check(self, term: str) -> None:
        """ModelError naming the term when the structure cannot be identified."""

    # -- the optimiser's unconstrained parameters φ (Σ PSD for every φ) ------------------
    def from_phi(self, phi: np.ndarray) -> np.ndarray:
        """θ(φ): a quadratic map whose image is exactly the PSD Σ of this structure
        (squares for variances, a Cholesky factor for US, see reml/general.py)."""
        raise NotImplementedError

    def to_phi(self, theta: np.ndarray) -> np.ndarray:
        """A φ with θ(φ) = θ (θ PSD)."""
        raise NotImplementedError


def _lower_pairs(S: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(S) for j in range(i + 1)]


class _Variances(Structure):
    """A structure whose θ are all variances: projected onto θ ≥ floor, and θ = φ² for the optimiser."""

    def theta_scale(self, theta):
        return np.abs(np.asarray(theta, dtype=float))

    def project(self, theta, floor):
        return np.maximum(np.asarray(theta, dtype=float), floor)

    def from_phi(self, phi):
        return np.asarray(phi, dtype=float) ** 2

    def to_phi(self, theta):
        return np.sqrt(np.maximum(np.asarray(theta, dtype=float), 0.0))


class Scalar(_Variances):
    """One variance: Σ = [[σ²]] (today's random intercept)."""

    kind = "scalar"

    def __init__(self, components=("(Intercept)",)):
        super().__init__(components)
        self.n_theta = 1

    def sigma(self, theta):
        return np.array([[float(theta[0])]])

    def dsigma(self, theta):
        return np.ones((1, 1, 1))

    def names(self, term):
        c = self.components[0]
        # the references name a random intercept's variance by its term; a lone slope
        # (0 + x|g) keeps its component so it is not mistaken for an intercept
        return [term] if c in ("(Intercept)", "Residual") else [f"{term}:{c}:{c}"]

    def is_variance(self):
        return np.array([True])

    def em(self, M, theta):
        return np.array([float(M[0, 0])])


class Diagonal(_Variances):
    """One variance per component, no covariance (glmmTMB ``diag``, ASReml ``diag``)."""

    kind = "diag"

    def __init__(self, components):
        super().__init__(components)
        self.n_theta = self.size

    def sigma(self, theta):
        return np.diag(np.asarray(theta, dtype=float))

    def dsigma(self, theta):
        d = np.zeros((self.size, self.size, self.size))
        d[np.arange(self.size), np.arange(self.size), np.arange(self.size)] = 1.0
        return d

    def names(self, term):
        return [f"{term}:{c}:{c}" for c in self.components]

    def is_variance(self):
        return np.ones(self.size, dtype=bool)

    def em(self, M, theta):
        return np.diag(M).astype(float).copy()


class CompoundSymmetry(Structure):
    """A common variance v and a common covariance c (ASReml ``cor`` × v, glmmTMB ``cs``).

    Equal to (1|g) + (1|g:component) with σ²_g = c and σ²_{g:component} = v − c when
    c ≥ 0; here c may also be negative down to −v/(S − 1) (Σ PSD).
    """

    kind = "cs"

    def __init__(self, components):
        super().__init__(components)
        if self.size < 2:
            raise ModelError("a compound-symmetry structure needs at least two components")
        self.n_theta = 2

    def sigma(self, theta):
        v, c = map(float, theta)
        S = self.size
        return np.full((S, S), c) + np.eye(S) * (v - c)

    def dsigma(self, theta):
        S = self.size
        return np.stack([np.eye(S), np.ones((S, S)) - np.eye(S)])

    def names(self, term):
        return [f"{term}:var", f"{term}:cov"]

    def is_variance(self):
        return np.array([True, False])

    def theta_scale(self, theta):
        v = abs(float(theta[0]))
        return np.array([v, v])

    def em(self, M, theta):
        S = self.size
        v = float(np.trace(M)) / S
        c = (float(M.sum()) - float(np.trace(M))) / (S * (S - 1))
        return np.array([v, c])

    def project(self, theta, floor):
        # eigenvalues: v − c (S − 1 times) and v + (S − 1)c
        v, c = map(float, theta)
        S = self.size
        a, b = max(v - c, floor), max(v + (S - 1) * c, floor)
        c = (b - a) / S
        return np.array([a + c, c])

    def from_phi(self, phi):
        a, b = float(phi[0]) ** 2, float(phi[1]) ** 2  # eigenvalues v − c and v + (S − 1)c
        c = (b - a) / self.size
        return np.array([a + c, c])

    def to_phi(self, theta):
        v, c = map(float, theta)
        return np.sqrt(np.maximum([v - c, v + (self.size - 1) * c], 0.0))


class Unstructured(Structure):
    """Every variance and covariance free (glmmTMB/ASReml ``us``; lme4 ``(x|g)``)."""

    kind = "us"

    def __init__(self, components):
        super().__init__(components)
        self.pairs = _lower_pairs(self.size)
        self.n_theta = len(self.pairs)

    def sigma(self, theta):
        S = self.size
        out = np.zeros((S, S))
        for t, (i, j) in zip(theta, self.pairs):
            out[i, j] = out[j, i] = t
        return out

    def dsigma(self, theta):
        S = self.size
        d = np.zeros((self.n_theta, S, S))
        for k, (i, j) in enumerate(self.pairs):
            d[k, i, j] = d[k, j, i] = 1.0
        return d

    def names(self, term):
        c = self.components
        return [f"{term}:{c[i]}:{c[j]}" for i, j in self.pairs]

    def is_variance(self):
        return np.array([i == j for i, j in self.pairs])

    def theta_scale(self, theta):
        d = np.abs(np.diag(self.sigma(theta)))
        return np.array([np.sqrt(d[i] * d[j]) for i, j in self.pairs])

    def em(self, M, theta):
        return np.array([M[i, j] for i, j in self.pairs], dtype=float)

    def project(self, theta, floor):
        w, Q = np.linalg.eigh(self.sigma(theta))
        return self.em((Q * np.maximum(w, floor)) @ Q.T, None)

    def from_phi(self, phi):
        L = np.zeros((self.size, self.size))
        for t, (i, j) in zip(phi, self.pairs):
            L[i, j] = t
        return self.em(L @ L.T, None)

    def to_phi(self, theta):
        S = self.sigma(theta)
        try:
            L = np.linalg.cholesky(S)
        except np.linalg.LinAlgError:  # PSD but singular: the factor of the nearest PD Σ
            w, Q = np.linalg.eigh(S)
            L = np.linalg.cholesky((Q * np.maximum(w, 1e-12 * max(w.max(), 1e-300))) @ Q.T)
        return np.array([L[i, j] for i, j in self.pairs])


class FactorAnalytic(Structure):
    """Σ = ΛΛ' + diag(ψ): d factors with loadings Λ (S × d) and specific variances ψ.

    ASReml's ``fa(Env, d)`` (Smith, Cullis & Thompson 2001). Rotation is fixed by
    λᵢⱼ = 0 for j > i (the loadings matrix is lower triangular in its first d rows),
    so θ = (free loadings column by column, then ψ₁ … ψ_S).
    """

    kind = "fa"

    def __init__(self, components, d: int):
        super().__init__(components)
        self.d = int(d)
        S = self.size
        self.load_idx = [(i, j) for j in range(self.d) for i in range(j, S)]
        self.n_theta = len(self.load_idx) + S

    def check(self, term):
        S, d = self.size, self.d
        # free parameters of an FA(d) (after fixing the rotation) may not exceed
        # those of an unstructured Σ: (S − d)² ≥ S + d (Anderson & Rubin 1956)
        if d < 1 or (S - d) ** 2 < S + d:
            dmax = max(k for k in range(0, S + 1) if (S - k) ** 2 >= S + k)
            raise ModelError(
                f"fa(..., {d}) in term {term!r}: {d} factor(s) cannot be identified with {S} "
                f"components; at most {dmax} (need (S - d)^2 >= S + d)"
            )

    def _split(self, theta):
        theta = np.asarray(theta, dtype=float)
        L = np.zeros((self.size, self.d))
        nl = len(self.load_idx)
        for t, (i, j) in zip(theta[:nl], self.load_idx):
            L[i, j] = t
        return L, theta[nl:]

    def loadings(self, theta) -> np.ndarray:
        """Λ, shape (S, d)."""
        return self._split(theta)[0]

    def specific(self, theta) -> np.ndarray:
        """ψ, shape (S,)."""
        return self._split(theta)[1].copy()

    def sigma(self, theta):
        L, psi = self._split(theta)
        return L @ L.T + np.diag(psi)

    def dsigma(self, theta):
        L, _ = self._split(theta)
        S = self.size
        out = np.zeros((self.n_theta, S, S))
        for k, (i, j) in enumerate(self.load_idx):
            e = np.zeros(S)
            e[i] = 1.0
            m = np.outer(e, L[:, j])
            out[k] = m + m.T
        nl = len(self.load_idx)
        out[nl + np.arange(S), np.arange(S), np.arange(S)] = 1.0
        return out

    def names(self, term):
        c = self.components
        return [f"{term}:{c[i]}:fa{j + 1}" for i, j in self.load_idx] + [f"{term}:{ci}:psi" for ci in c]

    def is_variance(self):
        return np.array([False] * len(self.load_idx) + [True] * self.size)

    def theta_scale(self, theta):
        d = np.abs(np.diag(self.sigma(theta)))
        return np.concatenate([np.sqrt(d[[i for i, _ in self.load_idx]]), d])

    def _pack(self, L, psi):
        return np.concatenate([[L[i, j] for i, j in self.load_idx], psi])

    def _rotate(self, L):
        """ΛQ lower triangular in its first d rows (QR of Λ'), same ΛΛ'."""
        q, r = np.linalg.qr(L.T)
        Lr = r.T  # L = r'q' → L q = r'
        sgn = np.sign(np.diag(Lr[: self.d, : self.d]))
        sgn[sgn == 0] = 1.0
        return Lr * sgn

    def start(self, variances):
        v = np.asarray(variances, dtype=float)
        S, d = self.size, self.d
        L = np.zeros((S, d))
        for j in range(d):  # distinct columns: rank d, lower triangular
            L[j:, j] = np.sqrt(v[j:] / (2 * d)) * np.where(np.arange(j, S) % (j + 2) == 0, 1.0, -1.0 if j else 1.0)
        return self._pack(L, v / 2)

    def em(self, M, theta):
        """One Rubin–Thayer (1982) EM step of factor analysis on the moment matrix M."""
        if theta is None:
            return self.start(np.diag(M))
        L, psi = self._split(theta)
        psi = np.maximum(psi, 1e-10 * max(np.trace(M) / self.size, 1e-300))
        Sig = L @ L.T + np.diag(psi)
        beta = np.linalg.solve(Sig, L).T  # d × S: E[f | u] = β u
        Ezz = np.eye(self.d) - beta @ L + beta @ M @ beta.T
        Ln = M @ beta.T @ np.linalg.inv(Ezz)
        psin = np.maximum(np.diag(M - Ln @ beta @ M), 0.0)
        return self._pack(self._rotate(Ln), psin)

    def project(self, theta, floor):
        L, psi = self._split(theta)
        return self._pack(L, np.maximum(psi, floor))

    def from_phi(self, phi):
        L, r = self._split(phi)
        return self._pack(L, r**2)

    def to_phi(self, theta):
        L, psi = self._split(theta)
        return self._pack(L, np.sqrt(np.maximum(psi, 0.0)))

    def variance_explained(self, theta) -> np.ndarray:
        """Share of the total genetic variance tr(Σ) explained by each factor, (d,)."""
        L, _ = self._split(theta)
        tot = float(np.trace(self.sigma(theta)))
        return (L**2).sum(axis=0) / tot if tot > 0 else np.full(self.d, np.nan)


def make_structure(kind: str, components, d: int | None = None) -> Structure:
    """The structure named ``kind`` ("scalar", "diag", "cs", "us", "fa") for the components."""
    if kind == "scalar" or (len(components) == 1 and kind in ("us", "diag")):
        return Scalar(components)
    if kind == "diag":
        return Diagonal(components)
    if kind == "cs":
        return CompoundSymmetry(components)
    if kind == "us":
        return Unstructured(components)
    if kind == "fa":
        if d is None:
            raise ModelError("the factor-analytic structure 'fa' needs its number of factors d")
        return FactorAnalytic(components, d)
    raise ModelError(f"unknown covariance structure {kind!r}")

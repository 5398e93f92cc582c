"""The frozen result of a multi-trait fit: trait × trait tables, SEs, summary text."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._tables import finite_or_blank, notes_lines, table_lines
from .spectral import vech_index


@dataclass(frozen=True, eq=False)
class MultiTraitResult:
    """A fitted multi-trait model y = Xb + (I_t ⊗ Z)u + e, Var(u) = Σ_g ⊗ K, Var(e) = Σ_e ⊗ I.

    Attributes
    ----------
    traits : list of str
    term : str
        Name of the genetic term (the grouping column, e.g. ``"id"``).
    covariances : dict[str, DataFrame]
        Trait × trait: ``covariances[term]`` (also under ``"genetic"``) is Σ_g,
        ``covariances["Residual"]`` is Σ_e.
    covariance_se : dict[str, DataFrame]
        Their standard errors from the inverse average-information matrix (NaN for a
        matrix estimated on the boundary).
    correlations, correlation_se : dict[str, DataFrame]
        r_kl = Σ_kl/√(Σ_kk Σ_ll) and delta-method SEs.
    heritability : DataFrame
        Per trait: ``h2`` = Σ_g,kk/(Σ_g,kk + Σ_e,kk) and ``se`` (delta method).
    variance_components : DataFrame
        One row per parameter θ (``<term>:<trait i>:<trait j>``, lower triangle in
        ASReml order, then ``Residual:...``): ``estimate``, ``se``.
    vcov : ndarray
        Sampling covariance of θ (inverse AI), in the order of ``variance_components``.
    fixed_effects : DataFrame
        Indexed by (trait, coefficient): ``estimate``, ``se``, ``t``.
    blups : dict[str, DataFrame]
        ``blups[term]`` indexed by (level, trait): ``blup``, ``pev``, ``reliability``
        (1 − PEV/(Σ_g,kk K_jj)), ``n_records``.
    loglik, aic, bic : float
        Full REML log-likelihood in lme4's convention; df = fixed effects + t(t+1).
    n_obs : int
        Records (rows) used; every trait is observed on each.
    n_records : Series
        Records per trait.
    solver : str
        ``"multitrait-spectral"`` (K reduced to tridiagonal form once; O(n t (t + p)) per REML iteration).
    """

    traits: list
    term: str
    covariances: dict
    covariance_se: dict
    correlations: dict
    correlation_se: dict
    heritability: pd.DataFrame
    variance_components: pd.DataFrame
    vcov: np.ndarray | None
    fixed_effects: pd.DataFrame
    blups: dict
    loglik: float
    aic: float
    bic: float
    n_obs: int
    n_records: pd.Series
    method: str
    solver: str
    iterations: int
    converged: bool
    log: pd.DataFrame
    fitted: pd.DataFrame
    residuals: pd.DataFrame
    boundary: tuple = ()
    timings: dict = field(default_factory=dict)
    notes: tuple = ()
    settings: dict = field(default_factory=dict)
    record_levels: dict = field(default_factory=dict)

    @property
    def gebv(self) -> pd.DataFrame:
        """GEBVs as a wide table: one row per level, one column per trait."""
        return self.blups[self.term]["blup"].unstack("trait")[self.traits]

    def summary(self) -> str:
        s = self.settings
        lines = [
            f"Multi-trait linear mixed model fit by REML ({self.solver}, henderson {s.get('version', '?')})",
            f"Formula: {s.get('formula', '')}",
            f"Records: {self.n_obs} used; records per trait: "
            + ", ".join(f"{k} {int(v)}" for k, v in self.n_records.items()),
            "",
            f"  logLik {self.loglik:.6f}   AIC {self.aic:.4f}   BIC {self.bic:.4f}   "
            f"REML criterion {-2 * self.loglik:.6f}",
            f"  iterations {self.iterations}, converged: {'yes' if self.converged else 'NO'}",
        ]
        others = [n for n, _ in s.get("terms", []) if n != self.term]  # general MME: more terms
        for name in [self.term, *others, "Residual"]:
            label = "Genetic" if name == self.term else ("Residual" if name == "Residual" else "Random term")
            lines += ["", f"{label} covariance matrix ({name}), SE in brackets:"]
            lines += [
                "  " + ln for ln in _with_se(self.covariances[name], self.covariance_se[name], "{:.6g}").splitlines()
            ]
            lines += ["", f"{label} correlations ({name}):"]
            lines += [
                "  " + ln for ln in _with_se(self.correlations[name], self.correlation_se[name], "{:.3f}").splitlines()
            ]
        lines += ["", "Heritabilities:"]
        lines += table_lines(self.heritability, {"h2": ("h2", ".3f"), "se": ("se", finite_or_blank(".3f"))})
        lines += ["", "Fixed effects:"]
        lines += table_lines(
            self.fixed_effects, {"estimate": ("estimate", ".6g"), "se": ("se", ".4g"), "t": ("t", ".2f")}
        )
        b = self.blups[self.term]
        lines += [
            "",
            f"BLUPs of {self.term}: {b.index.get_level_values(0).nunique()} levels x {len(self.traits)} traits",
        ]
        lines += notes_lines(self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict:
        def mats(d):
            return {k: json.loads(v.to_json(orient="index")) for k, v in d.items() if k != "genetic"}

        return {
            "settings": self.settings,
            "traits": list(self.traits),
            "term": self.term,
            "loglik": self.loglik,
            "aic": self.aic,
            "bic": self.bic,
            "n_obs": self.n_obs,
            "n_records": self.n_records.to_dict(),
            "method": self.method,
            "solver": self.solver,
            "iterations": self.iterations,
            "converged": self.converged,
            "covariances": mats(self.covariances),
            "covariance_se": mats(self.covariance_se),
            "correlations": mats(self.correlations),
            "correlation_se": mats(self.correlation_se),
            "heritability": json.loads(self.heritability.to_json(orient="index")),
            "fixed_effects": json.loads(self.fixed_effects.reset_index().to_json(orient="records")),
            "boundary": list(self.boundary),
            "timings": self.timings,
            "notes": list(self.notes),
        }


def _with_se(est: pd.DataFrame, se: pd.DataFrame, fmt: str) -> str:
    out = est.copy().astype(object)
    for i in range(est.shape[0]):
        for j in range(est.shape[1]):
            e, s = est.iloc[i, j], se.iloc[i, j]
            out.iloc[i, j] = fmt.format(e) + ("" if not np.isfinite(s) or s == 0 else f" ({fmt.format(s)})")
    return out.to_string()


def correlation_tables(S: np.ndarray, cov: np.ndarray | None, traits) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Correlation matrix of S and delta-method SEs from cov (the sampling covariance of vech S).

    r = s_kl/√(s_kk s_ll): ∂r/∂s_kl = 1/√(s_kk s_ll), ∂r/∂s_kk = −r/(2 s_kk),
    ∂r/∂s_ll = −r/(2 s_ll); var r = g'·cov·g.
    """
    t = S.shape[0]
    d = np.sqrt(np.maximum(np.diag(S), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        R = S / np.outer(d, d)
    np.fill_diagonal(R, 1.0)
    SE = np.full((t, t), np.nan)
    np.fill_diagonal(SE, 0.0)
    if cov is not None:
        pos = {kl: i for i, kl in enumerate(vech_index(t))}
        for k in range(t):
            for l in range(k):
                if not d[k] * d[l] > 0:  # a variance at 0: r undefined, no SE
                    continue
                g = np.zeros(len(pos))
                g[pos[(k, l)]] = 1.0 / (d[k] * d[l])
                g[pos[(k, k)]] = -R[k, l] / (2 * S[k, k])
                g[pos[(l, l)]] = -R[k, l] / (2 * S[l, l])
                v = float(g @ cov @ g)
                SE[k, l] = SE[l, k] = np.sqrt(v) if v >= 0 else np.nan
    idx = pd.Index(traits, name="trait")
    return pd.DataFrame(R, index=idx, columns=list(traits)), pd.DataFrame(SE, index=idx, columns=list(traits))


def heritability_table(Sg, Se, cov, traits) -> pd.DataFrame:
    """h²_k = Σ_g,kk/(Σ_g,kk + Σ_e,kk) and its delta-method SE (cov over (vech Σ_g, vech Σ_e))."""
    t = Sg.shape[0]
    m = t * (t + 1) // 2
    pos = {kl: i for i, kl in enumerate(vech_index(t))}
    h2, se = np.empty(t), np.full(t, np.nan)
    for k in range(t):
        a, e = Sg[k, k], Se[k, k]
        tot = a + e
        h2[k] = a / tot
        if cov is not None:
            g = np.zeros(2 * m)
            g[pos[(k, k)]] = e / tot**2
            g[m + pos[(k, k)]] = -a / tot**2
            v = float(g @ cov @ g)
            se[k] = np.sqrt(v) if v >= 0 else np.nan
    return pd.DataFrame({"h2": h2, "se": se}, index=pd.Index(traits, name="trait"))

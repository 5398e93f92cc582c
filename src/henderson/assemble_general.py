"""The tables of a structured model's result (Σ ⊗ K terms, a ``GeneralSpec``), for the one
result builder :func:`henderson.assemble.fit_result`.

- ``variance_components``: one row per θ (name in the references' convention), with the
  SE from the inverse average-information matrix; NaN on the boundary.
- ``covariances[term]`` / ``correlations[term]``: S × S tables named by component;
  ``covariances["Residual"]`` is diagonal across residual groups.
- ``derived``: correlations and variance ratios (h² when the term has a known K) with
  delta-method SEs: var f(θ̂) ≈ ∇f' AI⁻¹ ∇f, ∇f by central differences.
- ``blups[term]``: one row per level for one-component terms; indexed by
  (level, component) otherwise, with ``blup``, ``pev`` and ``reliability``
  1 − PEV/(Σ_aa Kᵢᵢ).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .errors import BoundaryWarning
from .results_builder import blup_table
from .spec.covariance import FactorAnalytic
from .spec.levels import Factored, SparseInverse


def _matrix(M, names) -> pd.DataFrame:
    return pd.DataFrame(M, index=pd.Index(names), columns=pd.Index(names))


def _correlation(S: np.ndarray) -> np.ndarray:
    d = np.sqrt(np.maximum(np.diag(S), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return S / np.outer(d, d)


def _delta_se(fun, theta, vcov, scale) -> float:
    """√(∇f' V ∇f), ∇f by central differences with steps 1e-6 × each θ's scale."""
    if vcov is None or not np.all(np.isfinite(vcov)):
        return np.nan
    g = np.empty(len(theta))
    for j in range(len(theta)):
        h = 1e-6 * scale[j]
        e = np.zeros(len(theta))
        e[j] = h
        g[j] = (fun(theta + e) - fun(theta - e)) / (2 * h)
    return float(np.sqrt(max(g @ vcov @ g, 0.0)))


def _theta_rows(spec, theta) -> pd.DataFrame:
    rows = []
    for k, s in enumerate(spec.structures):
        term = spec.terms[k].name if k < len(spec.terms) else "Residual"
        c = s.components
        kinds = s.is_variance()
        if s.kind in ("us",):
            pairs = s.pairs
        elif s.kind == "diag":
            pairs = [(i, i) for i in range(s.size)]
        elif s.kind == "scalar":
            pairs = [(0, 0)]
        elif s.kind == "cs":
            pairs = [(None, None), (None, None)]
        else:
            pairs = [(i, None) for i, _ in s.load_idx] + [(i, i) for i in range(s.size)]
        for j, (a, b) in enumerate(pairs):
            if s.kind == "fa":
                typ = "specific" if kinds[j] else "loading"
            else:
                typ = "variance" if kinds[j] else "covariance"
            rows.append(
                dict(
                    term=term,
                    component_i=None if a is None else c[a],
                    component_j=None if b is None else c[b],
                    type=typ,
                )
            )
    return pd.DataFrame(rows)


def structured_tables(spec, ev, run, notes: list) -> dict:
    """``variance_components`` (one row per θ), ``vcov``, ``covariances``, ``correlations``,
    ``derived`` and ``factor_analytic`` at ``ev`` (a protocol Evaluation with ``ai`` when
    ``run.estimated``); ``run.boundary`` names the structures on the boundary (their SEs NaN,
    with a note and a BoundaryWarning)."""
    theta = ev.theta
    slices = spec.slices
    vcov = None
    if run.estimated:
        try:
            vcov = np.linalg.inv(ev.ai)
        except np.linalg.LinAlgError:
            notes.append("average-information matrix singular: no standard errors")
    se = np.sqrt(np.maximum(np.diag(vcov), 0.0)) if vcov is not None else np.full(len(theta), np.nan)
    bnd = np.zeros(len(theta), dtype=bool)
    all_names = [t.name for t in spec.terms] + ["Residual"]
    for name in run.boundary:
        k = all_names.index(name)
        bnd[slices[k]] = True
        msg = (
            f"covariance of {name!r} estimated on the boundary of the parameter space (a "
            "variance at 0 or a rank-deficient matrix): the standard errors of its parameters "
            "are not available (NaN); consider a simpler structure"
        )
        notes.append(msg)
        warnings.warn(msg, BoundaryWarning, stacklevel=5)  # one frame deeper than before fit_result
    se[bnd] = np.nan
    vcov_se = None
    if vcov is not None:
        vcov_se = vcov.copy()
        vcov_se[bnd, :] = np.nan
        vcov_se[:, bnd] = np.nan
    vc = _theta_rows(spec, theta)
    vc.index = pd.Index(spec.theta_names, name="parameter")
    vc["estimate"] = theta
    vc["se"] = se
    vc["boundary"] = bnd

    covs, cors, fa = {}, {}, {}
    for k, t in enumerate(spec.terms):
        S = _sigma(spec, theta, k)
        covs[t.name] = _matrix(S, t.components)
        cors[t.name] = _matrix(_correlation(S), t.components)
        if isinstance(t.structure, FactorAnalytic):
            th = theta[slices[k]]
            st = t.structure
            load = pd.DataFrame(
                st.loadings(th), index=pd.Index(t.components), columns=[f"fa{j + 1}" for j in range(st.d)]
            )
            fa[t.name] = {
                "loadings": load,
                "specific": pd.Series(st.specific(th), index=pd.Index(t.components), name="psi"),
                "variance_explained": pd.Series(100 * st.variance_explained(th), index=load.columns, name="percent"),
            }
    r = spec.residual
    rth = theta[slices[-1]]
    rdiag = np.full(len(r.groups), rth[0]) if len(rth) == 1 else rth
    covs["Residual"] = _matrix(np.diag(rdiag), list(r.groups))
    cors["Residual"] = _matrix(np.eye(len(r.groups)), list(r.groups))
    return {
        "variance_components": vc,
        "vcov": vcov_se,
        "covariances": covs,
        "correlations": cors,
        "derived": _derived(spec, theta, vcov_se),
        "factor_analytic": fa,
    }


def _sigma(spec, theta, k: int) -> np.ndarray:
    """Σₖ(θ) of term k (as every engine forms it)."""
    return spec.terms[k].structure.sigma(theta[spec.slices[k]])


def blup_tables(spec, ev) -> dict:
    """Per term: one row per level (one component) or per (level, component), with ``blup``,
    ``pev``, ``pev_se`` after it when sampled, reliability 1 − PEV/(Σ_aa Kᵢᵢ) and the number
    of records."""
    blups = {}
    for k, t in enumerate(spec.terms):
        U = np.asarray(ev.blups[t.name]).reshape(t.q, t.size)
        pev = np.asarray(ev.pev[t.name]).reshape(t.q, t.size)
        kd = t.level.k_diag
        dS = np.diag(_sigma(spec, ev.theta, k))
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = 1.0 - pev / (kd[:, None] * dS[None, :])
        nrec = t.n_records
        if t.size == 1:
            tab = blup_table(U[:, 0], pev[:, 0], rel[:, 0], nrec, t.levels, t.name)
        else:
            idx = pd.MultiIndex.from_product([t.levels, list(t.components)], names=[t.name, "component"])
            tab = pd.DataFrame(
                {
                    "blup": U.ravel(),
                    "pev": pev.ravel(),
                    "reliability": rel.ravel(),
                    "n_records": np.repeat(nrec, t.size),
                },
                index=idx,
            )
        if ev.pev_se is not None:
            tab.insert(tab.columns.get_loc("pev") + 1, "pev_se", np.ravel(ev.pev_se[t.name]))
        blups[t.name] = tab
    return blups


def _derived(spec, theta, vcov) -> pd.DataFrame:
    """Correlations and variance ratios with delta-method SEs."""
    from .reml.general import theta_scale

    scale = theta_scale(spec, theta)
    rows = []
    r = spec.residual
    rsl = spec.slices[-1]

    def res_var(th, comp):
        rt = th[rsl]
        if len(rt) > 1 and comp in r.groups:
            return rt[list(r.groups).index(comp)]
        return rt[0] if len(rt) == 1 else None

    for k, t in enumerate(spec.terms):
        sl, st = spec.slices[k], t.structure
        for i in range(t.size if st.kind not in ("diag", "scalar") else 0):
            for j in range(i):

                def f(th, i=i, j=j, st=st, sl=sl):
                    S = st.sigma(th[sl])
                    return S[i, j] / np.sqrt(S[i, i] * S[j, j])

                rows.append(
                    (f"cor({t.name}:{t.components[i]}:{t.components[j]})", f(theta), _delta_se(f, theta, vcov, scale))
                )
        is_h2 = isinstance(t.level.covariance, (Factored, SparseInverse))
        for i, comp in enumerate(t.components):
            zi = t.z[:, i]
            if not np.all((zi == 0) | (zi == 1)) or res_var(theta, comp) is None:
                continue  # a slope's variance has no natural share of the residual

            def g(th, i=i, comp=comp, st=st, sl=sl):
                v = st.sigma(th[sl])[i, i]
                return v / (v + res_var(th, comp))

            label = t.name if t.size == 1 else f"{t.name}:{comp}"
            rows.append((f"{'h2' if is_h2 else 'ratio'}({label})", g(theta), _delta_se(g, theta, vcov, scale)))
    return pd.DataFrame(rows, columns=["quantity", "estimate", "se"]).set_index("quantity")

"""Summary text of a structured fit: Σ per term as lme4 prints it (Std.Dev. and Corr)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _random_effects_table(res) -> list[str]:
    rows = []
    for term, S in res.covariances.items():
        comps = list(S.index)
        v = np.diag(S.to_numpy())
        R = res.correlations[term].to_numpy()
        # no correlations to show where the structure has none (diag, residual groups)
        show = term != "Residual" and not np.allclose(R, np.eye(len(comps)))
        for i, c in enumerate(comps):
            corr = " ".join(f"{R[i, j]:6.3f}" for j in range(i)) if show else ""
            rows.append(
                (
                    term if i == 0 else "",
                    c if term != "Residual" or len(comps) > 1 else "",
                    f"{v[i]:.6g}",
                    f"{np.sqrt(max(v[i], 0.0)):.5g}",
                    corr,
                )
            )
    w = [max(len(r[j]) for r in rows + [("Groups", "Name", "Variance", "Std.Dev.", "Corr")]) for j in range(5)]
    head = ("Groups", "Name", "Variance", "Std.Dev.", "Corr")

    def fmt(r):
        return "  " + "  ".join([r[0].ljust(w[0]), r[1].ljust(w[1]), r[2].rjust(w[2]), r[3].rjust(w[3]), r[4]])

    return [fmt(head)] + [fmt(r).rstrip() for r in rows]


def structured_summary(res) -> str:
    """lme4-like summary: fit statistics, Σ of every term (variance, SD, correlations),
    the θ table with SEs, derived quantities, FA loadings and the fixed effects."""
    s = res.settings
    crit = "REML" if res.method == "reml" else "ML"
    lines = [
        f"Linear mixed model fit by {crit} ({res.solver}, henderson {s.get('version', '?')})",
        f"Formula: {s.get('formula', '')}",
        f"Records: {res.n_obs} used" + (f", {res.n_dropped} dropped (missing values)" if res.n_dropped else ""),
        "",
        f"  logLik {res.loglik:.6f}   AIC {res.aic:.4f}   BIC {res.bic:.4f}   {crit} criterion {-2 * res.loglik:.6f}",
        f"  iterations {res.iterations}, converged: {'yes' if res.converged else 'NO'}",
        "",
        "Random effects:",
    ]
    lines += _random_effects_table(res)
    vc = res.variance_components
    lines += ["", "Covariance parameters:"]
    t = pd.DataFrame(
        {
            "estimate": vc["estimate"].map(lambda v: f"{v:.6g}"),
            "se": vc["se"].map(lambda v: "" if not np.isfinite(v) else f"{v:.4g}"),
        },
        index=vc.index,
    )
    lines += ["  " + ln for ln in t.to_string().splitlines()]
    if res.derived is not None and len(res.derived):
        d = res.derived
        t = pd.DataFrame(
            {
                "estimate": d["estimate"].map(lambda v: f"{v:.4f}"),
                "se": d["se"].map(lambda v: "" if not np.isfinite(v) else f"{v:.4f}"),
            },
            index=d.index,
        )
        lines += ["", "Correlations and ratios (delta-method SE):"]
        lines += ["  " + ln for ln in t.to_string().splitlines()]
    for term, fa in res.factor_analytic.items():
        lines += ["", f"Factor-analytic {term}: loadings, specific variances, % of variance per factor"]
        tab = fa["loadings"].copy()
        tab["psi"] = fa["specific"]
        lines += ["  " + ln for ln in tab.to_string(float_format=lambda v: f"{v:.4f}").splitlines()]
        lines += ["  " + ", ".join(f"{k}: {v:.1f}%" for k, v in fa["variance_explained"].items())]
    fe = res.fixed_effects
    lines += ["", "Fixed effects:"]
    t = pd.DataFrame(
        {
            "estimate": fe["estimate"].map(lambda v: f"{v:.6f}"),
            "se": fe["se"].map(lambda v: f"{v:.6f}"),
            "t": fe["t"].map(lambda v: f"{v:.2f}"),
        },
        index=fe.index,
    )
    lines += ["  " + ln for ln in t.to_string().splitlines()]
    for name, tab in res.blups.items():
        lines += [
            "",
            f"BLUPs of {name}: {len(tab)} rows (level x component)"
            if isinstance(tab.index, pd.MultiIndex)
            else f"BLUPs of {name}: {len(tab)} levels",
        ]
    if res.notes:
        lines += ["", "Notes:"] + [f"  - {n}" for n in res.notes]
    return "\n".join(lines)

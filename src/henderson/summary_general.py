"""Summary text of a structured fit: Σ per term as lme4 prints it (Std.Dev. and Corr)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._tables import finite_or_blank, fit_header, notes_lines, records_line, table_lines


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
    crit = "REML" if res.method == "reml" else "ML"
    lines = fit_header(res, "Linear mixed model", records_line(res), crit) + ["", "Random effects:"]
    lines += _random_effects_table(res)
    vc = res.variance_components
    lines += ["", "Covariance parameters:"]
    lines += table_lines(vc, {"estimate": ("estimate", ".6g"), "se": ("se", finite_or_blank(".4g"))})
    if res.derived is not None and len(res.derived):
        d = res.derived
        lines += ["", "Correlations and ratios (delta-method SE):"]
        lines += table_lines(d, {"estimate": ("estimate", ".4f"), "se": ("se", finite_or_blank(".4f"))})
    for term, fa in res.factor_analytic.items():
        lines += ["", f"Factor-analytic {term}: loadings, specific variances, % of variance per factor"]
        tab = fa["loadings"].copy()
        tab["psi"] = fa["specific"]
        lines += ["  " + ln for ln in tab.to_string(float_format=lambda v: f"{v:.4f}").splitlines()]
        lines += ["  " + ", ".join(f"{k}: {v:.1f}%" for k, v in fa["variance_explained"].items())]
    fe = res.fixed_effects
    lines += ["", "Fixed effects:"]
    lines += table_lines(fe, {"estimate": ("estimate", ".6f"), "se": ("se", ".6f"), "t": ("t", ".2f")})
    for name, tab in res.blups.items():
        lines += [
            "",
            f"BLUPs of {name}: {len(tab)} rows (level x component)"
            if isinstance(tab.index, pd.MultiIndex)
            else f"BLUPs of {name}: {len(tab)} levels",
        ]
    lines += notes_lines(res.notes)
    return "\n".join(lines)

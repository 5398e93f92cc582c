"""Text tables shared by the summaries of every result (FitResult, the structured summary,
the multi-trait result): one formatting path instead of one per result class."""

from __future__ import annotations

import numpy as np
import pandas as pd


def finite_or_blank(spec: str):
    """A formatter: ``format(v, spec)``, or "" for NaN/inf (an SE not available)."""
    return lambda v: "" if not np.isfinite(v) else format(v, spec)


def table_lines(frame: pd.DataFrame, columns: dict) -> list[str]:
    """``frame`` as indented summary lines, one text column per entry of ``columns``.

    ``columns`` maps the printed name to ``(source column, format)``, the format a
    format spec (".6g") or a callable returning the text (e.g. :func:`finite_or_blank`).
    """
    out = {}
    for name, (col, fmt) in columns.items():
        f = fmt if callable(fmt) else (lambda v, spec=fmt: format(v, spec))
        out[name] = frame[col].map(f)
    return ["  " + ln for ln in pd.DataFrame(out, index=frame.index).to_string().splitlines()]


def fit_header(res, title: str, records: str, crit: str) -> list[str]:
    """The summary's first lines: what was fitted, formula, records, logLik/AIC/BIC, iterations."""
    return [
        f"{title} fit by {crit} ({res.solver}, henderson {res.settings.get('version', '?')})",
        f"Formula: {res.settings.get('formula', '')}",
        records,
        "",
        f"  logLik {res.loglik:.6f}   AIC {res.aic:.4f}   BIC {res.bic:.4f}   {crit} criterion {-2 * res.loglik:.6f}",
        f"  iterations {res.iterations}, converged: {'yes' if res.converged else 'NO'}",
    ]


def records_line(res) -> str:
    """ "Records: n used[, m dropped (missing values)]"."""
    return f"Records: {res.n_obs} used" + (f", {res.n_dropped} dropped (missing values)" if res.n_dropped else "")


def notes_lines(notes) -> list[str]:
    """The summary's closing "Notes:" block (empty without notes)."""
    return ["", "Notes:"] + [f"  - {n}" for n in notes] if notes else []

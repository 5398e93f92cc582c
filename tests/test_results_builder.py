"""The one result builder (results_builder.py) and the shared summary formatting (results.py).

logLik, AIC and BIC follow lme4: logLik = −m2ll/2, AIC = m2ll + 2df, BIC = m2ll + df log n,
df = fixed effects + estimated covariance parameters (written out here, not taken from the code).
"""

import numpy as np
import pandas as pd
import pytest
from conftest import identity_frame

from henderson._tables import finite_or_blank, table_lines
from henderson.results_builder import blup_table, build_fit_result, fixed_effects_table
from henderson.spec.model import build_spec


def test_build_fit_result_information_criteria_and_series():
    d = pd.DataFrame({"y": [1.0, 2.0, 4.0, 3.0, 5.0, 7.0], "g": list("aabbcc"), "x": [0, 1, 0, 1, 0, 1]})
    spec = build_spec("y ~ 1 + x + (1|g)", d)
    resid = np.array([0.1, -0.2, 0.3, 0.0, -0.1, -0.1])
    fe = fixed_effects_table(np.array([2.0, 1.0]), np.array([0.5, 0.0]), spec.x_names)
    res = build_fit_result(
        spec,
        m2ll=20.0,
        n_theta=2,
        residuals=resid,
        notes=["n1"],
        variance_components=pd.DataFrame(),
        fixed_effects=fe,
        blups={},
        method="reml",
        solver="test",
        iterations=0,
        converged=True,
        log=pd.DataFrame(),
        settings={},
        vcov=None,
    )
    df = 2 + 2
    assert res.loglik == -10.0
    assert res.aic == pytest.approx(20.0 + 2 * df)
    assert res.bic == pytest.approx(20.0 + df * np.log(6))
    np.testing.assert_allclose(res.fitted.to_numpy(), d["y"].to_numpy() - resid)
    assert res.notes == ("n1",) and list(res.record_levels["g"]) == list("aabbcc")
    assert fe.loc["(Intercept)", "t"] == 4.0 and np.isinf(fe.loc["x", "t"])  # se 0: t is inf, no warning


def test_blup_table_and_summary_lines():
    tab = blup_table([1.5, -0.5], [0.1, np.nan], [0.9, np.nan], [3, 0], ["a", "b"], "id")
    assert tab.index.name == "id" and list(tab.columns) == ["blup", "pev", "reliability", "n_records"]
    lines = table_lines(tab, {"blup": ("blup", ".2f"), "pev": ("pev", finite_or_blank(".3f"))})
    assert lines[0].split() == ["blup", "pev"]
    assert lines[2].split() == ["a", "1.50", "0.100"] and lines[3].split() == ["b", "-0.50"]
    assert all(ln.startswith("  ") for ln in lines)


def test_stage_timings_splits_the_clock_at_each_stage_end(monkeypatch):
    import henderson.results as results

    monkeypatch.setattr(results.time, "perf_counter", lambda: 20.0)
    t = results.stage_timings(10.0, spec=11.0, prepare=13.5, optimise=14.0)
    assert t == {"spec": 1.0, "prepare": 2.5, "optimise": 0.5, "results": 6.0, "total": 10.0}
    assert results.stage_timings(10.0) == {"results": 10.0, "total": 10.0}


@pytest.mark.parametrize("solver", ["dense", "sparse", "spectral", "pcg"])
def test_fit_timings_name_every_stage_and_add_up(potato, solver):
    from henderson import fit

    names = potato["Name"].unique()
    # spectral needs a known covariance; K = I gives the same model as (1|Name)
    cov = {"Name": identity_frame(names)} if solver == "spectral" else None
    res = fit("Yield ~ Env + (1|Name)", potato, cov, solver=solver)
    assert res.solver.startswith(solver)
    assert list(res.timings) == ["spec", "prepare", "optimise", "results", "total"]
    assert all(v >= 0 for v in res.timings.values())
    stages = sum(v for k, v in res.timings.items() if k != "total")
    assert res.timings["total"] == pytest.approx(stages, rel=1e-9)

"""Issue 10: ``henderson fit`` reads missing-value codes and decimal commas as gblup does.

The files are written by hand here; the expected counts follow from what was written
(e.g. two '.' cells -> two records fewer), not from henderson.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from conftest import run_cli


def _records(seed: int = 3) -> pd.DataFrame:
    """40 lines x 2 environments, values well above -9 (so -9 is below every value)."""
    rng = np.random.default_rng(seed)
    g = rng.normal(0, 1.0, 40)
    rows = [(f"L{i}", env, 10 + 2 * e + g[i] + rng.normal(0, 0.7)) for i in range(40) for e, env in enumerate("AB")]
    return pd.DataFrame(rows, columns=["Name", "Env", "y"])


def _fit(path, out, capsys, *extra):
    return run_cli(["fit", "-d", path, "-f", "y ~ Env + (1|Name)", "-o", out, *extra], capsys)


def _n_obs(out) -> int:
    return json.loads((out / "summary.json").read_text())["results"]["fit"]["n_obs"]


def test_fit_counts_dot_and_minus9_and_reads_declared_codes(tmp_path, capsys):
    d = _records()
    vals = [f"{v:.4f}" for v in d["y"]]
    vals[3] = vals[7] = "."  # read as missing, counted
    vals[5] = vals[9] = vals[11] = "-9"  # below every other value: kept, counted
    d["y"] = vals
    d.to_csv(tmp_path / "d.csv", index=False)
    code, _, err = _fit(tmp_path / "d.csv", tmp_path / "o", capsys)
    assert code == 0, err
    assert "2 value(s) '.' in column 'y' read as missing" in err and "lines 5, 9" in err
    assert "3 value(s) -9 in column 'y'" in err and "--na-values -9" in err
    assert _n_obs(tmp_path / "o") == 78  # 80 records - 2 '.'
    code, _, err = _fit(tmp_path / "d.csv", tmp_path / "o", capsys, "--na-values", "-9")
    assert code == 0, err
    assert "3 value(s) '-9' in column 'y' read as missing" in err
    assert _n_obs(tmp_path / "o") == 75  # and the 3 declared -9


def test_fit_decimal_comma(tmp_path, capsys):
    d = _records()
    d["y"] = d["y"].round(4)
    d.to_csv(tmp_path / "pt.csv", index=False)
    text = (tmp_path / "pt.csv").read_text().replace(",", ";").replace(".", ",")
    (tmp_path / "cm.csv").write_text(text)
    code, _, err = _fit(tmp_path / "cm.csv", tmp_path / "cm", capsys)
    assert code == 2 and "--decimal ," in err, err
    code, _, err = _fit(tmp_path / "cm.csv", tmp_path / "cm", capsys, "--decimal", ",")
    assert code == 0, err
    code, _, err = _fit(tmp_path / "pt.csv", tmp_path / "pt", capsys)
    assert code == 0, err
    # the same numbers written with points give the same fit
    vc_comma = pd.read_csv(tmp_path / "cm" / "variance_components.csv")
    vc_point = pd.read_csv(tmp_path / "pt" / "variance_components.csv")
    pd.testing.assert_frame_equal(vc_comma, vc_point)


def test_cov_for_a_nested_term_is_accepted_as_fit_accepts_it(tmp_path, capsys):
    """Issue 15: ``--cov a:b=FILE`` for the nested term of ``(1|a/b)``, as
    ``fit(cov={"a:b": K})`` takes it; the variances equal the Python API's fit."""
    from henderson import fit

    rng = np.random.default_rng(5)
    a, b = np.repeat([f"A{i}" for i in range(6)], 12), np.tile(np.repeat(["b1", "b2", "b3"], 4), 6)
    cells = pd.unique(pd.Series(a) + ":" + pd.Series(b))
    u = dict(zip(cells, rng.normal(0, 1.0, len(cells)), strict=True))
    frame = pd.DataFrame({"a": a, "b": b})
    frame["y"] = 5 + np.array([u[f"{x}:{z}"] for x, z in zip(a, b, strict=True)]) + rng.normal(0, 0.5, len(a))
    frame.to_csv(tmp_path / "d.csv", index=False)
    K = pd.DataFrame(np.eye(len(cells)) * 0.9 + 0.1, index=cells, columns=cells)
    K.to_csv(tmp_path / "K.csv")
    formula = "y ~ 1 + (1|a/b)"
    code, _, err = run_cli(
        ["fit", "-d", tmp_path / "d.csv", "-f", formula, "--cov", f"a:b={tmp_path / 'K.csv'}", "-o", tmp_path / "o"],
        capsys,
    )
    assert code == 0, err
    ref = fit(formula, frame, cov={"a:b": K})
    vc = pd.read_csv(tmp_path / "o" / "variance_components.csv", index_col="term")
    np.testing.assert_allclose(vc["variance"].to_numpy(), ref.sigma2.to_numpy(), rtol=1e-6)
    assert list(vc.index) == ["a", "a:b", "Residual"]

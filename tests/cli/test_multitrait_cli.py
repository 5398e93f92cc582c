"""``henderson gblup|cv --trait a --trait b``: files in, the API's numbers out, report with the rg table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import henderson as hd
from henderson.cli.main import main

pytestmark = pytest.mark.filterwarnings("ignore::henderson.errors.BoundaryWarning")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("mtcli")
    c = hd.datasets.load_cpdata()
    G = hd.genomic_relationship(hd.Genotypes.from_frame(c.markers), method="vanraden1")
    Gf = G.to_frame()
    Gf.index.name = "id"
    Gf.reset_index().to_csv(d / "G.csv", index=False)
    ph = c.phenotypes.dropna(subset=["Yield", "FruitAver"]).reset_index()
    ph.to_csv(d / "ph.csv", index=False)
    return d, G, ph


def test_gblup_two_traits_writes_correlations_and_report(files):
    d, G, ph = files
    rc = main(
        [
            "gblup",
            "--phenotypes",
            str(d / "ph.csv"),
            "--trait",
            "Yield",
            "--trait",
            "FruitAver",
            "--grm",
            str(d / "G.csv"),
            "--out",
            str(d / "out"),
            "--quiet",
        ]
    )
    assert rc == 0
    api = hd.fit("cbind(Yield, FruitAver) ~ 1 + (1|id)", ph, cov={"id": G})
    cov = pd.read_csv(d / "out" / "covariances.csv").set_index("parameter")
    np.testing.assert_allclose(
        cov.loc[api.variance_components.index, "estimate"], api.variance_components["estimate"], rtol=1e-6
    )  # CSV round trip
    rg = pd.read_csv(d / "out" / "genetic_correlations.csv").set_index("trait")
    assert rg.loc["Yield", "FruitAver"].startswith(f"{api.correlations['id'].loc['Yield', 'FruitAver']:+.3f}")
    html = (d / "out" / "report.html").read_text()
    assert "Genetic correlation matrix" in html and "<img" in html
    bv = pd.read_csv(d / "out" / "breeding_values.csv")
    assert set(bv["trait"]) == {"Yield", "FruitAver"} and len(bv) == 2 * G.n


def test_cv_two_traits_cv2(files):
    d, G, ph = files
    rc = main(
        [
            "cv",
            "--model",
            "gblup",
            "--phenotypes",
            str(d / "ph.csv"),
            "--trait",
            "Yield",
            "--trait",
            "FruitAver",
            "--grm",
            str(d / "G.csv"),
            "--design",
            "CV2",
            "--target",
            "FruitAver",
            "--folds",
            "3",
            "--out",
            str(d / "cv"),
            "--quiet",
        ]
    )
    assert rc == 0
    s = pd.read_csv(d / "cv" / "cv_summary.csv").set_index("trait")
    assert list(s.index) == ["FruitAver"] and np.isfinite(s.loc["FruitAver", "r_single_trait"])


def test_fit_command_with_cbind_formula(files):
    d, G, ph = files
    rc = main(
        [
            "fit",
            "--data",
            str(d / "ph.csv"),
            "--formula",
            "cbind(Yield, FruitAver) ~ 1 + (1|id)",
            "--cov",
            f"id={d / 'G.csv'}",
            "--out",
            str(d / "fit"),
            "--quiet",
        ]
    )
    assert rc == 0
    api = hd.fit("cbind(Yield, FruitAver) ~ 1 + (1|id)", ph, cov={"id": G})
    cov = pd.read_csv(d / "fit" / "covariances.csv").set_index("parameter")
    np.testing.assert_allclose(
        cov.loc[api.variance_components.index, "estimate"], api.variance_components["estimate"], rtol=1e-6
    )

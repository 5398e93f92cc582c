"""Issue 10, item 7: cross-validation from real files (ungenotyped animals, h² ≈ 0,
folds and groups with gaps, ids that do not match) through the command line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli, strict_json

from henderson.datasets import load_wheat


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """60 wheat lines x 100 markers (CSV) and env1 of those lines."""
    d = tmp_path_factory.mktemp("cvtrust")
    w = load_wheat()
    m = (2 * w.markers.iloc[:60, :100]).rename_axis("id")
    m.to_csv(d / "g.csv")
    y = w.phenotypes.loc[m.index, "env1"]
    return d, list(m.index), y.to_numpy()


def _cv(d, ph, out, capsys, *extra):
    return run_cli(
        [
            "cv",
            "--model",
            "gblup",
            "-p",
            ph,
            "-t",
            "y",
            "-g",
            d / "g.csv",
            "--coding",
            "012",
            "-k",
            "5",
            "-o",
            out,
            *extra,
        ],
        capsys,
    )


def test_drop_unknown_works_in_cv(files, tmp_path, capsys):
    d, ids, y = files
    extra = [f"X{i}" for i in range(5)]  # phenotyped, not genotyped: the normal case
    ph = pd.DataFrame({"id": ids + extra, "y": np.concatenate([y, np.arange(5.0)])})
    ph.to_csv(tmp_path / "ph.csv", index=False)
    code, _, err = _cv(d, tmp_path / "ph.csv", tmp_path / "a", capsys)
    assert code == 2 and "5 phenotyped id(s) are not in the model's X" in err and "--drop-unknown" in err
    code, _, err = _cv(d, tmp_path / "ph.csv", tmp_path / "a", capsys, "--drop-unknown")
    assert code == 0, err
    assert "5 phenotyped id(s) are not in the model's X (5 record(s) left out of every fold, 60 ids kept)" in err
    doc = strict_json(tmp_path / "a" / "summary.json")
    assert any("not in the model's X" in n for n in doc["results"]["cv_settings"]["notes"])
    # the same as cross-validating the file without those rows (same seed, same folds)
    ph.iloc[:60].to_csv(tmp_path / "ph60.csv", index=False)
    code, _, err = _cv(d, tmp_path / "ph60.csv", tmp_path / "b", capsys)
    assert code == 0, err
    a = pd.read_csv(tmp_path / "a" / "cv_predictions.csv", dtype={"id": str})
    b = pd.read_csv(tmp_path / "b" / "cv_predictions.csv", dtype={"id": str})
    pd.testing.assert_frame_equal(a, b)


def test_h2_zero_gives_undefined_metrics_and_still_writes(files, tmp_path, capsys):
    d, ids, _ = files
    noise = np.random.default_rng(2).normal(size=len(ids))  # no genetic signal: h² = 0 in every fold
    pd.DataFrame({"id": ids, "y": noise}).to_csv(tmp_path / "ph.csv", index=False)
    code, out, err = _cv(d, tmp_path / "ph.csv", tmp_path / "o", capsys, "--fixed-variances")
    assert code == 0, err  # was: internal error (LinAlgError) drawing the report
    assert "LinAlgError" not in err
    assert "5 of 5 fold(s) predict the same breeding value" in err and "undefined (NaN)" in err
    assert (tmp_path / "o" / "report.html").stat().st_size > 1000
    doc = strict_json(tmp_path / "o" / "summary.json")
    assert doc["results"]["summary"]["r"]["mean"] is None  # undefined, not 0
    fm = pd.read_csv(tmp_path / "o" / "cv_metrics.csv")
    assert fm["r"].isna().all() and fm["slope"].isna().all() and fm["top_overlap"].isna().all()
    assert np.isfinite(fm["mse"]).all()


def test_empty_fold_and_missing_labels_are_counted(files, tmp_path, capsys):
    d, ids, y = files
    fold = np.tile(["1", "2", "3", "4"], 15).astype(object)
    yy = y.astype(float).copy()
    fold[:3] = "5"  # fold 5: three lines, none phenotyped
    yy[:3] = np.nan
    fold[10:14] = None  # four phenotyped lines without a fold label
    pd.DataFrame({"id": ids, "y": yy, "fold": fold}).to_csv(tmp_path / "ph.csv", index=False)
    code, _, err = _cv(d, tmp_path / "ph.csv", tmp_path / "o", capsys, "--fold-column", "fold")
    assert code == 0, err
    assert "1 fold(s) have no phenotyped individual and are not validated: '5'" in err
    assert "4 phenotyped id(s) have no fold label: always in training" in err
    notes = strict_json(tmp_path / "o" / "summary.json")["results"]["cv_settings"]["notes"]
    assert len(notes) == 2
    assert "not validated" in (tmp_path / "o" / "report.html").read_text()
    # groups: ids with a missing group are counted too
    grp = np.repeat([f"fam{i}" for i in range(10)], 6).astype(object)
    grp[:7] = None
    pd.DataFrame({"id": ids, "y": y, "fam": grp}).to_csv(tmp_path / "ph2.csv", index=False)
    code, _, err = _cv(d, tmp_path / "ph2.csv", tmp_path / "o2", capsys, "--groups", "fam")
    assert code == 0, err
    assert "7 phenotyped id(s) have no group label: always in training" in err


def test_no_ids_match_says_so_with_examples(files, tmp_path, capsys):
    d, ids, y = files
    pd.DataFrame({"id": [f"L{i:03d}" for i in range(60)], "y": y}).to_csv(tmp_path / "ph.csv", index=False)
    for extra in ([], ["--drop-unknown"]):
        code, _, err = _cv(d, tmp_path / "ph.csv", tmp_path / "o", capsys, *extra)
        assert code == 2 and "no phenotyped id is in the model's X" in err
        assert "'L000'" in err and repr(ids[0]) in err and "constant" not in err
    code, _, err = run_cli(
        [
            "gblup",
            "-p",
            tmp_path / "ph.csv",
            "-t",
            "y",
            "-g",
            d / "g.csv",
            "--coding",
            "012",
            "--drop-unknown",
            "-o",
            tmp_path / "g",
        ],
        capsys,
    )
    assert code == 2 and "no phenotyped id is in the genomic relationship matrix" in err
    assert "'L000'" in err and repr(ids[0]) in err and "constant" not in err

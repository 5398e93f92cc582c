"""Issue 10, item 3: missing-value codes and number formats in phenotype files.

Each case is a file a spreadsheet or another program really writes. The expected
values are written by hand into the files (not computed by henderson): e.g. the
phenotypes read with --decimal , must equal the same file written with points.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from henderson.datasets import load_wheat
from henderson.errors import DataError, DataWarning
from henderson.io.tables import read_phenotypes


@pytest.fixture(scope="module")
def lines(tmp_path_factory):
    """30 wheat lines x 60 markers (CSV) and their env1 phenotypes."""
    d = tmp_path_factory.mktemp("tables")
    w = load_wheat()
    m = (2 * w.markers.iloc[:30, :60]).rename_axis("id")
    m.to_csv(d / "geno.csv")
    y = w.phenotypes.loc[m.index, "env1"].round(4)
    return d, list(m.index), y.to_numpy()


def _gblup(d, ph, tmp_path, capsys, *extra):
    return run_cli(
        ["gblup", "-p", ph, "-t", "y", "-g", d / "geno.csv", "--coding", "012", "-o", tmp_path / "o", *extra], capsys
    )


def _summary(tmp_path) -> dict:
    return json.loads((tmp_path / "o" / "summary.json").read_text())


def test_dot_and_minus9_are_counted_in_warnings(lines, tmp_path, capsys):
    d, ids, y = lines
    vals = [f"{v:.4f}" for v in y]
    vals[3] = vals[7] = "."  # two '.' -> missing, counted
    vals[5] = vals[9] = vals[11] = "-9"  # three -9, below every other value -> kept, counted
    (tmp_path / "ph.csv").write_text("id,y\n" + "".join(f"{i},{v}\n" for i, v in zip(ids, vals)))
    code, _, err = _gblup(d, tmp_path / "ph.csv", tmp_path, capsys)
    assert code == 0, err
    assert "2 value(s) '.' in column 'y' read as missing" in err and "lines 5, 9" in err
    assert "3 value(s) -9 in column 'y'" in err and "--na-values -9" in err
    doc = _summary(tmp_path)
    assert doc["results"]["fit"]["n_obs"] == 28  # the -9 are still values: 30 - 2 '.'
    assert any("-9" in w for w in doc["warnings"])


def test_na_values_declares_codes_cli_and_api(lines, tmp_path, capsys):
    d, ids, y = lines
    vals = [f"{v:.4f}" for v in y]
    vals[5] = vals[9] = "-9"
    vals[12] = "-999"
    (tmp_path / "ph.csv").write_text("id,y\n" + "".join(f"{i},{v}\n" for i, v in zip(ids, vals)))
    code, _, err = _gblup(d, tmp_path / "ph.csv", tmp_path, capsys, "--na-values", "-9,-999")
    assert code == 0, err
    assert "2 value(s) '-9' in column 'y' read as missing" in err
    assert _summary(tmp_path)["results"]["fit"]["n_obs"] == 27
    # the API: na_values= reads them as NaN, and the rest is unchanged
    with pytest.warns(DataWarning, match="declared missing-value code"):
        ph = read_phenotypes(tmp_path / "ph.csv", "y", na_values=["-9", -999])
    assert ph.isna().sum() == 3 and ph.index[5] == ids[5] and np.isnan(ph.iloc[5])
    np.testing.assert_array_equal(ph.dropna().to_numpy(), np.delete(y, [5, 9, 12]))


def test_minus9_inside_the_range_is_an_ordinary_value(tmp_path):
    (tmp_path / "ph.csv").write_text("id,y\nA,-12.5\nB,-9\nC,3\nD,-1\n")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning at all: -9 lies between -12.5 and 3
        ph = read_phenotypes(tmp_path / "ph.csv", "y")
    assert ph["B"] == -9


def test_decimal_comma_detected_with_hint_and_declared(lines, tmp_path, capsys):
    d, ids, y = lines
    text = "".join(f"{i};{v:.4f}\n".replace(".", ",") for i, v in zip(ids, y))
    (tmp_path / "ph.csv").write_text("id;y\n" + text)
    code, _, err = _gblup(d, tmp_path / "ph.csv", tmp_path, capsys)
    assert code == 2 and "decimal comma" in err and "--decimal ," in err and "line 2" in err
    code, _, err = _gblup(d, tmp_path / "ph.csv", tmp_path, capsys, "--decimal", ",")
    assert code == 0, err
    ebv_comma = pd.read_csv(tmp_path / "o" / "breeding_values.csv").set_index("id")["value"]
    # the same numbers written with points give the same fit
    (tmp_path / "pt.csv").write_text("id,y\n" + "".join(f"{i},{v:.4f}\n" for i, v in zip(ids, y)))
    code, _, err = run_cli(
        ["gblup", "-p", tmp_path / "pt.csv", "-t", "y", "-g", d / "geno.csv", "--coding", "012", "-o", tmp_path / "pt"],
        capsys,
    )
    assert code == 0, err
    ebv_point = pd.read_csv(tmp_path / "pt" / "breeding_values.csv").set_index("id")["value"]
    pd.testing.assert_series_equal(ebv_comma.sort_index(), ebv_point.sort_index())


def test_decimal_comma_in_a_comma_delimited_file_hints(tmp_path, capsys):
    (tmp_path / "ph.csv").write_text("id,y\nA,1,5\nB,2,25\n")
    (tmp_path / "g.csv").write_text("id,s1,s2\nA,0,2\nB,2,1\n")
    code, _, err = run_cli(
        ["gblup", "-p", tmp_path / "ph.csv", "-t", "y", "-g", tmp_path / "g.csv", "-o", tmp_path / "o"], capsys
    )
    assert code == 2 and "line 2 has 3 fields" in err and "--decimal ," in err


def test_duplicate_header_names_are_an_error(lines, tmp_path, capsys):
    d, ids, y = lines
    (tmp_path / "ph.csv").write_text("id,y,y\n" + "".join(f"{i},{v},{-v}\n" for i, v in zip(ids, y)))
    code, _, err = _gblup(d, tmp_path / "ph.csv", tmp_path, capsys)
    assert code == 2 and "duplicated column name" in err and "'y' in columns 2, 3" in err


def test_repeated_ids_with_different_values_are_named(lines, tmp_path, capsys):
    d, ids, y = lines
    rows = [f"{i},{v}\n" for i, v in zip(ids, y)] + [f"{ids[4]},{y[4] + 1}\n", f"{ids[6]},{y[6]}\n"]
    (tmp_path / "ph.csv").write_text("id,y\n" + "".join(rows))
    code, _, err = _gblup(d, tmp_path / "ph.csv", tmp_path, capsys)
    assert code == 2 and f"{ids[4]!r} (lines 6, 32" in err and "1 id(s) have more than one record" in err
    # without the conflicting record, the exact repeat of ids[6] is dropped and counted
    (tmp_path / "ph2.csv").write_text("id,y\n" + "".join(rows[:-2] + rows[-1:]))
    code, _, err = _gblup(d, tmp_path / "ph2.csv", tmp_path, capsys)
    assert code == 0, err
    assert "1 exact repeated record(s) (same id and value) dropped" in err and ids[6] in err
    assert _summary(tmp_path)["results"]["fit"]["n_obs"] == 30
    # declared replicates are all fitted
    code, _, err = _gblup(d, tmp_path / "ph.csv", tmp_path, capsys, "--repeated-records")
    assert code == 0, err
    assert _summary(tmp_path)["results"]["fit"]["n_obs"] == 32


def test_blank_field_in_whitespace_file_does_not_shift_columns(tmp_path, capsys):
    # line 3 lost its 'herd' value: read naively, y would move into 'herd'
    (tmp_path / "ph.txt").write_text("id   herd   y\nA    1      2.5\nB           3.5\nC    2      1.0\n")
    (tmp_path / "g.csv").write_text("id,s1,s2\nA,0,2\nB,2,1\nC,1,1\n")
    code, _, err = run_cli(
        ["gblup", "-p", tmp_path / "ph.txt", "-t", "y", "-g", tmp_path / "g.csv", "-o", tmp_path / "o"], capsys
    )
    assert code == 2 and "line 3 has 2 fields, the header has 3" in err and "write NA" in err
    with pytest.raises(DataError, match="line 3 has 2 fields"):
        read_phenotypes(tmp_path / "ph.txt", "y")

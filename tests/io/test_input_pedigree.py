"""Issue 10, item 4: pedigrees as they arrive (missing-parent codes, float ids, birth
years, column names, fully inbred lines, summary.json inputs).

Expected relationships come from the independent tabular A of conftest (textbook rules),
never from henderson's own kernels.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli, tabular_A

from henderson import pedigree_inverse, read_pedigree
from henderson.errors import DataWarning, ModelError, PedigreeError

ROWS = [("1", "0", "0"), ("2", "0", "0"), ("3", "1", "2"), ("4", "1", "0"), ("5", "4", "3"), ("6", "5", "2")]


def _write(path, rows, unknown="0", header="id,sire,dam"):
    path.write_text(header + "\n" + "".join(",".join(unknown if x == "0" else x for x in r) + "\n" for r in rows))
    return path


def _records(tmp_path, ids, seed=0):
    rng = np.random.default_rng(seed)
    family = pd.Series([i.split("_")[0] for i in ids]).astype("category").cat.codes.to_numpy()
    y = rng.normal(size=len(ids)) + rng.normal(0, 1.0, family.max() + 1)[family]  # sire families
    pd.DataFrame({"id": ids, "y": y}).to_csv(tmp_path / "ph.csv", index=False)
    return tmp_path / "ph.csv"


def _half_sibs(n_sires=6, k=10):
    rows = [(f"S{i}", "0", "0") for i in range(n_sires)]
    rows += [(f"S{i}_{j}", f"S{i}", "0") for i in range(n_sires) for j in range(k)]
    return rows


def _ebv(out):
    return pd.read_csv(out / "breeding_values.csv", dtype={"id": str}).set_index("id")["value"].sort_index()


@pytest.mark.parametrize("code", ["-", "NA", ".", "0"])
def test_default_missing_parent_codes(tmp_path, code):
    ped = read_pedigree(_write(tmp_path / "p.csv", ROWS, unknown=code))
    A, ids = tabular_A(ROWS)
    Ainv = pedigree_inverse(ped).to_frame().loc[ids, ids].to_numpy()
    np.testing.assert_allclose(Ainv, np.linalg.inv(A), atol=1e-12)
    assert ped.added_founders == ()


def test_missing_parent_option_and_code_like_parent_refused(tmp_path, capsys):
    rows = _half_sibs()
    ids = [r[0] for r in rows[6:]]
    ph = _records(tmp_path, ids)
    _write(tmp_path / "ped9.csv", rows, unknown="-9")
    code, _, err = run_cli(
        ["pblup", "-p", ph, "-t", "y", "--pedigree", tmp_path / "ped9.csv", "-o", tmp_path / "a"], capsys
    )
    # '-9' would be one phantom founder, the dam of all 60 animals and sire of the 6 sires
    assert code == 2 and "'-9'" in err and "missing-parent code" in err and "--missing-parent" in err
    code, _, err = run_cli(
        [
            "pblup",
            "-p",
            ph,
            "-t",
            "y",
            "--pedigree",
            tmp_path / "ped9.csv",
            "--missing-parent",
            "-9",
            "-o",
            tmp_path / "a",
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    _write(tmp_path / "ped0.csv", rows, unknown="0")
    code, _, err = run_cli(
        ["pblup", "-p", ph, "-t", "y", "--pedigree", tmp_path / "ped0.csv", "-o", tmp_path / "b", "-q"], capsys
    )
    assert code == 0, err
    pd.testing.assert_series_equal(_ebv(tmp_path / "a"), _ebv(tmp_path / "b"))


def test_code_like_dam_only_refused_in_api(tmp_path):
    rows = [("1", "0", "unknown"), ("2", "0", "unknown"), ("3", "1", "2")]
    frame = pd.DataFrame(rows, columns=["id", "sire", "dam"])
    with pytest.raises(PedigreeError, match=r"'unknown' \(parent of 2 animals\).*missing-parent code"):
        read_pedigree(frame)
    ped = read_pedigree(frame, missing=("0", "unknown"))
    assert ped.added_founders == ()


def test_whole_number_float_ids_are_normalised(tmp_path):
    # a numeric export: the sire and dam columns held NaN, so they were written as floats
    text = "id,sire,dam\n1,,\n2,,\n3,1.0,2.0\n4,1.0,\n5,4.0,3.0\n6,5.0,2.0\n"
    (tmp_path / "p.csv").write_text(text)
    with pytest.warns(DataWarning, match=r"whole-number decimals read as integers \(e.g. '1.0' as '1'\)"):
        ped = read_pedigree(tmp_path / "p.csv")
    assert ped.added_founders == ()  # '1.0' is animal 1, not a new founder
    A, ids = tabular_A(ROWS)
    np.testing.assert_allclose(pedigree_inverse(ped).to_frame().loc[ids, ids].to_numpy(), np.linalg.inv(A), atol=1e-12)


def test_birth_year_parent_after_offspring(tmp_path, capsys):
    years = {"1": 2000, "2": 2000, "3": 2003, "4": 2002, "5": 2001, "6": 2006}  # 5 born before its sire 4
    (tmp_path / "p.csv").write_text("id,sire,dam,born\n" + "".join(f"{a},{s},{d},{years[a]}\n" for a, s, d in ROWS))
    ph = _records(tmp_path, [r[0] for r in ROWS])
    code, _, err = run_cli(
        ["pblup", "-p", ph, "-t", "y", "--pedigree", tmp_path / "p.csv", "--birth-year", "born", "-o", tmp_path / "o"],
        capsys,
    )
    assert code == 2
    assert "sire '4' (born 2002) of '5' (born 2001)" in err and "dam '3' (born 2003) of '5' (born 2001)" in err
    code, _, err = run_cli(
        ["pblup", "-p", ph, "-t", "y", "--pedigree", tmp_path / "p.csv", "--birth-year", "year", "-o", tmp_path / "o"],
        capsys,
    )
    assert code == 2 and "no column 'year'" in err and "--birth-year" in err
    years["5"] = 2004
    (tmp_path / "p.csv").write_text("id,sire,dam,born\n" + "".join(f"{a},{s},{d},{years[a]}\n" for a, s, d in ROWS))
    ped = read_pedigree(tmp_path / "p.csv", birth_year="born")  # consistent: no error
    assert len(ped) == 6


def test_column_error_mentions_ped_columns(tmp_path, capsys):
    _write(tmp_path / "p.csv", ROWS, header="animal,father,mother")
    ph = _records(tmp_path, [r[0] for r in ROWS])
    code, _, err = run_cli(
        ["pblup", "-p", ph, "-t", "y", "--pedigree", tmp_path / "p.csv", "-o", tmp_path / "o"], capsys
    )
    assert code == 2 and "--ped-columns" in err and "'animal', 'father', 'mother'" in err
    code, _, err = run_cli(["ainv", "--pedigree", tmp_path / "p.csv", "-o", tmp_path / "a.csv"], capsys)
    assert code == 2 and "--ped-columns" in err


def _selfed_line(generations: int):
    rng = np.random.default_rng(1)
    rows = [(f"f{i}", "0", "0") for i in range(20)]
    rows += [(f"o{i}", f"f{a}", f"f{b}") for i, (a, b) in enumerate(rng.integers(0, 20, (60, 2))) if a != b]
    prev = "o0"
    for g in range(generations):
        rows.append((f"s{g}", prev, prev))
        prev = f"s{g}"
    return rows


def test_fully_inbred_animals_are_named_and_pblup_explains(tmp_path, capsys):
    rows = _selfed_line(60)
    ped = read_pedigree(pd.DataFrame(rows, columns=["id", "sire", "dam"]), monoecious=True)
    # F after g selfings of a non-inbred plant is 1 - 2^-g: >= 1 - 1e-6 from g = 20 (s19) on
    with pytest.warns(DataWarning, match=r"41 animal\(s\) have inbreeding F >= 1 - 1e-6 .*'s19'") as rec:
        Ainv = pedigree_inverse(ped)
    assert "1/d =" in str(rec[0].message)
    assert Ainv.info["fully_inbred"][0] == "s19" and len(Ainv.info["fully_inbred"]) == 41
    ids = [r[0] for r in rows[20:]]
    y = np.random.default_rng(2).normal(size=len(ids)) + np.array([3.0 if i.startswith("s") else 0 for i in ids])
    pd.DataFrame({"id": ids, "y": y}).to_csv(tmp_path / "ph.csv", index=False)
    pd.DataFrame(rows, columns=["id", "sire", "dam"]).to_csv(tmp_path / "p.csv", index=False)
    code, _, err = run_cli(
        [
            "pblup",
            "-p",
            tmp_path / "ph.csv",
            "-t",
            "y",
            "--pedigree",
            tmp_path / "p.csv",
            "--selfing",
            "-o",
            tmp_path / "o",
        ],
        capsys,
    )
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert "inbreeding F >= 1 - 1e-6" in last and "'s19'" in last and "confounded" not in last
    assert "warning" in err and "41 animal(s)" in err
    # a short selfing line (F <= 1 - 2^-5) raises no such warning
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        pedigree_inverse(read_pedigree(pd.DataFrame(_selfed_line(5), columns=["id", "sire", "dam"]), monoecious=True))


def test_api_pblup_names_the_cause(tmp_path):
    from henderson import PedigreeBLUP

    rows = _selfed_line(60)
    ped = read_pedigree(pd.DataFrame(rows, columns=["id", "sire", "dam"]), monoecious=True)
    ids = [r[0] for r in rows[20:]]
    y = pd.Series(
        np.random.default_rng(2).normal(size=len(ids)) + np.array([3.0 if i.startswith("s") else 0 for i in ids]),
        index=ids,
        name="y",
    )
    with pytest.warns(DataWarning), pytest.raises(ModelError, match="inbreeding F >= 1 - 1e-6"):
        PedigreeBLUP().fit(ped, y)


@pytest.mark.parametrize("notes", [False, True])
def test_pedigree_in_summary_inputs_exactly_once(tmp_path, capsys, notes):
    rows = _half_sibs()
    if notes:  # the sires have no row: founders added, with a warning
        rows = rows[6:]
    _write(tmp_path / "p.csv", rows)
    ph = _records(tmp_path, [r[0] for r in _half_sibs()[6:]])
    code, _, err = run_cli(
        ["pblup", "-p", ph, "-t", "y", "--pedigree", tmp_path / "p.csv", "-o", tmp_path / "o"], capsys
    )
    assert code == 0, err
    assert ("added as founders" in err) == notes
    doc = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert [i["role"] for i in doc["inputs"]].count("pedigree") == 1


def test_missing_parent_on_ainv_and_cv(tmp_path, capsys):
    rows = _half_sibs()
    _write(tmp_path / "p9.csv", rows, unknown="-9")
    _write(tmp_path / "p0.csv", rows, unknown="0")
    code, _, err = run_cli(
        ["ainv", "--pedigree", tmp_path / "p9.csv", "--missing-parent", "-9", "-o", tmp_path / "a9.csv"], capsys
    )
    assert code == 0, err
    code, _, err = run_cli(["ainv", "--pedigree", tmp_path / "p0.csv", "-o", tmp_path / "a0.csv"], capsys)
    assert code == 0, err
    assert (tmp_path / "a9.csv").read_text() == (tmp_path / "a0.csv").read_text()
    ph = _records(tmp_path, [r[0] for r in rows[6:]])
    code, _, err = run_cli(
        [
            "cv",
            "--model",
            "pblup",
            "-p",
            ph,
            "-t",
            "y",
            "--pedigree",
            tmp_path / "p9.csv",
            "--missing-parent",
            "-9",
            "-k",
            "3",
            "--fixed-variances",
            "-o",
            tmp_path / "cv",
        ],
        capsys,
    )
    assert code == 0, err
    doc = json.loads((tmp_path / "cv" / "summary.json").read_text())
    assert [i["role"] for i in doc["inputs"]].count("pedigree") == 1


def test_float_ids_match_between_phenotypes_and_pedigree(tmp_path, capsys):
    rows = _half_sibs()
    (tmp_path / "p.csv").write_text(
        "id,sire,dam\n"
        + "".join(
            f"{a.replace('S', '1').replace('_', '0')},{s.replace('S', '1') if s != '0' else ''},\n" for a, s, _ in rows
        )
    )
    ids = [r[0].replace("S", "1").replace("_", "0") for r in rows[6:]]
    y = np.random.default_rng(0).normal(size=len(ids)) + np.repeat(np.random.default_rng(1).normal(size=6), 10)
    # the phenotypes come from a numeric export: ids 1000.0, 1001.0, ...
    pd.DataFrame({"id": [f"{i}.0" for i in ids], "y": y}).to_csv(tmp_path / "ph.csv", index=False)
    code, _, err = run_cli(
        ["pblup", "-p", tmp_path / "ph.csv", "-t", "y", "--pedigree", tmp_path / "p.csv", "-o", tmp_path / "o"], capsys
    )
    assert code == 0, err
    assert "60 id(s) written as whole-number decimals read as integers" in err
    bv = pd.read_csv(tmp_path / "o" / "breeding_values.csv", dtype={"id": str}).set_index("id")
    assert (bv.loc[ids, "n_records"] == 1).all()

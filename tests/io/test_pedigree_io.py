"""read_pedigree and the Pedigree container: parsing, checks, messages, sorting."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

from henderson._testing.pedigree import simulate_pedigree
from henderson.data.pedigree import Pedigree
from henderson.errors import DataError, DataWarning, PedigreeError
from henderson.io.pedigree import read_pedigree


def write(tmp_path, text, name="ped.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def frame(rows):
    return pd.DataFrame(rows, columns=["id", "sire", "dam"])


def assert_parents_first(ped: Pedigree):
    code = np.arange(len(ped))
    assert np.all(ped.sire < code) and np.all(ped.dam < code)
    assert np.all(np.diff(ped.generation) >= 0)


# --- parsing -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "id,sire,dam\nc,a,b\na,0,0\nb,NA,.\n",
        "id\tsire\tdam\nc\ta\tb\na\t\t\nb\tNA\t.\n",
        "id sire dam\nc  a b\na 0 0\n  b NA .\n",
        "id;sire;dam\nc;a;b\na;0;0\nb;NA;.\n",
    ],
    ids=["csv", "tsv", "whitespace", "semicolon"],
)
def test_delimiters_and_missing_codes(tmp_path, text):
    ped = read_pedigree(write(tmp_path, text))
    assert list(ped.ids_in_input_order) == ["c", "a", "b"]
    assert list(ped.ids) == ["a", "b", "c"]  # parents first, ties in input order
    df = ped.to_frame()
    assert df.loc[0, "sire"] == "a" and df.loc[0, "dam"] == "b"
    assert df.loc[1:, ["sire", "dam"]].isna().all().all()
    assert ped.n_founders == 2 and ped.n_founders_added == 0


def test_custom_column_names_and_sep(tmp_path):
    path = write(tmp_path, "animal|father|mother\nx|*|*\ny|x|*\n")
    ped = read_pedigree(path, id="animal", sire="father", dam="mother", missing=("*",), sep="|")
    assert list(ped.to_frame()["sire"].fillna("-")) == ["-", "x"]


def test_dataframe_with_numeric_ids_holding_nan():
    # An int column with NaN becomes float: 1.0 must still match id 1.
    df = pd.DataFrame({"id": [1, 2, 3], "sire": [np.nan, np.nan, 1.0], "dam": [np.nan, np.nan, 2.0]})
    ped = read_pedigree(df)
    assert list(ped.to_frame(order="sorted")["sire"].fillna("-")) == ["-", "-", "1"]


def test_blank_lines_keep_line_numbers(tmp_path):
    path = write(tmp_path, "id,sire,dam\na,0,0\n\nb,0,0\nb,a,0\n")
    with pytest.raises(PedigreeError, match=r"line 4.*line 5"):
        read_pedigree(path)


def test_sorting_large_shuffled_pedigree():
    df = simulate_pedigree(3000, 6, founders=50, unknown_rate=0.1, seed=3, shuffle=True)
    ped = read_pedigree(df)
    assert_parents_first(ped)
    assert list(ped.ids_in_input_order) == list(df["id"])
    back = ped.to_frame().set_index("id")
    pd.testing.assert_series_equal(
        back["sire"].rename(None), df.set_index("id")["sire"].rename(None), check_dtype=False
    )


def test_generation_numbers():
    ped = read_pedigree(frame([["d", "b", "c"], ["b", "a", None], ["a", None, None], ["c", None, None]]))
    gen = dict(zip(ped.ids, ped.generation))
    assert gen == {"a": 0, "c": 0, "b": 1, "d": 2}


# --- bad input -------------------------------------------------------------------


def test_missing_column_lists_present_columns(tmp_path):
    path = write(tmp_path, "animal,sire,dam\na,0,0\n")
    with pytest.raises(DataError, match=r"no column 'id'.*present columns: 'animal', 'sire', 'dam'"):
        read_pedigree(path)


def test_conflicting_duplicates_name_id_and_lines(tmp_path):
    path = write(tmp_path, "id,sire,dam\ns,0,0\nd,0,0\nx,s,d\nx,s,0\n")
    with pytest.raises(PedigreeError) as err:
        read_pedigree(path)
    msg = str(err.value)
    assert "'x'" in msg and "line 4" in msg and "line 5" in msg and str(path) in msg


def test_exact_duplicates_dropped_and_counted(tmp_path):
    path = write(tmp_path, "id,sire,dam\ns,0,0\nd,0,0\nx,s,d\nx,s,d\ns,0,0\n")
    with pytest.warns(DataWarning, match="dropped 2 exact duplicate"):
        ped = read_pedigree(path)
    assert len(ped) == 3 and ped.n_duplicates_dropped == 2


def test_loop_is_printed(tmp_path):
    path = write(tmp_path, "id,sire,dam\nf,0,0\na,b,f\nb,c,f\nc,a,f\nz,a,f\n")
    with pytest.raises(PedigreeError) as err:
        read_pedigree(path)
    msg = str(err.value)
    assert "own ancestor" in msg
    # The loop may start at any of its animals; check the cycle, not the rotation.
    chain = msg.split("(animal -> parent): ")[1].split(" (")[0].split(" -> ")
    assert chain[0] == chain[-1] and set(chain) == {"a", "b", "c"}
    assert "line 3" in msg


def test_own_parent(tmp_path):
    path = write(tmp_path, "id,sire,dam\nf,0,0\na,a,f\n")
    with pytest.raises(PedigreeError, match=r"own parent: 'a' \(.*line 3\)"):
        read_pedigree(path)


def test_sire_and_dam(tmp_path):
    path = write(tmp_path, "id,sire,dam\np,0,0\nq,0,0\nr,p,q\ns,q,p\n")
    with pytest.raises(PedigreeError, match=r"both as sire and as dam: 'p', 'q'"):
        read_pedigree(path)


def test_parents_without_rows_are_added_as_founders(tmp_path):
    path = write(tmp_path, "id,sire,dam\nx,s1,d1\ny,s1,d2\nz,x,y\n")
    with pytest.warns(DataWarning, match=r"3 parent\(s\).*'s1', 'd1', 'd2'"):
        ped = read_pedigree(path)
    assert ped.added_founders == ("s1", "d1", "d2")
    assert ped.n_founders_added == 3 and len(ped) == 6
    assert list(ped.ids_in_input_order) == ["s1", "d1", "d2", "x", "y", "z"]
    assert_parents_first(ped)


def test_empty_id(tmp_path):
    path = write(tmp_path, "id,sire,dam\na,0,0\n,a,0\n")
    with pytest.raises(DataError, match="line 3"):
        read_pedigree(path)


def test_file_not_found(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_pedigree(tmp_path / "nope.csv")


def test_ragged_file(tmp_path):
    path = write(tmp_path, "id,sire,dam\na,0,0\nb,a,0,extra\n")
    with pytest.raises(DataError, match=r"ped.txt: cannot parse.*line 3"):
        read_pedigree(path)


def test_bad_type():
    with pytest.raises(DataError, match="path or a DataFrame"):
        read_pedigree(42)


# --- the container -----------------------------------------------------------------


def test_codes_of_names_unknown_ids():
    ped = read_pedigree(frame([["a", None, None], ["b", "a", None]]))
    assert list(ped.ids[ped.codes_of(["b", "a"])]) == ["b", "a"]
    with pytest.raises(DataError, match=r"2 id\(s\) not in the pedigree.*'zz', 'yy'"):
        ped.codes_of(["a", "zz", "yy"])


def test_container_refuses_unsorted_codes():
    with pytest.raises(PedigreeError, match="parents-first"):
        Pedigree(
            ids=np.array(["a", "b"], dtype=object),
            sire=np.array([1, -1]),
            dam=np.array([-1, -1]),
            generation=np.array([0, 0]),
            input_order=np.array([0, 1]),
        )


def test_container_is_frozen_and_reports():
    ped = read_pedigree(frame([["a", None, None], ["b", "a", None]]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        ped.ids = None
    with pytest.raises(ValueError):
        ped.sire[0] = 3
    assert len(ped) == 2 and "n=2" in repr(ped)
    with pytest.raises(DataError):
        ped.to_frame(order="random")


def test_simulator_is_seeded_and_valid():
    a = simulate_pedigree(500, 5, founders=20, unknown_rate=0.2, seed=7)
    b = simulate_pedigree(500, 5, founders=20, unknown_rate=0.2, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 500 and a["id"].is_unique
    assert a["sire"].isna().sum() > 20 and a["dam"].notna().any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no added founders, no sex conflicts
        read_pedigree(a)


# --- audit regressions ---------------------------------------------------------------


@pytest.mark.parametrize("row, shown", [("0,0,0", "id '0'"), ("NA,0,0", "id 'NA'"), (",a,0", "empty id")])
def test_row_named_by_a_missing_code_is_an_error(tmp_path, row, shown):
    # used to vanish silently: '0,0,0' was taken for a blank line
    path = write(tmp_path, f"id,sire,dam\na,0,0\n\n{row}\nb,a,0\n")
    with pytest.raises(DataError, match=rf"1 row\(s\) have no usable id \(.*line 4: {shown}\).*missing-parent code"):
        read_pedigree(path)


def test_missing_code_id_in_a_dataframe_is_the_same_error():
    with pytest.raises(DataError, match=r"DataFrame row 1: id '0'"):
        read_pedigree(frame([["a", None, None], ["0", None, None]]))


def test_blank_lines_and_whitespace_only_lines_are_still_skipped(tmp_path):
    ped = read_pedigree(write(tmp_path, "id,sire,dam\na,0,0\n\n , , \nb,a,0\n"))
    assert list(ped.ids_in_input_order) == ["a", "b"]


def test_monoecious_accepts_an_id_as_sire_and_dam(tmp_path):
    path = write(tmp_path, "id,sire,dam\np,0,0\nq,0,0\nr,p,q\ns,q,p\nt,r,r\n")
    with pytest.raises(PedigreeError, match="pass monoecious=True"):
        read_pedigree(path)
    ped = read_pedigree(path, monoecious=True)
    assert list(ped.to_frame().set_index("id").loc["t", ["sire", "dam"]]) == ["r", "r"]
    with pytest.raises(PedigreeError, match="own parent"):  # selfing is not being one's own parent
        read_pedigree(write(tmp_path, "id,sire,dam\np,0,0\nq,p,q\n"), monoecious=True)


@pytest.mark.parametrize(
    "rows, loop",
    [
        # a two-cycle through the dam, entered from below
        ("f,0,0\nx,f,y\ny,f,x\nz,f,x\n", {"x", "y"}),
        # a long cycle through sires, listed in reverse, with a founder-side branch
        ("m,0,0\na,e,m\nb,a,m\nc,b,m\nd,c,m\ne,d,m\ng,a,m\n", {"a", "b", "c", "d", "e"}),
        # two separate loops: one of them is reported
        ("a,b,0\nb,a,0\nc,d,0\nd,c,0\n", None),
    ],
    ids=["two-cycle", "five-cycle", "two-loops"],
)
def test_loop_naming_shapes(tmp_path, rows, loop):
    path = write(tmp_path, "id,sire,dam\n" + rows)
    with pytest.raises(PedigreeError) as err:
        read_pedigree(path)
    msg = str(err.value)
    chain = msg.split("(animal -> parent): ")[1].split(" (")[0].split(" -> ")
    assert chain[0] == chain[-1] and len(set(chain)) == len(chain) - 1
    # every step of the printed chain is a real parent link of the file
    links = {(r.split(",")[0], p) for r in rows.strip().split("\n") for p in r.split(",")[1:]}
    assert all((a, b) in links for a, b in zip(chain, chain[1:]))
    assert set(chain) == loop if loop else set(chain) in ({"a", "b"}, {"c", "d"})

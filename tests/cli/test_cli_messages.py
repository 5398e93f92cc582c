"""Messages (issue 10, item 8): ``fit`` names the file, line and value of a non-numeric
response; a ``--fixed`` column error lists the file's columns; ``fit --drop-unknown``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from henderson.datasets import data_path, load_potato

POTATO = data_path("potato", "DT_example.csv")


def one_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("henderson: error: "), err
    return lines[0]


def test_fit_non_numeric_response_names_file_line_value(tmp_path, capsys):
    """The editor's line, counting a blank line the reader skips (pandas row 6 is line 9)."""
    lines = POTATO.read_text().splitlines()
    lines.insert(5, "")
    cells = lines[8].split(",")
    cells[5] = "n/a?"
    lines[8] = ",".join(cells)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    code, _, err = run_cli(
        ["fit", "--data", bad, "--formula", "Yield ~ Env + (1|Name)", "--out", tmp_path / "o"], capsys
    )
    assert code == 2
    msg = one_error(err)
    for part in (str(bad), "'n/a?'", "column 'Yield'", "line 9", f"Name {cells[0]!r}"):
        assert part in msg, (part, msg)
    assert bad.read_text().splitlines()[8].startswith(cells[0])  # line 9 of the file is that record


@pytest.mark.parametrize("cmd", ["gblup", "cv"])
def test_fixed_column_error_lists_the_files_columns(tmp_path, capsys, cmd):
    ph = tmp_path / "ph.csv"
    pd.DataFrame({"animal": ["a", "b", "c"], "herd": [1, 2, 1], "y": [1.0, 2.0, 3.0]}).to_csv(ph, index=False)
    args = [
        cmd,
        "--phenotypes",
        ph,
        "--trait",
        "y",
        "--id-column",
        "animal",
        "--fixed",
        "herd + year",
        "--grm",
        tmp_path / "never-read.csv",
        "--out",
        tmp_path / "o",
    ]
    if cmd == "cv":
        args[1:1] = ["--model", "gblup"]
    code, _, err = run_cli(args, capsys)
    assert code == 2
    msg = one_error(err)
    # the file's columns, the id column included (the internal frame has neither id nor y)
    assert "no column 'year' (see --fixed)" in msg and "'animal', 'herd', 'y'" in msg, msg


@pytest.fixture(scope="module")
def potato_known(tmp_path_factory):
    """A covariance (identity) and a pedigree (founders) for 38 of the 41 potato clones."""
    d = tmp_path_factory.mktemp("known")
    names = sorted(load_potato()["Name"].astype(str).unique())
    known, unknown = names[:38], names[38:]
    pd.DataFrame(np.eye(38), index=pd.Index(known, name="id"), columns=known).to_csv(d / "K.csv")
    pd.DataFrame({"id": known, "sire": "0", "dam": "0"}).to_csv(d / "ped.csv", index=False)
    return d, known, unknown


@pytest.mark.parametrize("opt", ["--cov", "--pedigree"])
def test_fit_drop_unknown(tmp_path, capsys, potato_known, opt):
    d, known, unknown = potato_known
    rel = (
        ["--cov", f"Name={d / 'K.csv'}"] if opt == "--cov" else ["--pedigree", d / "ped.csv", "--pedigree-term", "Name"]
    )
    base = ["fit", "--data", POTATO, "--formula", "Yield ~ Env + (1|Name)", *rel]
    code, _, err = run_cli(base + ["--out", tmp_path / "e"], capsys)
    assert code == 2
    msg = one_error(err)
    assert "--drop-unknown" in msg and all(repr(u) in msg for u in unknown), msg
    code, _, err = run_cli(base + ["--drop-unknown", "--out", tmp_path / "o", "-q"], capsys)
    assert code == 0, err
    p = load_potato()
    n_drop = int((~p["Name"].astype(str).isin(known)).sum())
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert any(f"dropped {n_drop} record(s) of 3 level(s) of 'Name'" in n for n in s["notes"]), s["notes"]
    assert s["results"]["fit"]["n_obs"] == len(p) - n_drop
    # an identity covariance over the kept clones is the iid model on the kept records;
    # both optimisers converge to ~1e-8 relative, 1e-6 leaves room for the solver paths
    from henderson import fit

    ref = fit("Yield ~ Env + (1|Name)", p[p["Name"].astype(str).isin(known)])
    vc = pd.read_csv(tmp_path / "o" / "variance_components.csv", index_col="term")
    np.testing.assert_allclose(vc["variance"].to_numpy(), ref.sigma2.to_numpy(), rtol=1e-6)

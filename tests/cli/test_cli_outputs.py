"""An output directory is one run (issue 10, item 1).

Every command writes into a staging directory beside ``--out`` and renames it into
place at the end: an error, Ctrl-C or a full disk leaves the previous results as they
were and no half-written file; a non-empty ``--out`` from another command or trait is
refused unless ``--force``; ``predict`` checks that ``snp_effects.csv`` and
``model.json`` come from one fit; output-path problems are one-line errors naming the
option, with exit code 2.
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli

from henderson.datasets import data_path, load_wheat

POTATO = data_path("potato", "DT_example.csv")
FIT = ["fit", "--data", POTATO, "--formula", "Yield ~ Env + (1|Name)", "-q"]


def snapshot(d: Path) -> dict:
    """Every file below ``d`` with the SHA-256 of its bytes."""
    return {
        p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def leftovers(parent: Path) -> list[str]:
    """Staging directories or files left next to the outputs."""
    return [p.name for p in parent.iterdir() if "henderson-tmp" in p.name]


def one_error(err: str, *words: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("henderson: error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def potato_run(tmp_path_factory):
    """A finished ``fit`` run (copied by the tests that need previous results)."""
    from henderson.cli.main import main

    d = tmp_path_factory.mktemp("prev") / "fit"
    assert main([str(a) for a in FIT + ["--out", d]]) == 0
    return d


@pytest.fixture
def previous(tmp_path, potato_run):
    out = tmp_path / "res"
    shutil.copytree(potato_run, out)
    return out, snapshot(out)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """30 wheat lines x 120 markers and two traits (snpblup / predict runs in ~1 s)."""
    d = tmp_path_factory.mktemp("small")
    w = load_wheat()
    m = (2 * w.markers.iloc[:30, :120]).copy().rename_axis("id")
    m.to_csv(d / "geno.csv")
    w.phenotypes.iloc[:30][["env1", "env2"]].rename_axis("id").reset_index().to_csv(d / "pheno.csv", index=False)
    return d


def snpblup(small, out, trait="env1", *extra):
    return [
        "snpblup",
        "--phenotypes",
        small / "pheno.csv",
        "--trait",
        trait,
        "--genotypes",
        small / "geno.csv",
        "--out",
        out,
        "-q",
        *extra,
    ]


# ------------------------------------------------------------------ one run, atomically


def test_run_records_command_and_trait(potato_run):
    s = json.loads((potato_run / "summary.json").read_text())
    assert s["run"]["command"] == "fit" and s["run"]["trait"] == "Yield" and len(s["run"]["run_id"]) == 32
    # every file of the directory is listed: the next run knows what it may replace
    assert sorted(s["outputs"]) == sorted(snapshot(potato_run))
    assert leftovers(potato_run.parent) == []
    # staged with mkdtemp (private), but the results get the permissions mkdir would give
    import os

    umask = os.umask(0o022)
    os.umask(umask)
    assert potato_run.stat().st_mode & 0o777 == 0o777 & ~umask


def test_full_disk_while_writing_report_keeps_previous_results(previous, monkeypatch, capsys):
    """report.html cut at 32 KiB by a full disk: the error names --out, nothing changes."""
    from henderson.report import html

    out, before = previous

    def full_disk(self, path):
        Path(path).write_text(self.render()[:32768], encoding="utf-8")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(html.Report, "write", full_disk)
    code, _, err = run_cli(FIT + ["--out", out], capsys)
    assert code == 2
    one_error(err, f"--out {out}", "no space left on device", "report.html", "previous results are unchanged")
    assert snapshot(out) == before and leftovers(out.parent) == []


def test_full_disk_without_a_file_name(tmp_path, monkeypatch, capsys):
    """ENOSPC raised at close (no file name) on a first run: nothing is left behind."""
    import henderson.cli._common as common

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(common.Session, "write_json", full)
    code, _, err = run_cli(FIT + ["--out", tmp_path / "new"], capsys)
    assert code == 2
    one_error(err, f"--out {tmp_path / 'new'}", "no space left on device", "nothing was written")
    assert list(tmp_path.iterdir()) == []


def test_error_mid_run_keeps_previous_results(previous, monkeypatch, capsys):
    """An internal error after some CSVs were written: no new CSVs next to the old files."""
    import henderson.cli._common as common

    out, before = previous

    def boom(self, *a, **k):
        raise RuntimeError("simulated bug after the CSVs were written")

    monkeypatch.setattr(common.Session, "write_summary", boom)
    code, _, err = run_cli(FIT + ["--out", out], capsys)
    assert code == 1 and "simulated bug" in err
    assert snapshot(out) == before and leftovers(out.parent) == []


def test_ctrl_c_mid_run_keeps_previous_results(previous, monkeypatch, capsys):
    from henderson.report import html

    out, before = previous

    def interrupt(self, path):
        Path(path).write_text("<html>half", encoding="utf-8")
        raise KeyboardInterrupt

    monkeypatch.setattr(html.Report, "write", interrupt)
    code, _, err = run_cli(FIT + ["--out", out], capsys)
    assert code == 130 and err.strip() == "henderson: interrupted"
    assert snapshot(out) == before and leftovers(out.parent) == []


def test_rerun_replaces_the_whole_directory(tmp_path, small, capsys):
    """Same command and trait: replaced, and files of the earlier run do not survive."""
    out = tmp_path / "g"
    assert (
        run_cli(
            [
                "gblup",
                "--phenotypes",
                small / "pheno.csv",
                "--trait",
                "env1",
                "--genotypes",
                small / "geno.csv",
                "--out",
                out,
                "-q",
            ],
            capsys,
        )[0]
        == 0
    )
    assert (out / "snp_effects.csv").exists()
    G = tmp_path / "G.csv"
    assert run_cli(["grm", "--genotypes", small / "geno.csv", "--out", G, "-q"], capsys)[0] == 0
    code, _, err = run_cli(
        ["gblup", "--phenotypes", small / "pheno.csv", "--trait", "env1", "--grm", G, "--out", out, "-q"], capsys
    )
    assert code == 0, err
    # from a GRM there are no SNP effects: a stale snp_effects.csv would pair with the new model.json
    assert not (out / "snp_effects.csv").exists()
    assert sorted(json.loads((out / "summary.json").read_text())["outputs"]) == sorted(snapshot(out))
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------ whose directory


def test_other_trait_refused_unless_force(tmp_path, small, capsys):
    out = tmp_path / "s"
    assert run_cli(snpblup(small, out), capsys)[0] == 0
    before = snapshot(out)
    code, _, err = run_cli(snpblup(small, out, "env2"), capsys)
    assert code == 2
    one_error(err, f"--out {out}", "'snpblup' on trait 'env1'", "trait 'env2'", "--force")
    assert snapshot(out) == before
    code, _, err = run_cli(snpblup(small, out, "env2", "--force"), capsys)
    assert code == 0, err
    assert json.loads((out / "model.json").read_text())["trait"] == "env2"


def test_other_command_refused_unless_force(previous, small, capsys):
    out, before = previous
    code, _, err = run_cli(snpblup(small, out), capsys)
    assert code == 2
    one_error(err, f"--out {out}", "'fit' on trait 'Yield'", "'snpblup' on trait 'env1'", "--force")
    assert snapshot(out) == before


def test_directory_not_written_by_henderson_is_never_replaced(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    for extra in ([], ["--force"]):
        code, _, err = run_cli(FIT + ["--out", out, *extra], capsys)
        assert code == 2
        one_error(err, f"--out {out}", "not empty", "no henderson summary.json", "'notes.txt'")
    assert snapshot(out) == {"notes.txt": hashlib.sha256(b"my notes").hexdigest()}


def test_users_files_beside_the_results_are_carried_over(previous, capsys):
    """A file and a directory of the user's next to the results (the README's tour runs
    inside henderson-demo/) survive the replacement; a file inside a directory henderson
    writes is refused."""
    out, _ = previous
    (out / "my_plot.png").write_bytes(b"\x89PNG")
    (out / "sub").mkdir()
    (out / "sub" / "notes.txt").write_text("mine")
    (out / "report.html").write_text("stale")
    code, _, err = run_cli(FIT + ["--out", out], capsys)
    assert code == 0, err
    assert (out / "my_plot.png").read_bytes() == b"\x89PNG" and (out / "sub" / "notes.txt").read_text() == "mine"
    assert (out / "report.html").read_text() != "stale"
    assert leftovers(out.parent) == []


def test_users_file_inside_demo_data_is_refused(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "data").mkdir()
    (out / "data" / "mine.csv").write_text("x")
    (out / "summary.json").write_text(
        json.dumps(
            {
                "command": "demo",
                "run": {"command": "demo", "trait": None},
                "outputs": ["summary.json", "data/potato.csv"],
            }
        )
    )
    (out / "data" / "potato.csv").write_text("old")
    code, _, err = run_cli(FIT + ["--out", out, "--force"], capsys)
    assert code == 2
    one_error(err, f"--out {out}", "did not write", "inside its own output")
    assert (out / "data" / "mine.csv").read_text() == "x"


def test_empty_directory_is_used(tmp_path, capsys):
    out = tmp_path / "empty"
    out.mkdir()
    assert run_cli(FIT + ["--out", out], capsys)[0] == 0
    assert (out / "report.html").exists()


# ------------------------------------------------------------------ predict: one fit


def test_predict_refuses_snp_effects_of_another_fit(tmp_path, small, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli(snpblup(small, a), capsys)[0] == 0
    assert run_cli(snpblup(small, b, "env2"), capsys)[0] == 0
    eff = pd.read_csv(a / "snp_effects.csv")
    meta = json.loads((a / "model.json").read_text())
    assert eff["fit_id"].nunique() == 1 and eff["fit_id"].iloc[0] == meta["fit_id"]
    # consistent pair: scores
    code, _, err = run_cli(
        ["predict", "--model", a, "--genotypes", small / "geno.csv", "--out", tmp_path / "p.csv"], capsys
    )
    assert code == 0, err
    # stale SNP effects next to another fit's model.json (the intercept would be wrong)
    shutil.copy(b / "snp_effects.csv", a / "snp_effects.csv")
    code, _, err = run_cli(
        ["predict", "--model", a, "--genotypes", small / "geno.csv", "--out", tmp_path / "p2.csv"], capsys
    )
    assert code == 2
    one_error(err, "snp_effects.csv", "model.json", "different fits")
    assert not (tmp_path / "p2.csv").exists() and leftovers(tmp_path) == []


# ------------------------------------------------------------------ output-path errors


@pytest.mark.parametrize("cmd", ["fit", "grm", "ainv"])
def test_out_below_a_file(tmp_path, small, capsys, cmd):
    f = tmp_path / "file.csv"
    f.write_text("x\n")
    out = f / "sub" / "result"
    args = {
        "fit": FIT,
        "grm": ["grm", "--genotypes", small / "geno.csv", "-q"],
        "ainv": ["ainv", "--pedigree", data_path("gryphon", "P_gryphon.csv"), "-q"],
    }[cmd]
    code, _, err = run_cli([*args, "--out", out], capsys)
    assert code == 2
    one_error(err, f"--out {out}", f"{f} is a file, not a directory")


def test_out_is_an_existing_file(tmp_path, capsys):
    f = tmp_path / "results"
    f.write_text("not a directory")
    code, _, err = run_cli(FIT + ["--out", f], capsys)
    assert code == 2
    one_error(err, f"--out {f}", "is a file", "names a directory")
    assert f.read_text() == "not a directory"


@pytest.mark.parametrize("cmd", ["grm", "predict"])
def test_file_out_is_an_existing_directory(tmp_path, small, capsys, cmd):
    d = tmp_path / "dir"
    d.mkdir()
    args = {
        "grm": ["grm", "--genotypes", small / "geno.csv"],
        "predict": ["predict", "--model", tmp_path, "--genotypes", small / "geno.csv"],
    }[cmd]
    if cmd == "predict":
        assert run_cli(snpblup(small, tmp_path / "m"), capsys)[0] == 0
        args[2] = tmp_path / "m"
    code, _, err = run_cli([*args, "--out", d], capsys)
    assert code == 2
    one_error(err, f"--out {d}", "is a directory", "names a file")


def test_missing_parent_directory(tmp_path, capsys):
    ped = data_path("gryphon", "P_gryphon.csv")
    code, _, err = run_cli(
        ["ainv", "--pedigree", ped, "--out", tmp_path / "A.csv", "--inbreeding", tmp_path / "nodir" / "F.csv", "-q"],
        capsys,
    )
    assert code == 2
    one_error(err, f"--inbreeding {tmp_path / 'nodir' / 'F.csv'}", f"{tmp_path / 'nodir'} does not exist")
    assert not (tmp_path / "A.csv").exists()  # checked before any work, nothing written
    code, _, err = run_cli(FIT + ["--out", tmp_path / "a" / "b"], capsys)
    assert code == 2
    one_error(err, f"--out {tmp_path / 'a' / 'b'}", "does not exist")


def test_read_only_file_system(tmp_path, monkeypatch, capsys):
    """EROFS when the staging directory is made: one line naming --out (checked before
    any work). A real read-only mount cannot be made without privileges, so mkdtemp
    raises what the kernel would."""
    import tempfile

    def ro(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", k.get("dir"))

    monkeypatch.setattr(tempfile, "mkdtemp", ro)
    for args in (
        FIT + ["--out", tmp_path / "o"],
        ["grm", "--genotypes", "never-read.csv", "--out", tmp_path / "G.csv"],
    ):
        code, _, err = run_cli(args, capsys)
        assert code == 2
        one_error(err, "--out", "cannot write in", "read-only file system")


def test_full_disk_on_a_file_output_keeps_the_old_file(tmp_path, small, monkeypatch, capsys):
    import henderson.relationships.grm_io as grm_io

    G = tmp_path / "G.csv"
    G.write_text("previous G\n")

    def full(rel, path, *a, **k):
        Path(path).write_text("id,half")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(grm_io, "write_relationship_csv", full)
    code, _, err = run_cli(["grm", "--genotypes", small / "geno.csv", "--out", G, "-q"], capsys)
    assert code == 2
    one_error(err, f"--out {G}", "no space left on device", "G.csv")
    assert G.read_text() == "previous G\n" and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "cmd,words",
    [
        ("grm", ["FILE (not a directory)", "PREFIX"]),
        ("ainv", ["FILE (not a directory)"]),
        ("predict", ["FILE (not a directory)"]),
        ("gblup", ["Output directory", "--force"]),
        ("cv", ["Output directory", "--force"]),
    ],
)
def test_help_says_what_out_is(cmd, words, capsys):
    code, out, _ = run_cli([cmd, "--help"], capsys)
    text = " ".join(out.split())
    assert code == 0 and all(w in text for w in words), text

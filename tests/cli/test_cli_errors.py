"""Errors of the command line: malformed and empty files, duplicate ids, strict JSON,
warnings in command-line words, --quiet and non-terminal output, the progress display.

Each bad file must give exit code 2 and exactly one line on stderr naming the file
(never "internal error", never a traceback).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli, run_script, strict_json

from henderson.datasets import load_wheat


def one_error_line(err: str, *names: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("henderson: error: "), line
    assert "internal error" not in line and "Traceback" not in line, line
    for n in names:
        assert n in line, (n, line)
    return line


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """40 wheat lines x 50 markers as CSV, PLINK, and their phenotypes."""
    from henderson import write_plink
    from henderson.data.genotypes import Genotypes

    d = tmp_path_factory.mktemp("bad")
    w = load_wheat()
    m = (2 * w.markers.iloc[:40, :50]).rename_axis("id")
    m.to_csv(d / "geno.csv")
    pd.DataFrame({"id": m.index, "y": w.phenotypes.loc[m.index, "env1"].to_numpy()}).to_csv(d / "ph.csv", index=False)
    write_plink(d / "ok", Genotypes.from_frame(m))
    return d


def _plink_copy(src: Path, dst: Path):
    for ext in (".bed", ".bim", ".fam"):
        (dst.parent / (dst.name + ext)).write_bytes((src.parent / (src.name + ext)).read_bytes())


# --------------------------------------------------------------------------- malformed genotype files


def test_truncated_bed(small, tmp_path, capsys):
    _plink_copy(small / "ok", tmp_path / "trunc")
    bed = tmp_path / "trunc.bed"
    bed.write_bytes(bed.read_bytes()[:100])
    code, _, err = run_cli(
        ["gblup", "-p", small / "ph.csv", "-t", "y", "-g", tmp_path / "trunc", "-o", tmp_path / "o"], capsys
    )
    assert code == 2
    one_error_line(err, "trunc")


def test_fam_with_fewer_rows_than_bed(small, tmp_path, capsys):
    _plink_copy(small / "ok", tmp_path / "short")
    fam = tmp_path / "short.fam"
    fam.write_text("".join(fam.read_text().splitlines(keepends=True)[:30]))
    code, _, err = run_cli(
        ["snpblup", "-p", small / "ph.csv", "-t", "y", "-g", tmp_path / "short.bed", "-o", tmp_path / "o"], capsys
    )
    assert code == 2
    one_error_line(err, "short")


def test_not_a_bed_file(small, tmp_path, capsys):
    _plink_copy(small / "ok", tmp_path / "junk")
    (tmp_path / "junk.bed").write_bytes(b"hello, I am not a PLINK file\n")
    code, _, err = run_cli(["grm", "-g", tmp_path / "junk", "-o", tmp_path / "G.csv"], capsys)
    assert code == 2
    one_error_line(err, "junk")


VCF_HEAD = "##fileformat=VCFv4.2\n##contig=<ID=1>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tA\tB\n"


@pytest.mark.slow  # the installed script in a subprocess
@pytest.mark.parametrize(
    "name, text",
    [
        ("junk.vcf", "this is not a VCF\n"),
        # a FORMAT field without its ##FORMAT header line: htslib prints its own warnings
        ("undefined_format.vcf", VCF_HEAD + "1\t10\ts1\tA\tG\t.\tPASS\t.\tDS\t0.5\t1\n"),
    ],
)
def test_malformed_vcf_subprocess(tmp_path, name, text):
    import cyvcf2  # noqa: F401 - a test extra: a missing reader must fail, not skip

    (tmp_path / name).write_text(text)
    (tmp_path / "ph.csv").write_text("id,y\nA,1\nB,2\n")
    p = run_script(["gblup", "-p", tmp_path / "ph.csv", "-t", "y", "-g", tmp_path / name, "-o", tmp_path / "o"])
    assert p.returncode == 2, p.stderr
    one_error_line(p.stderr, name)  # htslib's own [W::...] lines do not leak around it
    assert p.stdout == ""


def test_empty_genotype_file(small, tmp_path, capsys):
    (tmp_path / "empty.csv").write_text("")
    code, _, err = run_cli(
        ["gblup", "-p", small / "ph.csv", "-t", "y", "-g", tmp_path / "empty.csv", "-o", tmp_path / "o"], capsys
    )
    assert code == 2
    one_error_line(err, "empty.csv")


@pytest.mark.parametrize("opt", ["--phenotypes", "--pedigree"])
def test_empty_phenotype_and_pedigree_files(small, tmp_path, capsys, opt):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "ped.csv").write_text("id,sire,dam\nA,0,0\n")
    (tmp_path / "ph.csv").write_text("id,y\nA,1\n")
    args = {"--phenotypes": tmp_path / "empty.csv", "--pedigree": tmp_path / "ped.csv"}
    if opt == "--pedigree":
        args = {"--phenotypes": tmp_path / "ph.csv", "--pedigree": tmp_path / "empty.csv"}
    code, _, err = run_cli(
        ["pblup", "-t", "y", "-o", tmp_path / "o", *sum(([k, v] for k, v in args.items()), [])], capsys
    )
    assert code == 2
    one_error_line(err, "empty.csv")


def test_duplicate_id_in_csv_genotypes(tmp_path, capsys):
    (tmp_path / "dup.csv").write_text("id,s1,s2,s3\n775,0,1,2\n776,2,2,0\n775,1,2,0\n")
    (tmp_path / "ph.csv").write_text("id,y\n775,1\n776,2\n")
    code, _, err = run_cli(
        ["gblup", "-p", tmp_path / "ph.csv", "-t", "y", "-g", tmp_path / "dup.csv", "-o", tmp_path / "o"], capsys
    )
    assert code == 2
    line = one_error_line(err, "dup.csv", "'775'")
    assert re.search(r"lines? 2\b.*\b4\b", line), line  # both lines of id 775


def test_duplicate_id_in_fam(small, tmp_path, capsys):
    _plink_copy(small / "ok", tmp_path / "dupfam")
    fam = tmp_path / "dupfam.fam"
    rows = [r.split() for r in fam.read_text().splitlines()]
    rows[2][1] = rows[0][1]  # the third individual gets the first one's IID
    fam.write_text("\n".join(" ".join(r) for r in rows) + "\n")
    code, _, err = run_cli(["grm", "-g", tmp_path / "dupfam", "-o", tmp_path / "G.csv"], capsys)
    assert code == 2
    one_error_line(err, "dupfam", repr(rows[0][1]))


# --------------------------------------------------------------------------- the reading() wrapper


def test_reading_turns_reader_errors_into_data_errors(tmp_path):
    from henderson.cli._inputs import reading, sha256
    from henderson.errors import DataError, GenotypeError

    f = tmp_path / "x.bed"
    with pytest.raises(DataError, match=r"x\.bed: cannot read this PLINK file set: Ill-formed"):
        with reading(f, "PLINK file set"):
            raise ValueError("Ill-formed BED file")
    with pytest.raises(DataError, match=r"x\.bed: cannot read this VCF file: error parsing"):
        with reading(f, "VCF file"):
            raise Exception("error parsing genotypes")  # raised here, in a test: a third party
    with pytest.raises(GenotypeError, match=r"^.*x\.bed: duplicated individual ids: 'a'$"):
        with reading(f):
            raise GenotypeError("duplicated individual ids: 'a'")  # the file name is put in front
    with pytest.raises(GenotypeError, match=r"^x\.bed: bad$"):
        with reading(f):
            raise GenotypeError("x.bed: bad")  # already named: unchanged
    # a non-reader exception raised inside henderson's own code is a bug: it passes through
    with pytest.raises(TypeError):
        with reading(f):
            sha256(None)  # open(None) fails inside henderson's own sha256


def test_reader_errors_are_exit_2_and_bugs_exit_1(capsys):
    from henderson.cli._errors import describe
    from henderson.errors import DataError

    assert describe(DataError("f.csv: bad"))[1] == 2
    msg, code = describe(ZeroDivisionError("oops"))
    assert code == 1 and "internal error" in msg


# --------------------------------------------------------------------------- strict JSON


def test_summary_json_writes_null_for_nan(tmp_path, capsys, small):
    """A fold of 2 individuals has no correlation (NaN): summary.json must still be JSON."""
    ph = pd.read_csv(small / "ph.csv", dtype={"id": str})
    ph["fold"] = ["a"] * 19 + ["b"] * 19 + ["c"] * 2
    ph.to_csv(tmp_path / "ph.csv", index=False)
    code, _, err = run_cli(
        [
            "cv",
            "--model",
            "gblup",
            "-p",
            tmp_path / "ph.csv",
            "-t",
            "y",
            "-g",
            small / "geno.csv",
            "--fold-column",
            "fold",
            "--fixed-variances",
            "-o",
            tmp_path / "cv",
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    text = (tmp_path / "cv" / "summary.json").read_text()
    doc = strict_json(tmp_path / "cv" / "summary.json")
    assert "NaN" not in text and "Infinity" not in text
    m = pd.read_csv(tmp_path / "cv" / "cv_metrics.csv", dtype={"fold": str}).set_index("fold")
    assert np.isnan(m.loc["c", "r"])  # the NaN is real, and became null
    assert doc["inputs"][0]["role"] == "phenotypes" and doc["inputs"][0]["bytes"] > 0


def test_jsonable_nan_inf_numpy():
    from henderson.cli._common import _jsonable

    got = _jsonable(
        {
            "a": float("nan"),
            "b": np.float64("inf"),
            "c": [np.int64(3), np.bool_(True)],
            "d": pd.NA,
            "e": -np.inf,
            "f": 1.5,
        }
    )
    assert got == {"a": None, "b": None, "c": [3, True], "d": None, "e": None, "f": 1.5}
    json.dumps(got, allow_nan=False)


# --------------------------------------------------------------------------- CLI words, quiet, terminal


def test_warnings_and_errors_use_cli_words(tmp_path, capsys):
    from henderson.cli._errors import cli_words

    assert cli_words("Pass coding= to state it.") == "Pass --coding to state it."
    assert cli_words("pass coding='dosage' for dosage data") == "pass --coding dosage for dosage data"
    assert cli_words("(pass missing='drop' to drop them, counted)") == "(pass --drop-unknown to drop them, counted)"
    assert (
        cli_words("Use refit_variances=True for an honest estimate.")
        == "Drop --fixed-variances for an honest estimate."
    )
    # a -1/0/1 file is detected with a warning; the CLI says --coding, not coding=
    (tmp_path / "g.csv").write_text("id,s1,s2,s3\nA,-1,0,1\nB,1,1,-1\nC,0,-1,0\nD,1,0,0\n")
    (tmp_path / "ph.csv").write_text("id,y\nA,1\nB,2\nC,4\nD,3\n")
    code, _, err = run_cli(["grm", "-g", tmp_path / "g.csv", "-o", tmp_path / "G.csv"], capsys)
    assert code == 0, err
    assert "coding" in err and "coding=" not in err and "--coding" in err


def test_quiet_prints_nothing(tmp_path, capsys, small):
    code, out, err = run_cli(
        ["snpblup", "-p", small / "ph.csv", "-t", "y", "-g", small / "geno.csv", "-o", tmp_path / "o", "--quiet"],
        capsys,
    )
    assert code == 0
    assert out == "" and err == ""
    doc = json.loads((tmp_path / "o" / "summary.json").read_text())
    # warnings are kept, not printed: the coding of geno.csv was detected with a warning
    assert any("detected as '012'" in w for w in doc["warnings"]), doc["warnings"]


def test_not_a_terminal_no_progress(tmp_path, capsys, small):
    """Output to a file or pipe: results on stdout, no spinner or step times on stderr."""
    code, out, err = run_cli(
        ["gblup", "-p", small / "ph.csv", "-t", "y", "-g", small / "geno.csv", "-o", tmp_path / "o"], capsys
    )
    assert code == 0
    assert "Wrote" in out and "h² =" in out
    assert all(ln.startswith("henderson: warning: ") for ln in err.splitlines()), err
    assert "Reading" not in err and "Fitting" not in err


def test_progress_on_a_terminal():
    """On a terminal a step shows a spinner with its name; a counted step a bar with done/total."""
    from rich.console import Console

    from henderson.cli._common import Session

    s = Session("test")
    buf = io.StringIO()
    s.console = Console(file=buf, force_terminal=True, width=100)
    s.live = True
    with s.step("Cross-validating GBLUP", counted="folds") as update:
        update(3, 10, "repeat 0")
        update(10, 10)
    with s.step("Reading genotypes") as tick:
        tick(1, 2)  # a plain step ignores counts
    text = buf.getvalue()
    assert "Cross-validating GBLUP" in text and "10/10" in text and "folds" in text
    assert "Reading genotypes" in text
    assert set(s.timings) == {"Cross-validating GBLUP", "Reading genotypes"}


def test_zero_one_markers_need_coding(tmp_path, capsys):
    """0/1-only markers are ambiguous: exit 2 asking for --coding (CLI words); --coding 01
    reads them as inbred lines (counts 0/2), giving the G of the 0/2 file."""
    w = load_wheat()
    m = w.markers.iloc[:30, :80].rename_axis("id")
    m.to_csv(tmp_path / "g01.csv")
    (2 * m).to_csv(tmp_path / "g02.csv")
    code, _, err = run_cli(["grm", "-g", tmp_path / "g01.csv", "-o", tmp_path / "G.csv"], capsys)
    assert code == 2
    line = one_error_line(err, "g01.csv", "--coding")
    assert "coding=" not in line
    assert (
        run_cli(["grm", "-g", tmp_path / "g01.csv", "--coding", "01", "-o", tmp_path / "G01.csv", "-q"], capsys)[0] == 0
    )
    assert (
        run_cli(["grm", "-g", tmp_path / "g02.csv", "--coding", "012", "-o", tmp_path / "G02.csv", "-q"], capsys)[0]
        == 0
    )
    a = pd.read_csv(tmp_path / "G01.csv", index_col=0)
    b = pd.read_csv(tmp_path / "G02.csv", index_col=0)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), atol=1e-12)


# --------------------------------------------------------------- structured errors → options


def test_library_errors_carry_the_parameter_and_value_they_concern(tmp_path):
    """Issue 15: errors say which API parameter (and value) they concern."""
    from henderson.errors import AlignmentError, DataError, unknown_ids
    from henderson.io.genotypes import genotype_format, read_genotypes

    with pytest.raises(AlignmentError) as e:
        unknown_ids("2 id(s) not in G: 'a', 'b'", "error", dropped="")
    assert (e.value.parameter, e.value.value) == ("missing", "error")
    with pytest.raises(DataError) as e:
        genotype_format(tmp_path / "geno.xyz")
    assert e.value.parameter == "format"
    with pytest.raises(DataError) as e:
        read_genotypes(tmp_path / "geno.vcf", coding="dosage")
    assert (e.value.parameter, e.value.value) == ("coding", "dosage")


@pytest.mark.parametrize(
    ("parameter", "message", "expected", "absent"),
    [
        ("missing", "3 id(s) not in G (pass missing='drop' to drop them, counted)", "--drop-unknown", "missing="),
        ("coding", "non-integer values: pass coding='dosage' for dosage data", "--coding dosage", "coding="),
        ("coding", "coding detected; pass coding= to declare it", "pass --coding to declare", "coding="),
        ("selfing", "pass monoecious=True)", "--selfing", "monoecious"),
        ("format", "x.foo: pass format='plink', 'vcf' or 'csv'", "name it .bed/.bim/.fam", "format="),
    ],
)
def test_cli_maps_an_errors_parameter_to_its_option(parameter, message, expected, absent):
    """The CLI names its option where the library names its parameter, from one table."""
    from henderson.cli._errors import USER_ERROR, describe, option_of
    from henderson.errors import DataError

    msg, code = describe(DataError(message, parameter=parameter))
    assert code == USER_ERROR and expected in msg and absent not in msg, msg
    flag = option_of(parameter)  # format has no option: the file name says it
    assert (flag is None) == (parameter == "format") and (flag is None or flag in msg)


def test_a_structured_error_rewrites_only_its_own_parameter():
    """An error about ``missing`` keeps other API words as written (the table is per parameter)."""
    from henderson.cli._errors import describe
    from henderson.errors import AlignmentError

    msg, _ = describe(AlignmentError("pass missing='drop' (or coding='012')", parameter="missing"))
    assert "--drop-unknown" in msg and "coding='012'" in msg

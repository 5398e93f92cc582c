"""Ctrl-C (issue 10, item 2): ``henderson: interrupted``, exit code 130, no traceback,
at start-up or mid-run, and the previous results left as they were.

The subprocess tests run the installed console script in its own process group and
send SIGINT to the group, as a terminal's Ctrl-C does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SCRIPT, run_cli

from henderson.datasets import data_path

pytestmark = pytest.mark.slow  # real SIGINTs to the installed script in subprocesses

POTATO = data_path("potato", "DT_example.csv")
FIT = ["fit", "--data", POTATO, "--formula", "Yield ~ Env + (1|Name)"]

linux_only = pytest.mark.skipif(
    not Path("/proc/self/maps").exists(), reason="watches the child's start-up through /proc/PID/maps (Linux)"
)


def default_sigint():
    """Children of a shell's background job inherit an ignored SIGINT (Python then keeps
    it ignored): give the child the default, as a terminal's foreground job has."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(args):
    return subprocess.Popen(
        [SCRIPT, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, COLUMNS="200"),
        start_new_session=True,
        preexec_fn=default_sigint,
    )


def wait_for(cond, proc, timeout=120.0):
    t = time.monotonic()
    while not cond():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t < timeout, "timed out"
        time.sleep(0.005)


def ctrl_c(proc) -> tuple[int, str, str]:
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def fake_previous_run(out: Path) -> dict:
    """A results directory as an earlier 'fit' on Yield left it."""
    out.mkdir()
    (out / "report.html").write_text("<html>previous report</html>")
    (out / "summary.json").write_text(
        json.dumps(
            {"command": "fit", "run": {"command": "fit", "trait": "Yield"}, "outputs": ["report.html", "summary.json"]}
        )
    )
    return {p.name: p.read_bytes() for p in out.iterdir()}


def check_interrupted(code, err):
    assert code == 130, err
    assert "henderson: interrupted" in err and "Traceback" not in err and "Error" not in err, err


@linux_only
def test_ctrl_c_at_start_up(tmp_path):
    """SIGINT while the script is still importing numpy (before main() runs)."""
    proc = spawn(FIT + ["--out", tmp_path / "o"])

    def importing_numpy():
        try:
            return "_multiarray_umath" in Path(f"/proc/{proc.pid}/maps").read_text()
        except OSError:
            return False

    wait_for(importing_numpy, proc)
    assert not any(tmp_path.iterdir())  # main() has not started a run yet
    code, out, err = ctrl_c(proc)
    check_interrupted(code, err)
    assert out == "" and not any(tmp_path.iterdir())


def test_ctrl_c_mid_run_keeps_previous_results(tmp_path):
    """SIGINT once the run has started (its staging directory exists): the previous
    results are intact and the staging directory is gone."""
    out = tmp_path / "res"
    before = fake_previous_run(out)
    proc = spawn(FIT + ["--out", out])
    wait_for(lambda: any("henderson-tmp" in p.name for p in tmp_path.iterdir()), proc)
    code, _, err = ctrl_c(proc)
    check_interrupted(code, err)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]


def test_ctrl_c_that_a_reader_turns_into_a_parse_error_is_an_interruption(tmp_path, monkeypatch, capsys):
    """pandas' C reader turns a KeyboardInterrupt raised inside its read() into
    ``ParserError: ... Calling read(nbytes) on source failed``, with no exception chain
    (seen in CI: exit 2 and "cannot parse" instead of 130). Ctrl-C is remembered by the
    handler, so the run still ends as interrupted."""
    import henderson._startup as st
    import henderson.io.tables as tables

    def read_csv_cut_by_ctrl_c(*a, **k):
        try:
            os.kill(os.getpid(), signal.SIGINT)  # goes to the handler main() installed
            time.sleep(5)  # pragma: no cover - the signal arrives first
        except KeyboardInterrupt:
            pass  # what pandas' C reader does with it
        raise tables.pd.errors.ParserError("Error tokenizing data. C error: Calling read(nbytes) on source failed.")

    monkeypatch.setattr(st, "_RECEIVED", [False], raising=False)
    monkeypatch.setattr(tables.pd, "read_csv", read_csv_cut_by_ctrl_c)
    old = signal.signal(signal.SIGINT, st._quit)  # as the console script starts
    try:
        code, _, err = run_cli(FIT + ["--out", tmp_path / "res"], capsys)
    finally:
        signal.signal(signal.SIGINT, old)
    assert code == 130 and err.strip() == "henderson: interrupted"
    assert not (tmp_path / "res").exists()


def test_interrupt_inside_a_compiled_kernel_is_not_a_system_error(tmp_path, monkeypatch, capsys):
    """Ctrl-C inside a numba kernel can reach Python as ``SystemError: ... returned a
    result with an exception set`` caused by the KeyboardInterrupt: an interruption."""
    import henderson.relationships.pedigree as rp

    def kernel(*a, **k):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise SystemError("CPUDispatcher(<function _inbreeding>) returned a result with an exception set") from e

    monkeypatch.setattr(rp, "pedigree_inverse", kernel)
    code, out, err = run_cli(
        ["ainv", "--pedigree", data_path("gryphon", "P_gryphon.csv"), "--out", tmp_path / "A.csv"], capsys
    )
    assert code == 130 and err.strip() == "henderson: interrupted"
    assert list(tmp_path.iterdir()) == []


def test_interrupted_follows_the_exception_chain():
    from henderson.cli.main import interrupted

    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise ValueError("raised while handling Ctrl-C")  # noqa: B904 - the implicit chain is what is tested
    except ValueError as e:
        assert interrupted(e)
    assert not interrupted(SystemError("a real bug"))
    assert not interrupted(None)


def test_startup_guard_only_for_the_script():
    """Importing henderson in Python keeps Python's own Ctrl-C (KeyboardInterrupt)."""
    code = "import signal, henderson; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, preexec_fn=default_sigint
    )
    assert p.returncode == 0 and p.stdout.strip() == "True", p.stderr

"""The README's Python examples run as written."""

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs every README block and the CLI tour in subprocesses

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_block_runs(i, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = BLOCKS[i].replace('"/tmp/wheat"', repr(str(tmp_path / "wheat")))
    exec(compile(code, f"README block {i}", "exec"), {})


def test_readme_shows_both_setup_commands():
    text = README.read_text()
    assert "make demo" in text and "make test" in text


def test_readme_potato_output_is_what_summary_prints():
    """The summary the README shows is the one the code prints (spacing aside)."""
    import warnings

    import pandas as pd

    import henderson

    shown = re.search(r"prints\n\n```text\n(.*?)```", README.read_text(), flags=re.S).group(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = pd.read_csv(henderson.datasets.data_path("potato", "DT_example.csv"))
        printed = henderson.fit("Yield ~ Env + (1|Name)", data).summary()
    got = {" ".join(line.split()) for line in printed.splitlines() if line.strip()}
    for line in shown.splitlines():
        if line.strip():
            assert " ".join(line.split()) in got, line


def test_readme_command_line_tour_runs_as_written(tmp_path):
    """Every line of the README's command-line block, in a fresh ``henderson demo`` tree."""
    import os
    import shlex
    import subprocess
    import sys

    text = README.read_text()
    block = re.search(r"<!-- cli-tour[^>]*-->\n```bash\n(.*?)```", text, flags=re.S).group(1)
    script = Path(sys.executable).parent / "henderson"
    env = {**os.environ, "PATH": f"{script.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run(
        [str(script), "demo", "--out", "henderson-demo", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    cwd = tmp_path
    lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
    assert sum(ln.startswith("henderson ") for ln in lines) == 8
    for line in lines:
        if line.startswith("cd "):
            cwd = cwd / line[3:].strip()
            continue
        argv = shlex.split(line) + ["--quiet"]
        run = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env)
        assert run.returncode == 0, f"{line}\n{run.stderr}"
    assert (cwd / "new_gebv.csv").exists() and (cwd / "cv" / "cv_metrics.csv").exists()

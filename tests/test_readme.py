"""The README's Python examples run as written."""

import re
from pathlib import Path

import pytest

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

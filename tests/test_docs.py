"""The documentation: links and paths it names exist, and ``make docs`` builds cleanly.

Issue 15 item 8: the API reference is generated from the numpydoc docstrings by MkDocs
with mkdocstrings, and a warning (an unparsable docstring section, a broken
cross-reference) fails the build.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target)
PATH = re.compile(r"`((?:src|tests|benchmarks|docs)/[\w./-]+?)(?:::[\w\[\]-]+)?`")  # `tests/x.py::name`
PY_FILE = re.compile(r"`([\w./-]+\.py)(?:::[\w\[\]-]+)?`")  # `reml/general.py`, `test_x.py`
TESTS = {p.name for p in (ROOT / "tests").rglob("test_*.py")}


def _code_file_exists(name: str) -> bool:
    """A .py file named in the docs: from the root, under src/henderson/, or a test module."""
    if any((base / name).exists() for base in (ROOT, ROOT / "src", ROOT / "src" / "henderson")):
        return True
    return "/" not in name and name in TESTS


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    missing = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # web addresses and anchors within the page
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            missing.append(target)
    assert not missing, f"{page.name} links to files that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_named_repository_paths_exist(page):
    missing = sorted({p for p in PATH.findall(page.read_text()) if "*" not in p and not (ROOT / p).exists()})
    assert not missing, f"{page.name} names paths that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_named_code_files_exist(page):
    missing = sorted({f for f in PY_FILE.findall(page.read_text()) if not _code_file_exists(f)})
    assert not missing, f"{page.name} names .py files that do not exist: {missing}"


@pytest.mark.slow  # builds the whole site (about 1 s, plus mkdocs start-up)
def test_docs_build_without_warnings(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    assert mkdocs is not None, "mkdocs is in the test extra: reinstall with make test"
    run = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("fit", "GBLUP", "genomic_relationship", "single_step_inverse", "association"):
        assert name in api, f"the API page lacks {name}"

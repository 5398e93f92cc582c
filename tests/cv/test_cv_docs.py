"""docs/cross_validation.md runs as written, and shows what it prints.

The page's Python blocks run in order as one script (as a reader would paste them),
in a temporary directory (the figures go to its docs/img/); every line they print must
appear verbatim on the page, so the tables and numbers there are the code's current
output. Wheat is small: the whole page takes a few seconds.
"""

import contextlib
import io
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

pytestmark = pytest.mark.slow  # runs the cross-validation page as a script

DOC = Path(__file__).resolve().parents[2] / "docs" / "cross_validation.md"


def run_page(workdir: Path) -> str:
    """Run every ```python block of the page in one namespace; return what it printed."""
    text = DOC.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    (workdir / "docs" / "img").mkdir(parents=True, exist_ok=True)
    ns, out = {"__name__": "__doc__"}, io.StringIO()
    with contextlib.redirect_stdout(out):
        for i, code in enumerate(blocks):
            exec(compile(code, f"{DOC.name} block {i}", "exec"), ns)
    plt.close("all")
    return out.getvalue()


def test_cross_validation_page_runs_and_matches_its_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    printed = run_page(tmp_path)
    page = DOC.read_text().splitlines()
    lines = [ln for ln in printed.splitlines() if ln.strip()]
    assert len(lines) > 30  # both per-fold tables, the models table, LOO, leave-environment-out
    missing = [ln for ln in lines if ln not in page]
    assert not missing, "printed but not on the page (re-run the page and paste):\n" + "\n".join(missing)
    for png in ("cv_wheat_obs_vs_pred.png", "cv_wheat_models.png"):
        assert (tmp_path / "docs" / "img" / png).stat().st_size > 20_000

"""Shared test data and helpers.

Fixtures are found by pytest; the plain helpers are imported (``from conftest import
run_cli``), as ``load_ref`` always has been.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REFS = Path(__file__).parent / "data" / "refs"
#: this environment's console script (installed by `make test`), never another on PATH
SCRIPT = str(Path(sys.executable).parent / "henderson")


def load_ref(name: str) -> dict:
    with open(REFS / name) as fh:
        return json.load(fh)


@pytest.fixture(scope="session")
def refs_dir() -> Path:
    return REFS


@pytest.fixture(scope="module")
def potato() -> pd.DataFrame:
    from henderson.datasets import load_potato

    return load_potato()


# ----------------------------------------------------------------- independent formulas


def identity_frame(ids) -> pd.DataFrame:
    """K = I as a DataFrame labelled by ``ids``."""
    return pd.DataFrame(np.eye(len(ids)), index=ids, columns=ids)


def dummies(values) -> np.ndarray:
    """Indicator matrix of the levels of ``values`` (n × levels, levels sorted as text)."""
    v = np.asarray(values).astype(str)
    return (v[:, None] == np.unique(v)[None, :]).astype(float)


def tabular_A(rows) -> tuple[np.ndarray, list]:
    """Tabular A for rows (id, sire, dam) listed parents first, by the textbook rules.

    a_ij = (a_j,s + a_j,d)/2 for j before i; a_ii = 1 + a_sd/2, which for a selfed
    individual (s = d) is 1 + a_ss/2 = 1 + (1 + F_s)/2. Unknown parents contribute 0.
    Independent of henderson's kernels. Returns (A, ids).
    """
    index = {r[0]: k for k, r in enumerate(rows)}
    n = len(rows)
    A = np.zeros((n, n))
    for i, (_, s, d) in enumerate(rows):
        si, di = index.get(s), index.get(d)
        for j in range(i):
            A[i, j] = A[j, i] = 0.5 * (A[j, si] if si is not None else 0.0) + 0.5 * (
                A[j, di] if di is not None else 0.0
            )
        A[i, i] = 1.0 + (0.5 * A[si, di] if si is not None and di is not None else 0.0)
    return A, [r[0] for r in rows]


# ----------------------------------------------------------------- the command line


def run_cli(args, capsys):
    """In-process run of the CLI: (exit code, stdout, stderr)."""
    from henderson.cli.main import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def run_script(args, **env):
    """The installed console script in a subprocess, as a user runs it (C libraries
    such as htslib write to the real stderr there)."""
    e = dict(os.environ, COLUMNS="200", **env)
    return subprocess.run([SCRIPT, *map(str, args)], capture_output=True, text=True, env=e, timeout=180)


def strict_json(path) -> dict:
    """Parse a JSON file, failing on the non-JSON constants NaN / Infinity."""

    def refuse(token):
        raise AssertionError(f"{path} holds {token}, which is not JSON")

    return json.loads(Path(path).read_text(), parse_constant=refuse)


# ----------------------------------------------------------------- shared examples

# 20 animals over four generations; 8 genotyped (3, 5, 9, 12, 14, 16, 18, 20), some
# inbred (17 × 18 share grandparents), unknown parents on a few non-founders.
SINGLE_STEP_PED = [
    ("1", None, None),
    ("2", None, None),
    ("3", None, None),
    ("4", None, None),
    ("5", "1", "2"),
    ("6", "1", "2"),
    ("7", "3", "4"),
    ("8", "3", None),
    ("9", "5", "7"),
    ("10", "6", "7"),
    ("11", "5", "8"),
    ("12", "6", "4"),
    ("13", "9", "10"),
    ("14", "9", "12"),
    ("15", "11", "10"),
    ("16", None, "12"),
    ("17", "13", "14"),
    ("18", "13", "15"),
    ("19", "17", "16"),
    ("20", "17", "18"),
]
SINGLE_STEP_GENOTYPED = ["3", "5", "9", "12", "14", "16", "18", "20"]


def mrode_example_3_1():
    ped = pd.DataFrame(
        {
            "id": [str(i) for i in range(1, 9)],
            "sire": [None, None, None, "1", "3", "1", "4", "3"],
            "dam": [None, None, None, None, "2", "2", "5", "6"],
        }
    )
    data = pd.DataFrame({"sex": ["M", "F", "F", "M", "M"]}, index=["4", "5", "6", "7", "8"])
    y = pd.Series([4.5, 2.9, 3.9, 3.5, 5.0], index=data.index, name="wwg")
    return ped, data, y


def dense_reml(Y, Xs, Kr, Sg, Se):
    """Multi-trait −2 log L_REML by brute force on the stacked data (all records of trait 1,
    then trait 2, ...): V = Σ_g ⊗ K_r + Σ_e ⊗ I, X block-diagonal of the traits' ``Xs``.

    Returns (−2 log L, P, y, V).
    """
    import scipy.linalg as sla

    n, t = Y.shape
    V = np.kron(Sg, Kr) + np.kron(Se, np.eye(n))
    X = sla.block_diag(*Xs)
    y = Y.T.ravel()
    Vi = np.linalg.inv(V)
    XVX = X.T @ Vi @ X
    P = Vi - Vi @ X @ np.linalg.solve(XVX, X.T @ Vi)
    m2ll = (n * t - X.shape[1]) * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + np.linalg.slogdet(XVX)[1] + y @ P @ y
    return m2ll, P, y, V


def brute_force_m2ll(y, X, ZKZ, sigma2, method="reml"):
    n, p = X.shape
    V = sigma2[-1] * np.eye(n)
    for s, M in zip(sigma2[:-1], ZKZ):
        V += s * M
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    P = Vi - Vi @ X @ np.linalg.solve(XtViX, X.T @ Vi)
    ldv = np.linalg.slogdet(V)[1]
    if method == "reml":
        return (n - p) * np.log(2 * np.pi) + ldv + np.linalg.slogdet(XtViX)[1] + y @ P @ y
    b = np.linalg.solve(XtViX, X.T @ Vi @ y)
    r = y - X @ b
    return n * np.log(2 * np.pi) + ldv + r @ Vi @ r


def pytest_addoption(parser):
    # tests/test_golden.py: rewrite tests/data/golden/*.json from the current code (only on purpose)
    parser.addoption(
        "--regen-golden",
        action="store_true",
        default=False,
        help="rewrite the golden-master FitResult files in tests/data/golden/ (see its README)",
    )


@pytest.fixture(scope="session")
def regen_golden(request) -> bool:
    return bool(request.config.getoption("--regen-golden"))


@pytest.fixture(autouse=True)
def _force_dense_guard(monkeypatch):
    """HENDERSON_FORCE_DENSE_GUARD=1: every henderson.linalg.dense_safe call takes its
    blocked route (blocks of 5 rows), to run a module's own tests through the guard."""
    if os.environ.get("HENDERSON_FORCE_DENSE_GUARD"):
        from henderson.linalg import dense_safe

        monkeypatch.setattr(dense_safe, "SAFE_ORDER", 0)
        monkeypatch.setattr(dense_safe, "BLOCK", 5)

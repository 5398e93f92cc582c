"""`import henderson` stays light: heavy dependencies load on first use (issue 15)."""

import subprocess
import sys

import pytest

import henderson

pytestmark = pytest.mark.slow  # times fresh interpreters

HEAVY = ("numba", "sklearn", "matplotlib", "dask", "scipy.optimize", "formulaic")


def test_import_loads_no_heavy_dependency():
    code = f"import sys, henderson; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported at start-up: {out.stdout.strip()}"


def test_every_public_name_resolves():
    for name in henderson.__all__:
        assert getattr(henderson, name) is not None, name
    assert henderson.fit.__module__ == "henderson.api"


def test_unknown_attribute_is_an_attribute_error():
    try:
        henderson.not_a_function  # noqa: B018
    except AttributeError as exc:
        assert "not_a_function" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_cli_help_loads_no_model_layer():
    code = (
        "import sys, runpy; sys.argv = ['henderson', '--help']\n"
        "try:\n    runpy.run_module('henderson.cli.main', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        f"print('LOADED', ','.join(m for m in {HEAVY!r} + ('henderson.api',) if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("LOADED"), out.stdout[-300:]


def test_association_is_the_function_whatever_is_imported_first():
    code = (
        "import henderson.gwas.report, henderson; "
        "print(callable(henderson.association), henderson.association.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "henderson.gwas"]

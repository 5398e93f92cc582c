# Two set-up commands from a fresh clone (only Python 3 and make needed):
#   make demo   - create .venv, install henderson, run the main job
#   make test   - create .venv, install the test extras, run the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-quick lint docs venv clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/henderson demo --out henderson-demo

# lint (ruff), formatting, types (mypy on src/), then every test, doctests included
test: lint
	$(PY) -m pytest

# the tests without the slow ones (subprocess CLI runs, README and docs pages): ~1-2 min
test-quick: $(STAMP)
	$(PY) -m pytest -m "not slow"

# the API reference from the numpydoc docstrings, and the docs pages, into site/ (warnings are errors)
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks tools
	$(VENV)/bin/ruff format --check src tests benchmarks tools
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) henderson-demo .pytest_cache site

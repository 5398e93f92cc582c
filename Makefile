# Two set-up commands from a fresh clone (only Python 3 and make needed):
#   make demo   - create .venv, install henderson, run the main job
#   make test   - create .venv, install the test extras, run the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test venv clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/henderson demo --out henderson-demo

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) henderson-demo .pytest_cache

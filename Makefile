# Two entry points that work on a fresh machine (Python 3.11 + pip; the first call installs into .venv):
#   make demo   run the pipeline on the embedded demo data (offline)
#   make test   run the test suite (unit tests, lint, dry run, the workflow on demo and real data)
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= 2

.PHONY: demo test test-fast install clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/snakemake --cores $(CORES)

test: $(VENV)/.installed
	$(PY) -m pytest

test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf results resources logs .snakemake

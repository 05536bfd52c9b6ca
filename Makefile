# Entry points that work on a fresh machine (Python 3.11 + pip; the first call installs into .venv):
#   make demo                      run the pipeline on the embedded demo data (offline)
#   make test                      run the test suite (unit tests, lint, dry run, the workflow on demo and real data)
#   make test-fast                 the tests not marked slow
#   make report                    the HTML report of the last run: report.html
#   make run CONFIG=my.yaml        the pipeline on your own config (and sample sheet); make report CONFIG=my.yaml
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= 2
CONFIG ?=
SNAKEMAKE := $(VENV)/bin/snakemake $(if $(CONFIG),--configfile $(CONFIG))

.PHONY: demo test test-fast install clean report run

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/snakemake --cores $(CORES)

run: $(VENV)/.installed
	$(SNAKEMAKE) --cores $(CORES)

report: $(VENV)/.installed
	$(SNAKEMAKE) --report report.html
	@echo "report: $(CURDIR)/report.html"

test: $(VENV)/.installed
	$(PY) -m pytest

test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf results resources logs .snakemake

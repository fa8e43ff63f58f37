# medlake: `make demo` runs the whole pipeline on generated data; `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PYTHON ?= python3
export MEDLAKE_HOME ?= $(CURDIR)/.medlake
export DAGSTER_HOME ?= $(MEDLAKE_HOME)/dagster_home
PATIENTS ?= 20
QUESTION ?= Which patients have poorly controlled diabetes, and what was their latest HbA1c?

.PHONY: install demo test bench dev clean

install: $(VENV)/.installed

# Pinned install: pyproject's direct pins plus requirements.lock for everything beneath.
$(VENV)/.installed: pyproject.toml requirements.lock assets/genomics/_calls.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	cd dbt_project && ../$(BIN)/dbt parse --profiles-dir . --quiet
	touch $@

demo: install
	$(BIN)/medlake generate --patients $(PATIENTS) --seed 42 --bad-files
	$(BIN)/medlake run
	$(BIN)/medlake ask "$(QUESTION)"

test: install
	$(PY) -m pytest

bench: install
	$(PY) bench/ingest.py
	$(PY) bench/ehr_build.py
	$(PY) bench/embed.py
	$(PY) bench/quality.py
	$(PY) bench/vcf.py
	$(PY) bench/sof.py
	$(PY) bench/dicom.py
	$(PY) bench/search.py
	$(PY) bench/ask.py
	$(PY) bench/writers.py
	$(PY) bench/chaos.py

dev: install
	$(PY) -c 'from medlake.pipeline import ensure_dagster_home; ensure_dagster_home()'
	$(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf .medlake dbt_project/target dbt_project/logs

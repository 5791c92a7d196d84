# Quick start: `make demo` and `make test` on a machine with python3 and make.
# The interpreter the venv is built with: scripts/pick-python.sh says which and why;
# `make PYTHON=/path/to/python3 ...` chooses another.
ifeq ($(origin PYTHON), undefined)
PYTHON := $(shell bash scripts/pick-python.sh)
endif
VENV := .venv
PY := $(VENV)/bin/python
# One stamp per interpreter: without this interpreter's stamp the venv is rebuilt from scratch
# (--clear); with it, a newer pyproject.toml or constraints.txt only reinstalls.
STAMP := $(VENV)/.installed$(subst /,_,$(PYTHON))

.PHONY: venv system netopeer2 lint typecheck unit test demo bench clean

$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "no usable python3: see scripts/pick-python.sh" >&2; exit 1; }
	$(PYTHON) -m venv $(if $(wildcard $(STAMP)),,--clear) $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages and services the tests use (OpenSSL, curl, PostgreSQL, yuma123 ...).
system:
	bash scripts/setup-system.sh

# netopeer2 on sysrepo, built into a cached prefix, and its Python bindings into the venv.
netopeer2: venv
	bash scripts/netopeer2-stack.sh

lint: venv
	$(VENV)/bin/ruff check zerotouch_plugin tests benchmarks
	$(VENV)/bin/ruff format --check zerotouch_plugin tests benchmarks
	$(VENV)/bin/lint-imports

typecheck: venv
	$(VENV)/bin/mypy

test: venv system netopeer2 lint typecheck
	$(PY) -m pytest -q

demo: venv
	$(VENV)/bin/zerotouch demo

bench: venv system
	$(PY) benchmarks/voucher_bench.py
	$(PY) benchmarks/enroll_bench.py
	$(PY) benchmarks/netconf_bench.py
	$(PY) benchmarks/discovery_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

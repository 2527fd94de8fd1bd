# Two entry points: `make run` (server with demo data) and `make test` (everything).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA_DIR ?= $(CURDIR)/.data
# make run HOST=127.0.0.1 PORT=8081; unset, serve uses JONOT_HOST / JONOT_PORT or 0.0.0.0:8080.
HOST ?=
PORT ?=
STAMP := $(VENV)/.installed
MDNS_TESTS := tests/test_lan_announce.py tests/test_lan_discover.py

.PHONY: run cli test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# exec: the server replaces the recipe's shell, so a signal to make (kill, Ctrl-C)
# reaches the server itself and stops it, instead of leaving it orphaned.
run: $(STAMP)
	exec $(VENV)/bin/jonot-local serve --demo --data-dir "$(DATA_DIR)" \
		$(if $(HOST),--host "$(HOST)") $(if $(PORT),--port "$(PORT)")

# The command line on the demo's data: make cli ARGS="user list"
cli: $(STAMP)
	JONOT_DATA_DIR="$(DATA_DIR)" $(VENV)/bin/jonot-local $(ARGS)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy jonot_local
	$(VENV)/bin/mypy sync
	sh tests/browser/ensure_chromium.sh
	$(PY) -m pytest -n 2 --dist loadgroup --timeout 600 $(MDNS_TESTS:%=--ignore=%)
	# mDNS announce/discover tests alone: under the whole parallel run they miss announcements
	$(PY) -m pytest --timeout 600 $(MDNS_TESTS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

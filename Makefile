# One command for the demo, one for the tests; each creates and fills .venv as needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_ROOT ?= demo-root

.PHONY: venv system-deps test demo lab bench lint clean

$(STAMP): pyproject.toml setup.py metahuman_lib/_kernels.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[train,cloud,dev]'
	touch $(STAMP)

# Bytecode as a regular install has it (pip compiles on install, not for -e): without it every
# command compiles the workbench's modules first (0.06 s of each `metahuman` run, measured).
venv: $(STAMP)
	$(PY) -m compileall -q metahuman_lib

system-deps:
	./scripts/install-system-deps.sh

test: system-deps venv
	$(PY) -m pytest -q

demo: venv
	$(VENV)/bin/metahuman demo --root $(DEMO_ROOT)

# JupyterLab on the notebooks: METAHUMAN_ROOT when set, else the demo root (its profile written first).
lab: venv
	@if [ -z "$$METAHUMAN_ROOT" ]; then $(VENV)/bin/metahuman demo-profile --root $(DEMO_ROOT) >/dev/null 2>&1 || true; fi
	METAHUMAN_ROOT="$${METAHUMAN_ROOT:-$(abspath $(DEMO_ROOT))}" $(VENV)/bin/jupyter lab --notebook-dir notebooks \
		$$([ "$$(id -u)" = 0 ] && echo --allow-root)

bench: venv
	for script in benchmarks/[!_]*.py; do $(PY) $$script || exit 1; done

lint: venv
	$(VENV)/bin/ruff check metahuman_lib tests
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) $(DEMO_ROOT) .pytest_cache

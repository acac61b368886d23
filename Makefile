# The two commands a newcomer needs: `make demo` and `make test`.
# Both install what they need (system packages, virtual environment) first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed

.PHONY: demo test system venv clean

system:
	@scripts/install-system-packages.sh

$(INSTALLED): pyproject.toml
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || scripts/install-system-packages.sh python3-venv
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	@touch $@

venv: $(INSTALLED)

test: system venv
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

demo: system venv
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/demo.sh

clean:
	rm -rf $(VENV) .pytest_cache demo-home

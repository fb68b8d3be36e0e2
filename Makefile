# Two entry points: `make demo` (set up, then train and sample the image recipe) and `make test`
# (set up, then lint, tests and the documentation build). Set-up is idempotent.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.resgen-installed
FASHION := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup data demo test lint docs bench clean

setup: $(STAMP) data

$(STAMP): pyproject.toml $(wildcard tools/install_*.sh) tools/check_pins.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	for script in $(wildcard tools/install_*.sh); do bash $$script $(PY) || exit 1; done
	touch $(STAMP)

# The recipe's data: Debian's dataset-fashion-mnist (apt-get update once, on a fresh machine).
data:
	@test -f $(FASHION) || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; }

demo: setup
	$(VENV)/bin/resgen train image-fashion --preset demo

lint: $(STAMP)
	$(VENV)/bin/ruff check resgen tests benchmarks experiments tools

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

test: setup lint
	$(PY) -m pytest
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) site runs

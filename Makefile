# The README's two commands: `make demo` (a real merge search on bench://digits) and `make test`.
# Each works on a fresh machine by itself: it makes .venv, installs torch 2.13.0 first (so no resolver
# ever pulls a newer, CUDA-sized torch), then the project.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0

.PHONY: install demo test lint serve clean docker-smoke

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/mergefront run examples/digits.yaml

serve: $(VENV)/.installed
	$(BIN)/mergefront serve

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Build the container images and run the compose stack end to end (docker/smoke.sh; Podman, several minutes).
docker-smoke: $(VENV)/.installed
	bash docker/smoke.sh

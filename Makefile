# Two commands: `make run` (demo with the shipped model) and `make test`.
# Both build .venv from scratch when it is missing or pyproject.toml changed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-all bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/arcodec demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ''

bench: $(STAMP)
	$(BIN)/python benchmarks/mnist_codec.py --limit 500
	$(BIN)/python benchmarks/train_throughput.py --steps 30
	$(BIN)/python benchmarks/toy_models.py
	$(BIN)/python benchmarks/readme.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

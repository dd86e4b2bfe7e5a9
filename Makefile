# Two commands: `make run` (demo with the shipped model) and `make test`.
# Both build .venv from scratch when it is missing or pyproject.toml changed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-all bench bench-full gallery clean

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

# quick benchmarks (18 minutes on 2 CPU cores with one other job running; most of it is the
# autoregressive decoders);
# bench-full: the whole MNIST test set and the 24 whole Kodak photos (several hours)
bench: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/compression.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/speed.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/determinism.py
	$(BIN)/python benchmarks/photos.py
	$(BIN)/python benchmarks/pixelcnn_step.py
	$(BIN)/python benchmarks/engine_precision.py
	$(BIN)/python benchmarks/plots.py
	$(BIN)/python benchmarks/train_throughput.py --steps 30
	$(BIN)/python benchmarks/toy_models.py
	$(BIN)/python benchmarks/readme.py

bench-full: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/compression.py --full
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/classical.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/speed.py --full
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/determinism.py --full
	$(BIN)/python benchmarks/photos.py --full
	$(BIN)/python benchmarks/photo_threads.py
	$(BIN)/python benchmarks/scale_offsets.py
	$(BIN)/python benchmarks/frontier.py --full
	$(BIN)/python benchmarks/gated_threads.py
	$(BIN)/python benchmarks/gated_threads.py --busy 1 --batches 16 32 128 512
	$(BIN)/python benchmarks/plots.py
	$(BIN)/python benchmarks/readme.py

# every figure of docs/gallery.md, from the shipped models (a few minutes on one CPU core)
gallery: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/gallery.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# seqtrain: `make run` trains on the built-in data, `make test` runs the tests.
# Both set up .venv first when needed (torch pinned to the local CPU build, 2.13.0).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# pip compiles bytecode one file at a time; compileall does it on every core afterwards (a third
# of a fresh install's time on 2 cores). A file that does not compile is only imported slower.
PIP := $(BIN)/pip install -q --disable-pip-version-check --no-compile
COMPILE := $(BIN)/python -m compileall -qq -j 0 $(VENV)/lib || true
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed

.PHONY: help install run test lint bench clean

help:            ## list the targets
	@grep -E '^[a-z]+:.*## ' Makefile | sed 's/:.*## /\t/'

install: $(DEV_STAMP) ## create .venv and install seqtrain with its dev tools

# Running needs the package alone; the tests add the dev extra (optional integrations included).
$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e . torch==2.13.0
	$(COMPILE)
	touch $(RUN_STAMP)

$(DEV_STAMP): $(RUN_STAMP)
	$(PIP) -e '.[dev]' torch==2.13.0
	$(COMPILE)
	touch $(DEV_STAMP)

run: $(RUN_STAMP) ## train the default LSTM on the built-in demo data (CPU)
	$(BIN)/seqtrain

test: $(DEV_STAMP) ## run the whole test suite
	$(BIN)/pytest -q -n 2 --dist worksteal

lint: $(DEV_STAMP)   ## ruff
	$(BIN)/ruff check .

bench: $(DEV_STAMP)  ## throughput, memory and learning benchmarks (results go in BENCHMARKS.md by hand)
	$(BIN)/python benchmarks/loader_throughput.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/step_breakdown.py
	$(BIN)/python benchmarks/allocator.py
	$(BIN)/python benchmarks/streaming_memory.py
	$(BIN)/python benchmarks/prepare_memory.py
	$(BIN)/python benchmarks/precision.py
	$(BIN)/python benchmarks/planted_signal.py
	$(BIN)/python benchmarks/static_inputs.py
	$(BIN)/python benchmarks/uea.py --baseline
	$(BIN)/python benchmarks/cases.py --sets generated JapaneseVowels
	$(BIN)/python benchmarks/predict_throughput.py
	$(BIN)/python benchmarks/pruning.py
	$(BIN)/python benchmarks/ddp_throughput.py
	$(BIN)/python benchmarks/compile_speed.py
	$(BIN)/python benchmarks/compile_kernels.py
	$(BIN)/python benchmarks/dropout_speed.py
	$(BIN)/python benchmarks/gpu_resident.py
	$(BIN)/python benchmarks/forecast_quality.py
	$(BIN)/python benchmarks/sweep_honesty.py
	$(BIN)/python benchmarks/peers.py --setup
	$(BIN)/python benchmarks/peers.py --models nhits lstm patchtst tcn "lstm instance_norm=none" --peers darts:BlockRNNModel darts:TiDEModel darts:TCNModel nf:NHITS

clean:           ## remove run folders and caches (keeps .venv)
	rm -rf outputs multirun .pytest_cache .ruff_cache .hypothesis

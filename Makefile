# Two commands from a fresh clone: `make demo` and `make test`. Both create or reuse .venv
# and install what they need; constraints.txt pins the local CPU build of torch so pip never
# resolves a multi-GB CUDA build here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.demo-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e ".[demo]"
	touch $@

$(VENV)/.dev-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e ".[dev,demo]"
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(BIN)/python examples/digits_mlp.py

test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -q

# Benchmarks run alone (torch spin-waits: any other load skews them). PyTorch Geometric is
# installed here for the graph comparison only; lamina itself never needs it.
bench: $(VENV)/.demo-installed
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)
	$(PIP) torch_geometric
	$(BIN)/python benchmarks/bench_graph.py

clean:
	rm -rf $(VENV) demo_output

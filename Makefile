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
# PEERS=1 adds Keras 3 on its torch, jax and tensorflow backends as systems (W1, W2, W4), from
# a venv of its own (.venv-peers: 2.9 GB, ~1 min to install here); a backend whose package does
# not install is skipped with a message.
PEERS_VENV := .venv-peers
PEERS_PIP  := $(PEERS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

$(PEERS_VENV)/.installed: constraints.txt
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_PIP) keras torch
	$(PEERS_PIP) jax || echo "jax did not install: keras-jax will be skipped"
	$(PEERS_PIP) tensorflow-cpu || $(PEERS_PIP) tensorflow || echo "tensorflow did not install: keras-tensorflow will be skipped"
	touch $@

# lamina is installed editable: byte-compile it as pip compiles an installed package, so W5
# (start-up) times imports, not compiling lamina's sources (with PYTHONDONTWRITEBYTECODE=1, as
# here, they would be compiled again at every start: ~0.1-0.25 s).
$(VENV)/.bench-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e ".[demo,bench]"
	touch $@ $(VENV)/.demo-installed

bench: $(VENV)/.bench-installed $(if $(PEERS),$(PEERS_VENV)/.installed)
	$(BIN)/python -m compileall -q lamina
	$(BIN)/python benchmarks/bench.py $(if $(PEERS),--peers $(PEERS_VENV)/bin/python) $(BENCH_ARGS)
	$(PIP) torch_geometric
	$(BIN)/python benchmarks/bench_graph.py

clean:
	rm -rf $(VENV) .venv-peers demo_output

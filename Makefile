# The two commands of the README: `make demo` and `make test`. Each sets up
# .venv (the tested torch pair pinned by requirements.txt) on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench bench-gpu install clean

$(STAMP): pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/vireid demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_evaluation.py --append-to BENCHMARKS.md
	$(BIN)/python benchmarks/bench_data.py --append-to BENCHMARKS.md
	$(BIN)/python benchmarks/bench_train_step.py --config configs/tiny.yaml --steps 10 --variants fp32 bf16 --append-to BENCHMARKS.md
	$(BIN)/python benchmarks/bench_inference.py --config configs/sysu_full.yaml --append-to BENCHMARKS.md

# On a GPU machine: the same figures on the device (paper's model at 288x144, fp32 / bf16 / channels-last / compile; eager inference).
bench-gpu: $(STAMP)
	$(BIN)/python benchmarks/bench_evaluation.py --device cuda --append-to BENCHMARKS.md
	$(BIN)/python benchmarks/bench_train_step.py --config configs/sysu_full.yaml --device cuda --steps 20 --append-to BENCHMARKS.md
	$(BIN)/python benchmarks/bench_inference.py --config configs/sysu_full.yaml --device cuda --append-to BENCHMARKS.md

clean:
	rm -rf runs .pytest_cache

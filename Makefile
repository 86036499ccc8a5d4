# The two commands of the README: `make demo` and `make test`. Each sets up
# .venv (the tested torch pair pinned by requirements.txt) on first use.
# `make test-slow` runs the long end-to-end tests that `make test` leaves out
# (CI runs both); `make test` first checks the code with ruff (pyproject.toml);
# `make example` walks through the README's search example.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow example bench bench-gpu gpu-check install clean

$(STAMP): pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/vireid demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# The README's "Search your own images": a gallery list of the demo's test people
# seen by the visible cameras, two infrared images and a broken file as queries.
DEMO_DATA := runs/demo/data/SYSU-MM01
example: runs/demo/run/last.pt
	mkdir -p runs/example/night
	cd runs/example && for id in $$(tr ',' ' ' < ../demo/data/SYSU-MM01/exp/test_id.txt); do \
	  ls ../demo/data/SYSU-MM01/cam[1245]/$$(printf %04d $$id)/*.jpg 2>/dev/null; done > day_cameras.txt
	cp $(DEMO_DATA)/cam3/0026/0002.jpg runs/example/night/person_a.jpg
	cp $(DEMO_DATA)/cam6/0075/0001.jpg runs/example/night/person_b.jpg
	echo "not an image" > runs/example/night/notes.jpg
	$(BIN)/vireid extract runs/demo/run/last.pt --images runs/example/day_cameras.txt --modality visible --out runs/example/day.npz
	$(BIN)/vireid index runs/example/day.npz --out runs/example/day_index.npz
	$(BIN)/vireid search runs/example/day_index.npz --images runs/example/night --checkpoint runs/demo/run/last.pt \
	    --modality infrared --top-k 5 --json runs/example/hits.json --picture runs/example/hits.png

runs/demo/run/last.pt:
	$(MAKE) demo

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_evaluation.py --append-to BENCHMARKS.md
	$(BIN)/python benchmarks/bench_data.py --append-to BENCHMARKS.md
	$(BIN)/python benchmarks/bench_rerank.py --append-to BENCHMARKS.md
	$(BIN)/python benchmarks/bench_train_step.py --config tiny --steps 10 --variants fp32 bf16 --append-to BENCHMARKS.md
	$(BIN)/python benchmarks/bench_inference.py --config sysu_full --append-to BENCHMARKS.md

# On a GPU machine: the same figures on the device (paper's model at 288x144, fp32 / bf16 / channels-last / compile;
# eager inference; re-ranking; where a step's time goes).
bench-gpu: $(STAMP)
	$(BIN)/python benchmarks/bench_evaluation.py --device cuda --append-to BENCHMARKS.md
	$(BIN)/python benchmarks/bench_rerank.py --device cuda --append-to BENCHMARKS.md
	$(BIN)/python benchmarks/bench_train_step.py --config sysu_full --device cuda --steps 20 --append-to BENCHMARKS.md
	$(BIN)/python benchmarks/bench_inference.py --config sysu_full --device cuda --append-to BENCHMARKS.md
	$(BIN)/python benchmarks/profile_train_step.py --config sysu_full --device cuda --channels-last --append-to BENCHMARKS.md

# Every CUDA path run and checked on the GPU (benchmarks/gpu_check.py), a dated table appended to
# BENCHMARKS.md; on a machine without CUDA it says so in one line and exits 0.
gpu-check: $(STAMP)
	@$(BIN)/python benchmarks/gpu_check.py --append-to BENCHMARKS.md

clean:
	rm -rf runs .pytest_cache

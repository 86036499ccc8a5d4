# The two commands of the README: `make demo` and `make test`. Each sets up
# .venv (the tested torch pair pinned by requirements.txt) on first use. `make docs` builds the site.
# `make test-slow` runs the long end-to-end tests that `make test` leaves out
# (CI runs both); `make test` first checks the code with ruff (pyproject.toml);
# `make example` walks through the docs' search example (docs/deployment.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow example docs docs-pictures bench bench-gpu gpu-check install clean

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

# The docs' "Search your own images": a gallery list of the demo's test people
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

# The documentation site (mkdocs.yml, docs/) into site/, strictly: a broken link, a missing page or a
# docstring that does not render fails. Its tools are the `docs` extra, pinned in requirements.txt.
DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c requirements.txt -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Every picture in docs/, made again by the commands it illustrates, on the demo's synthetic data
# (a fresh demo run, the search example, a results-by-camera heat map and a small sweep; about 6 minutes
# on 2 CPU cores). The commands' printed output goes to runs/docs-pictures.log.
docs-pictures: $(STAMP)
	$(BIN)/vireid demo > runs/docs-pictures.log 2>&1 || (cat runs/docs-pictures.log; exit 1)
	$(MAKE) --no-print-directory example >> runs/docs-pictures.log 2>&1
	$(BIN)/vireid evaluate --features runs/demo/run/features.npz --protocol sysu-all --by-camera \
	    --picture docs/cameras.png >> runs/docs-pictures.log
	rm -rf runs/docs-sweep
	$(BIN)/vireid sweep tiny --grid loss.alpha=0.4,1.2 --grid loss.beta=0.2,0.4 --seeds 2 --out runs/docs-sweep \
	    --set data.root=$(DEMO_DATA) --set data.height=32 --set data.width=16 --set train.epochs=1 \
	    --set train.steps_per_epoch=2 --set train.eval_every=0 --quiet >> runs/docs-pictures.log
	cp runs/demo/run/cmc.png docs/cmc.png
	cp runs/demo/run/ranks_sysu-all.png docs/rank_list.png
	cp runs/demo/run/tsne.png docs/tsne.png
	cp runs/example/hits.png docs/search_hits.png
	cp runs/docs-sweep/sweep.png docs/sweep.png

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

# Every CUDA path run and checked on the GPU (benchmarks/gpu_check.py), then how fast the engine's own
# training step and a short run are (benchmarks/speed_check.py); each appends a dated table to BENCHMARKS.md.
# On a machine without CUDA each says so in one line and exits 0.
gpu-check: $(STAMP)
	@$(BIN)/python benchmarks/gpu_check.py --append-to BENCHMARKS.md
	@$(BIN)/python benchmarks/speed_check.py --append-to BENCHMARKS.md

clean:
	rm -rf runs .pytest_cache

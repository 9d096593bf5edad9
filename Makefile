# Developer shortcuts. The README's quick start uses scripts/run.sh and scripts/test.sh.
VENV ?= .venv
PY := $(VENV)/bin/python
# Fail `make bench-check` when a median regresses by more than this against the last saved run.
BENCH_REGRESSION ?= median:25%

.PHONY: setup test bench bench-check readme lint schema

setup:
	EXTRAS=dev scripts/setup.sh

test:
	scripts/test.sh

# Run the benchmarks, save the JSON under .benchmarks/ (git-ignored) and compare with
# the previous saved run when there is one. Numbers only: nothing fails on speed here.
bench:
	$(PY) -m pytest bench -q --benchmark-autosave --benchmark-storage=.benchmarks \
	  $$(ls .benchmarks/*/*.json >/dev/null 2>&1 && echo --benchmark-compare)

# The same, failing on a regression beyond BENCH_REGRESSION (e.g. in a perf CI job).
bench-check:
	$(PY) -m pytest bench -q --benchmark-autosave --benchmark-storage=.benchmarks \
	  --benchmark-compare --benchmark-compare-fail=$(BENCH_REGRESSION)

# Regenerate the README's generated sections: wire schema and performance table.
readme:
	$(PY) scripts/update_readme.py

lint:
	$(VENV)/bin/ruff check engine transport cli bench tests

schema:
	$(PY) -m tormentor.transport.codec --markdown

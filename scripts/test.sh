#!/usr/bin/env bash
# Quick start, command 2: set up, then run the whole test suite (unit, NATS, Tor)
# and the benchmarks once as a smoke test.
#   ./scripts/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=dev scripts/setup.sh
.venv/bin/tormentor-engine data fetch --if-missing
# Compile every Numba kernel once into the user cache, so no test pays the cold compile.
.venv/bin/tormentor-engine warmup
.venv/bin/python -m pytest tests "$@"
.venv/bin/python -m pytest bench --benchmark-disable -q

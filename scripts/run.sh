#!/usr/bin/env bash
# Quick start, command 1: set up, then run the paper's credit experiment end to end.
#   ./scripts/run.sh [extra arguments for `tormentor-engine run`, e.g. --set tor.mode=off]
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=all scripts/setup.sh
.venv/bin/tormentor-engine data fetch --if-missing
exec .venv/bin/tormentor-engine run configs/credit.yaml "$@"

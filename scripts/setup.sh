#!/usr/bin/env bash
# Idempotent setup: .venv with tormentor-engine and its extras, plus the tor daemon.
#   EXTRAS=all (default) for running, EXTRAS=dev for the tests and benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-all}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "error: tormentor-engine needs Python 3.10 or newer; '$PYTHON' is $("$PYTHON" --version 2>&1)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv; then
    echo "error: could not create .venv; on Debian/Ubuntu install it with: sudo apt-get install -y python3-venv" >&2
    exit 1
  fi
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${EXTRAS}]"

# tor: the broker is an onion service (tor.mode: private needs tor and tor-gencert).
if ! command -v tor >/dev/null 2>&1 || ! command -v tor-gencert >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tor >/dev/null
  elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tor >/dev/null
  else
    echo "warning: tor is not installed and cannot be installed here; install the 'tor' package" >&2
    echo "         (Debian/Ubuntu: apt-get install tor) or run with --set tor.mode=off" >&2
  fi
fi

#!/usr/bin/env bash
# Create .venv and install onespike (editable) with the pinned dependencies of constraints.txt.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.onespike-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -c constraints.txt -e '.[dev,nir]'
    # the NIR consumer used by tests/test_nir_consumer.py and scripts/nir_consumer.py
    .venv/bin/python -m pip install --quiet -c constraints.txt nirtorch norse --no-deps
    touch "$stamp"
fi

#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine of this kind (Debian, root), then
# run it: the Fashion-MNIST files (Debian package dataset-fashion-mnist), the pinned Python
# environment (.venv, scripts/setup.sh), ruff, mypy (on src/) and pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
    fi
fi
bash scripts/setup.sh
.venv/bin/ruff check src tests scripts benchmarks
.venv/bin/mypy
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"

#!/usr/bin/env bash
# The project's checks: lint, then the test suite (GPU/TensorRT/Jetson tests skip themselves where
# the hardware or package is absent). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
"$PY" -m ruff check edgevae tests benchmarks
"$PY" -m pytest -q "$@"

#!/usr/bin/env bash
# Install edgevae into the current Python, with optional extras: `scripts/install.sh dev`.
#
# torch: a torch that is already installed (CUDA, ROCm, Jetson wheel, CPU) is kept. Without one,
# torch==$EDGEVAE_TORCH (default 2.13.0) is installed: pip takes the CPU build where the platform
# provides one locally (as on our build machines), and the platform's default build elsewhere.
# Set EDGEVAE_TORCH to another version, or install torch yourself first, to choose differently.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
extras="${1:-}"
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "edgevae install: no torch found, installing torch==${EDGEVAE_TORCH:-2.13.0}"
  "$PY" -m pip install -q "torch==${EDGEVAE_TORCH:-2.13.0}"
fi
"$PY" -m pip install -q -e ".${extras:+[$extras]}"
echo "edgevae install: done ($("$PY" -c 'import edgevae, torch; print("edgevae", edgevae.__version__, "/ torch", torch.__version__)'))"

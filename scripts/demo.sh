#!/usr/bin/env bash
# Set up .venv if needed and run the offline demo (synthetic images, tiny models, no network).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/featuregen demo "$@"

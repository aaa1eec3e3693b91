#!/usr/bin/env bash
# Set up .venv if needed, lint, and run the whole test suite against a real PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Debian's chromium for the browser test; where it cannot be installed the script says why in
# one line and the browser test skips, saying so.
scripts/ensure-chromium.sh || true
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"

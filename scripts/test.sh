#!/usr/bin/env bash
# Set up .venv if needed, lint, and run the whole test suite against a real PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# Regenerate docs/search-page.png from the demo: runs the demo first when FEATUREGEN_HOME
# (default .featuregen) holds no store yet, then scripts/screenshot_page.py (its options pass
# through: --query "a red circle", --out PATH), which refuses a query whose first results'
# captions do not match it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/ensure-chromium.sh
VENV="${FEATUREGEN_VENV:-.venv}"
if [[ ! -d "${FEATUREGEN_HOME:-.featuregen}/images" ]]; then
  scripts/demo.sh
fi
exec "$VENV/bin/python" scripts/screenshot_page.py "$@"

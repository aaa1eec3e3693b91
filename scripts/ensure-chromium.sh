#!/usr/bin/env bash
# Install Debian's `chromium` for the browser test (featuregen_tests/test_search_page.py) unless
# it is already there (then this returns at once). Where it cannot be installed (not root, no
# apt-get, no package mirror) it says why and exits 1; the browser test then skips, saying so.
set -uo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium is missing and cannot be installed here (needs root and apt-get):" \
    "the browser test will be skipped" >&2
  exit 1
fi
echo "installing chromium (Debian package) for the browser test ..." >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; then
  echo "apt-get could not install chromium: the browser test will be skipped" >&2
  exit 1
fi

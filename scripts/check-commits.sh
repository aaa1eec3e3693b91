#!/usr/bin/env bash
# Check commit messages: a subject of at most 72 characters, then a blank line before any body.
#   scripts/check-commits.sh              every commit since the rule began (CONTRIBUTING.md)
#   scripts/check-commits.sh REV_RANGE    the commits of a range, e.g. main..HEAD
#   scripts/check-commits.sh --file MSG   one message file (the commit-msg hook)
set -euo pipefail
cd "$(dirname "$0")/.."
MAX=72

check_message() {  # $1: a label, stdin: the message
  local label="$1" message subject second
  message="$(cat)"
  subject="$(sed -n 1p <<<"$message")"
  second="$(sed -n 2p <<<"$message")"
  if [[ -z "$subject" ]]; then
    echo "$label: empty subject" >&2; return 1
  fi
  if (( ${#subject} > MAX )); then
    echo "$label: subject is ${#subject} characters (at most $MAX): $subject" >&2; return 1
  fi
  if [[ -n "$second" ]]; then
    echo "$label: put a blank line between the subject and the body" >&2; return 1
  fi
}

if [[ "${1:-}" == "--file" ]]; then
  grep -v '^#' "$2" | check_message "commit message"
  exit
fi
if [[ $# -ge 1 ]]; then
  range="$1"
else
  start="$(git log --format=%H --diff-filter=A -- CONTRIBUTING.md | tail -n 1)"
  # In a shallow clone the first commit may be missing: check what is there.
  if [[ -n "$start" ]] && git cat-file -e "$start^" 2>/dev/null; then
    range="$start^..HEAD"
  else
    range="HEAD"
  fi
fi
failed=0
exceptions=".ci/commit-subject-exceptions"  # landed over the limit; history is not rewritten
for commit in $(git rev-list --no-merges "$range"); do
  if grep -q "^${commit:0:10}" "$exceptions" 2>/dev/null; then
    continue
  fi
  git log -1 --format=%B "$commit" | check_message "${commit:0:10}" || failed=1
done
exit "$failed"

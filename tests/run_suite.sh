#!/usr/bin/env bash
# Runs one CAF test suite and fails when it ran no test at all, so that a
# misspelt or removed suite cannot pass silently.
set -uo pipefail
binary="$1"
suite="$2"
out="$("$binary" -n -r 600 -s "^${suite}\$" 2>&1)"
rc=$?
printf '%s\n' "$out"
if ! grep -Eq 'tests: +[1-9]' <<<"$out"; then
  echo "run_suite: suite $suite ran no test" >&2
  exit 1
fi
exit $rc

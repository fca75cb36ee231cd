#!/usr/bin/env bash
# sim.regressions: replays every named seed of the list.
# Lines: <name> <seed> [options...]; '#' starts a comment. A seed must pass,
# except names starting with known_bug_: they reproduce a bug that is
# reported and not fixed yet, and are expected to fail. One that passes is
# noted (fixed, or its scenario drifted with a code change) but does not
# fail the test.
set -uo pipefail
sim="$1"
list="$2"
failed=0
count=0
while read -r name seed options; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  count=$((count + 1))
  # shellcheck disable=SC2086
  out="$("$sim" --seed "$seed" $options 2>&1)"
  rc=$?
  what="$name (seed $seed${options:+ $options})"
  if [[ "$name" == known_bug_* ]]; then
    if [[ $rc -eq 0 ]]; then
      echo "NOTE  $what no longer fails: fixed? Then make it a regular entry."
    else
      echo "ok    $what still shows the known bug:"
      printf '%s\n' "$out" | grep -E 'VIOLATION' | sed 's/^ */      /'
    fi
  elif [[ $rc -eq 0 ]]; then
    echo "ok    $what"
  else
    echo "FAIL  $what"
    printf '%s\n' "$out" | sed 's/^/      /'
    failed=$((failed + 1))
  fi
done <"$list"
if [[ $count -eq 0 ]]; then
  echo "sim.regressions: the list is empty" >&2
  exit 1
fi
echo "sim.regressions: $count seeds, $failed failed"
[[ $failed -eq 0 ]]

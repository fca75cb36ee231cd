#!/usr/bin/env bash
# sim.regressions: replays every named seed of the list; each must pass.
# Lines: <name> <seed> [options...]; '#' starts a comment.
set -uo pipefail
sim="$1"
list="$2"
failed=0
count=0
while read -r name seed options; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  count=$((count + 1))
  # shellcheck disable=SC2086
  if out="$("$sim" --seed "$seed" $options 2>&1)"; then
    echo "ok    $name (seed $seed${options:+ $options})"
  else
    echo "FAIL  $name (seed $seed${options:+ $options})"
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

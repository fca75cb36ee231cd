#!/usr/bin/env bash
# sim.determinism: the same seed gives the same trace hash -- twice in a
# row, with --trace on, and inside a sweep's child process -- and different
# seeds give different hashes.
set -euo pipefail
sim="$1"

hash_of() {
  "$sim" "$@" | sed -n 's/.*trace hash \([0-9a-f]*\).*/\1/p'
}

fail() {
  echo "sim.determinism: $*" >&2
  exit 1
}

declare -A seen
for seed in 7 8 9 10; do
  first="$(hash_of --seed "$seed")"
  second="$(hash_of --seed "$seed")"
  traced="$(hash_of --seed "$seed" --trace | tail -n 1)"
  child="$("$sim" --seed "$seed" --summary-line \
           | sed -n 's/.* hash=\([0-9a-f]*\).*/\1/p')"
  [[ -n "$first" ]] || fail "seed $seed printed no trace hash"
  [[ "$first" == "$second" ]] || fail "seed $seed: $first, then $second"
  [[ "$first" == "$traced" ]] || fail "seed $seed: $first, with --trace $traced"
  [[ "$first" == "$child" ]] || fail "seed $seed: $first, as a child $child"
  [[ -z "${seen[$first]:-}" ]] || fail "seeds ${seen[$first]} and $seed share hash $first"
  seen[$first]="$seed"
  echo "seed $seed: $first (3 more runs agree)"
done
echo "sim.determinism: ok"

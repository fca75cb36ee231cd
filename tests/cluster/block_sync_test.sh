#!/usr/bin/env bash
# cluster.block_sync: a segment blocked on one node is blocked on every node
# of its SET within about a second, and an unblock on another node lifts it
# everywhere (issue 26, "Segment blocking is cluster-wide").
#
# Proven: an operator's block of segment 4 sent to set1-a's gateway is
# recorded in set-1's database and seen by set1-b and set1-c (their stats
# list it as blocked, manual) within a renewal or two (the test allows 3 s); opens of an envelope in segment 4
# sent through set1-c are answered SEGMENT_UNAVAILABLE; creates through
# every gateway of set-1 never land in segment 4 while it is blocked; the
# unblock sent to set1-b lifts it on set1-a and set1-c as fast, and the
# envelope opens again.
#
#   bash tests/cluster/block_sync_test.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

hc_init block_sync
hc_start

cli() { "$HB_CLI_BIN" --server "$(hc_gateway "$1")" "${@:2}"; }

# blocked_on NODE SEGMENT: "manual" if NODE's stats list SEGMENT as blocked
# by an operator, "auto" if blocked otherwise, "no" if not blocked.
blocked_on() {
  cli "$1" --json stats | python3 -c '
import json, sys
seg = int(sys.argv[1])
d = json.load(sys.stdin)
for s in d.get("segments", []):
    if s.get("segment") == seg and s.get("blocked"):
        print("manual" if s.get("manual") else "auto"); sys.exit(0)
print("no")' "$2"
}

# wait_blocked NODE SEGMENT WANT: waits up to 3 s for blocked_on to say WANT
# (a renewal every 0.5 s reads the SET's blocks; a stats call itself takes
# a few hundred ms on a busy machine); prints the milliseconds it took.
wait_blocked() {
  local t0 deadline got
  t0="$(hb_now_ms)"
  deadline=$((t0 + 3000))
  while :; do
    got="$(blocked_on "$1" "$2")"
    [[ "$got" == "$3" ]] && { echo $(( $(hb_now_ms) - t0 )); return 0; }
    (( $(hb_now_ms) < deadline )) || hb_fail "$1: segment $2 is '$got', not '$3', 3 s after the change"
    sleep 0.05
  done
}

# An envelope of segment 4 (owned by a node of zone-b: 4 % 3 == 1).
id=""
for k in $(seq 1 40); do
  out="$(cli set1-b --json create --sender bs-$k --group g --total-fen 500 --count 5)" \
    || hb_fail "create through set1-b failed: $out"
  cand="$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["envelope_id"])')"
  if (( cand % 1000 == 4 )); then id="$cand"; break; fi
done
[[ -n "$id" ]] || hb_fail "no envelope landed in segment 4 in 40 creates through set1-b"
cli set1-b pay "$id" --payment-txn "bs-$id" >/dev/null || hb_fail "paying $id failed"
hb_log "envelope $id in segment 4"

for n in set1-a set1-b set1-c; do
  assert_eq no "$(blocked_on "$n" 4)" "segment 4 on $n before the block"
done
cli set1-a segment block 4 --reason "block_sync test" >/dev/null \
  || hb_fail "blocking segment 4 through set1-a failed"
assert_eq "t|manual" "$(hc_sql 1 "SELECT blocked, mode FROM segment_states WHERE segment = 4")" \
  "segment 4's recorded state in set-1's database"
for n in set1-b set1-c; do
  ms="$(wait_blocked "$n" 4 manual)"
  hb_log "$n saw the block after ${ms} ms"
done

out="$(cli set1-c --json open "$id" --user bs-u1 2>&1)" && hb_fail "open of $id in a blocked segment succeeded: $out"
assert_match 'segment_unavailable|SEGMENT_UNAVAILABLE' "$out" "open through set1-c of an envelope in blocked segment 4"

# No create lands in segment 4 while it is blocked, whichever node takes it.
for n in set1-a set1-b set1-c; do
  for k in $(seq 1 6); do
    out="$(cli "$n" --json create --sender bs-$n-$k --group g --total-fen 500 --count 5)" \
      || hb_fail "create through $n failed: $out"
    cand="$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["envelope_id"])')"
    (( cand % 1000 != 4 )) || hb_fail "a create through $n landed in blocked segment 4: $cand"
  done
done

cli set1-b segment unblock 4 >/dev/null || hb_fail "unblocking segment 4 through set1-b failed"
for n in set1-a set1-c; do
  ms="$(wait_blocked "$n" 4 no)"
  hb_log "$n saw the unblock after ${ms} ms"
done
out="$(cli set1-c --json open "$id" --user bs-u1 2>&1)" || hb_fail "open of $id after the unblock failed: $out"
assert_match '"ok":true' "$out" "open through set1-c after the unblock"

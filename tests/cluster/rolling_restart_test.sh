#!/usr/bin/env bash
# cluster.rolling_restart: every node of the local cluster restarted in turn
# under a storm of opens through every gateway (issue 27, "Drain a node",
# "Rebalance on join"). SET 1's nodes are drained by the operator first
# (`hongbao drain NODE --wait`), then restarted; SET 2's are restarted with
# SIGTERM alone, which drains a node before it exits.
#
# Proven: a drained node owns nothing before it stops, and its segments went
# to the next live zone in their order by planned moves (segments_given in
# its log, no lease expiry); a node stopped by SIGTERM hands everything over
# before it exits ("drained in ... 0 segments left"); each restarted node
# gets its preferred segments back once it has served the settling time, so
# that at the end every segment is in its primary zone again; the storm's
# client is never failed: every error answer it got was retryable, no open's
# outcome stayed unknown, every acknowledged open is in its SET's database
# with that amount, nobody has two shares, money is conserved per SET and
# both SETs reconcile clean. Printed: each drain's time and the storm's
# answers (the error answers a retrying client saw and retried).
#
#   bash tests/cluster/rolling_restart_test.sh   (needs the PostgreSQL server
#   binaries that scripts/pg uses; builds nothing: build/bin or HB_*_BIN)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STORM_MS=${HB_STORM_MS:-300000}  # an upper bound: SIGUSR1 ends it
ENVELOPES=48
SHARES=4000

hc_init rolling_restart
export HONGBAO_CLUSTER_TOML="[limits]
count_max = $SHARES"
hc_start
hc_create "$ENVELOPES" "$SHARES" rr
ids=("${HC_IDS[@]}")
hc_wait_placement 1 15
hc_wait_placement 2 15

"$HC_CLIENT_BIN" storm --servers "$HONGBAO_SERVERS" --ids "$(IFS=,; echo "${ids[*]}")" \
  --connections 2 --duration-ms "$STORM_MS" --pause-ms 5 --retry-ms 50 \
  --grace-ms 30000 --timeout-ms 5000 --prefix rr \
  >"$HB_TMP/storm.txt" 2>"$HB_TMP/storm.err" &
HC_STORM_PID=$!
sleep 3
assert_int -gt 0 "$(grep -c ' ok ' "$HB_TMP/storm.txt" || true)" "opens answered before the first restart"

FIGURES=()
# A gateway of another node than $1, for the operator's commands.
other_gateway() {
  local n
  for n in $(hc_cluster nodes); do
    [[ "$n" == "$1" ]] || { hc_gateway "$n"; return; }
  done
}

zone_of() { echo "zone-${1: -1}"; }

# back NODE S: after its restart the node rejoined; wait until every segment
# of its SET is at its preferred zone again (its own come back by rebalance).
back() {
  local t0
  t0="$(hb_now_ms)"
  hc_wait_placement "$2" 30
  assert_int -gt 0 "$(hc_sql "$2" "SELECT count(*) FROM segment_owners WHERE owner = '$1'")" \
    "segments back at $1 after its restart"
  hb_log "$1 has its segments back $(( $(hb_now_ms) - t0 )) ms after it rejoined"
}

# -- SET 1: drain by the operator, then restart ------------------------------------
for n in set1-a set1-b set1-c; do
  owned="$(hc_sql 1 "SELECT count(*) FROM segment_owners WHERE owner = '$n'")"
  assert_int -gt 0 "$owned" "segments of $n before its drain"
  out="$(HONGBAO_SERVER="$(other_gateway "$n")" "$HB_CLI_BIN" --json drain "$n" --wait 30)" \
    || hb_fail "hongbao drain $n failed: $out"
  hb_log "drain $n: $out"
  assert_eq 0 "$(hc_sql 1 "SELECT count(*) FROM segment_owners WHERE owner = '$n'")" \
    "segments still owned by $n after its drain"
  # Its segments went to the next zone in their order (its zone counts as
  # gone: it is SET 1's only node there), by plan, not by lease expiry.
  hc_check_placement 1 "$(zone_of "$n")"
  grep -q "segments_given node=$n" "$(hc_log "$n")" \
    || hb_fail "no segments_given in $n's log: its segments were not handed over by plan"
  assert_eq "t" "$(hc_sql 1 "SELECT draining FROM node_leases WHERE node = '$n'")" "$n marked draining"
  ms="$(sed -n 's/.*"drain_ms":\([0-9]*\).*/\1/p' <<<"$out")"
  FIGURES+=("FIGURES drain $n: $owned segments handed over in ${ms:-?} ms (from the command to none left)")
  hc_cluster restart "$n" >&2
  assert_eq "f" "$(hc_sql 1 "SELECT draining FROM node_leases WHERE node = '$n'")" \
    "$n serving again after its restart (a new incarnation clears the drain)"
  back "$n" 1
done

# -- SET 2: SIGTERM alone drains the node before it exits ---------------------------
for n in set2-a set2-b set2-c; do
  owned="$(hc_sql 2 "SELECT count(*) FROM segment_owners WHERE owner = '$n'")"
  assert_int -gt 0 "$owned" "segments of $n before its restart"
  log="$(hc_log "$n")"
  lines_before="$(wc -l <"$log")"
  hc_cluster restart "$n" >&2
  drained="$(tail -n +"$((lines_before + 1))" "$log" | grep -m1 'drained in' || true)"
  [[ -n "$drained" ]] || hb_fail "$n did not say it drained before it stopped (log: $log)"
  [[ "$drained" == *"(0 segments left"* ]] || hb_fail "$n stopped with segments left: $drained"
  tail -n +"$((lines_before + 1))" "$log" | grep -q "segments_given node=$n" \
    || hb_fail "no segments_given in $n's log before it stopped"
  FIGURES+=("FIGURES SIGTERM $n: $owned segments, ${drained#*hongbao-node }")
  back "$n" 2
done

hb_log "every node restarted; ending the storm"
kill -USR1 "$HC_STORM_PID"
hc_end_storm "${ids[@]}"
hc_check_placement 1
hc_check_placement 2
errors="$(awk '$2 == "err" || $2 == "transport"' "$HB_TMP/storm.txt" | wc -l)"
opens="$(awk '$2 == "ok" && $6 == 1' "$HB_TMP/storm.txt" | wc -l)"
FIGURES+=("FIGURES rolling restart of 6 nodes: $opens opens answered, 0 failed, $errors error answers retried ($(hc_storm_summary "$HB_TMP/storm.txt"))")
for f in "${FIGURES[@]}"; do echo "$f" >&2; done

#!/usr/bin/env bash
# cluster.hot_move: one hot envelope opened by a storm through every gateway
# while its segment is moved away from its owner and back again, eight times
# (issue 27: a hot envelope migrated back and forth during its storm). Each
# round trip drains the owner (`hongbao drain`: its segments go to the next
# zone by planned moves), then undrains it and asks for a rebalance, which
# hands them back at once.
#
# Proven: the segment really moved every time (its owner and owner_epoch in
# the SET's database, two moves per round); every acknowledged open is in
# the database with that amount, nobody has two shares, no more shares than
# the envelope has, every error answer was retryable and none was given up,
# money is conserved and both SETs reconcile clean. Printed: how long the
# opens waited (first try to answer, retries included) while a move was on
# against the rest of the storm, p50/p99/max, and each move's time.
#
#   bash tests/cluster/hot_move_test.sh   (needs the PostgreSQL server
#   binaries that scripts/pg uses; builds nothing: build/bin or HB_*_BIN)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${HB_HOT_MOVE_ROUNDS:-8}
SHARES=100000

hc_init hot_move
export HONGBAO_CLUSTER_TOML="[limits]
count_max = $SHARES"
hc_start
hc_create 1 "$SHARES" hot
hot="${HC_IDS[0]}"
s="$(hc_set_of "$hot")"
seg=$(( hot % 1000 ))
hc_wait_placement "$s" 15
owner="$(hc_sql "$s" "SELECT owner FROM segment_owners WHERE segment = $seg")"
epoch0="$(hc_sql "$s" "SELECT owner_epoch FROM segment_owners WHERE segment = $seg")"
hb_log "hot envelope $hot: segment $seg of SET $s, owner $owner (owner_epoch $epoch0)"

"$HC_CLIENT_BIN" storm --servers "$HONGBAO_SERVERS" --ids "$hot" \
  --connections 2 --duration-ms 600000 --pause-ms 2 --retry-ms 20 \
  --grace-ms 30000 --timeout-ms 5000 --prefix hm \
  >"$HB_TMP/storm.txt" 2>"$HB_TMP/storm.err" &
HC_STORM_PID=$!
sleep 3
assert_int -gt 0 "$(grep -c ' ok ' "$HB_TMP/storm.txt" || true)" "opens answered before the first move"

# wait_owner NODE: until the hot segment's owner is NODE (15 s at most).
wait_owner() {
  local deadline=$(( $(hb_now_ms) + 15000 ))
  until [[ "$(hc_sql "$s" "SELECT owner FROM segment_owners WHERE segment = $seg")" == "$1" ]]; do
    (( $(hb_now_ms) < deadline )) || hb_fail "segment $seg not at $1 within 15 s"
    sleep 0.05
  done
}

cli() { HONGBAO_SERVER="$(hc_gateway "$owner")" "$HB_CLI_BIN" "$@" >/dev/null; }

: >"$HB_TMP/windows.txt"
moves=()
for (( r = 1; r <= ROUNDS; r++ )); do
  t0="$(hb_now_ms)"
  cli drain "$owner" || hb_fail "hongbao drain $owner failed"
  to="$(hc_sql "$s" "SELECT owner FROM segment_owners WHERE segment = $seg")"
  deadline=$(( $(hb_now_ms) + 15000 ))
  while [[ "$to" == "$owner" ]]; do
    (( $(hb_now_ms) < deadline )) || hb_fail "round $r: segment $seg did not leave $owner"
    sleep 0.05
    to="$(hc_sql "$s" "SELECT owner FROM segment_owners WHERE segment = $seg")"
  done
  t1="$(hb_now_ms)"
  cli undrain "$owner" || hb_fail "hongbao undrain $owner failed"
  cli rebalance || hb_fail "hongbao rebalance failed"
  wait_owner "$owner"
  t2="$(hb_now_ms)"
  echo "$t0 $t2" >>"$HB_TMP/windows.txt"
  moves+=("$((t1 - t0))/$((t2 - t1))")
  hb_log "round $r: $owner -> $to in $((t1 - t0)) ms, back in $((t2 - t1)) ms"
  sleep 0.5
done
epoch1="$(hc_sql "$s" "SELECT owner_epoch FROM segment_owners WHERE segment = $seg")"
assert_int -ge $(( epoch0 + 2 * ROUNDS )) "$epoch1" "owner_epoch of segment $seg after $ROUNDS round trips"
given="$(grep -c "segments_given node=$owner" "$(hc_log "$owner")" || true)"
assert_int -ge "$ROUNDS" "$given" "planned moves logged by $owner"
sleep 1
kill -USR1 "$HC_STORM_PID"   # no new opens; what is pending settles
hc_end_storm "$hot"
shares="$(hc_sql "$s" "SELECT count(*) FROM opens WHERE envelope_id = $hot")"
assert_int -le "$SHARES" "$shares" "shares of the hot envelope"

# How long opens waited: those answered while a move was on (from the
# drain command to the segment's return, plus a second) against the rest.
awk 'NR == FNR { a[NR] = $1; b[NR] = $2 + 1000; n = NR; next }
     $2 == "ok" && NF >= 8 { moving = 0
       for (i = 1; i <= n; i++) if ($1 >= a[i] && $1 <= b[i]) moving = 1
       print (moving ? "move" : "calm"), $8 }' \
  "$HB_TMP/windows.txt" "$HB_TMP/storm.txt" >"$HB_TMP/waits.txt"
figure() {
  local kind="$1" n p50 p99 max
  n="$(awk -v k="$kind" '$1 == k' "$HB_TMP/waits.txt" | wc -l)"
  p50="$(awk -v k="$kind" '$1 == k { print $2 }' "$HB_TMP/waits.txt" | hb_pct 50)"
  p99="$(awk -v k="$kind" '$1 == k { print $2 }' "$HB_TMP/waits.txt" | hb_pct 99)"
  max="$(awk -v k="$kind" '$1 == k { print $2 }' "$HB_TMP/waits.txt" | hb_pct 100)"
  echo "$n opens, wait p50 $(hb_us_to_ms "$p50") ms, p99 $(hb_us_to_ms "$p99") ms, max $(hb_us_to_ms "$max") ms"
}
assert_int -gt 0 "$(awk '$1 == "move"' "$HB_TMP/waits.txt" | wc -l)" "opens answered while the segment moved"
echo "FIGURES hot_move: $ROUNDS round trips of segment $seg ($owner <-> ${to:-?}), each away/back ms: ${moves[*]}" >&2
echo "FIGURES hot_move: during moves: $(figure move)" >&2
echo "FIGURES hot_move: otherwise:    $(figure calm)" >&2
echo "FIGURES hot_move: storm answers: $(hc_storm_summary "$HB_TMP/storm.txt")" >&2

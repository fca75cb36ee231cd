#!/usr/bin/env bash
# cluster.set_outage: one SET's PostgreSQL server is stopped for 10 s in the
# middle of a storm of opens through every gateway, then started again
# (issue 26: "one SET's outage touches no other SET").
#
# Proven: while set-1's database is down, set-2's envelopes are served
# throughout, through every gateway (set-1's nodes forward them): opens
# answered, not one error; set-1's envelopes get retryable errors only; once
# the server is back, set-1's nodes recover by themselves (opens on set-1's
# envelopes answered again within 15 s, every segment owned by a live node
# again); afterwards every acknowledged open is in its SET's database, money
# is conserved and both SETs reconcile clean.
#
#   bash tests/cluster/set_outage_test.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OUTAGE_S=${HB_OUTAGE_S:-10}
STORM_MS=26000
RECOVERY_BOUND_MS=15000
ENVELOPES=36
SHARES=2000

hc_init set_outage
export HONGBAO_CLUSTER_TOML="[limits]
count_max = $SHARES"
hc_start
hc_create "$ENVELOPES" "$SHARES" so
ids=("${HC_IDS[@]}")
set1=() set2=()
for id in "${ids[@]}"; do
  if [[ "$(hc_set_of "$id")" == 1 ]]; then set1+=("$id"); else set2+=("$id"); fi
done
printf '%s\n' "${set1[@]}" >"$HB_TMP/set1.ids"
printf '%s\n' "${set2[@]}" >"$HB_TMP/set2.ids"
assert_int -gt 0 "${#set1[@]}" "envelopes in set-1"
assert_int -gt 0 "${#set2[@]}" "envelopes in set-2"

# count_in IDS_FILE FROM_MS TO_MS KIND: storm lines of that kind (ok, err,
# transport, gaveup) on those envelopes answered within [FROM, TO].
count_in() {
  awk -v a="$2" -v b="$3" -v k="$4" 'NR == FNR { e[$1] = 1; next }
    $1 >= a && $1 <= b && $2 == k && ((k == "err" ? $4 : $3) in e)' \
    "$1" "$HB_TMP/storm.txt" | wc -l
}

"$HC_CLIENT_BIN" storm --servers "$HONGBAO_SERVERS" --ids "$(IFS=,; echo "${ids[*]}")" \
  --connections 2 --duration-ms "$STORM_MS" --pause-ms 5 --retry-ms 50 \
  --grace-ms 30000 --timeout-ms 5000 --prefix so \
  >"$HB_TMP/storm.txt" 2>"$HB_TMP/storm.err" &
HC_STORM_PID=$!
sleep 4
assert_int -gt 0 "$(grep -c ' ok ' "$HB_TMP/storm.txt" || true)" "opens answered before the outage"

# -- set-1's PostgreSQL goes away ------------------------------------------------------
stop_ms="$(hb_now_ms)"
hc_cluster pg set-1 stop >/dev/null 2>&1 || hb_fail "cannot stop set-1's PostgreSQL"
stopped_ms="$(hb_now_ms)"
hb_log "set-1's PostgreSQL stopped ($((stopped_ms - stop_ms)) ms); out for ${OUTAGE_S}s"
sleep "$OUTAGE_S"
for n in set1-a set1-b set1-c set2-a set2-b set2-c; do
  kill -0 "$(cat "$HONGBAO_CLUSTER_DIR/run/$n.pid")" 2>/dev/null || hb_fail "$n died during the outage"
done
back_ms="$(hb_now_ms)"
hc_cluster pg set-1 start >/dev/null 2>&1 || hb_fail "cannot start set-1's PostgreSQL again"
started_ms="$(hb_now_ms)"
hb_log "set-1's PostgreSQL back after $((started_ms - stop_ms)) ms (down for $((started_ms - stopped_ms)) ms at least)"

# The other SET, during the outage: served, and not one error.
ok2="$(count_in "$HB_TMP/set2.ids" "$stopped_ms" "$back_ms" ok)"
err2="$(count_in "$HB_TMP/set2.ids" "$stopped_ms" "$back_ms" err)"
tr2="$(count_in "$HB_TMP/set2.ids" "$stopped_ms" "$back_ms" transport)"
ok1="$(count_in "$HB_TMP/set1.ids" "$((stopped_ms + 1000))" "$back_ms" ok)"
err1="$(count_in "$HB_TMP/set1.ids" "$stopped_ms" "$back_ms" err)"
hb_log "during the outage: set-2 $ok2 opens answered, $err2 errors, $tr2 lost connections; set-1 $ok1 opens answered (from 1 s in), $err1 errors"
if (( err2 > 0 )); then
  hb_log "set-2 errors during the outage, by code and gateway: $(awk -v a="$stopped_ms" -v b="$back_ms" \
    'NR == FNR { e[$1] = 1; next } $1 >= a && $1 <= b && $2 == "err" && ($4 in e) { n[$3 " via gateway " $6]++ }
     END { for (k in n) printf "%s: %d; ", k, n[k] }' "$HB_TMP/set2.ids" "$HB_TMP/storm.txt")"
fi
assert_int -gt 0 "$ok2" "set-2 opens answered while set-1's database was down"
assert_eq 0 "$err2" "set-2 opens answered with an error while set-1's database was down"
assert_eq 0 "$tr2" "set-2 opens whose connection broke while set-1's database was down"
assert_int -gt 0 "$err1" "set-1 opens answered with an error while its database was down (the outage happened)"
assert_eq 0 "$ok1" "set-1 opens answered while its database was down"

# -- set-1 recovers by itself -------------------------------------------------------------
deadline=$(( started_ms + RECOVERY_BOUND_MS ))
first_ok=""
while :; do
  first_ok="$(awk -v a="$started_ms" 'NR == FNR { e[$1] = 1; next }
    $1 >= a && $2 == "ok" && ($3 in e) { print $1; exit }' "$HB_TMP/set1.ids" "$HB_TMP/storm.txt")"
  [[ -z "$first_ok" ]] || break
  (( $(hb_now_ms) < deadline )) || hb_fail "no open answered on set-1's envelopes within $RECOVERY_BOUND_MS ms of its PostgreSQL's return"
  sleep 0.1
done
hc_cluster wait-owned 20 >&2 || hb_fail "set-1's segments are not all owned by live nodes again"
codes() {
  awk -v a="$1" -v b="$2" 'NR == FNR { e[$1] = 1; next }
    $1 >= a && $1 <= b && $2 == "err" && ($4 in e) { n[$3]++ }
    END { for (k in n) printf "%s=%d ", k, n[k] }' "$HB_TMP/set1.ids" "$HB_TMP/storm.txt"
}
hb_log "set-1's errors while its database was down: $(codes "$stopped_ms" "$back_ms"); from its return to the first open: $(codes "$back_ms" "$first_ok")"
for n in set1-a set1-b set1-c; do
  hb_log "$n: $(grep -c 'node_fenced' "$(hc_log "$n")" || true) node_fenced, $(grep -c 'node_joined' "$(hc_log "$n")" || true) node_joined in its log"
done
for n in set2-a set2-b set2-c; do
  assert_eq 0 "$(grep -c 'node_fenced' "$(hc_log "$n")" || true)" "node_fenced lines of $n (its SET's database never went away)"
done
hb_log "FIGURES set_outage: outage_s=$OUTAGE_S set2_opens_during=$ok2 set2_errors_during=$err2 set1_first_open_after_return_ms=$((first_ok - started_ms))"

# -- The storm ends: audit -------------------------------------------------------------------
hc_end_storm "${ids[@]}"

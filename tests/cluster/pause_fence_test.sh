#!/usr/bin/env bash
# cluster.pause_fence: a node stopped with SIGSTOP past its lease while a
# storm of opens runs through every gateway, then resumed (issue 26,
# "Fencing twice").
#
# Proven: while it is stopped, its segments are taken by the next live node
# in their zone order; once resumed it logs node_fenced, then node_joined
# with a new incarnation (node_leases shows it), owns none of its old
# segments, and keeps running; nothing was paid twice (every acknowledged
# open in its SET's database with that amount, no user twice, money
# conserved, reconciliation clean). Its writes in flight across the pause
# (commits held in PostgreSQL by a table lock while it is stopped and its
# segments are taken) are refused by the database: as not the owner
# (cluster.owner_refusals in its stats) or, when the new owner has already
# activated the envelope, for a stale epoch; the clients retry elsewhere.
#
#   bash tests/cluster/pause_fence_test.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STORM_MS=22000
PAUSE_S=${HB_PAUSE_S:-5}   # lease_ms is 3 s in scripts/cluster
VICTIM=set2-b
ENVELOPES=36
SHARES=2000

hc_init pause_fence
export HONGBAO_CLUSTER_TOML="[limits]
count_max = $SHARES"
hc_start
hc_create "$ENVELOPES" "$SHARES" pf
ids=("${HC_IDS[@]}")
log="$(hc_log "$VICTIM")"

# stats_metric NODE NAME: one metric of `hongbao stats --json` on NODE.
stats_metric() {
  local out
  out="$(HONGBAO_SERVER="$(hc_gateway "$1")" "$HB_CLI_BIN" --json --timeout-ms 5000 stats 2>>"$HB_TMP/cli.err")" \
    || hb_fail "hongbao stats on $1 failed: $out"
  "$HB_PY" -c 'import json, sys; print(json.loads(sys.argv[1])["metrics"].get(sys.argv[2], "missing"))' "$out" "$2"
}

"$HC_CLIENT_BIN" storm --servers "$HONGBAO_SERVERS" --ids "$(IFS=,; echo "${ids[*]}")" \
  --connections 2 --duration-ms "$STORM_MS" --pause-ms 5 --retry-ms 50 \
  --grace-ms 30000 --timeout-ms 15000 --prefix pf \
  >"$HB_TMP/storm.txt" 2>"$HB_TMP/storm.err" &
HC_STORM_PID=$!
sleep 3
assert_int -gt 0 "$(grep -c ' ok ' "$HB_TMP/storm.txt" || true)" "opens answered before the pause"

refusals_before="$(stats_metric "$VICTIM" cluster.owner_refusals)"
assert_match '^[0-9]+$' "$refusals_before" "cluster.owner_refusals in $VICTIM's stats"
inc_before="$(hc_sql 2 "SELECT incarnation FROM node_leases WHERE node = '$VICTIM'")"
hc_owned_by "$VICTIM" 2 >"$HB_TMP/victim.segments"
assert_int -gt 0 "$(wc -l <"$HB_TMP/victim.segments")" "segments of $VICTIM before the pause"
log_from="$(wc -l <"$log")"

# Writes in flight across the pause: every commit statement also inserts
# into credits_owed, so a lock on that table holds each commit in
# PostgreSQL before it takes its snapshot. With the lock held, the victim's
# commits wait in the database; the victim is stopped; its segments are
# taken; then the lock goes, and its waiting commits run against the new
# owner rows and must be refused (not_owner), not applied.
psql -X -q "$(hc_set_url 2) application_name=hb_test_lock" \
  -c "BEGIN" -c "LOCK TABLE credits_owed IN SHARE MODE" -c "SELECT pg_sleep(60)" \
  >"$HB_TMP/lock.out" 2>&1 &
LOCK_PID=$!
waiting=0
deadline=$(( $(hb_now_ms) + 5000 ))
while (( $(hb_now_ms) < deadline )); do
  waiting="$(hc_sql 2 "SELECT count(*) FROM pg_stat_activity
                       WHERE application_name = 'hongbao-$VICTIM' AND wait_event_type = 'Lock'")"
  (( waiting > 0 )) && break
  sleep 0.05
done
hb_log "$waiting commits of $VICTIM wait for the lock on credits_owed"
assert_int -gt 0 "$waiting" "$VICTIM's statements waiting in PostgreSQL before the pause"

victim_pid="$(cat "$HONGBAO_CLUSTER_DIR/run/$VICTIM.pid")"
pause_ms="$(hb_now_ms)"
kill -STOP "$victim_pid"
hc_wait_not_owner "$VICTIM" 2 $((PAUSE_S + 10)) \
  || hb_fail "$VICTIM still owns segments $((PAUSE_S + 10)) s after SIGSTOP"
taken_ms="$(hb_now_ms)"
hb_log "$VICTIM's segments taken $((taken_ms - pause_ms)) ms after SIGSTOP: $(hc_sql 2 "SELECT owner || ':' || count(*)
  FROM segment_owners WHERE segment IN ($(paste -sd, "$HB_TMP/victim.segments")) GROUP BY owner" | paste -sd' ')"
hc_check_placement 2 zone-b
hc_sql 2 "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'hb_test_lock'" >/dev/null
wait "$LOCK_PID" 2>/dev/null || true
hb_log "lock on credits_owed released $(( $(hb_now_ms) - pause_ms )) ms after SIGSTOP"
left=$(( pause_ms + PAUSE_S * 1000 - $(hb_now_ms) ))
(( left <= 0 )) || sleep "$(awk -v ms="$left" 'BEGIN { printf "%.3f", ms / 1000 }')"
resume_ms="$(hb_now_ms)"
kill -CONT "$victim_pid"
hb_log "$VICTIM stopped for about $((resume_ms - pause_ms)) ms"

# It notices by itself that its lease ran out, fences itself, and rejoins.
deadline=$(( $(hb_now_ms) + 15000 ))
while :; do
  tail -n +"$((log_from + 1))" "$log" >"$HB_TMP/victim-after.log"
  fenced="$(grep -n -m1 'node_fenced' "$HB_TMP/victim-after.log" || true)"
  joined="$(grep -n 'node_joined' "$HB_TMP/victim-after.log" | tail -n1 || true)"
  [[ -n "$fenced" && -n "$joined" && "${joined%%:*}" -gt "${fenced%%:*}" ]] && break
  (( $(hb_now_ms) < deadline )) \
    || hb_fail "$VICTIM did not log node_fenced and then node_joined within 15 s of SIGCONT (fenced: '${fenced:-none}', joined: '${joined:-none}')"
  sleep 0.1
done
hb_log "$VICTIM: ${fenced#*:}"
hb_log "$VICTIM: ${joined#*:}"
fenced_ms="$(hb_log_ms "${fenced#*:}")"
joined_ms="$(hb_log_ms "${joined#*:}")"
hb_log "fenced $((fenced_ms - resume_ms)) ms after SIGCONT, rejoined $((joined_ms - resume_ms)) ms after it"
inc_after="$(hc_sql 2 "SELECT incarnation FROM node_leases WHERE node = '$VICTIM' AND lease_expires_at > now()")"
assert_int -gt "$inc_before" "${inc_after:-0}" "$VICTIM's live incarnation after it rejoined"
# (Its new incarnation gets them back by rebalance after the settling time;
# the old one never does.)
assert_eq 0 "$(hc_sql 2 "SELECT count(*) FROM segment_owners WHERE owner = '$VICTIM'
                         AND owner_incarnation = $inc_before
                         AND segment IN ($(paste -sd, "$HB_TMP/victim.segments"))")" \
  "segments of $VICTIM's old incarnation that it owns again"

# What it had queued when it woke up: refused by the database, not paid.
refusals_after="$(stats_metric "$VICTIM" cluster.owner_refusals)"
refused=$(( refusals_after - refusals_before ))
# A held commit that runs after the new owner activated its envelope fails
# the envelope's epoch check first (stale_epoch); one that runs before, the
# owner_epoch check (not_owner, counted in cluster.owner_refusals). Either
# way the database refused it.
stale="$(tail -n +"$((log_from + 1))" "$log" | grep -c 'envelope_write_failed.*code=stale_epoch' || true)"
not_owner_answers="$(awk -v a="$pause_ms" '$1 >= a && $2 == "err" && ($3 == "not_owner" || $3 == "stale_epoch")' "$HB_TMP/storm.txt" | wc -l)"
hb_log "FIGURES pause_fence: writes of $VICTIM refused by the database after its segments were taken: $refused as not the owner (cluster.owner_refusals), $stale for a stale epoch (the new owner had activated the envelope); $not_owner_answers not_owner/stale_epoch answers to clients since the pause"
assert_int -gt 0 "$((refused + stale))" "writes of $VICTIM refused by the database after its segments were taken"

hc_end_storm "${ids[@]}"
kill -0 "$victim_pid" 2>/dev/null || hb_fail "$VICTIM exited after it was resumed"

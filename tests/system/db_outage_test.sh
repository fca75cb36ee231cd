#!/usr/bin/env bash
# system.db_outage: PostgreSQL goes away completely for 10 s in the middle of
# a storm of opens, then comes back (issue 4, database outage).
#
# The test runs its OWN PostgreSQL cluster (scripts/pg with a private data
# directory and port), so stopping it disturbs nobody; the EXIT trap stops
# and removes it. Proven: the node saw the outage (store_connection_lost in
# its log, opens answered with the retryable `unavailable`), its process
# stayed up, it reconnected by itself (store_reconnected; the first open
# committed after PostgreSQL's return is timed and printed), new creates and
# opens work, and afterwards every open a client was told about ("you got
# X") is in the database with that amount, nothing else is, reconciliation
# is clean and the audit passes.
#
#   bash tests/system/db_outage_test.sh   (needs the PostgreSQL server
#   binaries that scripts/pg uses; HONGBAO_TEST_DB_URL is not used)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fault_lib.sh"

OUTAGE_S=10
STORM_MS=22000       # the storm: ~4 s before the outage, 10 s out, ~8 s after
RECOVERY_BOUND_MS=15000

# -- A private PostgreSQL --------------------------------------------------------
PG_DIR=""
PG_PORT=""
STORM_PID=""
pg_private() {
  HONGBAO_PG_DIR="$PG_DIR" HONGBAO_PG_PORT="$PG_PORT" "$HB_REPO_DIR/scripts/pg" "$@"
}
pg_private_remove() {
  [[ -n "$PG_DIR" ]] || return 0
  pg_private stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR" "$(dirname "$PG_DIR")/.$(basename "$PG_DIR")-initdb.log" \
    "$(dirname "$PG_DIR")/.$(basename "$PG_DIR").lock"
  PG_DIR=""
}
# lib.sh's EXIT trap (hb_cleanup) runs this test's clean-up first: the storm
# client, the node, then the private cluster (which takes the database along).
eval "$(declare -f hb_cleanup | sed '1s/hb_cleanup/hb_cleanup_lib/')"
hb_cleanup() {
  local rc=$?
  set +e
  if [[ -n "$STORM_PID" ]]; then
    kill "$STORM_PID" 2>/dev/null
    wait "$STORM_PID" 2>/dev/null
    STORM_PID=""
  fi
  [[ -n "$HB_NODE_PID" ]] && hb_stop_node_quietly
  HB_DB_CREATED=0
  pg_private_remove
  (exit "$rc")
  hb_cleanup_lib
}
trap pg_private_remove EXIT  # until hb_init installs hb_cleanup
PG_PORT="$(hb_free_port)"
PG_DIR="$(mktemp -d /tmp/hb_outage_pg.XXXXXX)"
pg_private start >/dev/null 2>"$PG_DIR.start.log" || {
  cat "$PG_DIR.start.log" >&2; rm -f "$PG_DIR.start.log"
  echo "FAIL [db_outage]: cannot start a private PostgreSQL on port $PG_PORT" >&2
  exit 1
}
rm -f "$PG_DIR.start.log"
export HONGBAO_TEST_DB_URL="host=127.0.0.1 port=$PG_PORT user=hongbao"

hb_init db_outage
hb_fault_check_bins
hb_log "private PostgreSQL on 127.0.0.1:$PG_PORT ($PG_DIR)"
hb_write_config "" "[limits]
count_max = 2000
[relay]
poll_ms = 50
[reconcile]
interval_s = 0"
hb_start_node

# Four envelopes of 2000 shares: the storm never runs out of shares.
ids=()
for i in 1 2 3 4; do
  hb_cli_ok create --sender "sender$i" --group g --total-fen 200000 --count 2000 \
    --idempotency-key "outage-$i"
  id="$(hb_get envelope_id)"
  hb_cli_ok pay "$id" --payment-txn "txn-outage-$i"
  ids+=("$id")
done
id_list="$(IFS=,; echo "${ids[*]}")"

# -- The storm -------------------------------------------------------------------
storm_t0="$(hb_now_ms)"
hb_fc storm --ids "$id_list" --connections 4 --duration-ms "$STORM_MS" \
  --pause-ms 20 --retry-ms 100 --grace-ms 30000 --timeout-ms 10000 \
  --prefix outage >"$HB_TMP/storm.txt" 2>"$HB_TMP/storm.err" &
STORM_PID=$!
sleep 4
before="$(grep -c ' ok ' "$HB_TMP/storm.txt" || true)"
assert_int -gt 0 "$before" "opens committed before the outage"

# -- PostgreSQL goes away ----------------------------------------------------------
stop_ms="$(hb_now_ms)"
pg_private stop >/dev/null 2>&1
stopped_ms="$(hb_now_ms)"
hb_log "PostgreSQL stopped ($(( stopped_ms - stop_ms )) ms) after $before opens; out for ${OUTAGE_S}s"
# The node notices, keeps running and answers with retryable errors.
hb_wait_log "store_connection_lost" 10 >/dev/null \
  || hb_fail "no store_connection_lost in the node log within 10s of stopping PostgreSQL"
sleep "$OUTAGE_S"
hb_proc_exited "$HB_NODE_PID" && hb_fail "the node died during the outage"
cp "$HB_TMP/storm.txt" "$HB_TMP/storm-outage.txt"
out_errors="$(awk -v a="$stopped_ms" '$1 >= a && $2 == "err"' "$HB_TMP/storm-outage.txt" | wc -l)"
out_unavailable="$(awk -v a="$stopped_ms" '$1 >= a && $2 == "err" && $3 == "unavailable"' "$HB_TMP/storm-outage.txt" | wc -l)"
out_ok="$(awk -v a="$stopped_ms" '$1 >= a + 1000 && $2 == "ok"' "$HB_TMP/storm-outage.txt" | wc -l)"
hb_log "during the outage: $out_errors error answers, $out_unavailable of them unavailable; $out_ok opens committed (expected 0)"
assert_int -gt 0 "$out_unavailable" "opens answered 'unavailable' during the outage"
assert_eq 0 "$out_ok" "opens answered 'you got X' while PostgreSQL was down"
hb_cli_err 1 unavailable create --sender late --group g --total-fen 100 --count 1 \
  --idempotency-key outage-create-during
assert_eq true "$(hb_get error.retryable)" "the create's error during the outage is retryable"

# -- PostgreSQL comes back -----------------------------------------------------------
pg_private start >/dev/null 2>&1 || hb_fail "cannot start the private PostgreSQL again"
started_ms="$(hb_now_ms)"
hb_log "PostgreSQL back after $(( started_ms - stop_ms )) ms"
# The node reconnects by itself. Timed: the storm's first commit, and for
# every envelope the first grab answered from a loaded actor again (an
# envelope whose activation failed during the outage must not keep
# answering `unavailable` once the database is back).
first_ok=""
declare -A recovered_ms=()
deadline=$(( started_ms + RECOVERY_BOUND_MS ))
while (( $(hb_now_ms) < deadline )); do
  if [[ -z "$first_ok" ]]; then
    first_ok="$(awk -v a="$started_ms" '$1 >= a && $2 == "ok" { print $1; exit }' "$HB_TMP/storm.txt")"
  fi
  for id in "${ids[@]}"; do
    [[ -n "${recovered_ms[$id]:-}" ]] && continue
    if [[ "$(hb_fc time --op grab --id "$id" --user recovery-probe --n 1 | awk '{ print $1 }')" == ok ]]; then
      recovered_ms[$id]=$(( $(hb_now_ms) - started_ms ))
    fi
  done
  [[ -n "$first_ok" && ${#recovered_ms[@]} == ${#ids[@]} ]] && break
  sleep 0.1
done
[[ -n "$first_ok" ]] || hb_fail "no open committed within $RECOVERY_BOUND_MS ms of PostgreSQL's return"
recovery_ms=$(( first_ok - started_ms ))
for id in "${ids[@]}"; do
  [[ -n "${recovered_ms[$id]:-}" ]] \
    || hb_fail "envelope $id still answers grabs with an error $RECOVERY_BOUND_MS ms after PostgreSQL's return" \
               "(last answer: $(hb_fc time --op grab --id "$id" --user recovery-probe --n 1)); recovered:" \
               "$(for k in "${!recovered_ms[@]}"; do printf '%s after %s ms; ' "$k" "${recovered_ms[$k]}"; done)"
done
recovery_all_ms=0
for id in "${ids[@]}"; do
  (( recovered_ms[$id] > recovery_all_ms )) && recovery_all_ms=${recovered_ms[$id]}
done
reconnect_line="$(hb_wait_log "store_reconnected" 5)" \
  || hb_fail "no store_reconnected in the node log"
hb_log "recovered: first open committed $recovery_ms ms after PostgreSQL was back, every envelope serving again after $recovery_all_ms ms ($(hb_log_count store_reconnected) store connections reconnected, e.g. ${reconnect_line#* })"
create_t0="$(hb_now_ms)"
for attempt in $(seq 1 100); do
  hb_cli create --sender late --group g --total-fen 100 --count 1 \
    --idempotency-key outage-create-after
  [[ "$HB_RC" == 0 ]] && break
  assert_eq true "$(hb_get error.retryable)" "a create's error while recovering is retryable"
  sleep 0.1
done
assert_eq 0 "$HB_RC" "create after PostgreSQL's return"
create_after="$(hb_get envelope_id)"
hb_log "a new create succeeded $(( $(hb_now_ms) - started_ms )) ms after PostgreSQL was back"
hb_cli_ok pay "$create_after" --payment-txn txn-outage-after
hb_cli_ok open "$create_after" --user late-user
assert_eq 100 "$(hb_get amount_fen)" "the only share of the new envelope"

# -- The storm ends; every acknowledged open is in the database ----------------------
wait "$STORM_PID" || hb_fail "the storm client failed: $(cat "$HB_TMP/storm.err")"
STORM_PID=""
hb_proc_exited "$HB_NODE_PID" && hb_fail "the node died"
acked="$(grep -c ' ok ' "$HB_TMP/storm.txt" || true)"
total_errors="$(awk '$2 == "err"' "$HB_TMP/storm.txt" | wc -l)"
codes="$(awk '$2 == "err" { print $3 }' "$HB_TMP/storm.txt" | sort | uniq -c | awk '{ printf "%s %s, ", $2, $1 }')"
transport="$(awk '$2 == "transport"' "$HB_TMP/storm.txt" | wc -l)"
gaveup="$(awk '$2 == "gaveup"' "$HB_TMP/storm.txt" | wc -l)"
hb_log "storm: $acked opens acknowledged, $total_errors error answers ($codes), $transport lost connections, $gaveup given up"
for code in $(awk '$2 == "err" { print $3 }' "$HB_TMP/storm.txt" | sort -u); do
  case "$code" in
    unavailable|busy|deadline_exceeded) ;;
    *) hb_fail "an open was answered with '$code', which is not a retryable outage error" ;;
  esac
done
assert_eq 0 "$transport" "storm connections the node dropped"
assert_eq 0 "$gaveup" "storm opens whose outcome stayed unknown"
# One amount per user (a retried open returns the same share).
awk '$2 == "ok" { print $3, $4, $5 }' "$HB_TMP/storm.txt" | sort -u >"$HB_TMP/acked.txt"
assert_empty "$(awk '{ print $1, $2 }' "$HB_TMP/acked.txt" | uniq -d)" \
  "users told two different amounts"
hb_q "SELECT envelope_id, user_id, amount_fen FROM opens
      WHERE envelope_id IN ($(IFS=,; echo "${ids[*]}"))" | tr '|' ' ' | sort -u >"$HB_TMP/db-opens.txt"
assert_empty "$(comm -23 "$HB_TMP/acked.txt" "$HB_TMP/db-opens.txt" | head -20)" \
  "acknowledged opens missing from the database (envelope user amount)"
assert_empty "$(comm -13 "$HB_TMP/acked.txt" "$HB_TMP/db-opens.txt" | head -20)" \
  "opens in the database that no client was told about (envelope user amount)"
assert_int -eq "$(wc -l <"$HB_TMP/acked.txt")" "$(hb_q "SELECT COUNT(*) FROM opens WHERE envelope_id IN ($(IFS=,; echo "${ids[*]}"))")" \
  "opens in the database vs acknowledged"

# No segment was blocked: a lost database is not a segment's fault.
assert_eq 0 "$(hb_q "SELECT COUNT(*) FROM segment_states WHERE blocked")" \
  "segments blocked by the outage"
assert_eq 0 "$(hb_log_count "segment_blocked")" "segment_blocked lines in the node log"

# Money: the relay catches up, reconciliation is clean, the audit passes.
hb_wait_sql "SELECT COUNT(*) FROM relay_backlog" 0 30 \
  || hb_fail "the relay did not drain relay_backlog after the outage"
hb_cli reconcile
assert_eq 0 "$HB_RC" "hongbao reconcile exit status (output: $HB_OUT)"
assert_eq 0 "$(hb_get discrepancies.#)" "discrepancies"
hb_audit_db
hb_log "FIGURES db_outage: outage_s=$OUTAGE_S acked_opens=$acked unavailable_answers=$out_unavailable recovery_first_open_ms=$recovery_ms recovery_all_envelopes_ms=$recovery_all_ms"
hb_stop_node

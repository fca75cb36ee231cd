#!/usr/bin/env bash
# Expiry by the database's clock (issue 23): a node whose wall clock steps
# two days forward (NTP, a resumed VM) must refund nothing early. The node is
# restarted with HONGBAO_CLOCK_OFFSET_MS (read at start), which is how a
# step looks to it. First the sweeper sees the skew and holds expiry (stats,
# log); then, with a bound too loose to hold, the refund statement itself
# refuses every early refund and the opens go on.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
hb_init clock_step
two_days_ms=$(( 2 * 24 * 3600 * 1000 ))
config() {
  hb_write_config "" "[limits]
expiry_s = 3600
[expiry]
sweep_interval_ms = 100
clock_check_interval_ms = 100
clock_skew_max_ms = $1
[relay]
poll_ms = 20
[reconcile]
interval_s = 0"
}
config 2000
hb_start_node
hb_cli_ok create --sender sender --group g --total-fen 500 --count 5 --kind equal --idempotency-key step1
id="$(hb_get envelope_id)"
hb_cli_ok pay "$id" --payment-txn step-txn-1
hb_cli_ok open "$id" --user ann
hb_cli_ok stats
skew="$("$HB_PY" -c 'import json,sys; print(json.loads(sys.argv[1])["metrics"]["expiry.clock_skew_ms"])' "$HB_OUT")"
hb_log "skew on the right clock: $skew ms"
[[ "${skew#-}" -lt 1000 ]] || hb_fail "skew $skew ms on a node with the right clock"
hb_stop_node

# 1. Two days ahead, the sweeper's bound 2 s: expiry is held, and said so.
hb_start_node HONGBAO_CLOCK_OFFSET_MS=$two_days_ms
sleep 1.5
hb_cli_ok stats
skew="$("$HB_PY" -c 'import json,sys; print(json.loads(sys.argv[1])["metrics"]["expiry.clock_skew_ms"])' "$HB_OUT")"
held="$("$HB_PY" -c 'import json,sys; print(json.loads(sys.argv[1])["metrics"]["expiry.held"])' "$HB_OUT")"
hb_log "skew two days ahead: $skew ms (held $held)"
(( skew > two_days_ms - 5000 && skew < two_days_ms + 5000 )) \
  || hb_fail "expiry.clock_skew_ms $skew, not about $two_days_ms"
assert_eq 1 "$held" "expiry.held in 'hongbao stats'"
grep -q "expiry_held clock_skew_ms=" "$HB_NODE_LOG" || hb_fail "no expiry_held line in the log"
assert_eq "2|0|400" "$(hb_q "SELECT status || '|' || refunded_fen || '|' || remaining_fen FROM envelopes WHERE id = $id")" \
  "status, refunded and remaining of the envelope while expiry is held"
hb_stop_node

# 2. Two days ahead and a bound of three days: the sweeper asks, the envelope
# actor (by its clock the envelope expired) asks the database, which refuses.
config $(( 3 * two_days_ms / 2 ))
hb_start_node HONGBAO_CLOCK_OFFSET_MS=$two_days_ms
for _ in $(seq 1 50); do
  grep -q "refund_refused envelope=$id reason=not_expired" "$HB_NODE_LOG" && break
  sleep 0.1
done
grep -q "refund_refused envelope=$id reason=not_expired" "$HB_NODE_LOG" \
  || hb_fail "the node never tried the early refund (no refund_refused line)"
sleep 0.5
assert_eq "2|0|400" "$(hb_q "SELECT status || '|' || refunded_fen || '|' || remaining_fen FROM envelopes WHERE id = $id")" \
  "status, refunded and remaining after the refused refunds"
assert_eq 0 "$(hb_q "SELECT count(*) FROM ledger_entries WHERE kind = 'refund'")" "refund entries"
# The database says the envelope is live: opens go on.
hb_cli_ok open "$id" --user ben
assert_eq 2 "$(hb_q "SELECT count(*) FROM opens WHERE envelope_id = $id")" "opens after the step"
hb_stop_node

# 3. The right clock again, and the database's clock past the expiry (moved
# back here, as time would): the refund goes through, once.
hb_q "UPDATE envelopes SET expires_at = now() - interval '1 second' WHERE id = $id" >/dev/null
config 2000
hb_start_node
for _ in $(seq 1 50); do
  [[ "$(hb_q "SELECT status FROM envelopes WHERE id = $id")" == 5 ]] && break
  sleep 0.1
done
assert_eq "5|300" "$(hb_q "SELECT status || '|' || refunded_fen FROM envelopes WHERE id = $id")" \
  "status and refunded amount once really expired"
hb_audit_db
hb_stop_node

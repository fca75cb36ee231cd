#!/usr/bin/env bash
# Hot and cold data: a node whose clock runs 40 days behind makes envelopes,
# opens and records dated 40 days back (their ids carry that day, so they
# land in that day's partitions). A node on the real clock then moves those
# partitions into the cold schema at start-up, and GetEnvelope and History
# still return them. The database's clock decides expiry, so the old node's
# envelopes expire 40 days and an hour after their payment by its clock (an
# hour from now by the database's), and the one left to expire is made due
# by moving its expiry back, as time would; the old node is told to expire
# envelopes although its clock is 40 days off (clock_skew_max_ms).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
hb_init cold_storage
hb_write_config "" "[limits]
expiry_s = $(( 40 * 24 * 3600 + 3600 ))
[expiry]
sweep_interval_ms = 200
clock_skew_max_ms = $(( 41 * 24 * 3600 * 1000 ))
[relay]
poll_ms = 20
[reconcile]
interval_s = 0"
forty_days_ms=$(( 40 * 24 * 3600 * 1000 ))
hb_start_node HONGBAO_CLOCK_OFFSET_MS=-$forty_days_ms
old_day="$(date -u -d '40 days ago' +%Y%m%d)"

# One envelope opened to the end, one half opened and left to expire.
hb_cli_ok create --sender oldsender --group g --total-fen 300 --count 3 --idempotency-key old1
full="$(hb_get envelope_id)"
assert_eq "$old_day" "${full:0:8}" "the day in the id of an envelope made 40 days back"
hb_cli_ok pay "$full" --payment-txn old-txn-1
for u in ann ben cat; do hb_cli_ok open "$full" --user "$u"; done
hb_cli_ok create --sender oldsender --group g --total-fen 500 --count 5 --idempotency-key old2
half="$(hb_get envelope_id)"
hb_cli_ok pay "$half" --payment-txn old-txn-2
hb_cli_ok open "$half" --user ann
hb_stop_node
hb_q "UPDATE envelopes SET expires_at = now() - interval '41 days' WHERE id = $half" >/dev/null
hb_start_node HONGBAO_CLOCK_OFFSET_MS=-$forty_days_ms
for _ in $(seq 1 100); do
  settled="$(hb_q "SELECT COUNT(*) FROM envelopes WHERE id IN ($full, $half) AND status IN (3, 5)")"
  pending="$(hb_q "SELECT COUNT(*) FROM relay_backlog")"
  [[ "$settled" == 2 && "$pending" == 0 ]] && break
  sleep 0.1
done
assert_eq 2 "$settled" "old envelopes exhausted or refunded"
assert_eq 0 "$pending" "relay items still pending (relay_backlog)"
hb_stop_node

# The real clock: the partition keeper moves the 40-day-old partitions cold.
hb_start_node
for _ in $(seq 1 100); do
  cold="$(hb_q "SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'cold' AND tablename LIKE '%_p$old_day'")"
  [[ "$cold" == 3 ]] && break
  sleep 0.1
done
assert_eq 3 "$cold" "partitions of day $old_day in the cold schema (envelopes, opens, user_records)"
assert_eq 0 "$(hb_q "SELECT COUNT(*) FROM envelopes WHERE id IN ($full, $half)")" \
  "old envelopes left in the hot tables"

hb_cli_ok show "$full"
assert_eq exhausted "$(hb_get status)" "status of the archived envelope"
assert_eq 3 "$(hb_get opens.#)" "shares of the archived envelope"
hb_cli_ok show "$half"
assert_eq refunded "$(hb_get status)" "status of the archived half-opened envelope"
hb_cli_ok history --user ann
assert_eq 2 "$(hb_get items.#)" "ann's received history across cold partitions"
hb_cli_ok history --user oldsender --sent
assert_eq 2 "$(hb_get items.#)" "the sender's sent history across cold partitions"
# Archived envelopes are read-only: a late open is refused, nothing changes.
hb_cli open "$full" --user latecomer
assert_eq 1 "$HB_RC" "exit status of an open on an archived envelope"
hb_cli reconcile
assert_eq 0 "$HB_RC" "hongbao reconcile exit status (output: $HB_OUT)"
hb_stop_node

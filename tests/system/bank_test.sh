#!/usr/bin/env bash
# Bank-style test of the money after the open: many envelopes and users open
# concurrently (hongbao-demo) while the node -- and with it the relay -- is
# killed with SIGKILL at random moments and restarted, and already credited
# opens are marked pending again on purpose. After the relay has
# caught up, reconciliation finds nothing, every open is credited exactly
# once, and the money adds up to the fen.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
hb_init bank
DEMO_BIN="${HB_DEMO_BIN:-$HB_REPO_DIR/build/bin/hongbao-demo}"
[[ -x "$DEMO_BIN" ]] || hb_fail "no demo binary at $DEMO_BIN"

# A fixed port: the demo reconnects to the same address after each kill.
port="$("$HB_PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
hb_write_config "" "[relay]
batch_max = 20
poll_ms = 20
[reconcile]
interval_s = 0"
sed -i "s/^port = 0$/port = $port/" "$HB_CONFIG"
hb_start_node

# Three rounds: a storm of opens starts, and at a random moment inside it
# the node is killed; the demo reconnects to the restarted node and finishes.
kills=0
pending_at_kill_max=0
for round in 1 2 3; do
  base_opens="$(hb_q "SELECT COUNT(*) FROM opens")"
  "$DEMO_BIN" --server "127.0.0.1:$port" --token "$HB_TOKEN" --envelopes 25 \
    --count 80 --users 2000 --connections 4 --window 4 --retries 40 \
    --timeout-ms 4000 --seed "$round" -q --json \
    >"$HB_TMP/demo$round.json" 2>"$HB_TMP/demo$round.err" &
  demo_pid=$!
  # Kill once 20-219 of this round's 2 000 opens have committed, so that the
  # kill lands inside the storm and while the relay has work (the storm is
  # long enough that it is still going when the poll below sees the count;
  # with 400 opens a fast node was done before the kill).
  target=$(( base_opens + 20 + RANDOM % 200 ))
  for _ in $(seq 1 400); do
    (( $(hb_q "SELECT COUNT(*) FROM opens") >= target )) && break
    sleep 0.01
  done
  # What the relay still had to do when it died (evidence it died mid-work).
  pending="$(hb_q "SELECT COUNT(*) FROM relay_backlog")"
  pid="$HB_NODE_PID"
  kill -KILL "$pid"
  hb_wait_node_exit 10 || hb_fail "the node did not die on SIGKILL"
  # Proof that the node (and its relay) really died: killed by signal 9.
  assert_eq 137 "$HB_NODE_RC" "exit status of the killed node"
  kills=$((kills + 1))
  (( pending > pending_at_kill_max )) && pending_at_kill_max=$pending
  hb_log "round $round: killed node pid $pid with $pending relay items pending; restarting"
  hb_start_node
  demo_rc=0
  wait "$demo_pid" || demo_rc=$?
  assert_eq 0 "$demo_rc" "hongbao-demo exit status, round $round ($(tail -n 3 "$HB_TMP/demo$round.err"))"
  demo_json="$(cat "$HB_TMP/demo$round.json")"
  assert_eq true "$(hb_get totals.conserved "$demo_json")" "demo verdict, round $round: conserved"
  reconnects="$(hb_get storm.reconnects "$demo_json")"
  reconnects_total=$(( ${reconnects_total:-0} + reconnects ))
  hb_log "round $round: $(hb_get storm.opens_committed "$demo_json") opens, $reconnects reconnects"
done
assert_eq 3 "$kills" "node kills"
assert_int -gt 0 "$pending_at_kill_max" "relay items pending at the most loaded kill (the relay died mid-work)"
assert_int -gt 0 "$reconnects_total" "demo reconnects (kills landed inside a storm)"

# Deliver already credited opens again (queue them once more, as a commit
# does): the relay must find their credits and post nothing.
redelivered="$(hb_q "
  WITH c AS (
    SELECT l.envelope_id, l.user_id FROM ledger_entries l
    WHERE l.kind = 'credit'
    ORDER BY l.id LIMIT 25),
  again AS (
    INSERT INTO credits_owed (envelope_ids, user_ids)
    SELECT array_agg(envelope_id), array_agg(user_id) FROM c
    RETURNING cardinality(envelope_ids) AS n)
  SELECT COALESCE(SUM(n), 0) FROM again")"
hb_log "re-delivering $redelivered credited opens"
assert_int -ge 1 "$redelivered" "credited opens set up for a second delivery"

# Wait until the relay has drained.
for _ in $(seq 1 600); do
  left="$(hb_q "SELECT COUNT(*) FROM relay_backlog")"
  [[ "$left" == 0 ]] && break
  sleep 0.1
done
assert_eq 0 "$left" "relay items still pending (relay_backlog)"

hb_cli reconcile
assert_eq 0 "$HB_RC" "exit status of hongbao reconcile (output: $HB_OUT)"
assert_eq true "$(hb_get consistent)" "reconciliation verdict"
assert_eq 0 "$(hb_get discrepancies.#)" "discrepancies"
assert_eq 0 "$(hb_get relay_pending)" "opens not yet credited"

# Every open credited exactly once, with its amount, to its user's wallet.
assert_empty "$(hb_q "
  SELECT o.envelope_id, o.user_id, COUNT(l.id)
  FROM opens o LEFT JOIN ledger_entries l
    ON l.kind = 'credit' AND l.envelope_id = o.envelope_id
   AND l.user_id = o.user_id AND l.amount_fen = o.amount_fen
   AND l.credit_account = 'user:' || o.user_id
  GROUP BY 1, 2 HAVING COUNT(l.id) <> 1")" \
  "opens without exactly one matching credit (envelope|user|credits)"
assert_eq 0 "$(hb_q "SELECT COUNT(*) FROM relay_backlog")" \
  "opens and outbox rows the relay still owes"
# The money adds up: what came in from the payment system is in wallets and
# escrow, to the fen.
paid_in="$(hb_q "SELECT COALESCE(SUM(total_fen), 0) FROM envelopes WHERE status >= 2")"
assert_eq "-$paid_in" "$(hb_q "SELECT balance_fen FROM accounts WHERE id = 'external:payments'")" \
  "external account vs money paid in"
assert_eq "$paid_in" "$(hb_q "SELECT COALESCE(SUM(balance_fen), 0) FROM accounts WHERE kind IN (1, 2)")" \
  "wallets + escrow vs money paid in"
assert_eq "$(hb_q "SELECT COALESCE(SUM(amount_fen), 0) FROM opens")" \
  "$(hb_q "SELECT COALESCE(SUM(balance_fen), 0) FROM accounts WHERE kind = 1")" \
  "wallets vs shares opened"
hb_audit_db

hb_stop_node
summary="$(grep 'relay:' "$HB_NODE_LOG" || true)"
hb_log "$summary"
found="$(sed -n 's/.* \([0-9][0-9]*\) redeliveries found credited.*/\1/p' <<<"$summary")"
assert_int -ge "$redelivered" "${found:-0}" "redeliveries the relay found already credited"

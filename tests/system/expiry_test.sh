#!/usr/bin/env bash
# Expiry and refund: with a short expiry, partly opened envelopes are refunded
# exactly once -- by the live actor's timer, and by the durable sweeper when
# the node was stopped across the expiry -- and a late open gets EXPIRED.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
hb_init expiry
hb_write_config "" "[limits]
expiry_s = 3
[expiry]
sweep_interval_ms = 200
[relay]
poll_ms = 20
[reconcile]
interval_s = 0"
hb_start_node

# wrap_and_pay SENDER KEY TOTAL COUNT: prints the id of a paid envelope.
wrap_and_pay() {
  hb_cli_ok create --sender "$1" --group g --total-fen "$3" --count "$4" \
    --idempotency-key "$2"
  local id; id="$(hb_get envelope_id)"
  hb_cli_ok pay "$id" --payment-txn "txn-$2"
  echo "$id"
}
refunds_of() {
  hb_q "SELECT COUNT(*) || ':' || COALESCE(SUM(amount_fen), 0) FROM ledger_entries
        WHERE kind = 'refund' AND envelope_id = $1"
}

# A: stays live; its actor's timer refunds it.
a="$(wrap_and_pay alice a1 1000 5)"
hb_cli_ok open "$a" --user u1
a_share="$(hb_get amount_fen)"
hb_cli_ok open "$a" --user u2
a_opened=$(( a_share + $(hb_get amount_fen) ))
# B: its node is stopped across the expiry; the sweeper refunds it later.
b="$(wrap_and_pay bob b1 700 7)"
hb_cli_ok open "$b" --user u3
b_opened="$(hb_get amount_fen)"
hb_stop_node
hb_log "node stopped; waiting past the expiry"
sleep 4
assert_eq 2 "$(hb_q "SELECT status FROM envelopes WHERE id = $b")" \
  "B is still PAID while no node runs (nothing refunds behind our back)"
hb_start_node

# Both get refunded: B by the sweeper of the restarted node (its actor is not
# live), A too (the restart lost its timer; the sweeper covers that as well).
for _ in $(seq 1 100); do
  done_count="$(hb_q "SELECT COUNT(*) FROM envelopes WHERE id IN ($a, $b) AND status = 5")"
  [[ "$done_count" == 2 ]] && break
  sleep 0.1
done
assert_eq 2 "$done_count" "envelopes refunded after the restart"
assert_eq "1:$(( 1000 - a_opened ))" "$(refunds_of "$a")" "refund entries of A (count:amount)"
assert_eq "1:$(( 700 - b_opened ))" "$(refunds_of "$b")" "refund entries of B (count:amount)"

# C: live the whole time; the envelope actor's own timer refunds it.
c="$(wrap_and_pay carol c1 500 5)"
hb_cli_ok open "$c" --user u4
c_opened="$(hb_get amount_fen)"
for _ in $(seq 1 100); do
  [[ "$(hb_q "SELECT status FROM envelopes WHERE id = $c")" == 5 ]] && break
  sleep 0.1
done
assert_eq "1:$(( 500 - c_opened ))" "$(refunds_of "$c")" "refund entries of C (count:amount)"

# A late open gets EXPIRED and changes nothing; a late grab says expired.
hb_cli_err 1 expired open "$c" --user late
hb_cli_ok grab "$c" --user late
assert_eq expired "$(hb_get outcome)" "grab after expiry"
assert_eq 1 "$(hb_q "SELECT COUNT(*) FROM opens WHERE envelope_id = $c")" "opens of C"
hb_cli_ok show "$c"
assert_eq refunded "$(hb_get status)" "status of C"
assert_eq "$(( 500 - c_opened ))" "$(hb_get refunded_fen)" "refunded_fen of C"

# More sweeps pass; still exactly one refund each (exactly once).
sleep 1
for id in "$a" "$b" "$c"; do
  assert_eq 1 "$(hb_q "SELECT COUNT(*) FROM ledger_entries WHERE kind = 'refund' AND envelope_id = $id")" \
    "refund entries of $id after more sweeps"
done
# The senders got their remainders (after the relay, receivers their shares).
hb_cli_ok balance --user carol
assert_eq "$(( 500 - c_opened ))" "$(hb_get balance_fen)" "carol's wallet"
for _ in $(seq 1 100); do
  [[ "$(hb_q "SELECT COUNT(*) FROM relay_backlog")" == 0 ]] && break
  sleep 0.1
done
hb_cli reconcile
assert_eq 0 "$HB_RC" "hongbao reconcile exit status (output: $HB_OUT)"
assert_eq 0 "$(hb_get discrepancies.#)" "discrepancies"
hb_audit_db
hb_stop_node

#!/usr/bin/env bash
# system.crash_after_commit: a node that dies right after an open batch is
# committed and before it replies (failpoint crash_after_commit, the process
# _Exit(86)s) loses the reply but never the money: the open is in the
# database, and after a restart the same open returns the same share with
# first_time = false.
#
#   scripts/pg start
#   export HONGBAO_TEST_DB_URL="host=127.0.0.1 port=55432 user=hongbao"
#   bash tests/system/crash_after_commit_test.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

hb_init crash_after_commit
hb_write_config
hb_start_node HONGBAO_FAILPOINTS=crash_after_commit
crashing_pid=$HB_NODE_PID

# Create and pay do not commit open batches: the failpoint stays quiet.
key="crash-key-$$"
hb_cli_ok create --sender alice --group crash --total-fen 5000 --count 3 --kind random \
  --idempotency-key "$key"
id="$(hb_get envelope_id)"
hb_cli_ok pay "$id" --payment-txn "txn-crash-$$"
assert_eq paid "$(hb_get status)" "status after pay"
hb_cli_ok grab "$id" --user bob
assert_eq can_open "$(hb_get outcome)" "grab before the crash"

# The open commits, then the node dies before replying: the client sees a
# broken connection (exit 3), not an answer.
hb_cli open "$id" --user bob
assert_eq 3 "$HB_RC" "exit status of the open that crashed the node (output: $HB_OUT)"
assert_eq unavailable "$(hb_get error.code)" "error code of the open that crashed the node"
hb_wait_node_exit 30 || hb_fail "the node (pid $crashing_pid) is still running after the failpoint open"
assert_eq 86 "$HB_NODE_RC" "exit status of the node (86 = the failpoint fired)"
assert_match "failpoint crash_after_commit envelope=$id" "$(cat "$HB_NODE_LOG")" \
  "the node's log names the failpoint"

# The share was durably committed before the crash.
assert_eq 1 "$(hb_q "SELECT COUNT(*) FROM opens WHERE envelope_id = $id")" \
  "opens in the database after the crash"
amount="$(hb_q "SELECT amount_fen FROM opens WHERE envelope_id = $id AND user_id = 'bob'")"
assert_int -ge 1 "$amount" "bob's committed share"
assert_eq "$((5000 - amount))|2|2" \
  "$(hb_q "SELECT remaining_fen, remaining_count, status FROM envelopes WHERE id = $id")" \
  "remaining_fen|remaining_count|status after the crash"
# No outbox 'open' row: the relay owes bob's credit (queued in credits_owed
# by the commit, in relay_backlog, no credit yet) -- unless the relay took it
# in the instant between the commit and the crash, and then it is credited
# once and no longer queued.
bob_credit_sql="SELECT
    (SELECT COUNT(*) FROM ledger_entries l WHERE l.kind = 'credit'
       AND l.envelope_id = o.envelope_id AND l.user_id = o.user_id
       AND l.amount_fen = o.amount_fen AND l.credit_account = 'user:bob') || '|' ||
    (SELECT COUNT(*) FROM relay_backlog b WHERE b.envelope_id = o.envelope_id
       AND b.user_id = o.user_id)
  FROM opens o WHERE o.envelope_id = $id AND o.user_id = 'bob'"
assert_eq 0 "$(hb_q "SELECT COUNT(*) FROM outbox WHERE kind = 'open' AND envelope_id = $id")" \
  "outbox 'open' rows of the crashed open's envelope"
bob_credit="$(hb_q "$bob_credit_sql")"
[[ "$bob_credit" == "0|1" || "$bob_credit" == "1|0" ]] \
  || hb_fail "credits|pending of the crashed open: want 0|1 (owed) or 1|0 (credited once), got '$bob_credit'"
hb_log "the crashed open committed $amount fen for bob"

# Restart on the same database without the failpoint: the retried open
# returns the committed share, not a second one.
hb_start_node
# Create and pay stay idempotent across the restart too.
hb_cli_ok create --sender alice --group crash --total-fen 5000 --count 3 --kind random \
  --idempotency-key "$key"
assert_eq "$id" "$(hb_get envelope_id)" "id of the repeated create after the restart"
assert_eq paid "$(hb_get status)" "status in the repeated create after the restart"
assert_eq "$((5000 - amount))" "$(hb_get remaining_fen)" "remaining_fen after the restart"
hb_cli_ok pay "$id" --payment-txn "txn-crash-$$"
hb_cli_err 1 payment_mismatch pay "$id" --payment-txn "txn-other-$$"
hb_cli_ok grab "$id" --user bob
assert_eq already_opened "$(hb_get outcome)" "grab after the restart"
assert_eq "$amount" "$(hb_get amount_fen)" "amount in the grab after the restart"
hb_cli_ok open "$id" --user bob
assert_eq "$amount" "$(hb_get amount_fen)" "bob's share when he retries the open"
assert_eq false "$(hb_get first_time)" "first_time of the retried open"
assert_eq 1 "$(hb_get seq)" "seq of the retried open"
assert_eq 1 "$(hb_q "SELECT COUNT(*) FROM opens WHERE envelope_id = $id AND user_id = 'bob'")" \
  "bob's opens in the database after the retry"

# The restarted node goes on normally: the other shares, then exhausted.
hb_cli_ok open "$id" --user carol
carol="$(hb_get amount_fen)"
assert_eq 2 "$(hb_get seq)" "seq of carol's open"
hb_cli_ok open "$id" --user dave
dave="$(hb_get amount_fen)"
assert_eq 5000 "$((amount + carol + dave))" "the three shares add up to the total"
hb_cli_err 1 exhausted open "$id" --user erin
hb_cli_ok show "$id"
assert_eq exhausted "$(hb_get status)" "status after the last share"
assert_eq 3 "$(hb_get opens.#)" "opens in show"
assert_eq "$amount" "$(hb_get opens.0.amount_fen)" "bob's share in show"

# The restarted relay credits the crashed open exactly once, with its amount.
for _ in $(seq 1 150); do
  [[ "$(hb_q "SELECT COUNT(*) FROM relay_backlog WHERE envelope_id = $id")" == 0 ]] && break
  sleep 0.1
done
assert_eq "1|0" "$(hb_q "$bob_credit_sql")" \
  "credits|pending of the crashed open after the relay drained"
hb_audit_db
hb_stop_node

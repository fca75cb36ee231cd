#!/usr/bin/env bash
# system.cli_flow: the `hongbao` CLI drives the whole flow against a real
# hongbao-node over TCP, with --json, and the database is audited at the end.
#
#   scripts/pg start
#   export HONGBAO_TEST_DB_URL="host=127.0.0.1 port=55432 user=hongbao"
#   bash tests/system/cli_flow_test.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

hb_init cli_flow
hb_write_config
hb_start_node

# -- Wrap (包) a random and an equal envelope ------------------------------------
key_random="cli-flow-random-$$"
hb_cli_ok create --sender alice --group family --total-fen 1000 --count 5 \
  --kind random --greeting "恭喜发财" --idempotency-key "$key_random"
random_id="$(hb_get envelope_id)"
assert_match '^[1-9][0-9]{16,18}$' "$random_id" "id of the random envelope"
assert_eq created "$(hb_get status)" "status after create"
assert_eq random "$(hb_get kind)" "kind"
assert_eq 1000 "$(hb_get remaining_fen)" "remaining_fen after create"
assert_eq 5 "$(hb_get remaining_count)" "remaining_count after create"
assert_eq "$key_random" "$(hb_get idempotency_key)" "idempotency key echoed"
assert_eq "恭喜发财" "$(hb_get greeting)" "greeting (UTF-8) round trip"

hb_cli_ok create --sender bob --group family --total-fen 1003 --count 4 --kind equal
equal_id="$(hb_get envelope_id)"
generated_key="$(hb_get idempotency_key)"
assert_match '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' \
  "$generated_key" "the CLI's generated idempotency key (UUID v4)"
assert_eq equal "$(hb_get kind)" "kind"
assert_ne "$random_id" "$equal_id" "two creates give two ids"

# The same idempotency key (same sender, same content) returns the same
# envelope; the same key with other content is a conflict.
hb_cli_ok create --sender alice --group family --total-fen 1000 --count 5 \
  --kind random --greeting "恭喜发财" --idempotency-key "$key_random"
assert_eq "$random_id" "$(hb_get envelope_id)" "id of a repeated create (same key)"
hb_cli_ok create --sender bob --group family --total-fen 1003 --count 4 --kind equal \
  --idempotency-key "$generated_key"
assert_eq "$equal_id" "$(hb_get envelope_id)" "id of a repeated create (generated key)"
hb_cli_err 1 conflict create --sender alice --group family --total-fen 2000 --count 5 \
  --kind random --idempotency-key "$key_random"

# -- Limits -----------------------------------------------------------------------
hb_cli_err 1 limit_exceeded create --sender alice --group g --total-fen 10100 --count 101
hb_cli_err 1 limit_exceeded create --sender alice --group g --total-fen 20001 --count 1
hb_cli_err 1 limit_exceeded create --sender alice --group g --total-fen 4 --count 5
hb_cli_err 1 invalid_argument create --sender alice --group "" --total-fen 100 --count 1
hb_cli_err 2 invalid_argument create --sender alice --group g --total-fen 100 --count 1 --kind lucky

# -- Not paid yet ---------------------------------------------------------------
hb_cli_ok grab "$random_id" --user carol
assert_eq not_paid "$(hb_get outcome)" "grab before pay"
hb_cli_err 1 not_paid open "$random_id" --user carol

# -- Send (发): pay, pay again (idempotent), pay with another txn ----------------
hb_cli_ok pay "$random_id" --payment-txn "txn-random-$$"
assert_eq paid "$(hb_get status)" "status after pay"
assert_eq "txn-random-$$" "$(hb_get payment_txn)" "payment txn"
paid_at="$(hb_get paid_at_ms)"
expires_at="$(hb_get expires_at_ms)"
assert_int -gt 0 "$paid_at" "paid_at_ms"
assert_eq $((paid_at + 24 * 3600 * 1000)) "$expires_at" "expires_at_ms = paid + 24 h"
hb_cli_ok pay "$random_id" --payment-txn "txn-random-$$"
assert_eq paid "$(hb_get status)" "status after a repeated pay"
assert_eq "$paid_at" "$(hb_get paid_at_ms)" "paid_at_ms after a repeated pay"
hb_cli_err 1 payment_mismatch pay "$random_id" --payment-txn "txn-other-$$"
hb_cli_ok pay "$equal_id" --payment-txn "txn-equal-$$"

# A repeated create of a paid envelope returns it in its current status.
hb_cli_ok create --sender alice --group family --total-fen 1000 --count 5 \
  --kind random --greeting "恭喜发财" --idempotency-key "$key_random"
assert_eq paid "$(hb_get status)" "status in a repeated create after pay"

# -- Grab (抢) and open (拆) ----------------------------------------------------------
hb_cli_ok grab "$random_id" --user carol
assert_eq can_open "$(hb_get outcome)" "grab after pay"
assert_eq 5 "$(hb_get remaining_count)" "remaining_count in grab"
hb_cli_ok open "$random_id" --user carol
carol_amount="$(hb_get amount_fen)"
assert_int -ge 1 "$carol_amount" "carol's share"
assert_int -le 399 "$carol_amount" "carol's share (double-mean: at most 2*1000/5-1)"
assert_eq true "$(hb_get first_time)" "first_time of carol's first open"
assert_eq 1 "$(hb_get seq)" "seq of the first open"
hb_cli_ok open "$random_id" --user carol
assert_eq "$carol_amount" "$(hb_get amount_fen)" "carol's share on a repeated open"
assert_eq false "$(hb_get first_time)" "first_time of a repeated open"
assert_eq 1 "$(hb_get seq)" "seq of a repeated open"
hb_cli_ok grab "$random_id" --user carol
assert_eq already_opened "$(hb_get outcome)" "grab after open"
assert_eq "$carol_amount" "$(hb_get amount_fen)" "amount in grab after open"

total_told=$carol_amount
for user in dave 二狗 erin; do
  hb_cli_ok open "$random_id" --user "$user"
  assert_eq true "$(hb_get first_time)" "first_time of $user"
  total_told=$((total_told + $(hb_get amount_fen)))
done

hb_cli_ok show "$random_id"
assert_eq 4 "$(hb_get opens.#)" "opens in show"
assert_eq carol "$(hb_get opens.0.user)" "first open in show"
assert_eq "$carol_amount" "$(hb_get opens.0.amount_fen)" "carol's amount in show"
assert_eq "二狗" "$(hb_get opens.2.user)" "UTF-8 user name in show"
assert_eq 1 "$(hb_get remaining_count)" "remaining_count in show"
assert_eq $((1000 - total_told)) "$(hb_get remaining_fen)" "remaining_fen in show"
best="$("$HB_PY" -c '
import json, sys
d = json.loads(sys.argv[1])
b = max(d["opens"], key=lambda o: (o["amount_fen"], -o["seq"]))
print(b["user"], b["amount_fen"], b["seq"])' "$HB_OUT")"
assert_eq "$best" "$(hb_get best_luck.user) $(hb_get best_luck.amount_fen) $(hb_get best_luck.seq)" \
  "best_luck (largest amount, lower seq on a tie)"

# The last share takes the rest; then the envelope is exhausted.
hb_cli_ok open "$random_id" --user frank
assert_eq $((1000 - total_told)) "$(hb_get amount_fen)" "the last share takes the rest"
hb_cli_ok grab "$random_id" --user grace
assert_eq exhausted "$(hb_get outcome)" "grab of an exhausted envelope (still exit 0)"
hb_cli_err 1 exhausted open "$random_id" --user grace
hb_cli_ok open "$random_id" --user frank
assert_eq false "$(hb_get first_time)" "a repeated open after exhaustion"
hb_cli_ok show "$random_id"
assert_eq exhausted "$(hb_get status)" "status after the last share"
assert_eq 0 "$(hb_get remaining_fen)" "remaining_fen when exhausted"

# Equal shares: 1003 / 4 = 250 rest 3, spread one fen each.
equal_amounts=""
for user in u1 u2 u3 u4; do
  hb_cli_ok open "$equal_id" --user "$user"
  equal_amounts+="$(hb_get amount_fen) "
done
assert_eq "251 251 251 250 " "$equal_amounts" "equal shares of 1003 fen in 4"
hb_cli_ok show "$equal_id"
assert_eq exhausted "$(hb_get status)" "status of the equal envelope"
assert_eq u1 "$(hb_get best_luck.user)" "best luck on a tie goes to the lower seq"

# Human-readable output carries best luck too.
show_text="$("$HB_CLI_BIN" show "$random_id")" || hb_fail "hongbao show (text) failed"
assert_match "手气最佳 best luck: " "$show_text" "text output of show"

# -- Unknown ids -----------------------------------------------------------------
hb_cli_err 1 not_found open 2026010199999999001 --user zed
hb_cli_err 1 not_found open 42 --user zed
hb_cli_err 1 not_found grab 42 --user zed
hb_cli_err 1 not_found show 2026010199999999001
hb_cli_err 1 not_found pay 2026010199999999001 --payment-txn "txn-nobody-$$"
hb_cli_err 2 invalid_argument open not-a-number --user zed

# -- Authentication ----------------------------------------------------------------
hb_cli --token wrong-token show "$random_id"
assert_ne 0 "$HB_RC" "exit status with a wrong token"
assert_eq unauthenticated "$(hb_get error.code)" "error code with a wrong token"

# -- Audit the database ----------------------------------------------------------
assert_eq 9 "$(hb_q "SELECT COUNT(*) FROM opens")" "opens in the database"
assert_eq "$carol_amount" \
  "$(hb_q "SELECT amount_fen FROM opens WHERE envelope_id = $random_id AND user_id = 'carol'")" \
  "carol's amount in the database"
assert_eq 2 "$(hb_q "SELECT COUNT(*) FROM outbox WHERE kind = 'paid'")" "outbox 'paid' rows"
assert_eq 2 "$(hb_q "SELECT COUNT(*) FROM envelopes")" "envelopes (repeated creates made none)"
hb_audit_db

# -- Node down: a connection error is exit 3 -----------------------------------------
hb_stop_node
hb_cli show "$random_id"
assert_eq 3 "$HB_RC" "exit status with the node down"
assert_eq unavailable "$(hb_get error.code)" "error code with the node down"
assert_eq true "$(hb_get error.retryable)" "a connection error is retryable"

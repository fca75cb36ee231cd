#!/usr/bin/env bash
# Reconciliation finds planted faults, each reported with the right envelope
# id: a deleted credit, a doubled credit and an altered open. It repairs only
# what is safe (the lost credit is re-enqueued for the relay).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
hb_init reconcile_faults
hb_write_config "" "[relay]
poll_ms = 20
[reconcile]
interval_s = 0"
hb_start_node

ids=()
for k in 1 2 3 4; do
  hb_cli_ok create --sender s$k --group g --total-fen 1000 --count 4 --idempotency-key r$k
  id="$(hb_get envelope_id)"
  hb_cli_ok pay "$id" --payment-txn "txn-r$k"
  hb_cli_ok open "$id" --user x
  hb_cli_ok open "$id" --user y
  ids+=("$id")
done
for _ in $(seq 1 100); do
  [[ "$(hb_q "SELECT COUNT(*) FROM relay_backlog")" == 0 ]] && break
  sleep 0.1
done
hb_cli reconcile
assert_eq 0 "$HB_RC" "clean database: reconcile exit status (output: $HB_OUT)"
assert_eq 0 "$(hb_get discrepancies.#)" "discrepancies before the faults"

deleted="${ids[0]}"; doubled="${ids[1]}"; altered="${ids[2]}"
# 1. A credit disappears, with the balances put back as if it never
#    happened: the ledger itself stays consistent, but an open that was
#    TRANSFERRED was never paid.
hb_q "UPDATE accounts SET balance_fen = balance_fen - l.amount_fen
      FROM ledger_entries l WHERE l.kind = 'credit' AND l.envelope_id = $deleted
       AND l.user_id = 'x' AND accounts.id = l.credit_account;
      UPDATE accounts SET balance_fen = balance_fen + l.amount_fen
      FROM ledger_entries l WHERE l.kind = 'credit' AND l.envelope_id = $deleted
       AND l.user_id = 'x' AND accounts.id = l.debit_account;
      DELETE FROM ledger_entries WHERE kind = 'credit' AND envelope_id = $deleted
       AND user_id = 'x'" >/dev/null
# 2. A credit is paid twice (another key, balances moved consistently).
hb_q "INSERT INTO ledger_entries (idempotency_key, kind, debit_account, credit_account,
                                  amount_fen, envelope_id, user_id)
      SELECT 'planted-dup', 'credit', debit_account, credit_account, amount_fen,
             envelope_id, user_id
      FROM ledger_entries WHERE kind = 'credit' AND envelope_id = $doubled AND user_id = 'y';
      UPDATE accounts SET balance_fen = balance_fen
        + (SELECT amount_fen FROM ledger_entries WHERE idempotency_key = 'planted-dup')
      WHERE id = 'user:y';
      UPDATE accounts SET balance_fen = balance_fen
        - (SELECT amount_fen FROM ledger_entries WHERE idempotency_key = 'planted-dup')
      WHERE id = 'escrow:' || lpad(($doubled % 1000)::text, 3, '0')" >/dev/null
# 3. An open's amount is altered after the fact.
hb_q "UPDATE opens SET amount_fen = amount_fen + 7 WHERE envelope_id = $altered AND user_id = 'x'" >/dev/null

hb_cli reconcile
assert_eq 1 "$HB_RC" "reconcile exit status with faults (output: $HB_OUT)"
assert_eq false "$(hb_get consistent)" "verdict with faults"
report="$HB_OUT"
# has_finding KIND ENVELOPE: the report lists that kind for that envelope.
has_finding() {
  "$HB_PY" -c '
import json, sys
r = json.loads(sys.argv[1])
hits = [d for d in r["discrepancies"] if d["kind"] == sys.argv[2] and str(d["envelope_id"]) == sys.argv[3]]
print("yes" if hits else "no")' "$report" "$1" "$2"
}
assert_eq yes "$(has_finding missing_credit "$deleted")" "missing_credit reported for $deleted"
assert_eq yes "$(has_finding double_credit "$doubled")" "double_credit reported for $doubled"
assert_eq yes "$(has_finding sum_mismatch "$altered")" "sum_mismatch reported for $altered"
assert_eq yes "$(has_finding credit_amount_mismatch "$altered")" "credit_amount_mismatch reported for $altered"
# Nothing is reported for the untouched envelope.
untouched="${ids[3]}"
assert_eq no "$(has_finding sum_mismatch "$untouched")" "no finding for $untouched"
assert_eq 0 "$("$HB_PY" -c '
import json, sys
r = json.loads(sys.argv[1])
print(sum(1 for d in r["discrepancies"] if str(d["envelope_id"]) == sys.argv[2]))' "$report" "$untouched")" \
  "findings for the untouched envelope $untouched"

# The lost credit was re-enqueued; after the relay it is paid again, once.
for _ in $(seq 1 100); do
  [[ "$(hb_q "SELECT COUNT(*) FROM ledger_entries WHERE kind = 'credit' AND envelope_id = $deleted AND user_id = 'x'")" == 1 ]] && break
  sleep 0.1
done
assert_eq 1 "$(hb_q "SELECT COUNT(*) FROM ledger_entries WHERE kind = 'credit' AND envelope_id = $deleted AND user_id = 'x'")" \
  "credits of x in $deleted after the repair"
hb_cli reconcile
assert_eq no "$(report="$HB_OUT"; has_finding missing_credit "$deleted")" "missing_credit after the repair"
hb_stop_node

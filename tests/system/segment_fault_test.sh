#!/usr/bin/env bash
# system.segment_fault: one id segment's storage fails inside PostgreSQL while
# the others work, and the node masks it (issue 4, DB fault masking).
#
# The fault is real: a trigger on the partitioned `envelopes` table raises
# SQLSTATE 58030 (class 58, system error: what an I/O failure of that table
# group looks like) for every insert or update of segment S, so every write
# the node makes there fails in the database. Proven first by a direct SQL
# insert. Then:
#   - 240 creates over 4 connections (no client retries): >= 99% succeed, none
#     gets an id in S; the segment is blocked after `fault_threshold` faults
#     (log `segment_blocked segment=S`, table segment_states: blocked, auto);
#     the time from the first fault to the block is printed;
#   - an envelope of a healthy segment is paid and opened as usual;
#   - requests for S's envelope fail fast with segment_unavailable (timed);
#   - S's envelope expires while blocked and stays unrefunded (it cannot be
#     written);
#   - repair (DROP TRIGGER): the probe unblocks S within a few probe
#     intervals (printed), the expired envelope is refunded exactly once,
#     new creates land in S again;
#   - an operator's block (`hongbao segment block S`) is not lifted by probes
#     and keeps creates out of S until `hongbao segment unblock S`;
#   - reconciliation is clean and the audit passes.
# The healthy envelope is paid during the fault (its own expiry must not pass
# before its opens); S's envelope is paid before it and expires while blocked.
#
#   scripts/pg start
#   export HONGBAO_TEST_DB_URL="host=127.0.0.1 port=55432 user=hongbao"
#   bash tests/system/segment_fault_test.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fault_lib.sh"

S=5                 # the failing segment
THRESHOLD=3
WINDOW_MS=5000
PROBE_MS=300
EXPIRY_S=8
CREATES=240

hb_init segment_fault
hb_fault_check_bins
hb_write_config "" "[ids]
segments = [\"0-7\"]
[segments]
window_ms = $WINDOW_MS
fault_threshold = $THRESHOLD
probe_interval_ms = $PROBE_MS
[limits]
expiry_s = $EXPIRY_S
[expiry]
sweep_interval_ms = 200
[relay]
poll_ms = 20
[reconcile]
interval_s = 0"
hb_start_node

# -- Before the fault: an envelope in S (paid, one share opened) and one in a
# healthy segment H (created; paid during the fault).
s_id="" h_id=""
for i in $(seq 1 24); do
  hb_cli_ok create --sender alice --group g --total-fen 1000 --count 10 \
    --idempotency-key "setup-$i"
  id="$(hb_get envelope_id)"
  if [[ -z "$s_id" && $(( id % 1000 )) == "$S" ]]; then
    s_id="$id"
  elif [[ -z "$h_id" && $(( id % 1000 )) != "$S" ]]; then
    h_id="$id"
  fi
  [[ -n "$s_id" && -n "$h_id" ]] && break
done
[[ -n "$s_id" ]] || hb_fail "no envelope landed in segment $S within 24 creates over segments 0-7"
hb_log "envelope in segment $S: $s_id; in healthy segment $(( h_id % 1000 )): $h_id"
hb_cli_ok pay "$s_id" --payment-txn "txn-s"
s_paid_ms="$(hb_now_ms)"
hb_cli_ok open "$s_id" --user early
s_opened="$(hb_get amount_fen)"

# -- The fault: segment S's rows cannot be written any more.
hb_q_ddl "CREATE FUNCTION injected_fault() RETURNS trigger LANGUAGE plpgsql AS \$\$
      BEGIN
        IF NEW.segment = $S THEN
          RAISE EXCEPTION 'injected storage fault' USING ERRCODE = '58030';
        END IF;
        RETURN NEW;
      END \$\$;
      CREATE TRIGGER injected_fault BEFORE INSERT OR UPDATE ON envelopes
        FOR EACH ROW EXECUTE FUNCTION injected_fault();" >/dev/null
fault_ms="$(hb_now_ms)"
# Proof: a direct insert into S fails with 58030; one into H works.
probe_row() {
  echo "INSERT INTO envelopes (id, segment, sender, group_id, idempotency_key,
          kind, status, total_fen, count, remaining_fen, remaining_count, created_at)
        VALUES (to_char(now(), 'YYYYMMDD')::bigint * 100000000000 + 99999999000 + $1,
                $1, 'proof', 'proof', 'proof-$1', 1, 1, 1, 1, 1, 1, now())"
}
set +e
proof="$(psql -X -q -v ON_ERROR_STOP=1 -v VERBOSITY=verbose "$(hb_db_url)" \
  -c "$(probe_row "$S")" 2>&1)"
proof_rc=$?
set -e
assert_ne 0 "$proof_rc" "exit status of a direct insert into segment $S (output: $proof)"
assert_match "58030" "$proof" "SQLSTATE of a direct insert into segment $S"
assert_match "injected storage fault" "$proof" "message of a direct insert into segment $S"
hb_q "BEGIN; $(probe_row $(( h_id % 1000 ))); ROLLBACK;" >/dev/null
hb_log "fault injected: inserts into segment $S fail with SQLSTATE 58030, others work"

# -- Creates during the fault: the node retries a create that hit S with a
# fresh id elsewhere; the clients never retry.
hb_fc creates --n "$CREATES" --connections 4 --prefix sf >"$HB_TMP/creates.txt"
created="$(grep -c '^ok ' "$HB_TMP/creates.txt" || true)"
failed="$(grep -c '^err ' "$HB_TMP/creates.txt" || true)"
in_s="$(awk -v s="$S" '$1 == "ok" && substr($2, length($2) - 2) + 0 == s' "$HB_TMP/creates.txt" | wc -l)"
assert_int -eq "$CREATES" "$(( created + failed ))" "answers to the creates"
rate="$(awk -v c="$created" -v n="$CREATES" 'BEGIN { printf "%.2f", 100 * c / n }')"
hb_log "creates during the fault: $created of $CREATES succeeded ($rate%), $failed failed: $(grep '^err ' "$HB_TMP/creates.txt" | head -3 | tr '\n' ';')"
assert_int -ge $(( CREATES * 99 / 100 )) "$created" "creates that succeeded during the fault (>= 99%)"
assert_eq 0 "$in_s" "created envelopes with an id in the failing segment $S"
segs_used="$(awk '$1 == "ok" { print substr($2, length($2) - 2) + 0 }' "$HB_TMP/creates.txt" | sort -un | tr '\n' ' ')"
hb_log "segments of the new envelopes: $segs_used"
assert_eq 7 "$(wc -w <<<"$segs_used")" "healthy segments that got new envelopes"

# The segment is blocked: log, table, and the node's own view.
blocked_line="$(hb_wait_log "segment_blocked segment=$S " 10)" \
  || hb_fail "no 'segment_blocked segment=$S' in the node log within 10s of the creates"
first_fault_line="$(hb_log_first "injected storage fault")"
[[ -n "$first_fault_line" ]] || hb_fail "the node never logged the injected fault"
first_fault_ms="$(hb_log_ms "$first_fault_line")"
blocked_ms="$(hb_log_ms "$blocked_line")"
retried="$(hb_log_count "create_retried")"
# Creates that met S inside a batch of many segments: the statement failed
# and its creates went alone; only S may count as faulty (asserted below).
batches_failed="$(hb_log_count "create_batch_failed")"
hb_log "segment $S blocked $(( blocked_ms - first_fault_ms )) ms after the first fault it logged ($(( blocked_ms - fault_ms )) ms after the trigger went in); creates retried in another segment: $retried"
assert_int -ge "$THRESHOLD" "$retried" "creates the node retried with a fresh id (>= fault_threshold)"
assert_int -le 5000 "$(( blocked_ms - first_fault_ms ))" "ms from the first fault to the block"
# Recorded durably (the health actor writes the row right after logging).
hb_wait_sql "SELECT blocked, mode FROM segment_states WHERE segment = $S" "t|auto" 5 \
  || hb_fail "segment_states of segment $S (blocked|mode): expected 't|auto', got '$(hb_q "SELECT blocked, mode FROM segment_states WHERE segment = $S")'"
assert_eq 1 "$(hb_q "SELECT COUNT(*) FROM segment_states WHERE blocked")" \
  "blocked segments in segment_states"
hb_cli_ok stats
assert_match "\"segment\": ?$S, ?\"blocked\": ?true, ?\"manual\": ?false" "$HB_OUT" \
  "segment $S in 'hongbao stats'"
assert_match "\"segments\\.blocked\": ?1[,}]" "$HB_OUT" "metric segments.blocked in 'hongbao stats'"

# -- Healthy envelopes are unaffected: pay and open H during the fault.
hb_cli_ok pay "$h_id" --payment-txn "txn-h"
h_opened=0
for u in h1 h2 h3; do
  hb_cli_ok open "$h_id" --user "$u"
  h_opened=$(( h_opened + $(hb_get amount_fen) ))
done
hb_cli_ok show "$h_id"
assert_eq 3 "$(hb_get opens.#)" "opens of the healthy envelope during the fault"

# -- Requests for S's envelope fail fast with a retryable error.
hb_cli_err 1 segment_unavailable open "$s_id" --user late
assert_eq true "$(hb_get error.retryable)" "segment_unavailable is retryable"
hb_cli_err 1 segment_unavailable show "$s_id"
for op in open get grab; do
  hb_fc time --op "$op" --id "$s_id" --user late --n 30 >"$HB_TMP/time-$op.txt"
  codes="$(awk '{ print $1 }' "$HB_TMP/time-$op.txt" | sort -u | tr '\n' ' ')"
  assert_eq "segment_unavailable " "$codes" "answers to $op of envelope $s_id in blocked segment $S"
  p50="$(awk '{ print $2 }' "$HB_TMP/time-$op.txt" | hb_pct 50)"
  p90="$(awk '{ print $2 }' "$HB_TMP/time-$op.txt" | hb_pct 90)"
  max="$(awk '{ print $2 }' "$HB_TMP/time-$op.txt" | hb_pct 100)"
  hb_log "$op of the blocked envelope: segment_unavailable in p50 $(hb_us_to_ms "$p50") ms, p90 $(hb_us_to_ms "$p90") ms, max $(hb_us_to_ms "$max") ms"
  assert_int -lt 20000 "$p50" "median µs of a $op in a blocked segment"
  assert_int -lt 100000 "$p90" "p90 µs of a $op in a blocked segment"
done
hb_fc time --op get --id "$h_id" --n 30 >"$HB_TMP/time-healthy.txt"
assert_eq "ok " "$(awk '{ print $1 }' "$HB_TMP/time-healthy.txt" | sort -u | tr '\n' ' ')" \
  "answers to get of the healthy envelope"
hb_log "get of the healthy envelope for comparison: p50 $(hb_us_to_ms "$(awk '{ print $2 }' "$HB_TMP/time-healthy.txt" | hb_pct 50)") ms"

# -- S's envelope expires while its segment is blocked: nothing can refund
# it yet, and nothing is lost.
wait_ms=$(( s_paid_ms + EXPIRY_S * 1000 + 1000 - $(hb_now_ms) ))
if (( wait_ms > 0 )); then
  hb_log "waiting $wait_ms ms for envelope $s_id to expire while blocked"
  sleep "$(awk -v m="$wait_ms" 'BEGIN { printf "%.3f", m / 1000 }')"
fi
assert_eq "2|0" "$(hb_q "SELECT status, refunded_fen FROM envelopes WHERE id = $s_id")" \
  "envelope $s_id after its expiry while blocked (status PAID|refunded)"
assert_eq 0 "$(hb_q "SELECT COUNT(*) FROM ledger_entries WHERE kind = 'refund' AND envelope_id = $s_id")" \
  "refund entries of $s_id while blocked"
assert_eq "t" "$(hb_q "SELECT blocked FROM segment_states WHERE segment = $S")" \
  "segment $S still blocked before the repair"

# -- Repair: the probe finds the segment healthy and unblocks it.
hb_q_ddl "DROP TRIGGER injected_fault ON envelopes" >/dev/null
repair_ms="$(hb_now_ms)"
unblocked_line="$(hb_wait_log "segment_unblocked segment=$S " 15)" \
  || hb_fail "segment $S not unblocked within 15s of the repair (probe interval $PROBE_MS ms)"
unblocked_ms="$(hb_log_ms "$unblocked_line")"
hb_log "segment $S unblocked $(( unblocked_ms - repair_ms )) ms after the repair (probe interval $PROBE_MS ms)"
assert_int -le 5000 "$(( unblocked_ms - repair_ms ))" "ms from the repair to the unblock"
hb_wait_sql "SELECT blocked FROM segment_states WHERE segment = $S" f 5 \
  || hb_fail "segment_states still says segment $S is blocked after the unblock"

# The expired envelope is refunded, exactly once, with what was left.
hb_wait_sql "SELECT status FROM envelopes WHERE id = $s_id" 5 15 \
  || hb_fail "envelope $s_id not refunded within 15s of the unblock (status $(hb_q "SELECT status FROM envelopes WHERE id = $s_id"))"
assert_eq "1:$(( 1000 - s_opened ))" \
  "$(hb_q "SELECT COUNT(*) || ':' || COALESCE(SUM(amount_fen), 0) FROM ledger_entries
           WHERE kind = 'refund' AND envelope_id = $s_id")" \
  "refund entries of $s_id (count:amount)"
hb_cli_ok show "$s_id"
assert_eq refunded "$(hb_get status)" "status of $s_id"

# New envelopes go to S again.
hb_fc creates --n 32 --connections 2 --prefix sf-after >"$HB_TMP/creates-after.txt"
assert_eq 32 "$(grep -c '^ok ' "$HB_TMP/creates-after.txt" || true)" "creates after the repair"
assert_int -ge 1 "$(awk -v s="$S" '$1 == "ok" && substr($2, length($2) - 2) + 0 == s' "$HB_TMP/creates-after.txt" | wc -l)" \
  "creates after the repair with an id in segment $S"

# An operator's block: no probe lifts it, creates avoid the segment, only the
# operator unblocks.
hb_cli_ok segment block "$S" --reason "maintenance"
assert_eq true "$(hb_get blocked)" "segment $S after 'hongbao segment block'"
assert_eq true "$(hb_get manual)" "mode of segment $S after 'hongbao segment block'"
hb_wait_sql "SELECT blocked, mode FROM segment_states WHERE segment = $S" "t|manual" 5 \
  || hb_fail "segment_states does not record the manual block of segment $S"
hb_cli_err 1 segment_unavailable show "$s_id"
sleep "$(awk -v p="$PROBE_MS" 'BEGIN { printf "%.3f", 4 * p / 1000 }')"
assert_eq "t|manual" "$(hb_q "SELECT blocked, mode FROM segment_states WHERE segment = $S")" \
  "segment $S after 4 probe intervals under a manual block"
hb_fc creates --n 16 --connections 2 --prefix sf-manual >"$HB_TMP/creates-manual.txt"
assert_eq 16 "$(grep -c '^ok ' "$HB_TMP/creates-manual.txt" || true)" "creates under the manual block"
assert_eq 0 "$(awk -v s="$S" '$1 == "ok" && substr($2, length($2) - 2) + 0 == s' "$HB_TMP/creates-manual.txt" | wc -l)" \
  "creates with an id in the manually blocked segment $S"
hb_cli_ok segment unblock "$S" --reason "maintenance over"
assert_eq false "$(hb_get blocked)" "segment $S after 'hongbao segment unblock'"
hb_wait_sql "SELECT blocked FROM segment_states WHERE segment = $S" f 5 \
  || hb_fail "segment_states does not record the manual unblock of segment $S"
hb_cli_ok show "$s_id"
hb_log "manual block and unblock of segment $S work (no probe lifted the block)"

# Still exactly one refund after more sweeps; the books balance.
sleep 1
assert_eq 1 "$(hb_q "SELECT COUNT(*) FROM ledger_entries WHERE kind = 'refund' AND envelope_id = $s_id")" \
  "refund entries of $s_id after more sweeps"
hb_wait_sql "SELECT COUNT(*) FROM relay_backlog" 0 15 \
  || hb_fail "the relay did not drain relay_backlog"
hb_cli reconcile
assert_eq 0 "$HB_RC" "hongbao reconcile exit status (output: $HB_OUT)"
assert_eq 0 "$(hb_get discrepancies.#)" "discrepancies"
hb_audit_db
hb_log "FIGURES segment_fault: time_to_block_ms=$(( blocked_ms - first_fault_ms )) create_success=$created/$CREATES ($rate%) create_batches_failed=$batches_failed unblock_after_repair_ms=$(( unblocked_ms - repair_ms ))"
hb_stop_node

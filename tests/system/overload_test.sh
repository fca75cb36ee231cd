#!/usr/bin/env bash
# system.overload: a burst 20x over the per-envelope queue limit (issue 4,
# overload control). A node with [envelope] queue_max = 20 and a store pool
# of 2 connections gets 400 opens of one envelope at once (8 connections x
# 50 pipelined requests). Proven:
#   - most of them are answered BUSY (retryable), and quickly: the p99 of
#     the BUSY answers is printed and bounded, far below a database write;
#   - the flood never reaches PostgreSQL: sampled every few ms from inside
#     the server while the burst runs, the node's connections that are not
#     idle never exceed pool_size + the background pool (2), and the node
#     holds no more connections than that;
#   - every open answered "you got X" is in the database with that amount,
#     none of the BUSY ones is, and the money is conserved.
#
#   scripts/pg start
#   export HONGBAO_TEST_DB_URL="host=127.0.0.1 port=55432 user=hongbao"
#   bash tests/system/overload_test.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fault_lib.sh"

QUEUE_MAX=20
POOL_SIZE=2
BACKGROUND_POOL=2   # node/node.cpp: relay, reconciler, sweeper, probes
CONNECTIONS=8
PER_CONNECTION=50
BURST=$(( CONNECTIONS * PER_CONNECTION ))
BUSY_P99_MAX_MS=250

SAMPLER_PID=""
eval "$(declare -f hb_cleanup | sed '1s/hb_cleanup/hb_cleanup_lib/')"
hb_cleanup() {
  local rc=$?
  if [[ -n "$SAMPLER_PID" ]]; then
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
  fi
  (exit "$rc")
  hb_cleanup_lib
}

hb_init overload
hb_fault_check_bins
hb_write_config "" "[envelope]
queue_max = $QUEUE_MAX
[limits]
count_max = 1000
[relay]
poll_ms = 20
[reconcile]
interval_s = 0"
# lib.sh writes [database] pool_size = 4; this node gets 2.
sed -i "s/^pool_size = 4\$/pool_size = $POOL_SIZE/" "$HB_CONFIG"
assert_eq 1 "$(grep -c "^pool_size = $POOL_SIZE\$" "$HB_CONFIG")" "pool_size in the node config"
hb_start_node

# One envelope with more shares than the burst: no open is refused for
# being late (EXHAUSTED), only for overload (BUSY).
hb_cli_ok create --sender boss --group g --total-fen 100000 --count 1000 \
  --idempotency-key overload-1
id="$(hb_get envelope_id)"
hb_cli_ok pay "$id" --payment-txn txn-overload-1
hb_cli_ok open "$id" --user warm-up   # the envelope actor is live and loaded
warm_amount="$(hb_get amount_fen)"

# -- The sampler: one session inside PostgreSQL looks at pg_stat_activity
# every 2 ms (clearing its snapshot each time) for 6 s and keeps the counts.
db_name="$HB_DB_NAME"
psql -X -q -tA -v ON_ERROR_STOP=1 "$(hb_db_url)" >"$HB_TMP/samples.txt" 2>"$HB_TMP/sampler.err" <<EOF &
CREATE TEMP TABLE samples (at timestamptz, active int, connections int);
DO \$\$
DECLARE
  until_at timestamptz := clock_timestamp() + interval '6 seconds';
BEGIN
  WHILE clock_timestamp() < until_at LOOP
    PERFORM pg_stat_clear_snapshot();
    INSERT INTO samples
      SELECT clock_timestamp(),
             count(*) FILTER (WHERE state IS DISTINCT FROM 'idle'),
             count(*)
      FROM pg_stat_activity
      WHERE datname = '$db_name' AND pid <> pg_backend_pid()
        AND backend_type = 'client backend';
    PERFORM pg_sleep(0.002);
  END LOOP;
END
\$\$;
SELECT count(*), max(active), max(connections),
       count(*) FILTER (WHERE active > 0)
FROM samples;
SELECT active || ':' || count(*) FROM samples GROUP BY active ORDER BY active;
EOF
SAMPLER_PID=$!
sleep 1

# -- The burst.
burst_t0="$(hb_now_ms)"
hb_fc burst --id "$id" --connections "$CONNECTIONS" --per-connection "$PER_CONNECTION" \
  --prefix burst >"$HB_TMP/burst.txt"
burst_ms=$(( $(hb_now_ms) - burst_t0 ))
wait "$SAMPLER_PID" || hb_fail "the sampler failed: $(cat "$HB_TMP/sampler.err")"
SAMPLER_PID=""

answers="$(wc -l <"$HB_TMP/burst.txt")"
ok="$(awk '$1 == "ok"' "$HB_TMP/burst.txt" | wc -l)"
busy="$(awk '$1 == "busy"' "$HB_TMP/burst.txt" | wc -l)"
others="$(awk '$1 != "ok" && $1 != "busy" { print $1 }' "$HB_TMP/burst.txt" | sort | uniq -c | tr '\n' ' ')"
busy_p50="$(awk '$1 == "busy" { print $2 }' "$HB_TMP/burst.txt" | hb_pct 50)"
busy_p99="$(awk '$1 == "busy" { print $2 }' "$HB_TMP/burst.txt" | hb_pct 99)"
busy_max="$(awk '$1 == "busy" { print $2 }' "$HB_TMP/burst.txt" | hb_pct 100)"
ok_p50="$(awk '$1 == "ok" { print $2 }' "$HB_TMP/burst.txt" | hb_pct 50)"
ok_p99="$(awk '$1 == "ok" { print $2 }' "$HB_TMP/burst.txt" | hb_pct 99)"
hb_log "burst of $BURST opens (queue_max $QUEUE_MAX) in $burst_ms ms: $ok committed, $busy BUSY${others:+, others: $others}"
hb_log "BUSY answered in p50 $(hb_us_to_ms "$busy_p50") ms, p99 $(hb_us_to_ms "$busy_p99") ms, max $(hb_us_to_ms "$busy_max") ms; committed opens in p50 $(hb_us_to_ms "$ok_p50") ms, p99 $(hb_us_to_ms "$ok_p99") ms"
assert_eq "$BURST" "$answers" "answers to the burst"
assert_eq "" "$others" "answers other than ok and busy"
assert_int -ge $(( BURST / 2 )) "$busy" "BUSY answers to a burst 20x over the queue limit"
assert_int -ge 1 "$ok" "opens committed during the burst"
assert_int -le $(( BUSY_P99_MAX_MS * 1000 )) "$busy_p99" "p99 µs of the BUSY answers"

# What PostgreSQL saw meanwhile.
read -r n_samples max_active max_conns busy_samples < <(head -n 1 "$HB_TMP/samples.txt" | tr '|' ' ')
hb_log "PostgreSQL sampled $n_samples times during the burst: at most $max_active of the node's connections busy at once ($busy_samples samples with any), $max_conns connections in all; distribution (busy:samples) $(tail -n +2 "$HB_TMP/samples.txt" | tr '\n' ' ')"
assert_int -ge 500 "$n_samples" "pg_stat_activity samples"
assert_int -le $(( POOL_SIZE + BACKGROUND_POOL )) "$max_active" \
  "the node's busy connections at once (pool_size $POOL_SIZE + background $BACKGROUND_POOL)"
assert_int -le $(( POOL_SIZE + BACKGROUND_POOL )) "$max_conns" \
  "the node's connections to its database"

# The node counted the BUSY answers too.
hb_cli_ok stats
metric() {
  "$HB_PY" -c 'import json, sys; print(json.loads(sys.argv[1])["metrics"].get(sys.argv[2], "missing"))' "$HB_OUT" "$1"
}
hb_log "node metrics: requests.open.busy=$(metric requests.open.busy) requests.open.ok=$(metric requests.open.ok) opens.writes=$(metric opens.writes) opens.batch_max=$(metric opens.batch_max)"
assert_eq "$busy" "$(metric requests.open.busy)" "BUSY answers to opens counted by the node (requests.open.busy)"

# Money: exactly the acknowledged opens are stored, with their amounts.
awk '$1 == "ok" { print $3, $4 }' "$HB_TMP/burst.txt" | sort >"$HB_TMP/acked.txt"
echo "warm-up $warm_amount" >>"$HB_TMP/acked.txt"
sort -o "$HB_TMP/acked.txt" "$HB_TMP/acked.txt"
hb_q "SELECT user_id, amount_fen FROM opens WHERE envelope_id = $id" | tr '|' ' ' | sort >"$HB_TMP/db-opens.txt"
assert_empty "$(comm -3 "$HB_TMP/acked.txt" "$HB_TMP/db-opens.txt" | head -20)" \
  "differences between acknowledged opens and stored opens (user amount)"
busy_stored="$(awk '$1 == "busy" { print "\x27" $3 "\x27" }' "$HB_TMP/burst.txt" | paste -sd, -)"
assert_eq 0 "$(hb_q "SELECT COUNT(*) FROM opens WHERE envelope_id = $id AND user_id IN ($busy_stored)")" \
  "opens stored for users who were told BUSY"
hb_wait_sql "SELECT COUNT(*) FROM relay_backlog" 0 15 \
  || hb_fail "the relay did not drain relay_backlog"
hb_cli reconcile
assert_eq 0 "$HB_RC" "hongbao reconcile exit status (output: $HB_OUT)"
assert_eq 0 "$(hb_get discrepancies.#)" "discrepancies"
hb_audit_db
hb_log "FIGURES overload: burst=$BURST queue_max=$QUEUE_MAX committed=$ok busy=$busy busy_p99_ms=$(hb_us_to_ms "$busy_p99") max_busy_db_connections=$max_active"
hb_stop_node

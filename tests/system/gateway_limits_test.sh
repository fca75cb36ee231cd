#!/usr/bin/env bash
# system.gateway_limits: the gateway's connection limits against a real
# node over real TCP (issue 23). Proven, with the figures printed:
#   - 3 000 sockets that announce a 64 KiB frame before Auth are answered
#     FRAME_TOO_LARGE (request id 0) and closed at once (auth_frame_size_max);
#   - 3 000 sockets that announce 1 000 bytes and trickle a byte every
#     200 ms, over a node capped at 2 500 connections: the ones over the cap
#     get BUSY (id 0) and are closed at once, the rest are closed with
#     UNAUTHENTICATED when auth_timeout_ms passes; the node's RSS stays
#     small, and a client connected before the flood is served throughout
#     (its Stats latency is printed);
#   - the refused and closed connections log at most about one line per
#     second each (suppressed=N counts the rest);
#   - a client that pipelines Stats requests for 8 s and never reads: the
#     node stops reading it (gateway.read_pauses), its RSS stays bounded,
#     and every request is answered once the client reads;
#   - request id 0 is answered INVALID_ARGUMENT with id 0 and not run;
#   - a segment block reason with a newline reaches the log escaped.
#
#   scripts/pg start
#   export HONGBAO_TEST_DB_URL="host=127.0.0.1 port=55432 user=hongbao"
#   bash tests/system/gateway_limits_test.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FLOOD=3000
CAP=2500
AUTH_TIMEOUT_MS=3000
OUTPUT_MAX=262144
CLIENT="$HB_SYS_DIR/gateway_limits_client.py"

# Every flood socket is one fd here and one in the node.
want_fds=$(( FLOOD + 500 ))
if (( $(ulimit -n) < want_fds )); then
  ulimit -n "$want_fds" 2>/dev/null \
    || { echo "SKIP: ulimit -n is $(ulimit -n), below $want_fds and cannot be raised" >&2; exit 0; }
fi

hb_init gateway_limits
hb_write_config "connections_max = $CAP
connections_per_address_max = $CAP
auth_timeout_ms = $AUTH_TIMEOUT_MS
output_buffer_max = $OUTPUT_MAX"
hb_start_node
port="$HB_NODE_PORT"
field() { sed -n "s/^.* $1=\([^ ]*\).*\$/\1/p" <<<" $2"; }

# -- 1. Frames announced too large before Auth: closed at once.
out="$("$HB_PY" "$CLIENT" flood "$port" "$HB_TOKEN" "$FLOOD" 65536 200 10 "$HB_NODE_PID")"
hb_log "64 KiB announced before Auth: $out"
assert_eq "$FLOOD" "$(field closed_by_node "$out")" "sockets closed by the node"
assert_eq "12_id0:$FLOOD" "$(field codes "$out")" "answers (FRAME_TOO_LARGE with id 0 to each)"
close_max="$(field close_max_s "$out")"
assert_int -le 3 "${close_max%.*}" "seconds until the last socket was closed"
big_rss_peak="$(field rss_peak_kb "$out")"; big_rss_before="$(field rss_before_kb "$out")"

# -- 2. Small frames trickled before Auth, over the connection cap.
out="$("$HB_PY" "$CLIENT" flood "$port" "$HB_TOKEN" "$FLOOD" 1000 200 $(( AUTH_TIMEOUT_MS / 1000 + 5 )) "$HB_NODE_PID")"
hb_log "1000 bytes announced and trickled: $out"
refused=$(( FLOOD - (CAP - 1) ))   # the normal client holds one slot
assert_eq "$FLOOD" "$(field closed_by_node "$out")" "sockets closed by the node"
assert_eq "11_id0:$(( CAP - 1 )),8_id0:$refused" "$(field codes "$out")" \
  "answers (BUSY over the cap, UNAUTHENTICATED at the deadline; id 0)"
close_max="$(field close_max_s "$out")"
assert_int -le $(( AUTH_TIMEOUT_MS / 1000 + 3 )) "${close_max%.*}" "seconds until the last socket was closed"
rss_before="$(field rss_before_kb "$out")"; rss_peak="$(field rss_peak_kb "$out")"
growth_kb=$(( rss_peak - rss_before ))
hb_log "node RSS: ${rss_before} KiB before, ${rss_peak} KiB at the peak of $(( CAP - 1 )) unauthenticated connections (+$(( growth_kb / 1024 )) MiB, $(( growth_kb * 1024 / (CAP - 1) )) bytes each)"
assert_int -le $(( 64 * 1024 )) "$growth_kb" "node RSS growth (KiB) while $(( CAP - 1 )) sockets trickle"
normal_p99="$(field normal_p99_ms "$out")"
assert_int -ge 10 "$(field normal_calls "$out")" "calls of the normal client during the flood"
# Loose: 2-70 ms on a quiet machine, 330 ms seen with four builds running.
assert_int -le 1000 "${normal_p99%.*}" "p99 ms of the normal client's Stats during the flood"
lines="$(grep -c 'connection_refused\|connection_closed' "$HB_NODE_LOG" || true)"
hb_log "log lines for $(( FLOOD * 2 )) refused or closed connections: $lines"
assert_int -le 40 "$lines" "log lines for refused and closed connections"
grep -q 'suppressed=[1-9]' "$HB_NODE_LOG" || hb_fail "no log line counts suppressed lines"

hb_cli_ok stats
metric() {
  "$HB_PY" -c 'import json, sys; print(json.loads(sys.argv[1])["metrics"].get(sys.argv[2], "missing"))' "$HB_OUT" "$1"
}
assert_eq "$refused" "$(metric gateway.refused)" "gateway.refused"
assert_eq "$(( CAP - 1 ))" "$(metric gateway.auth_timeouts)" "gateway.auth_timeouts"

# -- 3. A client that pipelines and never reads.
out="$("$HB_PY" "$CLIENT" nonreader "$port" "$HB_TOKEN" 8 "$HB_NODE_PID")"
hb_log "non-reading pipeliner: $out"
sent="$(field sent "$out")"
assert_eq "$sent" "$(field answered "$out")" "answers once the client reads"
assert_eq 0 "$(field eof "$out")" "the node closed the pipelining connection"
nr_growth=$(( $(field rss_max_kb "$out") - $(field rss_before_kb "$out") ))
hb_log "node RSS grew by $(( nr_growth / 1024 )) MiB while the client sent $sent requests without reading"
assert_int -le $(( 64 * 1024 )) "$nr_growth" "node RSS growth (KiB) under a non-reading client"
hb_cli_ok stats
pauses="$(metric gateway.read_pauses)"
assert_int -ge 1 "$pauses" "gateway.read_pauses"

# -- 4. Request id 0.
out="$("$HB_PY" "$CLIENT" rid0 "$port" "$HB_TOKEN")"
hb_log "request id 0: $out"
assert_eq 0 "$(field rid0_answer_id "$out")" "id of the answer to request id 0"
assert_eq 1 "$(field rid0_code "$out")" "code of the answer to request id 0 (INVALID_ARGUMENT)"
assert_eq 9 "$(field next_id "$out")" "id of the next answer on that connection"
assert_eq 11 "$(field next_body "$out")" "body of the next answer (StatsReport)"

# -- 5. Client text in the log is escaped.
hb_cli_ok segment block 7 --reason $'evil\n[actors] [error] FORGED line'
grep -q 'reason=evil\\n\[actors\] \[error\] FORGED line' "$HB_NODE_LOG" \
  || hb_fail "the block reason is not in the log, escaped"
if grep -q '^\[actors\] \[error\] FORGED' "$HB_NODE_LOG"; then
  hb_fail "a client's newline started a log line"
fi
hb_cli_ok segment unblock 7

hb_log "FIGURES gateway_limits: big_frame_flood=$FLOOD rss_kb=$big_rss_before->$big_rss_peak; trickle_flood=$FLOOD cap=$CAP refused=$refused rss_kb=$rss_before->$rss_peak normal_p99_ms=$normal_p99 log_lines=$lines; nonreader sent=$sent rss_growth_kb=$nr_growth pauses=$pauses"
hb_stop_node

# Helpers of the real-fault system tests (segment_fault, db_outage,
# overload), sourced after lib.sh. They add the load/timing client
# (hb_fault_client, tests/system/fault_client.cpp), reading the node's log
# with its timestamps, and small statistics.
#
# Environment:
#   HB_FAULT_CLIENT_BIN  the client (default: next to HB_NODE_BIN)

HB_FAULT_CLIENT_BIN="${HB_FAULT_CLIENT_BIN:-$(dirname "$HB_NODE_BIN")/hb_fault_client}"

hb_fault_check_bins() {
  [[ -x "$HB_FAULT_CLIENT_BIN" ]] \
    || hb_fail "no hb_fault_client at $HB_FAULT_CLIENT_BIN (build the target hb_fault_client or set HB_FAULT_CLIENT_BIN)"
}

# hb_fc ARGS...: runs the fault client against the node (HONGBAO_SERVER and
# HONGBAO_TOKEN are exported by hb_start_node).
hb_fc() {
  "$HB_FAULT_CLIENT_BIN" "$@"
}

# Unix milliseconds now.
hb_now_ms() { date +%s%3N; }

# hb_log_ms LINE: the Unix ms of a node log line ("2026-11-26T10:00:00.123
# level [logger] event ..."; spdlog writes local time, and so does date -d).
hb_log_ms() {
  local stamp="${1%% *}"
  date -d "${stamp/T/ }" +%s%3N 2>/dev/null || echo ""
}

# hb_log_first PATTERN [LOG]: the first line of the node log matching the
# extended regex (empty if none).
hb_log_first() {
  grep -E -m1 -- "$1" "${2:-$HB_NODE_LOG}" 2>/dev/null || true
}

# hb_log_count PATTERN [LOG]: lines of the node log matching the regex.
hb_log_count() {
  local n
  n="$(grep -E -c -- "$1" "${2:-$HB_NODE_LOG}" 2>/dev/null)" || true
  echo "${n:-0}"
}

# hb_wait_log PATTERN TIMEOUT_S [LOG]: waits until the node log has a line
# matching the regex; prints it. Returns 1 on timeout.
hb_wait_log() {
  local pattern="$1" deadline line
  deadline=$(( $(hb_now_ms) + $2 * 1000 ))
  while :; do
    line="$(hb_log_first "$pattern" "${3:-$HB_NODE_LOG}")"
    if [[ -n "$line" ]]; then
      echo "$line"
      return 0
    fi
    (( $(hb_now_ms) < deadline )) || return 1
    sleep 0.02
  done
}

# hb_wait_sql SQL EXPECTED TIMEOUT_S: polls until the query prints EXPECTED.
# Returns 1 on timeout.
hb_wait_sql() {
  local deadline got
  deadline=$(( $(hb_now_ms) + $3 * 1000 ))
  while :; do
    got="$(hb_q "$1")"
    [[ "$got" == "$2" ]] && return 0
    (( $(hb_now_ms) < deadline )) || return 1
    sleep 0.05
  done
}

# hb_pct P < numbers: the P-th percentile (nearest rank) of the numbers on
# stdin, one per line; empty input prints 0.
hb_pct() {
  sort -n | awk -v p="$1" '{ v[NR] = $1 } END {
    if (NR == 0) { print 0; exit }
    r = int(p / 100 * NR + 0.999999); if (r < 1) r = 1; if (r > NR) r = NR
    print v[r] }'
}

# hb_us_to_ms US: "12.3" from microseconds.
hb_us_to_ms() { awk -v u="$1" 'BEGIN { printf "%.1f", u / 1000 }'; }

# hb_free_port: a TCP port on 127.0.0.1 that nobody listens on right now.
hb_free_port() {
  "$HB_PY" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

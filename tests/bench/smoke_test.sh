#!/usr/bin/env bash
# bench.smoke: hongbao-bench runs each scenario for 5 seconds against a node
# of its own (fresh database, kernel-chosen port; tests/system/lib.sh) and
# its audit of the node's database passes. The scenarios keep their shape;
# spread and storm have fewer envelopes so that the set-up stays short on a
# loaded CI machine. Needs HONGBAO_TEST_DB_URL (scripts/test sets it).
source "$(dirname "${BASH_SOURCE[0]}")/../system/lib.sh"

HB_BENCH_BIN="${HB_BENCH_BIN:-$HB_REPO_DIR/build/bin/hongbao-bench}"

hb_init bench_smoke
[[ -x "$HB_BENCH_BIN" ]] || hb_fail "no hongbao-bench at $HB_BENCH_BIN (build first or set HB_BENCH_BIN)"
# As scripts/bench: one envelope of 10 000 shares, 10 000 openers queued.
hb_write_config "" "[limits]
count_max = 10000
[envelope]
queue_max = 20000"
hb_start_node

# smoke SCENARIO ARGS...: one 5-second run; asserts exit 0, audit ok, opens.
smoke() {
  local scenario="$1" out rc=0
  shift
  out="$HB_TMP/$scenario.json"
  "$HB_BENCH_BIN" --target hongbao --server "$HONGBAO_SERVER" \
    --token "$HONGBAO_TOKEN" --db-url "$(hb_db_url)" --scenario "$scenario" \
    --duration 5 --json -q "$@" >"$out" 2>"$HB_TMP/$scenario.err" || rc=$?
  [[ $rc -eq 0 ]] || { cat "$HB_TMP/$scenario.err" "$out" >&2;
                       hb_fail "hongbao-bench --scenario $scenario exited with $rc"; }
  local json
  json="$(cat "$out")"
  assert_eq true "$(hb_get audit.ok "$json")" "audit of $scenario"
  assert_eq "[]" "$(hb_get audit.problems "$json")" "audit problems of $scenario"
  assert_int -gt 0 "$(hb_get run.opens_first "$json")" "new shares in $scenario"
  assert_int -gt 0 "$(hb_get audit.shares "$json")" "shares the audit found in $scenario"
  hb_log "$scenario: $(hb_get run.opens_first "$json") shares," \
    "$(hb_get run.opens_per_s "$json") opens/s, audit ok" \
    "($(hb_get audit.checks "$json"))"
}

smoke hot
smoke spread --envelopes 2000 --cpu-of "hongbao-node=$HB_NODE_PID"
# The CPU figures of the run: the node's (named with --cpu-of) and the
# generator's, each in µs an open. 20 000 opens cost the node far more than
# the 10 ms a clock tick resolves.
spread_json="$(cat "$HB_TMP/spread.json")"
assert_eq hongbao-node "$(hb_get run.cpu.processes.0.label "$spread_json")" "first CPU entry"
assert_eq generator "$(hb_get run.cpu.processes.1.label "$spread_json")" "second CPU entry"
node_us="$(hb_get run.cpu.processes.0.us_per_open "$spread_json")"
assert_int -gt 0 "${node_us%.*}" "node µs an open"
hb_log "spread CPU: node ${node_us} µs an open," \
  "generator $(hb_get run.cpu.processes.1.us_per_open "$spread_json") µs," \
  "cores busy $(hb_get run.cpu.busy "$spread_json")"
# A --cpu-of that names no process is a usage error, before any run.
rc=0
"$HB_BENCH_BIN" --target hongbao --server "$HONGBAO_SERVER" \
  --token "$HONGBAO_TOKEN" --db-url "$(hb_db_url)" --scenario spread \
  --cpu-of "nobody=999999999" -q >"$HB_TMP/bad.out" 2>&1 || rc=$?
assert_eq 2 "$rc" "exit status of --cpu-of naming no process"
grep -q "no process 999999999 is running" "$HB_TMP/bad.out" \
  || hb_fail "--cpu-of naming no process: unclear message: $(cat "$HB_TMP/bad.out")"
smoke storm --envelopes 500
# The repeated opens of storm came back with the same share (the audit
# compared every one); at least one happened.
assert_int -gt 0 "$(hb_get run.opens_repeat "$(cat "$HB_TMP/storm.json")")" \
  "repeated opens in storm"

hb_stop_node

#!/usr/bin/env bash
# system.console: hongbao-console against a running node's admin port.
# One-shot mode for each command (block and unblock checked in the
# database's segment_states, the audit log read back), a wrong secret
# refused with exit 4 and nothing changed, commands on stdin, the console in
# a real terminal (tmux: a typed command, history with arrow-up, tab
# completion), and GET /metrics parsed as Prometheus text.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HB_CONSOLE_BIN="${HB_CONSOLE_BIN:-$HB_REPO_DIR/build/bin/hongbao-console}"
[[ -x "$HB_CONSOLE_BIN" ]] || { echo "FAIL: no console binary at $HB_CONSOLE_BIN" >&2; exit 1; }
hb_init console

free_port() {
  "$HB_PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
admin_port="$(free_port)"
metrics_port="$(free_port)"
while [[ "$metrics_port" == "$admin_port" ]]; do metrics_port="$(free_port)"; done
secret="console-test-secret-$$-$RANDOM"
printf '%s\n' "$secret" >"$HB_TMP/operator.secret"
audit="$HB_TMP/audit.jsonl"
hb_write_config "" "[admin]
port = $admin_port
metrics_port = $metrics_port
secret_file = \"$HB_TMP/operator.secret\"
credential = \"ops-test\"
audit_file = \"$audit\""
hb_start_node
export HONGBAO_ADMIN="127.0.0.1:$admin_port"
export HONGBAO_ADMIN_SECRET_FILE="$HB_TMP/operator.secret"
unset HONGBAO_ADMIN_SECRET

# hb_console ARGS...: the console with --json; stdout in HB_OUT, status in HB_RC.
hb_console() {
  HB_RC=0
  HB_OUT="$("$HB_CONSOLE_BIN" --json --user tester "$@" 2>>"$HB_TMP/console.err")" || HB_RC=$?
  echo "  \$ hongbao-console $* -> exit $HB_RC: ${HB_OUT:0:300}" >&2
}
console_ok() {
  hb_console -c "$1"
  assert_eq 0 "$HB_RC" "exit status of '$1'"
  assert_eq true "$(hb_get ok)" "\"ok\" of '$1'"
}
segment_row() { hb_q "select blocked || '|' || mode from segment_states where segment = $1"; }

# -- Read-only commands ----------------------------------------------------------
console_ok nodes
assert_eq "sys-console" "$(hb_get tables.nodes.0.node)" "the node in 'nodes'"
console_ok zones
assert_eq zone-a "$(hb_get tables.zones.0.zone)" "the zone in 'zones'"
console_ok sets
console_ok segments
assert_eq 0-15 "$(hb_get tables.owners.0.segments)" "the node's segments as ranges"
console_ok stats
field() { "$HB_PY" -c 'import json, sys; print(json.loads(sys.argv[2])["fields"][sys.argv[1]])' "$1" "$HB_OUT"; }
assert_int -ge 1 "$(field store.calls)" "store.calls in stats"
hb_console -c "stats no-such-node"
assert_eq 1 "$HB_RC" "exit status of stats on an unknown node"
assert_eq not_found "$(hb_get error.code)" "error of stats on an unknown node"

# An envelope: where it lives and its state from the database.
hb_cli_ok create --sender alice --group family --total-fen 1000 --count 4 \
  --idempotency-key "console-$$"
id="$(hb_get envelope_id)"
hb_cli_ok pay "$id" --payment-txn "txn-console-$$"
hb_cli_ok open "$id" --user bob
console_ok "envelope $id"
assert_eq paid "$(hb_get fields.status)" "status of the envelope"
assert_eq "$((id % 1000))" "$(hb_get fields.segment)" "segment of the envelope"
assert_eq sys-console "$(hb_get fields.owner)" "owner of the envelope"
assert_eq 3 "$(hb_get fields.remaining_count)" "remaining count after one open"
assert_eq bob "$(hb_get tables.opens.0.user)" "the open in the envelope's opens"

# -- Actions: block, unblock, reconcile; each audited ---------------------------
console_ok "block 7 disk check"
assert_eq "true|manual" "$(segment_row 7)" "segment_states of 7 after block"
assert_eq "disk check" "$(hb_q "select reason from segment_states where segment = 7")" "reason of the block"
hb_console -c "unblock 7"
assert_eq 0 "$HB_RC" "exit status of unblock"
assert_eq "false|" "$(segment_row 7 | sed 's/|.*/|/')" "segment_states of 7 after unblock"
console_ok "reconcile --since 1h"
assert_eq true "$(hb_get fields.clean)" "reconciliation is clean"

# A wrong secret: refused (exit 4), nothing changes, the attempt is audited.
rows_before="$(hb_q "select count(*) from segment_states")"
HB_RC=0
HB_OUT="$(HONGBAO_ADMIN_SECRET_FILE= HONGBAO_ADMIN_SECRET="not-the-secret-at-all" \
  "$HB_CONSOLE_BIN" --json --user mallory -c "block 8" 2>>"$HB_TMP/console.err")" || HB_RC=$?
assert_eq 4 "$HB_RC" "exit status with a wrong secret"
assert_eq permission_denied "$(hb_get error.code)" "error with a wrong secret"
assert_eq "$rows_before" "$(hb_q "select count(*) from segment_states")" "segment_states rows after a refused block"
assert_empty "$(hb_q "select segment from segment_states where segment = 8")" "no row for segment 8"
# Bad input: a usage error (exit 2) before anything is sent.
hb_console -c "block 1000"
assert_eq 2 "$HB_RC" "exit status of a bad segment"

# The audit log: one line per action and per refusal, no secret in it.
[[ -f "$audit" ]] || hb_fail "no audit log at $audit"
"$HB_PY" - "$audit" "$secret" <<'PY' || hb_fail "audit log content (above)"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
got = [(l["command"], l["result"], l["user"], l["credential"]) for l in lines]
want = [("block", "ok", "tester", "ops-test"), ("unblock", "ok", "tester", "ops-test"),
        ("reconcile", "ok", "tester", "ops-test"), ("block", "permission_denied", "mallory", "-")]
if got != want:
    print("audit lines", got, "want", want, file=sys.stderr); sys.exit(1)
if lines[0]["args"] != ["7", "disk check"] or "mode=one-shot" not in lines[0]["origin"]:
    print("block line", lines[0], file=sys.stderr); sys.exit(1)
if sys.argv[2] in open(sys.argv[1]).read():
    print("the secret is in the audit log", file=sys.stderr); sys.exit(1)
PY
hb_log "audit log: $(wc -l <"$audit") lines, as expected"

# -- Commands on stdin (not a terminal), text output ----------------------------
HB_RC=0
out="$(printf 'help\nnodes\n# a comment\nstats\n' | "$HB_CONSOLE_BIN" 2>&1)" || HB_RC=$?
assert_eq 0 "$HB_RC" "exit status of commands on stdin"
assert_match 'block SEGMENT \[REASON\.\.\.\]' "$out" "help on stdin"
assert_match 'sys-console +- +zone-a' "$out" "nodes as text"
assert_match 'opens.committed: +[0-9]+' "$out" "stats as text"

# -- GET /metrics -------------------------------------------------------------------
metrics="$(curl -sS --max-time 10 "http://127.0.0.1:$metrics_port/metrics")" \
  || hb_fail "curl /metrics failed"
"$HB_PY" - <<PY || hb_fail "/metrics is not the expected Prometheus text"
import re, sys
text = """$metrics"""
sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? -?[0-9.e+]+$')
names = set()
for line in text.splitlines():
    if not line or line.startswith("#"):
        continue
    if not sample.match(line):
        print("not a sample:", line, file=sys.stderr); sys.exit(1)
    names.add(line.split("{")[0].split(" ")[0])
need = {"hongbao_node_info", "hongbao_opens_committed_total", "hongbao_relay_pending",
        "hongbao_requests_total", "hongbao_store_latency_us_bucket",
        "hongbao_open_batch_size_bucket", "hongbao_envelopes_live"}
if not need <= names:
    print("missing:", need - names, file=sys.stderr); sys.exit(1)
m = re.search(r'^hongbao_requests_total\{kind="open",result="ok"\} ([0-9]+)$', text, re.M)
if not m or int(m.group(1)) < 1:
    print("no successful open counted", file=sys.stderr); sys.exit(1)
PY
code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$metrics_port/nothing")"
assert_eq 404 "$code" "status of another path"
hb_log "/metrics: $(grep -vc '^#' <<<"$metrics") samples"

# -- The console in a real terminal (tmux) ---------------------------------------
tmux_sock="$HB_TMP/tmux.sock"
tmux_kill() { tmux -S "$tmux_sock" kill-server 2>/dev/null || true; }
# The test's status survives the tmux clean-up (hb_cleanup reads $?).
trap 'rc=$?; tmux_kill; (exit $rc); hb_cleanup' EXIT
screen() { tmux -S "$tmux_sock" capture-pane -p -t console; }
wait_screen() {  # wait_screen REGEX WHAT
  local deadline=$((SECONDS + 15))
  until screen | grep -Eq "$1"; do
    (( SECONDS < deadline )) || { screen >&2; hb_fail "$2: '$1' not on the screen"; }
    sleep 0.1
  done
}
tmux -S "$tmux_sock" new-session -d -s console -x 160 -y 50 \
  "HONGBAO_ADMIN=$HONGBAO_ADMIN HONGBAO_ADMIN_SECRET_FILE=$HONGBAO_ADMIN_SECRET_FILE \
   $HB_CONSOLE_BIN --user tty-tester --history-file $HB_TMP/history; sleep 30"
wait_screen 'hongbao 127\.0\.0\.1:[0-9]+>$' "the prompt"
# Tab completion: "sta" + Tab completes to "stats".
tmux -S "$tmux_sock" send-keys -t console 'sta' Tab
wait_screen '> stats$' "completion of 'sta'"
tmux -S "$tmux_sock" send-keys -t console Enter
wait_screen 'opens\.committed: +[0-9]+' "stats typed in the terminal"
# History: arrow-up brings "stats" back.
tmux -S "$tmux_sock" send-keys -t console 'C-l'
tmux -S "$tmux_sock" send-keys -t console 'nodes' Enter
wait_screen 'single node' "nodes typed in the terminal"
tmux -S "$tmux_sock" send-keys -t console Up
wait_screen '> nodes$' "arrow-up recalls the last command"
tmux -S "$tmux_sock" send-keys -t console Up
wait_screen '> stats$' "arrow-up twice recalls the one before"
tmux -S "$tmux_sock" send-keys -t console C-u 'help blo' Tab
wait_screen '> help block$' "completion of a command name after help"
tmux -S "$tmux_sock" send-keys -t console Enter
wait_screen 'usage: block SEGMENT' "help block in the terminal"
tmux -S "$tmux_sock" send-keys -t console 'quit' Enter
sleep 0.5
grep -q '^stats$' "$HB_TMP/history" || hb_fail "history file lacks 'stats'"
hb_log "terminal: completion, history and help work"
tmux_kill

hb_stop_node

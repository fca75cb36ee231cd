# Shared helpers of the system tests (sourced, not run). Real processes over
# real TCP: every test makes its own database on the test cluster, writes its
# own node config, starts its own hongbao-node on a kernel-chosen port on
# 127.0.0.1, and always stops the node and drops the database at the end
# (an EXIT trap), also when an assertion fails.
#
# Environment:
#   HONGBAO_TEST_DB_URL  libpq string WITHOUT dbname, e.g.
#                        "host=127.0.0.1 port=55432 user=hongbao" (scripts/test
#                        sets it; by hand: scripts/pg start, then scripts/pg url
#                        minus " dbname=...")
#   HB_NODE_BIN          hongbao-node binary (default <repo>/build/bin/hongbao-node)
#   HB_CLI_BIN           hongbao CLI binary  (default <repo>/build/bin/hongbao)
#   HB_KEEP_TMP=1        keep the temp dir (configs, node logs) even on success
#
# Conventions: functions are hb_*, assertions assert_*; an assertion prints
# what it expected and what it got, then exits 1 (the EXIT trap cleans up and
# prints the tail of the node logs).

set -euo pipefail

# A command that fails outside an assertion ends the test (set -e) without a
# word of its own: say which command and where. Only the script's own shell
# speaks (a failure inside $(...) is the caller's business).
set -E
trap 'hb_on_err $? "$BASH_COMMAND" "${BASH_SOURCE[0]##*/}:$LINENO"' ERR
hb_on_err() {
  [[ "$BASHPID" == "$$" ]] || return 0
  [[ "$2" != exit* ]] || return 0  # an assertion's own exit said why
  echo "FAIL [${HB_TEST_NAME:-?}]: '$2' exited with status $1 ($3)" >&2
}

HB_SYS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HB_REPO_DIR="$(cd "$HB_SYS_DIR/../.." && pwd)"
HB_NODE_BIN="${HB_NODE_BIN:-$HB_REPO_DIR/build/bin/hongbao-node}"
HB_CLI_BIN="${HB_CLI_BIN:-$HB_REPO_DIR/build/bin/hongbao}"
if [[ -x /usr/bin/python3 ]]; then HB_PY=/usr/bin/python3; else HB_PY=python3; fi

HB_TOKEN="sys-test-token-$$"
HB_TEST_NAME=""
HB_TMP=""
HB_DB_NAME=""
HB_DB_CREATED=0
HB_CONFIG=""
HB_NODE_PID=""
HB_NODE_SEQ=0
HB_NODE_PORT=""
HB_NODE_RC=""
HB_NODE_LOG=""
HB_OUT=""
HB_RC=0
HB_T0=$SECONDS

# How long the node may take to listen (migrations on a loaded machine), to
# stop after SIGTERM, and to die after a failpoint.
HB_START_TIMEOUT_S=${HB_START_TIMEOUT_S:-60}
HB_STOP_TIMEOUT_S=${HB_STOP_TIMEOUT_S:-30}

# -- Messages and assertions ---------------------------------------------------

hb_log() { echo "[$HB_TEST_NAME +$((SECONDS - HB_T0))s] $*" >&2; }

# Inside $(...) an exit would only end the subshell (and `assert_x "$(f)"`
# would go on with an empty value), so a failure there also signals the test
# script itself, whose USR1 trap exits with status 1.
hb_fail() {
  echo "FAIL [$HB_TEST_NAME]: $*" >&2
  if [[ "$BASHPID" != "$$" ]]; then
    kill -USR1 "$$" 2>/dev/null || true
  fi
  exit 1
}

# assert_eq EXPECTED GOT WHAT
assert_eq() {
  [[ "$1" == "$2" ]] || hb_fail "$3: expected '$1', got '$2'"
}

# assert_ne UNEXPECTED GOT WHAT
assert_ne() {
  [[ "$1" != "$2" ]] || hb_fail "$3: expected anything but '$1', got it"
}

# assert_match REGEX GOT WHAT
assert_match() {
  [[ "$2" =~ $1 ]] || hb_fail "$3: expected a match of /$1/, got '$2'"
}

# assert_int OP EXPECTED GOT WHAT, OP one of -eq -ne -lt -le -gt -ge
assert_int() {
  [[ "$3" =~ ^-?[0-9]+$ ]] || hb_fail "$4: expected an integer $1 $2, got '$3'"
  local ok
  case "$1" in
    -eq) ok=$(($3 == $2)) ;;
    -ne) ok=$(($3 != $2)) ;;
    -lt) ok=$(($3 < $2)) ;;
    -le) ok=$(($3 <= $2)) ;;
    -gt) ok=$(($3 > $2)) ;;
    -ge) ok=$(($3 >= $2)) ;;
    *) hb_fail "assert_int: unknown operator $1" ;;
  esac
  [[ "$ok" == 1 ]] || hb_fail "$4: expected a value $1 $2, got $3"
}

# assert_empty GOT WHAT: for audit queries that list violations.
assert_empty() {
  [[ -z "$1" ]] || hb_fail "$2: expected no rows, got:"$'\n'"$1"
}

# -- Set-up and clean-up -------------------------------------------------------

# hb_init NAME: temp dir, database, EXIT trap. Call first in every test.
hb_init() {
  HB_TEST_NAME="$1"
  [[ -n "${HONGBAO_TEST_DB_URL:-}" ]] || {
    echo "FAIL [$HB_TEST_NAME]: HONGBAO_TEST_DB_URL is not set. Start the test" \
         "cluster and export its url without dbname, e.g.:" \
         "scripts/pg start && export HONGBAO_TEST_DB_URL=\"host=127.0.0.1" \
         "port=55432 user=hongbao\"" >&2
    exit 1
  }
  [[ "$HONGBAO_TEST_DB_URL" != *dbname=* ]] \
    || hb_fail "HONGBAO_TEST_DB_URL must not contain dbname= (got '$HONGBAO_TEST_DB_URL')"
  [[ -x "$HB_NODE_BIN" ]] || hb_fail "no node binary at $HB_NODE_BIN (build first or set HB_NODE_BIN)"
  [[ -x "$HB_CLI_BIN" ]] || hb_fail "no CLI binary at $HB_CLI_BIN (build first or set HB_CLI_BIN)"
  local safe="${HB_TEST_NAME//[^a-zA-Z0-9_]/_}"
  HB_TMP="$(mktemp -d "/tmp/hb_sys_${safe}.XXXXXX")"
  HB_DB_NAME="hb_sys_${safe}_$$"
  trap hb_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 1' USR1
  hb_janitor
  hb_make_db
}

# Drops databases of earlier system test runs whose process is gone (a run
# killed with SIGKILL cannot drop its own). Names end in _<pid>.
hb_janitor() {
  local name pid
  while read -r name; do
    [[ -n "$name" ]] || continue
    pid="${name##*_}"
    [[ "$pid" =~ ^[0-9]+$ ]] || continue
    if ! kill -0 "$pid" 2>/dev/null; then
      hb_log "dropping stale database $name (process $pid is gone)"
      hb_admin_psql -c "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null 2>&1 || true
    fi
  done < <(hb_admin_psql -c "SELECT datname FROM pg_database WHERE datname LIKE 'hb\_sys\_%'" 2>/dev/null || true)
}

hb_admin_psql() {
  PGOPTIONS="-c client_min_messages=warning" psql -X -q -tA -v ON_ERROR_STOP=1 "$HONGBAO_TEST_DB_URL dbname=postgres" "$@"
}

hb_make_db() {
  hb_admin_psql -c "DROP DATABASE IF EXISTS \"$HB_DB_NAME\" WITH (FORCE)" >/dev/null \
    || hb_fail "cannot reach the test cluster at '$HONGBAO_TEST_DB_URL dbname=postgres' (is it running? scripts/pg start)"
  hb_admin_psql -c "CREATE DATABASE \"$HB_DB_NAME\"" >/dev/null \
    || hb_fail "cannot create database $HB_DB_NAME on '$HONGBAO_TEST_DB_URL' (is the cluster running? scripts/pg start)"
  HB_DB_CREATED=1
}

hb_drop_db() {
  [[ "$HB_DB_CREATED" == 1 ]] || return 0
  hb_admin_psql -c "DROP DATABASE IF EXISTS \"$HB_DB_NAME\" WITH (FORCE)" >/dev/null \
    || echo "warning [$HB_TEST_NAME]: could not drop database $HB_DB_NAME" >&2
  HB_DB_CREATED=0
}

hb_db_url() { echo "$HONGBAO_TEST_DB_URL dbname=$HB_DB_NAME"; }

# hb_q SQL: runs SQL on the test database; prints rows unaligned, '|' between
# columns, no header. Fails the test on an SQL error.
hb_q() {
  psql -X -q -tA -v ON_ERROR_STOP=1 "$(hb_db_url)" -c "$1" \
    || hb_fail "query failed: $1"
}

# hb_q_ddl SQL: runs DDL (a fault trigger going in or out) on the test
# database while the node is running. DDL on the partitioned tables locks each
# day partition in turn, so it can deadlock with a node statement that holds
# one partition and waits for another; PostgreSQL then cancels one of the two
# (SQLSTATE 40P01). An operator retries such a repair, and so does this: up to
# 5 attempts, each logged. Any other error fails the test.
hb_q_ddl() {
  local attempt out
  for attempt in 1 2 3 4 5; do
    if out="$(psql -X -q -tA -v ON_ERROR_STOP=1 -v VERBOSITY=verbose \
                "$(hb_db_url)" -c "$1" 2>&1)"; then
      printf '%s' "$out"
      return 0
    fi
    [[ "$out" == *40P01* ]] || hb_fail "query failed: $1"$'\n'"$out"
    hb_log "DDL attempt $attempt deadlocked with a node statement (40P01); retrying"
    sleep 0.2
  done
  hb_fail "query deadlocked 5 times: $1"$'\n'"$out"
}

# The EXIT trap: stop the node (SIGTERM, then SIGKILL), drop the database,
# keep the temp dir and show the node logs when the test failed.
hb_cleanup() {
  local rc=$?
  set +e
  trap - INT TERM USR1
  if [[ -n "$HB_NODE_PID" ]]; then
    hb_stop_node_quietly
  fi
  hb_drop_db
  if [[ $rc -ne 0 ]]; then
    local f
    for f in "$HB_TMP"/node*.log; do
      [[ -f "$f" ]] || continue
      echo "---- last lines of $f ----" >&2
      tail -n 40 "$f" >&2
    done
    echo "FAILED [$HB_TEST_NAME] after $((SECONDS - HB_T0))s; files kept in $HB_TMP" >&2
  else
    if [[ "${HB_KEEP_TMP:-0}" == 1 ]]; then
      echo "[$HB_TEST_NAME] files kept in $HB_TMP" >&2
    else
      rm -rf "$HB_TMP"
    fi
    echo "PASSED [$HB_TEST_NAME] in $((SECONDS - HB_T0))s" >&2
  fi
  exit $rc
}

# -- Node config and process ---------------------------------------------------

# hb_write_config [GATEWAY_LINES] [MORE_TABLES] [ROOT_LINES]: writes
# $HB_TMP/node.toml for the test database. Port 0: the kernel picks a free
# port and the node prints it, so parallel tests never race for a port.
# GATEWAY_LINES go into the [gateway] table (e.g. "frame_size_max = 4096");
# MORE_TABLES is appended (e.g. "[envelope]\nqueue_max = 100"); ROOT_LINES
# come before the first table, for one-line settings with TOML inline tables
# (e.g. "envelope = { queue_max = 5 }").
hb_write_config() {
  local gateway_lines="${1:-}" more_tables="${2:-}" root_lines="${3:-}"
  HB_CONFIG="$HB_TMP/node.toml"
  cat >"$HB_CONFIG" <<EOF
# Written by tests/system/lib.sh for test $HB_TEST_NAME.
$root_lines

[node]
name = "sys-$HB_TEST_NAME"
zone = "zone-a"

[gateway]
host = "127.0.0.1"
port = 0
auth_token = "$HB_TOKEN"
$gateway_lines

[database]
url = "$(hb_db_url)"
pool_size = 4

[log]
level = "info"

$more_tables
EOF
}

# Whether process $1 is gone or a zombie (a zombie still answers kill -0).
hb_proc_exited() {
  local pid="$1" stat
  [[ -r "/proc/$pid/stat" ]] || return 0
  stat="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" || return 0
  [[ -z "$stat" || "$stat" == Z || "$stat" == X ]]
}

# hb_start_node [VAR=VALUE...]: starts hongbao-node with $HB_CONFIG and the
# given extra environment; waits until it prints its listening line. Sets
# HB_NODE_PID, HB_NODE_PORT, HB_NODE_LOG and exports HONGBAO_SERVER and
# HONGBAO_TOKEN for the CLI. The node gets SIGKILL if this script dies
# (setpriv --pdeathsig), so a killed test leaves no node behind.
hb_start_node() {
  [[ -z "$HB_NODE_PID" ]] || hb_fail "hb_start_node: a node is already running (pid $HB_NODE_PID)"
  [[ -n "$HB_CONFIG" ]] || hb_fail "hb_start_node: call hb_write_config first"
  HB_NODE_SEQ=$((HB_NODE_SEQ + 1))
  # The node logs (spdlog) to stdout next to its listening line; stderr
  # carries start-up errors. Both go to one file.
  HB_NODE_LOG="$HB_TMP/node$HB_NODE_SEQ.log"
  local -a guard=()
  if command -v setpriv >/dev/null 2>&1; then
    guard=(setpriv --pdeathsig KILL --)
  fi
  env "$@" "${guard[@]}" "$HB_NODE_BIN" --config "$HB_CONFIG" --db-wait-s 30 \
    >"$HB_NODE_LOG" 2>&1 </dev/null &
  HB_NODE_PID=$!
  HB_NODE_RC=""
  local deadline=$((SECONDS + HB_START_TIMEOUT_S)) line=""
  while :; do
    line="$(grep -m1 '^hongbao-node .* listening on ' "$HB_NODE_LOG" 2>/dev/null || true)"
    [[ -z "$line" ]] || break
    if hb_proc_exited "$HB_NODE_PID"; then
      local rc=0
      wait "$HB_NODE_PID" || rc=$?
      HB_NODE_PID=""
      tail -n 20 "$HB_NODE_LOG" >&2
      hb_fail "the node exited with status $rc before listening (log above)"
    fi
    if (( SECONDS >= deadline )); then
      hb_fail "the node did not listen within ${HB_START_TIMEOUT_S}s"
    fi
    sleep 0.05
  done
  HB_NODE_PORT="$(sed -n 's/^.* listening on 127\.0\.0\.1:\([0-9][0-9]*\).*$/\1/p' <<<"$line")"
  [[ "$HB_NODE_PORT" =~ ^[0-9]+$ && "$HB_NODE_PORT" != 0 ]] \
    || hb_fail "cannot read the port from the node's line: '$line'"
  export HONGBAO_SERVER="127.0.0.1:$HB_NODE_PORT"
  export HONGBAO_TOKEN="$HB_TOKEN"
  hb_log "node $HB_NODE_SEQ (pid $HB_NODE_PID${*:+, env $*}) listening on $HONGBAO_SERVER"
}

# hb_wait_node_exit TIMEOUT_S: waits for the node to exit by itself; sets
# HB_NODE_RC and clears HB_NODE_PID. Returns 1 on timeout (node still up).
hb_wait_node_exit() {
  local deadline=$((SECONDS + $1))
  [[ -n "$HB_NODE_PID" ]] || hb_fail "hb_wait_node_exit: no node"
  while ! hb_proc_exited "$HB_NODE_PID"; do
    (( SECONDS < deadline )) || return 1
    sleep 0.05
  done
  local rc=0
  wait "$HB_NODE_PID" || rc=$?
  HB_NODE_RC=$rc
  HB_NODE_PID=""
  return 0
}

# hb_stop_node: SIGTERM and expect a clean exit (status 0) in time.
hb_stop_node() {
  [[ -n "$HB_NODE_PID" ]] || hb_fail "hb_stop_node: no node running"
  local pid="$HB_NODE_PID" t0=$SECONDS
  kill -TERM "$pid" 2>/dev/null || true
  if ! hb_wait_node_exit "$HB_STOP_TIMEOUT_S"; then
    kill -KILL "$pid" 2>/dev/null || true
    hb_wait_node_exit 10 || true
    hb_fail "the node (pid $pid) did not stop within ${HB_STOP_TIMEOUT_S}s of SIGTERM; killed it"
  fi
  assert_eq 0 "$HB_NODE_RC" "exit status of the node after SIGTERM"
  hb_log "node $HB_NODE_SEQ stopped cleanly in $((SECONDS - t0))s"
}

# For the EXIT trap: never fails, SIGKILL after a grace period.
hb_stop_node_quietly() {
  local pid="$HB_NODE_PID"
  kill -TERM "$pid" 2>/dev/null || true
  if ! hb_wait_node_exit 15; then
    echo "warning [$HB_TEST_NAME]: node $pid ignored SIGTERM for 15s; SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    hb_wait_node_exit 10 || true
  fi
  HB_NODE_PID=""
}

# -- The CLI and its JSON ------------------------------------------------------

# hb_cli ARGS...: runs `hongbao --json ARGS` against the node; stdout goes to
# HB_OUT, the exit status to HB_RC. Never fails by itself.
hb_cli() {
  HB_RC=0
  HB_OUT="$("$HB_CLI_BIN" --json --timeout-ms 20000 "$@" 2>>"$HB_TMP/cli.err")" || HB_RC=$?
  echo "  \$ hongbao $* -> exit $HB_RC: $HB_OUT" >&2
}

# hb_cli_ok ARGS...: runs the CLI and asserts exit 0 and "ok": true.
hb_cli_ok() {
  hb_cli "$@"
  assert_eq 0 "$HB_RC" "exit status of 'hongbao $*' (output: $HB_OUT)"
  assert_eq true "$(hb_get ok)" "\"ok\" of 'hongbao $*'"
}

# hb_cli_err EXIT_STATUS ERROR_CODE ARGS...: runs the CLI and asserts the
# exit status, "ok": false and the error code.
hb_cli_err() {
  local want_rc="$1" want_code="$2"
  shift 2
  hb_cli "$@"
  assert_eq "$want_rc" "$HB_RC" "exit status of 'hongbao $*' (output: $HB_OUT)"
  assert_eq false "$(hb_get ok)" "\"ok\" of 'hongbao $*'"
  assert_eq "$want_code" "$(hb_get error.code)" "error code of 'hongbao $*'"
}

# hb_get PATH [JSON]: a field of a JSON object (default: $HB_OUT). PATH is
# dotted, list indices are numbers ("opens.0.user"); "#" gives a length
# ("opens.#"). Strings print raw, everything else as JSON (true, null, 12).
hb_get() {
  local path="$1" json="${2-$HB_OUT}"
  "$HB_PY" -c '
import json, sys
d = json.loads(sys.argv[2])
for part in sys.argv[1].split(".") if sys.argv[1] else []:
    if part == "#":
        d = len(d)
    elif isinstance(d, list):
        d = d[int(part)]
    elif isinstance(d, dict) and part in d:
        d = d[part]
    else:
        print("<missing %s>" % sys.argv[1]); sys.exit(0)
print(d if isinstance(d, str) else json.dumps(d))
' "$path" "$json" || hb_fail "hb_get $path: not JSON: $json"
}

# -- Database audit ------------------------------------------------------------

# hb_audit_db: the money invariants over every envelope of the test database,
# checked from the outside with SQL. Prints a one-line summary.
hb_audit_db() {
  # Money is conserved: opened + refunded + remaining = total.
  assert_empty "$(hb_q "
    SELECT e.id, e.total_fen, e.remaining_fen, e.refunded_fen,
           COALESCE(SUM(o.amount_fen), 0)
    FROM envelopes e LEFT JOIN opens o ON o.envelope_id = e.id
    GROUP BY e.id
    HAVING e.total_fen <> e.remaining_fen + e.refunded_fen
                          + COALESCE(SUM(o.amount_fen), 0)")" \
    "envelopes where opened + refunded + remaining <> total (id|total|remaining|refunded|opened)"
  # The ledger is closed: all accounts sum to zero, and every balance is the
  # sum of its entries.
  assert_eq 0 "$(hb_q "SELECT COALESCE(SUM(balance_fen), 0) FROM accounts")" \
    "sum over all ledger accounts"
  assert_empty "$(hb_q "
    SELECT a.id, a.balance_fen, COALESCE(i.s, 0) - COALESCE(o.s, 0)
    FROM accounts a
    LEFT JOIN (SELECT credit_account AS id, SUM(amount_fen) AS s
               FROM ledger_entries GROUP BY 1) i ON i.id = a.id
    LEFT JOIN (SELECT debit_account AS id, SUM(amount_fen) AS s
               FROM ledger_entries GROUP BY 1) o ON o.id = a.id
    WHERE a.balance_fen <> COALESCE(i.s, 0) - COALESCE(o.s, 0)")" \
    "accounts whose balance is not the sum of their entries (id|balance|entries)"
  # At most count shares, and the remaining count matches the opens.
  assert_empty "$(hb_q "
    SELECT e.id, e.count, e.remaining_count, COUNT(o.user_id)
    FROM envelopes e LEFT JOIN opens o ON o.envelope_id = e.id
    GROUP BY e.id
    HAVING COUNT(o.user_id) > e.count
        OR e.count - e.remaining_count <> COUNT(o.user_id)")" \
    "envelopes with more opens than shares, or remaining_count off (id|count|remaining_count|opens)"
  # Every share at least 1 fen; seqs are 1..n without gaps.
  assert_empty "$(hb_q "SELECT envelope_id, user_id, amount_fen FROM opens WHERE amount_fen < 1")" \
    "opens below 1 fen"
  assert_empty "$(hb_q "
    SELECT envelope_id, COUNT(*), MIN(seq), MAX(seq) FROM opens GROUP BY envelope_id
    HAVING MIN(seq) <> 1 OR MAX(seq) <> COUNT(*) OR COUNT(DISTINCT seq) <> COUNT(*)")" \
    "envelopes whose open seqs are not 1..n (id|opens|min|max)"
  # Status agrees with what is left.
  assert_empty "$(hb_q "
    SELECT id, status, remaining_count FROM envelopes
    WHERE (status = 3) <> (remaining_count = 0 AND status IN (2, 3))
       OR (status = 1 AND remaining_count <> count)")" \
    "envelopes whose status disagrees with remaining_count (id|status|remaining_count)"
  # Hot opens are queued in credits_owed: no outbox 'open' row belongs to one.
  # The only 'open' rows are repairs of opens of archived days, and each
  # names such an open with its amount.
  assert_empty "$(hb_q "
    SELECT x.envelope_id, x.user_id, x.amount_fen FROM outbox x
    WHERE x.kind = 'open' AND NOT EXISTS (
      SELECT 1 FROM cold.opens c WHERE c.envelope_id = x.envelope_id
         AND c.user_id = x.user_id AND c.amount_fen = x.amount_fen)")" \
    "outbox 'open' rows that are not a repaired open of an archived day (envelope|user|amount)"
  # Every hot open is credited at most once, with its amount, to its user's
  # wallet, and one no longer in the relay's queue (credits_owed) exactly
  # once; so once the relay has drained (relay_backlog empty, which callers
  # wait for) every hot open is credited exactly once.
  assert_empty "$(hb_q "
    WITH queued AS (
      SELECT x.envelope_id, x.user_id FROM credits_owed q,
        unnest(q.envelope_ids, q.user_ids) AS x(envelope_id, user_id)),
    c AS (
      SELECT o.envelope_id, o.user_id, o.amount_fen,
             EXISTS (SELECT 1 FROM queued q WHERE q.envelope_id = o.envelope_id
                       AND q.user_id = o.user_id) AS pending,
             COUNT(l.id) AS credits,
             COUNT(l.id) FILTER (WHERE l.amount_fen = o.amount_fen
                                   AND l.credit_account = 'user:' || o.user_id)
               AS matching
      FROM opens o LEFT JOIN ledger_entries l
        ON l.kind = 'credit' AND l.envelope_id = o.envelope_id
       AND l.user_id = o.user_id
      GROUP BY o.envelope_id, o.user_id, o.amount_fen)
    SELECT * FROM c
    WHERE credits > 1 OR matching <> credits OR (NOT pending AND credits <> 1)")" \
    "opens credited twice, with another amount or account, or out of the relay's queue without a credit (envelope|user|amount|pending|credits|matching)"
  # And no credit without its open (hot or archived), with the same amount.
  assert_empty "$(hb_q "
    SELECT l.envelope_id, l.user_id, l.amount_fen FROM ledger_entries l
    WHERE l.kind = 'credit'
      AND NOT EXISTS (SELECT 1 FROM opens o WHERE o.envelope_id = l.envelope_id
                         AND o.user_id = l.user_id AND o.amount_fen = l.amount_fen)
      AND NOT EXISTS (SELECT 1 FROM cold.opens c WHERE c.envelope_id = l.envelope_id
                         AND c.user_id = l.user_id AND c.amount_fen = l.amount_fen)")" \
    "credits without an open of that amount (envelope|user|amount)"
  hb_log "audit ok: $(hb_q "SELECT COUNT(*) || ' envelopes, ' ||
      (SELECT COUNT(*) FROM opens) || ' opens, ' ||
      (SELECT COUNT(*) FROM outbox) || ' outbox rows, ' ||
      (SELECT COUNT(*) FROM relay_backlog) || ' owed by the relay, ' ||
      COALESCE(SUM(total_fen), 0) || ' fen wrapped' FROM envelopes")"
}

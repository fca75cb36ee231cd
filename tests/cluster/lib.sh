# Shared helpers of the cluster tests (sourced, not run). Every test starts
# its own cluster with scripts/cluster (two SETs, each on a private
# PostgreSQL server, six nodes over three zones) in its own temp dir, on
# ports no other test uses at the time, and always stops it again (an EXIT
# trap; scripts/cluster's watcher stops it too if the test is killed).
#
# On top of tests/system/lib.sh (assertions, hb_log, hb_get, the audit) and
# fault_lib.sh (times, log stamps, percentiles):
#   hc_init NAME             temp dir, ports, traps; call first
#   hc_start                 scripts/cluster start; exports HONGBAO_SERVERS,
#                            HONGBAO_SERVER, HONGBAO_TOKEN
#   hc_cluster ARGS          scripts/cluster for this test's cluster
#   hc_kill NODE...          kill -9 nodes at once; HC_KILL_MS says when
#   hc_sql S SQL             a query on SET S's database (S = 1 or 2)
#   hc_set_of ID             the SET (1 or 2) of an envelope id
#   hc_gateway NODE          the gateway host:port of a node
#   hc_log NODE              the node's log file
#   hc_audit_set S           the money audit of tests/system on SET S
#   hc_reconcile_set S       `hongbao reconcile` on a live node of SET S,
#                            asserting no discrepancy
#   hc_end_storm ID...       waits for the storm client, then checks its
#                            answers and audits both SETs
#
# Environment: HB_NODE_BIN, HB_CLI_BIN, HB_CLUSTER_CLIENT_BIN (ctest sets
# them; default build/bin), HB_KEEP_TMP=1 keeps the temp dir on success.

# tests/system/lib.sh insists on HONGBAO_TEST_DB_URL only in hb_init, which
# the cluster tests do not call.
source "$(dirname "${BASH_SOURCE[0]}")/../system/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../system/fault_lib.sh"

HC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HC_CLIENT_BIN="${HB_CLUSTER_CLIENT_BIN:-$(dirname "$HB_NODE_BIN")/hb_cluster_client}"
HC_STORM_PID=""
HC_STARTED=0

hc_cluster() { "$HB_REPO_DIR/scripts/cluster" "$@"; }

# hc_kill NODE...: kill -9 the nodes at once; HC_KILL_MS is when (Unix ms,
# taken by scripts/cluster just before the signal).
HC_KILL_MS=""
hc_kill() {
  local out
  out="$(hc_cluster kill "$@")" || hb_fail "scripts/cluster kill $* failed: $out"
  echo "$out" >&2
  HC_KILL_MS="$(sed -n 's/.*(unix_ms \([0-9]*\)).*/\1/p' <<<"$out" | head -n1)"
  [[ "$HC_KILL_MS" =~ ^[0-9]+$ ]] || hb_fail "no kill time in: $out"
}

# Three port bases whose 20 ports (gateways base+11..33, node links
# base+111..133, PostgreSQL base+241..242) are all free right now. Random,
# so that a test run next to another (or a lingering TIME_WAIT) rarely meets
# the same ports; scripts/cluster refuses a taken one anyway.
hc_pick_ports() {
  local base
  base="$("$HB_PY" - <<'PY'
import random, socket
def free(p):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
for _ in range(200):
    b = random.randrange(20000, 40000, 300)
    ports = [b + 10 * s + z for s in (1, 2) for z in (1, 2, 3)]
    ports += [p + 100 for p in ports] + [b + 241, b + 242]
    if all(free(p) for p in ports):
        print(b); break
PY
)"
  [[ -n "$base" ]] || hb_fail "no free port range found for the cluster"
  export HONGBAO_CLUSTER_GATEWAY_BASE=$base
  export HONGBAO_CLUSTER_PEER_BASE=$((base + 100))
  export HONGBAO_CLUSTER_PG_BASE=$((base + 240))
}

# hc_init NAME: call first in every test.
hc_init() {
  HB_TEST_NAME="$1"
  HB_T0=$SECONDS
  [[ -x "$HB_NODE_BIN" ]] || hb_fail "no node binary at $HB_NODE_BIN (build first or set HB_NODE_BIN)"
  [[ -x "$HB_CLI_BIN" ]] || hb_fail "no CLI binary at $HB_CLI_BIN (build first or set HB_CLI_BIN)"
  [[ -x "$HC_CLIENT_BIN" ]] \
    || hb_fail "no hb_cluster_client at $HC_CLIENT_BIN (build the target hb_cluster_client or set HB_CLUSTER_CLIENT_BIN)"
  HB_TMP="$(mktemp -d "/tmp/hb_cluster_${HB_TEST_NAME}.XXXXXX")"
  chmod 755 "$HB_TMP"  # PostgreSQL runs as another user when we are root
  export HONGBAO_CLUSTER_DIR="$HB_TMP/cluster"
  export HONGBAO_CLUSTER_WATCH_PID=$$
  export HONGBAO_SKIP_BUILD=1 HB_NODE_BIN HB_CLI_BIN
  hc_pick_ports
  trap hc_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 1' USR1
}

hc_start() {
  local t0=$SECONDS
  hc_cluster start >"$HB_TMP/start.txt" 2>&1 || {
    cat "$HB_TMP/start.txt" >&2
    hb_fail "scripts/cluster start failed"
  }
  HC_STARTED=1
  eval "$(hc_cluster env)"
  hb_log "cluster up in $((SECONDS - t0))s: gateways $HONGBAO_SERVERS"
}

# The EXIT trap: stop the storm client and the cluster; on failure keep the
# temp dir and show the end of every node log.
hc_cleanup() {
  local rc=$?
  set +e
  trap - INT TERM USR1
  if [[ -n "$HC_STORM_PID" ]]; then
    kill "$HC_STORM_PID" 2>/dev/null
    wait "$HC_STORM_PID" 2>/dev/null
  fi
  if [[ $rc -ne 0 && -d "$HONGBAO_CLUSTER_DIR/logs" ]]; then
    local f
    for f in "$HONGBAO_CLUSTER_DIR"/logs/*.log; do
      [[ -f "$f" ]] || continue
      echo "---- last lines of $f ----" >&2
      tail -n 30 "$f" >&2
    done
  fi
  [[ -f "$HONGBAO_CLUSTER_DIR/cluster.env" ]] && hc_cluster stop >/dev/null 2>&1
  if [[ $rc -ne 0 ]]; then
    echo "FAILED [$HB_TEST_NAME] after $((SECONDS - HB_T0))s; files kept in $HB_TMP" >&2
  else
    if [[ "${HB_KEEP_TMP:-0}" == 1 ]]; then
      echo "[$HB_TEST_NAME] files kept in $HB_TMP" >&2
    else
      rm -rf "$HB_TMP"
      # The PostgreSQL data dirs may live elsewhere (scripts/cluster moves
      # them under /tmp when the state dir is not reachable by their user).
    fi
    echo "PASSED [$HB_TEST_NAME] in $((SECONDS - HB_T0))s" >&2
  fi
  exit $rc
}

hc_set_url() {
  local var="HONGBAO_CLUSTER_DB_$1"
  [[ -n "${!var:-}" ]] || hb_fail "no database URL for SET $1 (hc_start first)"
  echo "${!var}"
}

hc_sql() {
  psql -X -q -tA -v ON_ERROR_STOP=1 "$(hc_set_url "$1")" -c "$2" \
    || hb_fail "query on SET $1 failed: $2"
}

hc_set_of() { if (( $1 % 1000 < 500 )); then echo 1; else echo 2; fi; }

hc_log() { echo "$HONGBAO_CLUSTER_DIR/logs/$1.log"; }

# The gateway of node set<S>-<z> (scripts/cluster's layout).
hc_gateway() {
  local s="${1:3:1}" z="${1: -1}" zi
  case "$z" in a) zi=1 ;; b) zi=2 ;; c) zi=3 ;; *) hb_fail "no node $1" ;; esac
  echo "127.0.0.1:$((HONGBAO_CLUSTER_GATEWAY_BASE + 10 * s + zi))"
}

# hc_owned_by NODE S: the segments of SET S owned by NODE (any incarnation).
hc_owned_by() {
  hc_sql "$2" "SELECT segment FROM segment_owners WHERE owner = '$1' ORDER BY 1"
}

# hc_wait_not_owner NODE S TIMEOUT_S: waits until NODE owns no segment of SET
# S any more (its successors took them); returns 1 on timeout.
hc_wait_not_owner() {
  local deadline=$(( $(hb_now_ms) + $3 * 1000 ))
  while :; do
    [[ "$(hc_sql "$2" "SELECT count(*) FROM segment_owners WHERE owner = '$1'")" == 0 ]] && return 0
    (( $(hb_now_ms) < deadline )) || return 1
    sleep 0.1
  done
}

# hc_check_placement S DEAD_ZONES...: every segment of SET S is owned by a
# node with a live lease, in the first zone of the segment's preferred order
# (primary zone = zones[segment % 3], then the other two forwards or, for
# every other segment of a zone, backwards: domain/cluster.cpp zone_order)
# that is not among the dead zones.
hc_check_placement() {
  assert_empty "$(hc_misplaced "$@")" \
    "segments of SET $1 not owned by a live node of their expected zone (dead zones: ${*:2}) (segment|owner|zone|expected|live)"
}

# hc_wait_placement S TIMEOUT_S [DEAD_ZONE...]: waits until hc_check_placement
# would pass; fails the test with what is still misplaced on timeout.
hc_wait_placement() {
  local s="$1" t="$2"
  shift 2
  local deadline=$(( $(hb_now_ms) + t * 1000 ))
  while [[ -n "$(hc_misplaced "$s" "$@")" ]]; do
    (( $(hb_now_ms) < deadline )) || hc_check_placement "$s" "$@"
    sleep 0.2
  done
}

# hc_misplaced S [DEAD_ZONE...]: the first 20 segments of SET S not owned by
# a live node of the zone expected for them, if any (segment|owner|zone|
# expected|live).
hc_misplaced() {
  local s="$1"
  shift
  local dead
  dead="$(printf "'%s'," "$@" | sed 's/,$//')"
  [[ -n "$*" ]] || dead="''"
  hc_sql "$s" "
    WITH z(i, zone) AS (VALUES (0, 'zone-a'), (1, 'zone-b'), (2, 'zone-c')),
    expected AS (
      SELECT o.segment,
             (SELECT z.zone FROM generate_series(0, 2) k
                JOIN z ON z.i = (o.segment + k * (1 + (o.segment / 3) % 2)) % 3
               WHERE z.zone NOT IN ($dead) ORDER BY k LIMIT 1) AS zone
      FROM segment_owners o)
    SELECT o.segment, o.owner, l.zone, e.zone AS expected_zone,
           l.lease_expires_at > now() AS live
    FROM segment_owners o JOIN expected e USING (segment)
    LEFT JOIN node_leases l ON l.node = o.owner AND l.incarnation = o.owner_incarnation
    WHERE l.node IS NULL OR l.lease_expires_at <= now() OR l.zone <> e.zone
    ORDER BY 1 LIMIT 20"
}

# hc_audit_set S: tests/system's audit (money conserved per envelope, ledger
# closed, shares, seqs, credits) on SET S's database.
hc_audit_set() {
  local url
  url="$(hc_set_url "$1")"
  eval "hb_db_url() { echo '$url'; }"
  hb_audit_db
}

# hc_reconcile_set S: reconciliation (对账) by a live node of SET S.
hc_reconcile_set() {
  local node gw
  for node in "set$1-a" "set$1-b" "set$1-c"; do
    gw="$(hc_gateway "$node")"
    HB_RC=0
    HB_OUT="$(HONGBAO_SERVER="$gw" "$HB_CLI_BIN" --json --timeout-ms 30000 reconcile 2>>"$HB_TMP/cli.err")" || HB_RC=$?
    [[ "$HB_RC" == 3 ]] && continue  # that node is down: the next one
    assert_eq 0 "$HB_RC" "hongbao reconcile on $node (output: $HB_OUT)"
    assert_eq 0 "$(hb_get discrepancies.#)" "discrepancies found by $node's reconciliation: $HB_OUT"
    hb_log "SET $1 reconciled by $node: clean"
    return 0
  done
  hb_fail "no node of SET $1 answered the reconcile request"
}

# hc_wait_relay S TIMEOUT_S: waits until SET S's relay has credited every
# open (relay_backlog empty).
hc_wait_relay() {
  local deadline=$(( $(hb_now_ms) + $2 * 1000 ))
  while [[ "$(hc_sql "$1" "SELECT count(*) FROM relay_backlog")" != 0 ]]; do
    (( $(hb_now_ms) < deadline )) || hb_fail "SET $1: the relay did not drain relay_backlog within $2 s"
    sleep 0.2
  done
}

# hc_create N COUNT PREFIX: N envelopes of COUNT shares (100 fen each),
# spread over every gateway; sets HC_IDS (array).
hc_create() {
  "$HC_CLIENT_BIN" create --servers "$HONGBAO_SERVERS" --n "$1" --count "$2" \
    --prefix "$3" >"$HB_TMP/created-$3.txt" 2>"$HB_TMP/created-$3.err" \
    || hb_fail "creating envelopes failed: $(cat "$HB_TMP/created-$3.err")"
  mapfile -t HC_IDS < <(awk '{ print $1 }' "$HB_TMP/created-$3.txt")
  assert_eq "$1" "${#HC_IDS[@]}" "envelopes created"
}

# hc_check_acked STORM_FILE ID...: every open a client was told about is in
# its SET's database with that amount, a user at most once per envelope, and
# nothing else is there (when no open was given up on).
hc_check_acked() {
  local file="$1"
  shift
  awk '$2 == "ok" { print $3, $4, $5 }' "$file" | sort -u >"$HB_TMP/acked.txt"
  assert_empty "$(awk '{ print $1, $2 }' "$HB_TMP/acked.txt" | uniq -d | head -20)" \
    "users told two different amounts for one envelope (envelope user)"
  local s ids1=() ids2=() id
  for id in "$@"; do
    if [[ "$(hc_set_of "$id")" == 1 ]]; then ids1+=("$id"); else ids2+=("$id"); fi
  done
  : >"$HB_TMP/db-opens.txt"
  [[ ${#ids1[@]} -eq 0 ]] || hc_sql 1 "SELECT envelope_id, user_id, amount_fen FROM opens
    WHERE envelope_id IN ($(IFS=,; echo "${ids1[*]}"))" | tr '|' ' ' >>"$HB_TMP/db-opens.txt"
  [[ ${#ids2[@]} -eq 0 ]] || hc_sql 2 "SELECT envelope_id, user_id, amount_fen FROM opens
    WHERE envelope_id IN ($(IFS=,; echo "${ids2[*]}"))" | tr '|' ' ' >>"$HB_TMP/db-opens.txt"
  sort -u -o "$HB_TMP/db-opens.txt" "$HB_TMP/db-opens.txt"
  assert_empty "$(awk '{ print $1, $2 }' "$HB_TMP/db-opens.txt" | uniq -d | head -20)" \
    "a user with two shares of one envelope in the database (envelope user)"
  assert_empty "$(comm -23 "$HB_TMP/acked.txt" "$HB_TMP/db-opens.txt" | head -20)" \
    "acknowledged opens missing from their SET's database, or with another amount (envelope user amount)"
  local gaveup
  gaveup="$(awk '$2 == "gaveup"' "$file" | wc -l)"
  if [[ "$gaveup" == 0 ]]; then
    assert_empty "$(comm -13 "$HB_TMP/acked.txt" "$HB_TMP/db-opens.txt" | head -20)" \
      "opens in the databases that no client was told about (envelope user amount)"
  fi
  hb_log "acknowledged opens: $(wc -l <"$HB_TMP/acked.txt"), in the databases: $(wc -l <"$HB_TMP/db-opens.txt"), given up: $gaveup"
}

# hc_storm_summary FILE: one line of counts by answer.
hc_storm_summary() {
  awk '{ k = $2; if ($2 == "err") k = "err:" $3; n[k]++ }
       END { for (k in n) printf "%s=%d ", k, n[k] }' "$1"
}

# hc_end_storm ID...: waits for the storm client of $HB_TMP/storm.txt, then
# checks that every error it got was retryable and no open's outcome stayed
# unknown, that every acknowledged open of the envelopes ID... is stored
# (hc_check_acked), and that each SET's relay catches up, reconciles clean
# and passes the money audit.
hc_end_storm() {
  local code s
  wait "$HC_STORM_PID" || hb_fail "the storm client failed: $(cat "$HB_TMP/storm.err")"
  HC_STORM_PID=""
  hb_log "storm: $(hc_storm_summary "$HB_TMP/storm.txt")"
  for code in $(awk '$2 == "err" { print $3 }' "$HB_TMP/storm.txt" | sort -u); do
    case "$code" in
      unavailable|busy|not_owner|deadline_exceeded|stale_epoch|shares_pending) ;;
      *) hb_fail "an open was answered with '$code' ($(awk -v c="$code" '$2 == "err" && $3 == c' "$HB_TMP/storm.txt" | head -3 | paste -sd';'))" ;;
    esac
  done
  assert_eq 0 "$(awk '$2 == "gaveup"' "$HB_TMP/storm.txt" | wc -l)" "storm opens whose outcome stayed unknown"
  hc_check_acked "$HB_TMP/storm.txt" "$@"
  for s in 1 2; do
    hc_wait_relay "$s" 30
    hc_reconcile_set "$s"
    hc_audit_set "$s"
  done
}

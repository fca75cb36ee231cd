#!/usr/bin/env bash
# run_with_node.sh SUITE [extra hb_system_test args]: runs one suite of the
# C++ system test binary against a real node: makes a fresh database, starts
# hongbao-node on it (port chosen by the kernel), runs
#   hb_system_test -n -r 300 -s '^SUITE$'
# with HONGBAO_SERVER, HONGBAO_TOKEN and HONGBAO_DB_URL (full libpq string of
# that database) in its environment, then stops the node (expecting a clean
# exit) and drops the database, also on failure.
#
#   scripts/pg start
#   export HONGBAO_TEST_DB_URL="host=127.0.0.1 port=55432 user=hongbao"
#   bash tests/system/run_with_node.sh system.protocol
#
# HB_SYSTEM_TEST_BIN overrides the binary (default <repo>/build/bin/hb_system_test).
# HB_NODE_TOML: extra node settings as root-level TOML (inline tables), e.g.
#   HB_NODE_TOML='envelope = { queue_max = 5, batch_max = 3 }'
# HB_TEST_NAME_SUFFIX: appended to the test's name (database, temp dir, logs).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

suite="${1:?usage: run_with_node.sh SUITE [args for hb_system_test]}"
shift
test_bin="${HB_SYSTEM_TEST_BIN:-$HB_REPO_DIR/build/bin/hb_system_test}"
[[ -x "$test_bin" ]] || { echo "no test binary at $test_bin (build first)" >&2; exit 1; }

# The protocol suite sends frames around this limit.
frame_size_max=4096

hb_init "${suite#system.}${HB_TEST_NAME_SUFFIX:-}"
hb_write_config "frame_size_max = $frame_size_max" "" "${HB_NODE_TOML:-}"
hb_start_node

rc=0
HONGBAO_DB_URL="$(hb_db_url)" HONGBAO_FRAME_SIZE_MAX=$frame_size_max \
  "$test_bin" -n -r 300 -s "^${suite}\$" "$@" || rc=$?
[[ $rc -eq 0 ]] || hb_fail "hb_system_test -s $suite exited with status $rc"

# The node survived everything the suite did to it and stops cleanly.
hb_proc_exited "$HB_NODE_PID" && hb_fail "the node died during the suite (see its log)"
hb_stop_node
# For information: the node's own counters (group commit), when it prints them.
summary="$(grep -m1 '^hongbao-node .* stopped: ' "$HB_NODE_LOG" || true)"
[[ -z "$summary" ]] || hb_log "${summary#hongbao-node }"

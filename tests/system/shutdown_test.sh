#!/usr/bin/env bash
# system.shutdown: SIGTERM stops the node cleanly (exit 0, in bounded time)
# also while clients stay connected: one idle after Auth, one stalled in the
# middle of a frame. An operator's `systemctl stop` must not hang on them.
#
#   scripts/pg start
#   export HONGBAO_TEST_DB_URL="host=127.0.0.1 port=55432 user=hongbao"
#   bash tests/system/shutdown_test.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

hb_init shutdown
hb_write_config
hb_start_node

# The node answers.
hb_cli_ok create --sender alice --group g --total-fen 100 --count 2
id="$(hb_get envelope_id)"

# An Auth frame, built by hand: Request{request_id: 1, auth: {token}}.
token_len=${#HB_TOKEN}
(( token_len < 120 )) || hb_fail "token too long for this hand-made frame"
hex() { printf '\\x%02x' "$1"; }
auth_frame="\\x00\\x00\\x00$(hex $((6 + token_len)))\\x08\\x01\\x12$(hex $((2 + token_len)))\\x0a$(hex "$token_len")$HB_TOKEN"

# Client 1: authenticates, reads its AuthOk, then stays idle.
exec 7<>"/dev/tcp/127.0.0.1/$HB_NODE_PORT"
printf '%b' "$auth_frame" >&7
answer="$(timeout 20 head -c 7 <&7 | od -An -tx1 | tr -d ' \n')"
assert_eq "08011a" "${answer:8}" "the start of the AuthOk frame (request 1, auth_ok) in '$answer'"
# Client 2: authenticates, then sends half of a frame and stalls.
exec 8<>"/dev/tcp/127.0.0.1/$HB_NODE_PORT"
printf '%b' "$auth_frame" >&8
printf '\x00\x00\x00\x40\x08\x02' >&8

# The node still serves others meanwhile.
hb_cli_ok show "$id"

t0=$SECONDS
kill -TERM "$HB_NODE_PID"
if ! hb_wait_node_exit 20; then
  # Diagnose: does it exit once the clients let go?
  exec 7<&- 8<&-
  t1=$SECONDS
  if hb_wait_node_exit 20; then
    hb_fail "the node did not exit within 20s of SIGTERM while two clients" \
            "stayed connected; it exited (status $HB_NODE_RC) $((SECONDS - t1))s" \
            "after they disconnected: shutdown waits for the clients"
  fi
  hb_fail "the node did not exit within 20s of SIGTERM, nor 20s after its" \
          "clients disconnected"
fi
assert_eq 0 "$HB_NODE_RC" "exit status of the node after SIGTERM"
hb_log "node stopped in $((SECONDS - t0))s with two clients connected"

# The clients see their connections closed.
exec 7<&- 8<&-
hb_cli show "$id"
assert_eq 3 "$HB_RC" "exit status of the CLI with the node stopped"

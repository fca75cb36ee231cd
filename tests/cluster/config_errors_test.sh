#!/usr/bin/env bash
# cluster.config_errors: a node with a broken cluster config, or one pointed
# at another SET's database, is refused with a clear message (issue 26,
# "Config errors and a node started with the wrong SET's database").
#
# Proven: `hongbao-node --check` and a real start both refuse zones that
# are not three, overlapping SETs, segments no SET covers, a node's SET
# missing from the map, a missing peer port and a database.url that is not
# its SET's, each with a message naming the key (exit status 2, nothing
# listens); a valid file passes --check. Against a running cluster: a node
# of set-1 whose SET map points set-1 at set-2's database is refused with a
# message naming both SETs, and so is a node without [cluster] on a SET's
# database; neither leaves a lease behind, and the cluster keeps serving.
#
#   bash tests/cluster/config_errors_test.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

hc_init config_errors
hc_start
url1="$HONGBAO_CLUSTER_DB_1"
url2="$HONGBAO_CLUSTER_DB_2"
peer_port="$(hb_free_port)"

# write_cfg FILE [KEY=VALUE...]: a config of node "intruder" of set-1 in
# zone-a; KEYs: zones, set, sets (the whole [[cluster.sets]] block),
# peer (the peer_port line), db (the [database] url line), cluster (0: no
# [cluster] section and no SET map).
write_cfg() {
  local file="$1"
  shift
  local zones='["zone-a", "zone-b", "zone-c"]' set=set-1 peer="peer_port = $peer_port" db="" cluster=1
  local sets="[[cluster.sets]]
name = \"set-1\"
segments = [\"0-499\"]
database_url = \"$url1\"

[[cluster.sets]]
name = \"set-2\"
segments = [\"500-999\"]
database_url = \"$url2\""
  local kv
  for kv in "$@"; do
    case "$kv" in
      zones=*) zones="${kv#zones=}" ;;
      set=*) set="${kv#set=}" ;;
      sets=*) sets="${kv#sets=}" ;;
      peer=*) peer="${kv#peer=}" ;;
      db=*) db="${kv#db=}" ;;
      cluster=*) cluster="${kv#cluster=}" ;;
      *) hb_fail "write_cfg: unknown key in $kv" ;;
    esac
  done
  {
    cat <<EOF
[node]
name = "intruder"
zone = "zone-a"

[gateway]
host = "127.0.0.1"
port = 0
auth_token = "$HONGBAO_TOKEN"

[database]
pool_size = 2
$db
EOF
    if [[ "$cluster" == 1 ]]; then
      cat <<EOF

[cluster]
set = "$set"
peer_host = "127.0.0.1"
$peer
seeds = ["127.0.0.1:$peer_port"]
zones = $zones

$sets
EOF
    fi
  } >"$file"
}

# refused NAME PATTERN...: --check and a real start of $HB_TMP/NAME.toml both
# exit with status 2 and print every pattern (extended regex).
refused() {
  local name="$1" file="$HB_TMP/$1.toml" rc out p
  shift
  rc=0
  out="$("$HB_NODE_BIN" --config "$file" --check 2>&1)" || rc=$?
  assert_eq 2 "$rc" "exit status of hongbao-node --check on the $name config (output: $out)"
  for p in "$@"; do
    grep -Eq -- "$p" <<<"$out" || hb_fail "hongbao-node --check on the $name config: expected /$p/ in: $out"
  done
  rc=0
  out="$(timeout 30 "$HB_NODE_BIN" --config "$file" --db-wait-s 5 2>&1)" || rc=$?
  assert_eq 2 "$rc" "exit status of hongbao-node started with the $name config (output: $out)"
  for p in "$@"; do
    grep -Eq -- "$p" <<<"$out" || hb_fail "hongbao-node started with the $name config: expected /$p/ in: $out"
  done
  grep -q 'listening on' <<<"$out" && hb_fail "the node with the $name config listened: $out"
  hb_log "$name refused: $(head -n 3 <<<"$out" | paste -sd'|')"
}

# -- Broken configs --------------------------------------------------------------------
write_cfg "$HB_TMP/valid.toml"
out="$("$HB_NODE_BIN" --config "$HB_TMP/valid.toml" --check 2>&1)" \
  || hb_fail "hongbao-node --check refuses the valid config: $out"
assert_match "config ok: cluster node intruder, zone zone-a, SET set-1" "$out" "--check of the valid config"

write_cfg "$HB_TMP/two_zones.toml" zones='["zone-a", "zone-b"]'
refused two_zones "cluster\.zones must name exactly three distinct"
write_cfg "$HB_TMP/same_zone_twice.toml" zones='["zone-a", "zone-a", "zone-b"]'
refused same_zone_twice "cluster\.zones must name exactly three distinct"
write_cfg "$HB_TMP/overlap.toml" sets="[[cluster.sets]]
name = \"set-1\"
segments = [\"0-499\"]
database_url = \"$url1\"

[[cluster.sets]]
name = \"set-2\"
segments = [\"450-999\"]
database_url = \"$url2\""
refused overlap "segments 450-499 are in both cluster\.sets #1 \(set-1\) and cluster\.sets #2 \(set-2\)"
write_cfg "$HB_TMP/gap.toml" sets="[[cluster.sets]]
name = \"set-1\"
segments = [\"0-499\"]
database_url = \"$url1\"

[[cluster.sets]]
name = \"set-2\"
segments = [\"600-999\"]
database_url = \"$url2\""
refused gap "cluster\.sets: segments? 500-599 .*in no SET"
write_cfg "$HB_TMP/unknown_set.toml" set=set-9
refused unknown_set 'cluster\.set "set-9" is not in the SET map'
write_cfg "$HB_TMP/no_peer_port.toml" peer=""
refused no_peer_port "cluster\.peer_port is required"
write_cfg "$HB_TMP/other_db_url.toml" db="url = \"$url2\""
refused other_db_url "database\.url" "set-1"

# -- The wrong SET's database ----------------------------------------------------------
# The SET map says set-1 lives in set-2's database (and the other way round,
# so that the URLs stay distinct): the map is consistent, --check cannot
# know, and the database itself refuses the node.
write_cfg "$HB_TMP/wrong_db.toml" sets="[[cluster.sets]]
name = \"set-1\"
segments = [\"0-499\"]
database_url = \"$url2\"

[[cluster.sets]]
name = \"set-2\"
segments = [\"500-999\"]
database_url = \"$url1\""
"$HB_NODE_BIN" --config "$HB_TMP/wrong_db.toml" --check >/dev/null 2>&1 \
  || hb_fail "--check refuses the swapped SET map, which is consistent in itself"
rc=0
out="$(timeout 60 "$HB_NODE_BIN" --config "$HB_TMP/wrong_db.toml" --db-wait-s 10 2>&1)" || rc=$?
assert_ne 0 "$rc" "exit status of a set-1 node on set-2's database (output: $out)"
assert_ne 124 "$rc" "a set-1 node on set-2's database still ran after 60 s (output: $out)"
grep -q 'listening on' <<<"$out" && hb_fail "the set-1 node on set-2's database listened: $out"
assert_match "set-1" "$out" "the refusal names the node's SET"
assert_match "set-2" "$out" "the refusal names the database's SET"
hb_log "a set-1 node on set-2's database: exit $rc: $(grep -m1 refused <<<"$out")"

write_cfg "$HB_TMP/no_cluster.toml" cluster=0 db="url = \"$url2\""
rc=0
out="$(timeout 60 "$HB_NODE_BIN" --config "$HB_TMP/no_cluster.toml" --db-wait-s 10 2>&1)" || rc=$?
assert_ne 0 "$rc" "exit status of a node without [cluster] on set-2's database (output: $out)"
assert_ne 124 "$rc" "a node without [cluster] on set-2's database still ran after 60 s (output: $out)"
assert_match "set-2" "$out" "the refusal names the database's SET"
assert_match "\[cluster\]" "$out" "the refusal says the node has no [cluster] section"
hb_log "a node without [cluster] on set-2's database: exit $rc: $(grep -m1 refused <<<"$out")"

# Nothing of the intruder stayed, and the cluster serves on.
for s in 1 2; do
  assert_eq 0 "$(hc_sql "$s" "SELECT count(*) FROM node_leases WHERE node = 'intruder'")" \
    "leases of the refused node in SET $s"
  assert_eq "set-$s" "$(hc_sql "$s" "SELECT set_name FROM cluster_identity")" "the SET named by SET $s's database"
done
hc_cluster wait-owned 10 >&2 || hb_fail "the cluster lost segments"
hc_create 6 10 ce
for id in "${HC_IDS[@]}"; do
  "$HC_CLIENT_BIN" open --servers "$HONGBAO_SERVERS" --id "$id" --user after-the-intruders \
    --grace-ms 10000 >"$HB_TMP/open.txt"
  assert_eq ok "$(awk '{ print $2 }' "$HB_TMP/open.txt")" "an open on envelope $id after the refused nodes"
done

#define CAF_SUITE config.node_config

#include "caf/test/unit_test.hpp"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "config/node_config.hpp"

using namespace hb;

CAF_TEST(a minimal config gets defaults) {
  auto cfg = parse_node_config(R"(
[gateway]
auth_token = "t"
[database]
url = "host=127.0.0.1"
)");
  CAF_REQUIRE(cfg.ok());
  CAF_CHECK_EQUAL(cfg->gateway.port, 7700);
  CAF_CHECK_EQUAL(cfg->limits.count_max, 100);
  CAF_CHECK_EQUAL(cfg->limits.share_max_fen, 20000);
  CAF_CHECK_EQUAL(cfg->ids.segments.size(), 16u);
  CAF_CHECK_EQUAL(cfg->envelope.batch_max, 2000u);
  CAF_CHECK_EQUAL(cfg->database.commits.inflight_max, 4u);
  CAF_CHECK_EQUAL(cfg->database.batches.inflight_max, 2u);
  CAF_CHECK_EQUAL(cfg->database.batches.batch_max, 64u);
  CAF_CHECK_EQUAL(cfg->relay.yield_ms, 20u);
  CAF_CHECK_EQUAL(cfg->relay.defer_max_ms, 1000u);
  CAF_CHECK_EQUAL(cfg->relay.batch_max, 100);
  CAF_CHECK_EQUAL(cfg->registry.live_max, 100000u);
  CAF_CHECK_EQUAL(cfg->registry.keep_live, 50000u);
  CAF_CHECK_EQUAL(cfg->registry.cap_quiet_ms, 1000u);
  CAF_CHECK_EQUAL(cfg->registry.cap_check_ms, 1000u);
  CAF_CHECK_EQUAL(cfg->node.idle_poll_us, 0u);
}

CAF_TEST(the idle polling of the scheduler threads is read and bounded) {
  auto base = std::string{"[gateway]\nauth_token=\"t\"\n[database]\nurl=\"x\"\n"};
  auto set = parse_node_config(base + "[node]\nidle_poll_us = 25000\n");
  CAF_REQUIRE(set.ok());
  CAF_CHECK_EQUAL(set->node.idle_poll_us, 25000u);
  for (auto bad : {"-1", "1000001", "\"fast\""}) {
    auto res = parse_node_config(base + "[node]\nidle_poll_us = " + bad + "\n");
    CAF_REQUIRE(!res.ok());
    CAF_CHECK(res.error().message.find("node.idle_poll_us") != std::string::npos);
  }
}

CAF_TEST(idle envelopes are kept up to half of the live cap unless set) {
  auto base = std::string{"[gateway]\nauth_token=\"t\"\n[database]\nurl=\"x\"\n"};
  auto half = parse_node_config(base + "[envelope]\nlive_max = 1000\n");
  CAF_REQUIRE(half.ok());
  CAF_CHECK_EQUAL(half->registry.keep_live, 500u);
  auto set = parse_node_config(base + "[envelope]\nlive_max = 1000\nkeep_live = 0\n");
  CAF_REQUIRE(set.ok());
  CAF_CHECK_EQUAL(set->registry.keep_live, 0u);
  auto over = parse_node_config(base + "[envelope]\nlive_max = 1000\nkeep_live = 1001\n");
  CAF_REQUIRE(!over.ok());
  CAF_CHECK(over.error().message.find("envelope.keep_live") != std::string::npos);
}

CAF_TEST(the idle check at the live cap is read and bounded) {
  auto base = std::string{"[gateway]\nauth_token=\"t\"\n[database]\nurl=\"x\"\n"};
  auto set = parse_node_config(base
                               + "[envelope]\ncap_quiet_ms = 250\ncap_check_ms = 500\n");
  CAF_REQUIRE(set.ok());
  CAF_CHECK_EQUAL(set->registry.cap_quiet_ms, 250u);
  CAF_CHECK_EQUAL(set->registry.cap_check_ms, 500u);
  auto zero = parse_node_config(base + "[envelope]\ncap_quiet_ms = 0\n");
  CAF_REQUIRE(!zero.ok());
  CAF_CHECK(zero.error().message.find("envelope.cap_quiet_ms") != std::string::npos);
  auto fast = parse_node_config(base + "[envelope]\ncap_check_ms = 9\n");
  CAF_REQUIRE(!fast.ok());
  CAF_CHECK(fast.error().message.find("envelope.cap_check_ms") != std::string::npos);
}

CAF_TEST(the performance keys are read and bounded) {
  auto cfg = parse_node_config(R"(
[gateway]
auth_token = "t"
[database]
url = "host=127.0.0.1"
commits_in_flight = 2
batches_in_flight = 3
batch_max = 16
[relay]
yield_ms = 5
defer_max_ms = 0
)");
  CAF_REQUIRE(cfg.ok());
  CAF_CHECK_EQUAL(cfg->database.commits.inflight_max, 2u);
  CAF_CHECK_EQUAL(cfg->database.batches.inflight_max, 3u);
  CAF_CHECK_EQUAL(cfg->database.batches.batch_max, 16u);
  CAF_CHECK_EQUAL(cfg->relay.yield_ms, 5u);
  CAF_CHECK_EQUAL(cfg->relay.defer_max_ms, 0u);
  auto zero = parse_node_config(
    "[gateway]\nauth_token=\"t\"\n[database]\nurl=\"x\"\ncommits_in_flight = 0\n");
  CAF_REQUIRE(!zero.ok());
  CAF_CHECK(zero.error().message.find("database.commits_in_flight")
            != std::string::npos);
  auto big = parse_node_config(
    "[gateway]\nauth_token=\"t\"\n[database]\nurl=\"x\"\nbatch_max = 1025\n");
  CAF_REQUIRE(!big.ok());
  CAF_CHECK(big.error().message.find("database.batch_max") != std::string::npos);
  auto no_yield = parse_node_config(
    "[gateway]\nauth_token=\"t\"\n[database]\nurl=\"x\"\n[relay]\nyield_ms = 0\n");
  CAF_CHECK(!no_yield.ok());
}

CAF_TEST(bad configs name the key that is wrong) {
  auto no_token = parse_node_config("[database]\nurl = \"x\"\n");
  CAF_REQUIRE(!no_token.ok());
  CAF_CHECK(no_token.error().message.find("auth_token") != std::string::npos);
  auto bad_port = parse_node_config(
    "[gateway]\nauth_token=\"t\"\nport = 70000\n[database]\nurl=\"x\"\n");
  CAF_REQUIRE(!bad_port.ok());
  CAF_CHECK(bad_port.error().message.find("gateway.port") != std::string::npos);
  auto bad_toml = parse_node_config("[gateway\n");
  CAF_REQUIRE(!bad_toml.ok());
  CAF_CHECK(bad_toml.error().message.find("line") != std::string::npos);
  auto segs = parse_node_config(
    "[gateway]\nauth_token=\"t\"\n[database]\nurl=\"x\"\n[ids]\n"
    "segments = [\"0-3\", 9]\n");
  CAF_REQUIRE(segs.ok());
  CAF_CHECK_EQUAL(segs->ids.segments, (std::vector<int32_t>{0, 1, 2, 3, 9}));
  auto bad_segs = parse_node_config(
    "[gateway]\nauth_token=\"t\"\n[database]\nurl=\"x\"\n[ids]\n"
    "segments = [\"3-1\"]\n");
  CAF_CHECK(!bad_segs.ok());
}

namespace {

const std::string required = "[gateway]\nauth_token=\"t\"\n[database]\nurl=\"x\"\n";

} // namespace

CAF_TEST(every section is read into the struct of its service) {
  auto cfg = parse_node_config(R"(
[node]
name = "n7"
zone = "zone-c"
idle_poll_us = 100
[gateway]
host = "0.0.0.0"
port = 7801
auth_token = "secret"
frame_size_max = 4096
connection_inflight_max = 8
node_inflight_max = 900
[database]
url = "host=db"
pool_size = 6
commits_in_flight = 3
batches_in_flight = 2
batch_max = 32
[limits]
share_min_fen = 2
share_max_fen = 500
count_max = 7
expiry_s = 60
[envelope]
queue_max = 11
batch_max = 12
idle_ms = 1300
live_max = 140
keep_live = 15
cap_quiet_ms = 160
cap_check_ms = 170
[relay]
batch_max = 18
poll_ms = 190
yield_ms = 21
defer_max_ms = 220
[expiry]
sweep_interval_ms = 2300
sweep_batch_max = 24
[reconcile]
interval_s = 25
window_s = 2600
[partitions]
hot_days = 27
ahead_days = 2
interval_s = 2900
[segments]
window_ms = 3000
fault_threshold = 31
probe_interval_ms = 3200
[supervisor]
restarts_max = 33
window_s = 34
[ids]
segments = [5, "7-8"]
lease_block = 35
[log]
level = "warn"
)");
  CAF_REQUIRE(cfg.ok());
  CAF_CHECK_EQUAL(cfg->node.name, "n7");
  CAF_CHECK_EQUAL(cfg->node.zone, "zone-c");
  CAF_CHECK_EQUAL(cfg->node.idle_poll_us, 100u);
  CAF_CHECK_EQUAL(cfg->gateway.host, "0.0.0.0");
  CAF_CHECK_EQUAL(cfg->gateway.port, 7801);
  CAF_CHECK_EQUAL(cfg->gateway.auth_token, "secret");
  CAF_CHECK_EQUAL(cfg->gateway.frame_size_max, 4096u);
  CAF_CHECK_EQUAL(cfg->gateway.connection_inflight_max, 8u);
  CAF_CHECK_EQUAL(cfg->gateway.node_inflight_max, 900u);
  CAF_CHECK_EQUAL(cfg->database.store.database_url, "host=db");
  CAF_CHECK_EQUAL(cfg->database.store.pool_size, 6u);
  CAF_CHECK_EQUAL(cfg->database.commits.inflight_max, 3u);
  CAF_CHECK_EQUAL(cfg->database.batches.inflight_max, 2u);
  CAF_CHECK_EQUAL(cfg->database.batches.batch_max, 32u);
  CAF_CHECK_EQUAL(cfg->limits.share_min_fen, 2);
  CAF_CHECK_EQUAL(cfg->limits.share_max_fen, 500);
  CAF_CHECK_EQUAL(cfg->limits.count_max, 7);
  CAF_CHECK_EQUAL(cfg->limits.expiry_ms, 60000);
  CAF_CHECK_EQUAL(cfg->envelope.queue_max, 11u);
  CAF_CHECK_EQUAL(cfg->envelope.batch_max, 12u);
  CAF_CHECK_EQUAL(cfg->envelope.idle_ms, 1300u);
  CAF_CHECK_EQUAL(cfg->registry.live_max, 140u);
  CAF_CHECK_EQUAL(cfg->registry.keep_live, 15u);
  CAF_CHECK_EQUAL(cfg->registry.cap_quiet_ms, 160u);
  CAF_CHECK_EQUAL(cfg->registry.cap_check_ms, 170u);
  CAF_CHECK_EQUAL(cfg->relay.batch_max, 18);
  CAF_CHECK_EQUAL(cfg->relay.poll_ms, 190u);
  CAF_CHECK_EQUAL(cfg->relay.yield_ms, 21u);
  CAF_CHECK_EQUAL(cfg->relay.defer_max_ms, 220u);
  CAF_CHECK_EQUAL(cfg->expiry.interval_ms, 2300u);
  CAF_CHECK_EQUAL(cfg->expiry.batch_max, 24);
  CAF_CHECK_EQUAL(cfg->reconcile.interval_s, 25u);
  CAF_CHECK_EQUAL(cfg->reconcile.window_s, 2600u);
  CAF_CHECK_EQUAL(cfg->partitions.hot_days, 27);
  CAF_CHECK_EQUAL(cfg->partitions.ahead_days, 2);
  CAF_CHECK_EQUAL(cfg->partitions.interval_s, 2900u);
  CAF_CHECK_EQUAL(cfg->segments.window_ms, 3000u);
  CAF_CHECK_EQUAL(cfg->segments.fault_threshold, 31u);
  CAF_CHECK_EQUAL(cfg->segments.probe_interval_ms, 3200u);
  CAF_CHECK_EQUAL(cfg->supervisor.restarts_max, 33u);
  CAF_CHECK_EQUAL(cfg->supervisor.window_ms, 34000u);
  CAF_CHECK_EQUAL(cfg->ids.segments, (std::vector<int32_t>{5, 7, 8}));
  CAF_CHECK_EQUAL(cfg->ids.lease_block, 35);
  CAF_CHECK_EQUAL(cfg->log.level, "warn");
}

CAF_TEST(the database timeouts are read and bounded) {
  auto cfg = parse_node_config(
    "[gateway]\nauth_token=\"t\"\n[database]\nurl=\"x\"\n"
    "keepalives_idle_s = 4\nkeepalives_interval_s = 2\nkeepalives_count = 5\n"
    "tcp_user_timeout_ms = 6000\nstatement_timeout_ms = 7000\n"
    "lock_timeout_ms = 800\nidle_in_transaction_session_timeout_ms = 9000\n"
    "client_connection_check_interval_ms = 0\ncall_timeout_ms = 1500\n"
    "stuck_after_ms = 300\nreply_timeout_ms = 4000\n"
    "background_call_timeout_ms = 0\nbackground_statement_timeout_ms = 1\n");
  CAF_REQUIRE(cfg.ok());
  auto& s = cfg->database.store;
  CAF_CHECK_EQUAL(s.keepalives_idle_s, 4u);
  CAF_CHECK_EQUAL(s.keepalives_interval_s, 2u);
  CAF_CHECK_EQUAL(s.keepalives_count, 5u);
  CAF_CHECK_EQUAL(s.tcp_user_timeout_ms, 6000u);
  CAF_CHECK_EQUAL(s.statement_timeout_ms, 7000u);
  CAF_CHECK_EQUAL(s.lock_timeout_ms, 800u);
  CAF_CHECK_EQUAL(s.idle_in_transaction_session_timeout_ms, 9000u);
  CAF_CHECK_EQUAL(s.client_connection_check_interval_ms, 0u);
  CAF_CHECK_EQUAL(s.call_timeout_ms, 1500u);
  CAF_CHECK_EQUAL(s.stuck_after_ms, 300u);
  CAF_CHECK_EQUAL(cfg->database.commits.reply_timeout_ms, 4000u);
  CAF_CHECK_EQUAL(cfg->database.batches.reply_timeout_ms, 4000u);
  CAF_CHECK_EQUAL(cfg->database.background_call_timeout_ms, 0u);
  CAF_CHECK_EQUAL(cfg->database.background_statement_timeout_ms, 1u);
  // The batchers must not give up on a call the store still answers.
  auto bad = parse_node_config(required
                               + "call_timeout_ms = 5000\n"
                                 "reply_timeout_ms = 5000\n");
  CAF_REQUIRE(!bad.ok());
  CAF_CHECK(bad.error().message.find("database.reply_timeout_ms (5000) must "
                                     "exceed database.call_timeout_ms (5000)")
            != std::string::npos);
  auto negative = parse_node_config(required + "call_timeout_ms = -1\n");
  CAF_REQUIRE(!negative.ok());
  CAF_CHECK(negative.error().message.find("database.call_timeout_ms")
            != std::string::npos);
}

CAF_TEST(each section names its own keys when they are out of range) {
  // One bad key per section: the message names the section and the key,
  // so each section's reader is reached and checks its bounds.
  for (auto bad : {"[node]\nidle_poll_us = -1\n",
                   "[limits]\ncount_max = 0\n",
                   "[envelope]\nqueue_max = 0\n",
                   "[relay]\npoll_ms = 0\n",
                   "[expiry]\nsweep_batch_max = 0\n",
                   "[reconcile]\nwindow_s = 0\n",
                   "[partitions]\nahead_days = 0\n",
                   "[segments]\nfault_threshold = 0\n",
                   "[supervisor]\nwindow_s = 0\n",
                   "[ids]\nlease_block = 0\n",
                   "[log]\nlevel = 3\n"}) {
    std::string text = bad;
    auto section = text.substr(1, text.find(']') - 1);
    auto key = text.substr(text.find('\n') + 1);
    key = key.substr(0, key.find(' '));
    auto res = parse_node_config(required + text);
    CAF_REQUIRE(!res.ok());
    CAF_CHECK(res.error().message.find(section + "." + key) != std::string::npos);
  }
}

CAF_TEST(the example file shows the defaults of the service structs) {
  // config/node.example.toml documents every key with its default: read
  // with only its required keys, it must equal a default node_config.
  auto example = load_node_config(HB_EXAMPLE_CONFIG);
  CAF_REQUIRE(example.ok());
  auto defaults = parse_node_config(
    "[gateway]\nauth_token=\"change-me\"\n[database]\nurl=\""
    + example->database.store.database_url + "\"\n");
  CAF_REQUIRE(defaults.ok());
  auto& a = *example;
  auto& b = *defaults;
  CAF_CHECK_EQUAL(a.node.name, b.node.name);
  CAF_CHECK_EQUAL(a.node.zone, b.node.zone);
  CAF_CHECK_EQUAL(a.node.idle_poll_us, b.node.idle_poll_us);
  CAF_CHECK_EQUAL(a.gateway.host, b.gateway.host);
  CAF_CHECK_EQUAL(a.gateway.port, b.gateway.port);
  CAF_CHECK_EQUAL(a.gateway.frame_size_max, b.gateway.frame_size_max);
  CAF_CHECK_EQUAL(a.gateway.connection_inflight_max,
                  b.gateway.connection_inflight_max);
  CAF_CHECK_EQUAL(a.gateway.node_inflight_max, b.gateway.node_inflight_max);
  CAF_CHECK_EQUAL(a.database.store.pool_size, b.database.store.pool_size);
  CAF_CHECK_EQUAL(a.database.commits.inflight_max,
                  b.database.commits.inflight_max);
  CAF_CHECK_EQUAL(a.database.batches.inflight_max,
                  b.database.batches.inflight_max);
  CAF_CHECK_EQUAL(a.database.batches.batch_max, b.database.batches.batch_max);
  auto& sa = a.database.store;
  auto& sb = b.database.store;
  CAF_CHECK_EQUAL(sa.keepalives_idle_s, sb.keepalives_idle_s);
  CAF_CHECK_EQUAL(sa.keepalives_interval_s, sb.keepalives_interval_s);
  CAF_CHECK_EQUAL(sa.keepalives_count, sb.keepalives_count);
  CAF_CHECK_EQUAL(sa.tcp_user_timeout_ms, sb.tcp_user_timeout_ms);
  CAF_CHECK_EQUAL(sa.statement_timeout_ms, sb.statement_timeout_ms);
  CAF_CHECK_EQUAL(sa.lock_timeout_ms, sb.lock_timeout_ms);
  CAF_CHECK_EQUAL(sa.idle_in_transaction_session_timeout_ms,
                  sb.idle_in_transaction_session_timeout_ms);
  CAF_CHECK_EQUAL(sa.client_connection_check_interval_ms,
                  sb.client_connection_check_interval_ms);
  CAF_CHECK_EQUAL(sa.call_timeout_ms, sb.call_timeout_ms);
  CAF_CHECK_EQUAL(sa.stuck_after_ms, sb.stuck_after_ms);
  CAF_CHECK_EQUAL(a.database.commits.reply_timeout_ms,
                  b.database.commits.reply_timeout_ms);
  CAF_CHECK_EQUAL(a.database.batches.reply_timeout_ms,
                  b.database.batches.reply_timeout_ms);
  CAF_CHECK_EQUAL(a.database.background_call_timeout_ms,
                  b.database.background_call_timeout_ms);
  CAF_CHECK_EQUAL(a.database.background_statement_timeout_ms,
                  b.database.background_statement_timeout_ms);
  CAF_CHECK_EQUAL(a.limits.share_min_fen, b.limits.share_min_fen);
  CAF_CHECK_EQUAL(a.limits.share_max_fen, b.limits.share_max_fen);
  CAF_CHECK_EQUAL(a.limits.count_max, b.limits.count_max);
  CAF_CHECK_EQUAL(a.limits.expiry_ms, b.limits.expiry_ms);
  CAF_CHECK_EQUAL(a.envelope.queue_max, b.envelope.queue_max);
  CAF_CHECK_EQUAL(a.envelope.batch_max, b.envelope.batch_max);
  CAF_CHECK_EQUAL(a.envelope.idle_ms, b.envelope.idle_ms);
  CAF_CHECK_EQUAL(a.registry.live_max, b.registry.live_max);
  CAF_CHECK_EQUAL(a.registry.keep_live, b.registry.keep_live);
  CAF_CHECK_EQUAL(a.registry.cap_quiet_ms, b.registry.cap_quiet_ms);
  CAF_CHECK_EQUAL(a.registry.cap_check_ms, b.registry.cap_check_ms);
  CAF_CHECK_EQUAL(a.relay.batch_max, b.relay.batch_max);
  CAF_CHECK_EQUAL(a.relay.poll_ms, b.relay.poll_ms);
  CAF_CHECK_EQUAL(a.relay.yield_ms, b.relay.yield_ms);
  CAF_CHECK_EQUAL(a.relay.defer_max_ms, b.relay.defer_max_ms);
  CAF_CHECK_EQUAL(a.expiry.interval_ms, b.expiry.interval_ms);
  CAF_CHECK_EQUAL(a.expiry.batch_max, b.expiry.batch_max);
  CAF_CHECK_EQUAL(a.reconcile.interval_s, b.reconcile.interval_s);
  CAF_CHECK_EQUAL(a.reconcile.window_s, b.reconcile.window_s);
  CAF_CHECK_EQUAL(a.partitions.hot_days, b.partitions.hot_days);
  CAF_CHECK_EQUAL(a.partitions.ahead_days, b.partitions.ahead_days);
  CAF_CHECK_EQUAL(a.partitions.interval_s, b.partitions.interval_s);
  CAF_CHECK_EQUAL(a.segments.window_ms, b.segments.window_ms);
  CAF_CHECK_EQUAL(a.segments.fault_threshold, b.segments.fault_threshold);
  CAF_CHECK_EQUAL(a.segments.probe_interval_ms, b.segments.probe_interval_ms);
  CAF_CHECK_EQUAL(a.supervisor.restarts_max, b.supervisor.restarts_max);
  CAF_CHECK_EQUAL(a.supervisor.window_ms, b.supervisor.window_ms);
  CAF_CHECK_EQUAL(a.ids.segments, b.ids.segments);
  CAF_CHECK_EQUAL(a.ids.lease_block, b.ids.lease_block);
  CAF_CHECK_EQUAL(a.log.level, b.log.level);
  CAF_CHECK_EQUAL(a.admin.host, b.admin.host);
  CAF_CHECK_EQUAL(a.admin.port, b.admin.port);
  CAF_CHECK_EQUAL(a.admin.metrics_port, b.admin.metrics_port);
  CAF_CHECK_EQUAL(a.admin.credential, b.admin.credential);
  CAF_CHECK_EQUAL(a.admin.audit_file, b.admin.audit_file);
  CAF_CHECK_EQUAL(a.admin.demo, b.admin.demo);
  CAF_CHECK_EQUAL(a.admin.forward_timeout_ms, b.admin.forward_timeout_ms);
  CAF_CHECK_EQUAL(a.admin.request_timeout_ms, b.admin.request_timeout_ms);
}

CAF_TEST(the admin port needs a secret of its own) {
  std::string base = "[gateway]\nauth_token=\"t\"\n[database]\nurl=\"x\"\n";
  // Off by default: no secret needed.
  CAF_CHECK(parse_node_config(base).ok());
  auto short_secret = parse_node_config(
    base + "[admin]\nport=7900\nsecret=\"short\"\n");
  CAF_REQUIRE(!short_secret.ok());
  CAF_CHECK(short_secret.error().message.find("admin.secret")
            != std::string::npos);
  auto example = parse_node_config(
    base + "[admin]\nport=7900\nsecret=\"" + admin_example_secret + "\"\n");
  CAF_REQUIRE(!example.ok());
  CAF_CHECK(example.error().message.find("example") != std::string::npos);
  auto demo = parse_node_config(base + "[admin]\nport=7900\ndemo=true\nsecret=\""
                                + admin_example_secret + "\"\n");
  CAF_CHECK(demo.ok());
  auto good = parse_node_config(
    base + "[admin]\nport=7900\nmetrics_port=7901\n"
           "secret=\"0123456789abcdef-ops\"\ncredential=\"ops-team\"\n");
  CAF_REQUIRE(good.ok());
  CAF_CHECK_EQUAL(good->admin.port, 7900u);
  CAF_CHECK_EQUAL(good->admin.metrics_port, 7901u);
  CAF_CHECK_EQUAL(good->admin.credential, "ops-team");
  auto missing_file = parse_node_config(
    base + "[admin]\nport=7900\nsecret_file=\"/nonexistent/hb-secret\"\n");
  CAF_REQUIRE(!missing_file.ok());
  CAF_CHECK(missing_file.error().message.find("admin.secret_file")
            != std::string::npos);
  auto same_port = parse_node_config(
    base + "[admin]\nport=7900\nmetrics_port=7900\n"
           "secret=\"0123456789abcdef-ops\"\n");
  CAF_CHECK(!same_port.ok());
}

// -- [cluster] -------------------------------------------------------------------

namespace {

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A node of set-1 in a cluster of two SETs; each test changes one part so
// that a refusal can only come from that part's rule.
const std::string cluster_node = R"(
[node]
name = "a1"
zone = "zone-a"
[gateway]
auth_token = "t"
)";

const std::string cluster_section = R"(
[cluster]
set = "set-1"
peer_host = "127.0.0.1"
peer_port = 7811
seeds = ["127.0.0.1:7811", "127.0.0.1:7821"]
zones = ["zone-a", "zone-b", "zone-c"]
)";

const std::string two_sets = R"(
[[cluster.sets]]
name = "set-1"
segments = ["0-499"]
database_url = "host=127.0.0.1 port=55441 dbname=hongbao"

[[cluster.sets]]
name = "set-2"
segments = ["500-999"]
database_url = "host=127.0.0.1 port=55442 dbname=hongbao"
)";

std::string cluster_file(const std::string& cluster = cluster_section,
                         const std::string& sets = two_sets,
                         const std::string& node = cluster_node) {
  return node + cluster + sets;
}

// The cluster section with one line replaced (`key = ...` by `line`) or,
// for an empty `line`, removed.
std::string cluster_with(const std::string& key, const std::string& line,
                         const std::string& base = cluster_section) {
  std::string out;
  std::istringstream in{base};
  for (std::string l; std::getline(in, l);) {
    if (l.rfind(key + " =", 0) == 0) {
      if (!line.empty())
        out += line + "\n";
    } else {
      out += l + "\n";
    }
  }
  return out;
}

// Parses a file that must be refused and returns its message.
std::string refusal(const std::string& text) {
  auto res = parse_node_config(text);
  if (res.ok()) {
    CAF_FAIL("config was accepted:\n" << text);
    return {};
  }
  CAF_CHECK_EQUAL(res.error().code, errc::invalid_argument);
  return res.error().message;
}

} // namespace

CAF_TEST(a file without a cluster section runs a node on its own) {
  auto cfg = parse_node_config(required);
  CAF_REQUIRE(cfg.ok());
  CAF_CHECK(!cfg->cluster.enabled);
  CAF_CHECK(cfg->cluster.sets.empty());
  CAF_CHECK_EQUAL(cfg->database.store.database_url, "x");
}

CAF_TEST(a cluster node reads its place and the SET map) {
  auto cfg = parse_node_config(cluster_file());
  CAF_REQUIRE(cfg.ok());
  auto& c = cfg->cluster;
  CAF_CHECK(c.enabled);
  CAF_CHECK_EQUAL(c.set, "set-1");
  CAF_CHECK_EQUAL(c.peer_host, "127.0.0.1");
  CAF_CHECK_EQUAL(c.peer_port, 7811);
  CAF_CHECK_EQUAL(c.seeds,
                  (std::vector<std::string>{"127.0.0.1:7811", "127.0.0.1:7821"}));
  CAF_CHECK_EQUAL(c.zones,
                  (std::vector<std::string>{"zone-a", "zone-b", "zone-c"}));
  CAF_REQUIRE_EQUAL(c.sets.size(), 2u);
  CAF_CHECK_EQUAL(c.sets[0].name, "set-1");
  CAF_REQUIRE_EQUAL(c.sets[0].segments.size(), 1u);
  CAF_CHECK_EQUAL(c.sets[0].segments[0].first, 0);
  CAF_CHECK_EQUAL(c.sets[0].segments[0].last, 499);
  CAF_CHECK_EQUAL(c.sets[1].name, "set-2");
  CAF_CHECK_EQUAL(segments_of(c.sets[1]).size(), 500u);
  CAF_CHECK_EQUAL(c.sets[1].database_url,
                  "host=127.0.0.1 port=55442 dbname=hongbao");
  // The node's database is its SET's: [database] url may be left out.
  CAF_CHECK_EQUAL(cfg->database.store.database_url,
                  "host=127.0.0.1 port=55441 dbname=hongbao");
  // The timings keep their defaults.
  cluster_config defaults;
  CAF_CHECK_EQUAL(c.lease_ms, defaults.lease_ms);
  CAF_CHECK_EQUAL(c.renew_ms, defaults.renew_ms);
  CAF_CHECK_EQUAL(c.lease_margin_ms, defaults.lease_margin_ms);
  CAF_CHECK_EQUAL(c.settle_ms, defaults.settle_ms);
  CAF_CHECK_EQUAL(c.forward_inflight_max, defaults.forward_inflight_max);
}

CAF_TEST(every cluster timing is read) {
  auto cfg = parse_node_config(cluster_file(cluster_section + R"(
lease_ms = 4000
renew_ms = 700
lease_margin_ms = 600
settle_ms = 100
sync_ms = 200
forward_timeout_ms = 300
forward_inflight_max = 400
heartbeat_ms = 250
link_timeout_ms = 2000
)"));
  CAF_REQUIRE(cfg.ok());
  auto& c = cfg->cluster;
  CAF_CHECK_EQUAL(c.lease_ms, 4000u);
  CAF_CHECK_EQUAL(c.renew_ms, 700u);
  CAF_CHECK_EQUAL(c.lease_margin_ms, 600u);
  CAF_CHECK_EQUAL(c.settle_ms, 100u);
  CAF_CHECK_EQUAL(c.sync_ms, 200u);
  CAF_CHECK_EQUAL(c.forward_timeout_ms, 300u);
  CAF_CHECK_EQUAL(c.forward_inflight_max, 400u);
  CAF_CHECK_EQUAL(c.heartbeat_ms, 250u);
  CAF_CHECK_EQUAL(c.link_timeout_ms, 2000u);
}

CAF_TEST(segments of a SET are ranges or single segments) {
  auto sets = R"(
[[cluster.sets]]
name = "set-1"
segments = ["0-9", "20", 21, "22-499"]
database_url = "db1"
[[cluster.sets]]
name = "set-2"
segments = ["10-19", "500-999"]
database_url = "db2"
)";
  auto cfg = parse_node_config(cluster_file(cluster_section, sets));
  CAF_REQUIRE(cfg.ok());
  auto mine = segments_of(cfg->cluster.sets[0]);
  CAF_CHECK_EQUAL(mine.size(), 490u);
  CAF_CHECK_EQUAL(mine[10], 20);
  for (auto bad : {"\"500-400\"", "1000", "\"0-1000\"", "-1", "\"x\"",
                   "\"1-2-3\"", "true"}) {
    auto text = std::string{"[[cluster.sets]]\nname = \"set-1\"\nsegments = ["}
                + bad + "]\ndatabase_url = \"db1\"\n";
    auto msg = refusal(cluster_file(cluster_section, text));
    CAF_CHECK(contains(msg, "cluster.sets #1 (set-1): segments"));
    CAF_CHECK(contains(msg, "is not a range"));
  }
  auto msg = refusal(cluster_file(
    cluster_section, "[[cluster.sets]]\nname = \"set-1\"\nsegments = "
                     "\"0-999\"\ndatabase_url = \"db1\"\n"));
  CAF_CHECK(contains(msg, "cluster.sets #1 (set-1): segments must be a list"));
}

CAF_TEST(the SET of the node must be in the SET map) {
  auto msg = refusal(cluster_file(cluster_with("set", "")));
  CAF_CHECK(contains(msg, "cluster.set is required"));
  msg = refusal(cluster_file(cluster_with("set", "set = \"set-9\"")));
  CAF_CHECK(contains(msg, "cluster.set \"set-9\" is not in the SET map"));
  CAF_CHECK(contains(msg, "set-1, set-2"));
  msg = refusal(cluster_file(cluster_section, ""));
  CAF_CHECK(contains(msg, "[[cluster.sets]] is required"));
  msg = refusal(cluster_file(cluster_section, "[cluster.sets]\nname = \"x\"\n"));
  CAF_CHECK(contains(msg, "cluster.sets must be written as [[cluster.sets]]"));
}

CAF_TEST(SETs must not overlap and must cover every segment) {
  auto overlap = R"(
[[cluster.sets]]
name = "set-1"
segments = ["0-499"]
database_url = "db1"
[[cluster.sets]]
name = "set-2"
segments = ["400-999", "7"]
database_url = "db2"
)";
  auto msg = refusal(cluster_file(cluster_section, overlap));
  CAF_CHECK(contains(msg, "segments 7,400-499 are in both cluster.sets #1 "
                          "(set-1) and cluster.sets #2 (set-2)"));
  auto gap = R"(
[[cluster.sets]]
name = "set-1"
segments = ["0-499"]
database_url = "db1"
[[cluster.sets]]
name = "set-2"
segments = ["501-997"]
database_url = "db2"
)";
  msg = refusal(cluster_file(cluster_section, gap));
  CAF_CHECK(contains(msg, "segments 500,998-999 are in no SET"));
  // A SET overlapping itself is fine: its segments are a set.
  auto self = R"(
[[cluster.sets]]
name = "set-1"
segments = ["0-999", "5-10"]
database_url = "db1"
)";
  CAF_CHECK(parse_node_config(cluster_file(cluster_section, self)).ok());
}

CAF_TEST(a badly fragmented gap is listed in part) {
  // Every odd segment is missing: 500 ranges, of which the message shows 12.
  std::string even = "segments = [";
  for (int s = 0; s < 1000; s += 2)
    even += std::to_string(s) + ",";
  even.back() = ']';
  auto msg = refusal(cluster_file(
    cluster_section,
    "[[cluster.sets]]\nname = \"set-1\"\n" + even + "\ndatabase_url = \"d\"\n"));
  CAF_CHECK(contains(msg, "segments 1,3,5,7,9,11,13,15,17,19,21,23 and 488 "
                          "more ranges are in no SET"));
}

CAF_TEST(SET names and databases are unique and required) {
  auto dup_name = R"(
[[cluster.sets]]
name = "set-1"
segments = ["0-499"]
database_url = "db1"
[[cluster.sets]]
name = "set-1"
segments = ["500-999"]
database_url = "db2"
)";
  auto msg = refusal(cluster_file(cluster_section, dup_name));
  CAF_CHECK(contains(msg, "the name \"set-1\" is used twice (#1 and #2)"));
  auto dup_url = R"(
[[cluster.sets]]
name = "set-1"
segments = ["0-499"]
database_url = "db1"
[[cluster.sets]]
name = "set-2"
segments = ["500-999"]
database_url = "db1"
)";
  msg = refusal(cluster_file(cluster_section, dup_url));
  CAF_CHECK(contains(msg, "cluster.sets #1 (set-1) and cluster.sets #2 "
                          "(set-2) have the same database_url"));
  auto no_url = R"(
[[cluster.sets]]
name = "set-1"
segments = ["0-999"]
database_url = ""
)";
  msg = refusal(cluster_file(cluster_section, no_url));
  CAF_CHECK(contains(msg, "cluster.sets #1 (set-1): database_url is required"));
  auto bare = R"(
[[cluster.sets]]
segments = ["0-999"]
)";
  msg = refusal(cluster_file(cluster_section, bare));
  CAF_CHECK(contains(msg, "cluster.sets #1: name is required"));
  CAF_CHECK(contains(msg, "cluster.sets #1: database_url is required"));
  msg = refusal(cluster_file(cluster_section,
                             "[[cluster.sets]]\nname = \"s\"\ndatabase_url = \"d\"\n"));
  CAF_CHECK(contains(msg, "cluster.sets #1 (s): segments is required"));
  msg = refusal(cluster_file(cluster_section, "[[cluster.sets]]\nname = 5\n"));
  CAF_CHECK(contains(msg, "cluster.sets #1.name must be a string"));
}

CAF_TEST(a cluster has exactly three distinct zones and the node is in one) {
  for (auto zones : {"zones = [\"zone-a\", \"zone-b\"]",
                     "zones = [\"zone-a\", \"zone-b\", \"zone-c\", \"zone-d\"]",
                     "zones = [\"zone-a\", \"zone-b\", \"zone-a\"]",
                     "zones = [\"zone-a\", \"zone-b\", \"\"]", ""}) {
    auto msg = refusal(cluster_file(cluster_with("zones", zones)));
    CAF_CHECK(contains(msg, "cluster.zones must name exactly three distinct "
                            "zones"));
  }
  auto msg = refusal(cluster_file(cluster_with("zones", "zones = [1, 2, 3]")));
  CAF_CHECK(contains(msg, "cluster.zones must be a list of strings"));
  auto elsewhere = std::string{"[node]\nname = \"a1\"\nzone = \"zone-x\"\n"
                               "[gateway]\nauth_token = \"t\"\n"};
  msg = refusal(cluster_file(cluster_section, two_sets, elsewhere));
  CAF_CHECK(contains(msg, "node.zone \"zone-x\" is not one of cluster.zones "
                          "(zone-a, zone-b, zone-c)"));
}

CAF_TEST(a cluster node needs a peer port and host port seeds) {
  auto msg = refusal(cluster_file(cluster_with("peer_port", "")));
  CAF_CHECK(contains(msg, "cluster.peer_port is required"));
  msg = refusal(cluster_file(cluster_with("peer_port", "peer_port = 0")));
  CAF_CHECK(contains(msg, "cluster.peer_port is required"));
  msg = refusal(cluster_file(cluster_with("peer_port", "peer_port = 65536")));
  CAF_CHECK(contains(msg, "cluster.peer_port must be an integer in [0, 65535]"));
  for (auto bad : {"nohost", "h:", ":7811", "h:0", "h:65536", "h:78x1",
                   "a:b:7811", "[::1:7811", "[]:7811"}) {
    auto line = std::string{"seeds = [\"127.0.0.1:7811\", \""} + bad + "\"]";
    msg = refusal(cluster_file(cluster_with("seeds", line)));
    CAF_CHECK(contains(msg, std::string{"cluster.seeds: \""} + bad
                              + "\" is not host:port"));
  }
  auto ok = parse_node_config(cluster_file(
    cluster_with("seeds", "seeds = [\"[::1]:7811\", \"db-1.example:65535\"]")));
  CAF_CHECK(ok.ok());
  // No seeds: the node finds its SET's peers in the SET's database.
  CAF_CHECK(parse_node_config(cluster_file(cluster_with("seeds", ""))).ok());
}

CAF_TEST(a node renews its lease before it would fence itself) {
  auto timings = [](int lease, int renew, int margin) {
    return cluster_section + "lease_ms = " + std::to_string(lease)
           + "\nrenew_ms = " + std::to_string(renew)
           + "\nlease_margin_ms = " + std::to_string(margin) + "\n";
  };
  CAF_CHECK(parse_node_config(cluster_file(timings(3000, 2499, 500))).ok());
  auto msg = refusal(cluster_file(timings(3000, 2500, 500)));
  CAF_CHECK(contains(msg, "cluster.renew_ms (2500) must be less than "
                          "cluster.lease_ms - cluster.lease_margin_ms (3000 - "
                          "500)"));
  msg = refusal(cluster_file(timings(3000, 100, 3000)));
  CAF_CHECK(contains(msg, "cluster.renew_ms (100) must be less than"));
  msg = refusal(cluster_file(timings(3000, 100, 4000)));
  CAF_CHECK(contains(msg, "cluster.renew_ms (100) must be less than"));
}

CAF_TEST(no cluster timing may be zero) {
  for (auto key : {"lease_ms", "renew_ms", "lease_margin_ms", "settle_ms",
                   "sync_ms", "forward_timeout_ms", "forward_inflight_max",
                   "heartbeat_ms", "link_timeout_ms"}) {
    auto msg = refusal(
      cluster_file(cluster_section + std::string{key} + " = 0\n"));
    CAF_CHECK(contains(msg, std::string{"cluster."} + key
                              + " must be an integer in [1, "));
  }
}

CAF_TEST(the database of a cluster node is the one of its SET) {
  auto same = parse_node_config(
    cluster_node
    + "[database]\nurl = \"host=127.0.0.1 port=55441 dbname=hongbao\"\n"
      "pool_size = 3\n"
    + cluster_section + two_sets);
  CAF_REQUIRE(same.ok());
  CAF_CHECK_EQUAL(same->database.store.pool_size, 3u);
  CAF_CHECK_EQUAL(same->database.store.database_url,
                  "host=127.0.0.1 port=55441 dbname=hongbao");
  auto msg = refusal(cluster_node + "[database]\nurl = \"host=elsewhere\"\n"
                     + cluster_section + two_sets);
  CAF_CHECK(contains(msg, "database.url differs from the database_url of SET "
                          "set-1"));
}

CAF_TEST(a cluster node takes no id segments from the file) {
  auto msg = refusal(cluster_node + "[ids]\nsegments = [\"0-15\"]\n"
                     + cluster_section + two_sets);
  CAF_CHECK(contains(msg, "ids.segments is not allowed in a cluster"));
  // Other [ids] keys still work.
  auto cfg = parse_node_config(cluster_node + "[ids]\nlease_block = 7\n"
                               + cluster_section + two_sets);
  CAF_REQUIRE(cfg.ok());
  CAF_CHECK_EQUAL(cfg->ids.lease_block, 7);
}

CAF_TEST(every problem of a cluster is reported one per line) {
  auto node = std::string{"[node]\nname = \"a1\"\nzone = \"zone-x\"\n"
                          "[gateway]\nauth_token = \"t\"\n"
                          "[ids]\nsegments = [1]\n"};
  auto cluster = cluster_with("peer_port", "") + "renew_ms = 2600\n";
  auto sets = R"(
[[cluster.sets]]
name = "set-1"
segments = ["0-10"]
database_url = "db1"
[[cluster.sets]]
name = "set-1"
segments = ["5-998"]
database_url = "db1"
)";
  auto msg = refusal(node + cluster + sets);
  std::vector<std::string> lines;
  std::istringstream in{msg};
  for (std::string l; std::getline(in, l);)
    lines.push_back(l);
  for (auto part : {"cluster.peer_port is required", "node.zone \"zone-x\"",
                    "cluster.renew_ms (2600)", "used twice",
                    "have the same database_url", "segments 5-10 are in both",
                    "segment 999 is in no SET",
                    "ids.segments is not allowed"}) {
    auto n = std::count_if(lines.begin(), lines.end(),
                           [&](auto& l) { return contains(l, part); });
    CAF_CHECK_EQUAL(n, 1);
  }
  CAF_CHECK_EQUAL(lines.size(), 8u);
  // Wrong keys are all named too, each on its line.
  auto keys = cluster_with("seeds", "seeds = 3",
                           cluster_with("peer_port", "peer_port = \"x\""));
  msg = refusal(cluster_file(keys + "lease_ms = 0\n"));
  CAF_CHECK(contains(msg, "cluster.peer_port must be an integer"));
  CAF_CHECK(contains(msg, "\ncluster.seeds must be a list of strings"));
  CAF_CHECK(contains(msg, "\ncluster.lease_ms must be an integer"));
  msg = refusal(std::string{"cluster = 3\n"} + required);
  CAF_CHECK(contains(msg, "cluster must be a table"));
}

CAF_TEST(a file names itself on every line of its problems) {
  auto path = std::string{"/tmp/hb_config_test_cluster.toml"};
  {
    std::ofstream out{path};
    out << cluster_file(cluster_with("peer_port", "") + "renew_ms = 2600\n");
  }
  auto res = load_node_config(path);
  std::remove(path.c_str());
  CAF_REQUIRE(!res.ok());
  CAF_CHECK_EQUAL(res.error().message,
                  path + ": cluster.peer_port is required (1..65535): node "
                         "links listen there\n"
                    + path + ": cluster.renew_ms (2600) must be less than "
                             "cluster.lease_ms - cluster.lease_margin_ms "
                             "(3000 - 500): a node must renew before it "
                             "fences itself");
}

CAF_TEST(database passwords are not printed) {
  CAF_CHECK_EQUAL(redacted_database_url("host=db user=hb password=s3cret "
                                        "dbname=hongbao"),
                  "host=db user=hb password=*** dbname=hongbao");
  CAF_CHECK_EQUAL(redacted_database_url("password = 'a b\\'c' host=db"),
                  "password = *** host=db");
  CAF_CHECK_EQUAL(redacted_database_url("postgresql://hb:s3cret@db:5432/x"),
                  "postgresql://hb:***@db:5432/x");
  CAF_CHECK_EQUAL(redacted_database_url("postgresql://db/x?password=s&a=b"),
                  "postgresql://db/x?password=***&a=b");
  CAF_CHECK_EQUAL(redacted_database_url("postgresql://hb@db:5432/x"),
                  "postgresql://hb@db:5432/x");
  CAF_CHECK_EQUAL(redacted_database_url("host=db"), "host=db");
}

CAF_TEST(the commented cluster example of the example file is valid) {
  // config/node.example.toml shows [cluster] commented out: "# " before
  // each line of TOML, "##" before each line of prose. Uncommented after
  // the required keys, it must parse into a cluster node.
  std::ifstream in{HB_EXAMPLE_CONFIG};
  std::string text;
  bool inside = false;
  for (std::string line; std::getline(in, line);) {
    if (line == "# [cluster]")
      inside = true;
    if (!inside)
      continue;
    if (line.empty() || line[0] != '#')
      break;
    if (line.rfind("##", 0) == 0)
      continue;
    text += line.substr(line.size() > 1 ? 2 : 1) + "\n";
  }
  CAF_REQUIRE(contains(text, "[[cluster.sets]]"));
  auto cfg = parse_node_config("[gateway]\nauth_token = \"t\"\n" + text);
  if (!cfg.ok())
    CAF_FAIL(cfg.error().message << "\nin:\n" << text);
  CAF_CHECK(cfg->cluster.enabled);
  CAF_CHECK_EQUAL(cfg->cluster.zones.size(), 3u);
  CAF_CHECK_EQUAL(cfg->cluster.sets.size(), 2u);
  // The example's timings are the defaults.
  cluster_config defaults;
  auto& c = cfg->cluster;
  CAF_CHECK_EQUAL(c.lease_ms, defaults.lease_ms);
  CAF_CHECK_EQUAL(c.renew_ms, defaults.renew_ms);
  CAF_CHECK_EQUAL(c.lease_margin_ms, defaults.lease_margin_ms);
  CAF_CHECK_EQUAL(c.settle_ms, defaults.settle_ms);
  CAF_CHECK_EQUAL(c.sync_ms, defaults.sync_ms);
  CAF_CHECK_EQUAL(c.forward_timeout_ms, defaults.forward_timeout_ms);
  CAF_CHECK_EQUAL(c.forward_inflight_max, defaults.forward_inflight_max);
  CAF_CHECK_EQUAL(c.heartbeat_ms, defaults.heartbeat_ms);
  CAF_CHECK_EQUAL(c.link_timeout_ms, defaults.link_timeout_ms);
}

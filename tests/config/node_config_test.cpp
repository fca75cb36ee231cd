#define CAF_SUITE config.node_config

#include "caf/test/unit_test.hpp"

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
}

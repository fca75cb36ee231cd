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
  CAF_CHECK_EQUAL(cfg->listen_port, 7700);
  CAF_CHECK_EQUAL(cfg->limits.count_max, 100);
  CAF_CHECK_EQUAL(cfg->limits.share_max_fen, 20000);
  CAF_CHECK_EQUAL(cfg->segments.size(), 16u);
  CAF_CHECK_EQUAL(cfg->envelope_batch_max, 2000u);
  CAF_CHECK_EQUAL(cfg->commits_in_flight, 4u);
  CAF_CHECK_EQUAL(cfg->batches_in_flight, 2u);
  CAF_CHECK_EQUAL(cfg->batch_max, 64u);
  CAF_CHECK_EQUAL(cfg->relay_yield_ms, 20u);
  CAF_CHECK_EQUAL(cfg->relay_defer_max_ms, 1000u);
  CAF_CHECK_EQUAL(cfg->relay_batch_max, 100);
  CAF_CHECK_EQUAL(cfg->live_envelopes_max, 100000u);
  CAF_CHECK_EQUAL(cfg->envelope_keep_live, 50000u);
  CAF_CHECK_EQUAL(cfg->envelope_cap_quiet_ms, 1000u);
  CAF_CHECK_EQUAL(cfg->envelope_cap_check_ms, 1000u);
  CAF_CHECK_EQUAL(cfg->idle_poll_us, 0u);
}

CAF_TEST(the idle polling of the scheduler threads is read and bounded) {
  auto base = std::string{"[gateway]\nauth_token=\"t\"\n[database]\nurl=\"x\"\n"};
  auto set = parse_node_config(base + "[node]\nidle_poll_us = 25000\n");
  CAF_REQUIRE(set.ok());
  CAF_CHECK_EQUAL(set->idle_poll_us, 25000u);
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
  CAF_CHECK_EQUAL(half->envelope_keep_live, 500u);
  auto set = parse_node_config(base + "[envelope]\nlive_max = 1000\nkeep_live = 0\n");
  CAF_REQUIRE(set.ok());
  CAF_CHECK_EQUAL(set->envelope_keep_live, 0u);
  auto over = parse_node_config(base + "[envelope]\nlive_max = 1000\nkeep_live = 1001\n");
  CAF_REQUIRE(!over.ok());
  CAF_CHECK(over.error().message.find("envelope.keep_live") != std::string::npos);
}

CAF_TEST(the idle check at the live cap is read and bounded) {
  auto base = std::string{"[gateway]\nauth_token=\"t\"\n[database]\nurl=\"x\"\n"};
  auto set = parse_node_config(base
                               + "[envelope]\ncap_quiet_ms = 250\ncap_check_ms = 500\n");
  CAF_REQUIRE(set.ok());
  CAF_CHECK_EQUAL(set->envelope_cap_quiet_ms, 250u);
  CAF_CHECK_EQUAL(set->envelope_cap_check_ms, 500u);
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
  CAF_CHECK_EQUAL(cfg->commits_in_flight, 2u);
  CAF_CHECK_EQUAL(cfg->batches_in_flight, 3u);
  CAF_CHECK_EQUAL(cfg->batch_max, 16u);
  CAF_CHECK_EQUAL(cfg->relay_yield_ms, 5u);
  CAF_CHECK_EQUAL(cfg->relay_defer_max_ms, 0u);
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
  CAF_CHECK_EQUAL(segs->segments, (std::vector<int32_t>{0, 1, 2, 3, 9}));
  auto bad_segs = parse_node_config(
    "[gateway]\nauth_token=\"t\"\n[database]\nurl=\"x\"\n[ids]\n"
    "segments = [\"3-1\"]\n");
  CAF_CHECK(!bad_segs.ok());
}

// What `hongbao stats` prints, from a snapshot: no node needed.

#define CAF_SUITE client.commands

#include "caf/test/unit_test.hpp"

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "client/commands.hpp"

using namespace hb;
using namespace hb::client::cli;

namespace {

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The line of `text` that contains `part`; empty if none does.
std::string line_with(const std::string& text, const std::string& part) {
  size_t at = text.find(part);
  if (at == std::string::npos)
    return {};
  auto begin = text.rfind('\n', at);
  begin = begin == std::string::npos ? 0 : begin + 1;
  auto end = text.find('\n', at);
  return text.substr(begin, end - begin);
}

node_lease lease(std::string node, int64_t incarnation, std::string zone,
                 int64_t expires_at_ms) {
  node_lease n;
  n.node = std::move(node);
  n.incarnation = incarnation;
  n.zone = std::move(zone);
  n.peer_host = "127.0.0.1";
  n.peer_port = 7800 + static_cast<int32_t>(incarnation);
  n.gateway_host = "127.0.0.1";
  n.gateway_port = 7700 + static_cast<int32_t>(incarnation);
  n.expires_at_ms = expires_at_ms;
  return n;
}

// a1 of set-1 sees: a1 and b1 alive, c1 dead; set-2 with d1.
node_stats cluster_stats() {
  node_stats st;
  st.node_name = "a1";
  st.metrics.push_back(metric{"opens.committed", 42});
  auto& c = st.cluster;
  c.enabled = true;
  c.set = "set-1";
  c.zone = "zone-a";
  c.incarnation = 11;
  c.zones = {"zone-a", "zone-b", "zone-c"};
  set_view s1;
  s1.set = "set-1";
  s1.db_now_ms = 1000000;
  s1.nodes = {lease("a1", 11, "zone-a", 1002500), lease("b1", 12, "zone-b", 1001000),
              lease("c1", 13, "zone-c", 998800)};
  for (int32_t s = 0; s < 500; ++s) {
    if (s == 498 || s == 499)
      s1.owners.push_back(segment_owner{s, "", 0, 0});
    else if (s % 3 == 2)
      s1.owners.push_back(segment_owner{s, "c1", 13, 4});
    else
      s1.owners.push_back(segment_owner{s, s < 250 ? "a1" : "b1",
                                        s < 250 ? 11 : 12, s < 250 ? 7 : 3});
  }
  s1.blocked = {segment_state{217, true, true, "db maintenance"}};
  set_view s2;
  s2.set = "set-2";
  s2.db_now_ms = 1000100;
  s2.nodes = {lease("d1", 14, "zone-a", 1003100)};
  for (int32_t s = 500; s < 1000; ++s)
    s2.owners.push_back(segment_owner{s, "d1", 14, 1});
  c.sets = {s1, s2};
  return st;
}

} // namespace

CAF_TEST(a node on its own prints no cluster) {
  node_stats st;
  st.node_name = "n1";
  st.metrics.push_back(metric{"opens.committed", 42});
  auto text = stats_text(st);
  CAF_CHECK(contains(text, "node n1\n"));
  CAF_CHECK(contains(text, "no segment blocked"));
  CAF_CHECK(!contains(text, "cluster"));
  auto js = nlohmann::json::parse(stats_json(st));
  CAF_CHECK_EQUAL(js["node"], "n1");
  CAF_CHECK_EQUAL(js["metrics"]["opens.committed"], 42);
  CAF_CHECK_EQUAL(js["cluster"], nlohmann::json({{"enabled", false}}));
}

CAF_TEST(stats print the nodes of the cluster with zone set and lease) {
  auto text = stats_text(cluster_stats());
  CAF_MESSAGE("\n" << text);
  CAF_CHECK(contains(text, "cluster: SET set-1, zone zone-a, incarnation 11; "
                           "zones zone-a, zone-b, zone-c\n"));
  CAF_CHECK(contains(text, "nodes (4):"));
  auto header = line_with(text, "lease left");
  CAF_CHECK(contains(header, "node"));
  CAF_CHECK(contains(header, "zone"));
  CAF_CHECK(contains(header, "SET"));
  auto a1 = line_with(text, "  a1 ");
  CAF_CHECK(contains(a1, "zone-a"));
  CAF_CHECK(contains(a1, "set-1"));
  CAF_CHECK(contains(a1, "alive"));
  CAF_CHECK(contains(a1, "2500 ms"));
  CAF_CHECK(contains(a1, "127.0.0.1:7811"));
  CAF_CHECK(contains(a1, "127.0.0.1:7711"));
  auto c1 = line_with(text, "  c1 ");
  CAF_CHECK(contains(c1, "dead"));
  CAF_CHECK(contains(c1, "expired 1200 ms ago"));
  CAF_CHECK(contains(line_with(text, "  d1 "), "set-2"));
  // The columns line up: every node's zone starts where the header's does.
  auto column = header.find("zone");
  for (auto node : {"  a1 ", "  b1 ", "  c1 ", "  d1 "})
    CAF_CHECK_EQUAL(line_with(text, node).find("zone-"), column);
  CAF_CHECK(!contains(text, "FENCED"));
}

CAF_TEST(stats print the owners of each SET with counts and ranges) {
  auto text = stats_text(cluster_stats());
  CAF_CHECK(contains(text, "SET set-1: 500 segments, 2 not taken yet, 1 "
                           "blocked\n"));
  CAF_CHECK(contains(text, "SET set-2: 500 segments\n"));
  auto set2 = text.substr(text.find("\nSET set-2"));
  auto set1 = text.substr(text.find("\nSET set-1"),
                          text.find("\nSET set-2") - text.find("\nSET set-1"));
  // a1: segments 0..249 except every third from 2 = 167; its ranges first.
  auto a1 = line_with(set1, "  a1 ");
  CAF_CHECK(contains(a1, " 167 "));
  CAF_CHECK(contains(a1, "0-1,3-4,6-7"));
  CAF_CHECK(contains(a1, "alive"));
  CAF_CHECK(contains(a1, " 7 "));  // a1's owner epoch
  auto c1 = line_with(set1, "  c1 ");
  CAF_CHECK(contains(c1, "lease expired"));
  // Every third segment: 166 ranges, too many for a table cell.
  CAF_CHECK(contains(c1, "2,5,8,11,"));
  CAF_CHECK(contains(c1, ",... (166 ranges)"));
  CAF_CHECK_LESS(c1.size(), 140u);
  auto none = line_with(set1, "(none)");
  CAF_CHECK(contains(none, "498-499"));
  CAF_CHECK(contains(set1, "blocked: segment 217 (manual: db maintenance)"));
  CAF_CHECK(contains(line_with(set2, "  d1 "), "500-999"));
  CAF_CHECK(contains(line_with(set2, "  d1 "), " 500 "));
}

CAF_TEST(a fenced node says so) {
  auto st = cluster_stats();
  st.cluster.fenced = true;
  CAF_CHECK(contains(stats_text(st), "FENCED"));
  st.cluster.incarnation = 0;
  st.cluster.sets.clear();
  auto text = stats_text(st);
  CAF_CHECK(contains(text, "incarnation 0 (not joined yet)"));
  CAF_CHECK(contains(text, "no node has joined yet"));
}

CAF_TEST(stats json includes the cluster) {
  auto js = nlohmann::json::parse(stats_json(cluster_stats()));
  auto& c = js["cluster"];
  CAF_CHECK_EQUAL(c["enabled"], true);
  CAF_CHECK_EQUAL(c["set"], "set-1");
  CAF_CHECK_EQUAL(c["zone"], "zone-a");
  CAF_CHECK_EQUAL(c["incarnation"], 11);
  CAF_CHECK_EQUAL(c["fenced"], false);
  CAF_CHECK_EQUAL(c["zones"].size(), 3u);
  CAF_REQUIRE_EQUAL(c["sets"].size(), 2u);
  auto& s1 = c["sets"][0];
  CAF_CHECK_EQUAL(s1["name"], "set-1");
  CAF_REQUIRE_EQUAL(s1["nodes"].size(), 3u);
  CAF_CHECK_EQUAL(s1["nodes"][0]["name"], "a1");
  CAF_CHECK_EQUAL(s1["nodes"][0]["alive"], true);
  CAF_CHECK_EQUAL(s1["nodes"][0]["lease_left_ms"], 2500);
  CAF_CHECK_EQUAL(s1["nodes"][0]["peer"], "127.0.0.1:7811");
  CAF_CHECK_EQUAL(s1["nodes"][0]["gateway"], "127.0.0.1:7711");
  CAF_CHECK_EQUAL(s1["nodes"][2]["alive"], false);
  CAF_CHECK_EQUAL(s1["nodes"][2]["lease_left_ms"], -1200);
  CAF_REQUIRE_EQUAL(s1["owners"].size(), 4u);
  CAF_CHECK_EQUAL(s1["owners"][0]["owner"], "a1");
  CAF_CHECK_EQUAL(s1["owners"][0]["segment_count"], 167);
  CAF_CHECK_EQUAL(s1["owners"][0]["owner_epoch_max"], 7);
  CAF_CHECK_EQUAL(s1["owners"][0]["state"], "alive");
  CAF_CHECK_EQUAL(s1["owners"][3]["owner"], "");
  CAF_CHECK_EQUAL(s1["owners"][3]["segments"], "498-499");
  // JSON lists every range.
  CAF_CHECK_EQUAL(s1["owners"][2]["segment_count"], 166);
  CAF_CHECK(contains(s1["owners"][2]["segments"].get<std::string>(),
                     ",494,497"));
  CAF_REQUIRE_EQUAL(s1["blocked"].size(), 1u);
  CAF_CHECK_EQUAL(s1["blocked"][0]["segment"], 217);
  CAF_CHECK_EQUAL(c["sets"][1]["owners"][0]["segments"], "500-999");
}

#define CAF_SUITE domain.cluster

#include "caf/test/unit_test.hpp"

#include <map>
#include <string>
#include <vector>

#include "domain/cluster.hpp"

using namespace hb;

namespace {

const std::vector<std::string> zones{"zone-a", "zone-b", "zone-c"};

node_lease lease(std::string node, std::string zone, int64_t expires,
                 int64_t incarnation = 1) {
  node_lease out;
  out.node = std::move(node);
  out.zone = std::move(zone);
  out.set = "set-1";
  out.incarnation = incarnation;
  out.expires_at_ms = expires;
  return out;
}

// A SET of segments 0..n-1, nobody owning any, at database time 1000.
set_view empty_view(int32_t n) {
  set_view v;
  v.set = "set-1";
  v.db_now_ms = 1000;
  for (int32_t s = 0; s < n; ++s)
    v.owners.push_back(segment_owner{s, "", 0, 0});
  return v;
}

// Gives every segment to its preferred owner, as the nodes would.
void place_all(set_view& v) {
  for (auto& row : v.owners) {
    auto want = preferred_owner(v, row.segment, zones);
    if (!want)
      continue;
    row.owner = *want;
    row.owner_incarnation = find_lease(v, *want)->incarnation;
    row.owner_epoch += 1;
  }
}

} // namespace

CAF_TEST(segment ranges and the SET of a segment) {
  set_config a{"set-1", {{0, 2}, {10, 10}}, "db-a"};
  set_config b{"set-2", {{3, 9}, {11, 999}}, "db-b"};
  CAF_CHECK_EQUAL(segments_of(a), (std::vector<int32_t>{0, 1, 2, 10}));
  std::vector<set_config> sets{a, b};
  CAF_CHECK_EQUAL(set_index_of(sets, 0), 0);
  CAF_CHECK_EQUAL(set_index_of(sets, 10), 0);
  CAF_CHECK_EQUAL(set_index_of(sets, 3), 1);
  CAF_CHECK_EQUAL(set_index_of(sets, 999), 1);
  CAF_CHECK_EQUAL(set_index_of(sets, 1000), -1);
}

CAF_TEST(zone order starts at segment mod three) {
  CAF_CHECK_EQUAL(zone_order(0, zones),
                  (std::vector<std::string>{"zone-a", "zone-b", "zone-c"}));
  CAF_CHECK_EQUAL(zone_order(3, zones),
                  (std::vector<std::string>{"zone-a", "zone-c", "zone-b"}));
  CAF_CHECK_EQUAL(zone_order(7, zones),
                  (std::vector<std::string>{"zone-b", "zone-c", "zone-a"}));
  CAF_CHECK_EQUAL(zone_order(4, zones),
                  (std::vector<std::string>{"zone-b", "zone-a", "zone-c"}));
  CAF_CHECK_EQUAL(zone_order(500, zones),  // 500 = 3 * 166 + 2
                  (std::vector<std::string>{"zone-c", "zone-a", "zone-b"}));
}

CAF_TEST(each zone serves a third and a lost zone splits over the others) {
  auto v = empty_view(500);
  v.nodes = {lease("a1", "zone-a", 5000), lease("b1", "zone-b", 5000),
             lease("c1", "zone-c", 5000)};
  place_all(v);
  std::map<std::string, int> count;
  for (auto& row : v.owners)
    ++count[row.owner];
  CAF_CHECK_EQUAL(count["a1"], 167);
  CAF_CHECK_EQUAL(count["b1"], 167);
  CAF_CHECK_EQUAL(count["c1"], 166);
  // zone-b is lost: its lease runs out.
  v.nodes[1].expires_at_ms = 900;
  auto a_takes = segments_to_take(v, "a1", zones);
  auto c_takes = segments_to_take(v, "c1", zones);
  CAF_CHECK(segments_to_take(v, "b1", zones).empty());  // not live
  CAF_CHECK_EQUAL(a_takes.size() + c_takes.size(), 167u);
  // The second zone of each of b's segments (s % 3 == 1) takes it, and the
  // survivors get half each: each goes from a third to a half of the SET.
  CAF_CHECK_EQUAL(a_takes.size(), 83u);
  CAF_CHECK_EQUAL(c_takes.size(), 84u);
  for (auto* takes : {&a_takes, &c_takes})
    for (auto& row : *takes) {
      CAF_CHECK_EQUAL(row.segment % 3, 1);
      CAF_CHECK_EQUAL(row.owner, "b1");  // as read: the CAS compares its epoch
    }
}

CAF_TEST(nodes of one zone split the segments of that zone) {
  auto v = empty_view(300);
  v.nodes = {lease("a1", "zone-a", 5000), lease("a2", "zone-a", 5000),
             lease("b1", "zone-b", 5000), lease("c1", "zone-c", 5000)};
  place_all(v);
  std::map<std::string, int> count;
  for (auto& row : v.owners)
    ++count[row.owner];
  // Rendezvous hashing: about half each, and all of zone-a's between them.
  CAF_CHECK_EQUAL(count["a1"] + count["a2"], 100);
  CAF_CHECK_GREATER_OR_EQUAL(count["a1"], 35);
  CAF_CHECK_GREATER_OR_EQUAL(count["a2"], 35);
  CAF_CHECK_EQUAL(count["b1"], 100);
  // a2 goes: only a2's segments change hands, all to a1.
  auto before = v.owners;
  v.nodes[1].expires_at_ms = 900;
  for (auto& row : before) {
    auto want = preferred_owner(v, row.segment, zones);
    CAF_REQUIRE(want);
    if (row.owner == "a2")
      CAF_CHECK_EQUAL(*want, "a1");
    else
      CAF_CHECK_EQUAL(*want, row.owner);
  }
}

CAF_TEST(a node that joins gets its share back only after settling) {
  auto v = empty_view(300);
  v.nodes = {lease("a1", "zone-a", 5000), lease("b1", "zone-b", 5000),
             lease("c1", "zone-c", 5000)};
  place_all(v);
  // a2 joins zone-a at database time 1000.
  v.nodes.push_back(lease("a2", "zone-a", 5000));
  v.nodes.back().since_ms = 1000;
  CAF_CHECK(segments_to_give(v, "a1", 1, zones, 500, 1000).empty());
  v.db_now_ms = 1499;
  CAF_CHECK(segments_to_give(v, "a1", 1, zones, 500, 1000).empty());
  v.db_now_ms = 1500;
  auto gives = segments_to_give(v, "a1", 1, zones, 500, 1000);
  CAF_CHECK_GREATER_OR_EQUAL(gives.size(), 35u);
  for (auto& g : gives) {
    CAF_CHECK_EQUAL(g.to, "a2");
    CAF_CHECK_EQUAL(g.owner_epoch, 1);
    CAF_CHECK_EQUAL(g.segment % 3, 0);  // zone-a is their first zone
  }
  // At most `max` at a time, lowest segments first.
  auto few = segments_to_give(v, "a1", 1, zones, 500, 3);
  CAF_REQUIRE_EQUAL(few.size(), 3u);
  CAF_CHECK_EQUAL(few[0].segment, gives[0].segment);
  // The other zones' owners have nothing to give; planned_moves lists a1's.
  CAF_CHECK(segments_to_give(v, "b1", 1, zones, 500, 1000).empty());
  CAF_CHECK_EQUAL(planned_moves(v, zones).size(), gives.size());
  // A wrong incarnation gives nothing (it is not the owner).
  CAF_CHECK(segments_to_give(v, "a1", 2, zones, 500, 1000).empty());
}

CAF_TEST(a draining node gives everything at once and takes nothing) {
  auto v = empty_view(30);
  v.nodes = {lease("a1", "zone-a", 5000), lease("b1", "zone-b", 5000),
             lease("c1", "zone-c", 5000)};
  place_all(v);
  v.nodes[0].draining = true;
  // Its segments go to the next zone in their order, whatever the settle.
  auto gives = segments_to_give(v, "a1", 1, zones, 1000000, 1000);
  CAF_CHECK_EQUAL(gives.size(), 10u);
  for (auto& g : gives)
    CAF_CHECK_EQUAL(g.to, zone_order(g.segment, zones)[1] == "zone-b" ? "b1" : "c1");
  CAF_CHECK(segments_to_take(v, "a1", zones).empty());
  for (int32_t s = 0; s < 30; ++s)
    CAF_CHECK_NOT_EQUAL(*preferred_owner(v, s, zones), "a1");
  // Every node draining: nobody is preferred, nothing moves.
  for (auto& n : v.nodes)
    n.draining = true;
  CAF_CHECK(segments_to_give(v, "a1", 1, zones, 0, 1000).empty());
  CAF_CHECK(!preferred_owner(v, 0, zones));
}

CAF_TEST(zone loss warnings name the nodes past their capacity) {
  auto v = empty_view(300);
  v.nodes = {lease("a1", "zone-a", 5000), lease("b1", "zone-b", 5000),
             lease("c1", "zone-c", 5000)};
  place_all(v);
  // Losing any zone gives each survivor 150 segments.
  CAF_CHECK(zone_loss_warnings(v, zones, 0).empty());
  CAF_CHECK(zone_loss_warnings(v, zones, 150).empty());
  auto w = zone_loss_warnings(v, zones, 149);
  CAF_REQUIRE_EQUAL(w.size(), 6u);
  CAF_CHECK_EQUAL(w[0], "losing zone-a would leave b1 with 150 segments (capacity 149)");
}

CAF_TEST(a live owner keeps its segments and a replaced incarnation does not) {
  auto v = empty_view(6);
  v.nodes = {lease("a1", "zone-a", 5000), lease("b1", "zone-b", 5000),
             lease("c1", "zone-c", 5000)};
  place_all(v);
  for (auto& n : {"a1", "b1", "c1"})
    CAF_CHECK(segments_to_take(v, n, zones).empty());
  CAF_CHECK_EQUAL(owned_segments(v, "a1", 1), (std::vector<int32_t>{0, 3}));
  // a1 restarts with a new incarnation: its old ownerships are dead, and it
  // is still the preferred owner, so it takes them back; nobody else does.
  v.nodes[0].incarnation = 2;
  CAF_CHECK(owned_segments(v, "a1", 2).empty());
  auto again = segments_to_take(v, "a1", zones);
  CAF_REQUIRE_EQUAL(again.size(), 2u);
  CAF_CHECK_EQUAL(again[0].segment, 0);
  CAF_CHECK(segments_to_take(v, "b1", zones).empty());
}

CAF_TEST(a node whose own lease ran out takes nothing) {
  auto v = empty_view(3);
  v.nodes = {lease("a1", "zone-a", 900)};
  CAF_CHECK(segments_to_take(v, "a1", zones).empty());
  CAF_CHECK(!preferred_owner(v, 0, zones));
  v.nodes[0].expires_at_ms = 1001;
  CAF_CHECK_EQUAL(segments_to_take(v, "a1", zones).size(), 3u);
}

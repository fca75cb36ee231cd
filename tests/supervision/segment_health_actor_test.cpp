#define CAF_SUITE supervision.segment_health_actor

// Segment health against the fake store: the sliding fault window, durable
// blocking (the fake store's segment_states), the subscribers' blocked
// lists, probes (the fake store's failing_segments and probe count), manual
// blocks, and states recorded before a restart. The window and the probe
// timer run on the test coordinator's clock (advance_time).

#include "tests/support/actor_fixture.hpp"

#include <vector>

#include "supervision/segment_health_actor.hpp"

using namespace hb;
using namespace hb::test;

namespace {

using segments = std::vector<int32_t>;
using namespace std::chrono_literals;

constexpr uint32_t window_ms = 1000;
constexpr uint32_t threshold = 3;
constexpr uint32_t probe_ms = 100;

struct health_fixture : actor_fixture {
  std::vector<segments> announced;  // every list a subscriber got, in order
  blocked_sink sub;
  std::vector<caf::actor> spawned;  // killed before the fixture drains
  segment_health_actor health;

  health_fixture() {
    sub = sys.spawn([this]() -> blocked_sink::behavior_type {
      return {
        [this](blocked_atom, std::vector<int32_t>& list) {
          announced.push_back(list);
        },
      };
    });
    spawned.push_back(caf::actor_cast<caf::actor>(sub));
  }

  ~health_fixture() override {
    // The health actor re-arms its probe timer forever: stop it first, or
    // draining every timeout at the end would never finish.
    for (auto& a : spawned)
      caf::anon_send_exit(a, caf::exit_reason::kill);
    run();
  }

  segment_health_actor start(uint32_t thr = threshold) {
    segment_health_settings hc;
    hc.window_ms = window_ms;
    hc.fault_threshold = thr;
    hc.probe_interval_ms = probe_ms;
    hc.now_ms = [this] { return now; };
    health = spawn_segment_health(sys, store, hc);
    spawned.push_back(caf::actor_cast<caf::actor>(health));
    self->send(health, subscribe_atom::value, sub);
    run();
    return health;
  }

  void report(int32_t segment, bool fault) {
    self->send(health, seg_report_atom::value, segment, fault);
    run();
  }

  /// Lets `n` probe intervals pass (each fires the probe timer once).
  void probe_intervals(int n) {
    for (int i = 0; i < n; ++i) {
      advance_time(std::chrono::milliseconds(probe_ms));
      run();
    }
  }

  std::vector<segment_state> blocked_now() {
    auto h = self->request(health, caf::infinite, segment_atom::value);
    run();
    std::vector<segment_state> out;
    h.receive([&](std::vector<segment_state>& xs) { out = std::move(xs); },
              [](caf::error& e) { CAF_FAIL("no states: " << to_string(e)); });
    return out;
  }

  outcome<segment_state> manual(int32_t segment, bool block,
                                std::string reason) {
    auto h = self->request(health, caf::infinite, segment_atom::value,
                           segment_request{segment, block, std::move(reason)});
    run();
    return take<segment_state>(h);
  }

  /// The durable record of a segment (the fake store's segment_states).
  bool recorded_blocked(int32_t segment) {
    auto it = db->segment_states.find(segment);
    return it != db->segment_states.end() && it->second.blocked;
  }

  segments last_announced() {
    return announced.empty() ? segments{} : announced.back();
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(segment_health_tests, health_fixture)

CAF_TEST(faults past the threshold within the window block the segment) {
  start();
  CAF_CHECK_EQUAL(last_announced(), segments{});  // the list at subscribe
  report(4, true);
  report(4, false);  // successes do not reset the count
  report(9, true);   // other segments count on their own
  report(4, true);
  CAF_CHECK(blocked_now().empty());
  CAF_CHECK(!recorded_blocked(4));
  advance_time(std::chrono::milliseconds(window_ms / 2));
  run();
  report(4, true);  // the third within the window
  auto now_blocked = blocked_now();
  CAF_REQUIRE_EQUAL(now_blocked.size(), 1u);
  CAF_CHECK_EQUAL(now_blocked[0].segment, 4);
  CAF_CHECK(now_blocked[0].blocked);
  CAF_CHECK(!now_blocked[0].manual);
  CAF_CHECK_NOT_EQUAL(now_blocked[0].reason.find("faults"), std::string::npos);
  // Recorded durably, and announced to the subscribers.
  CAF_CHECK(recorded_blocked(4));
  CAF_CHECK(!db->segment_states[4].manual);
  CAF_CHECK_EQUAL(last_announced(), segments{4});
  CAF_CHECK(!recorded_blocked(9));
  // A second segment joins the list.
  report(9, true);
  report(9, true);
  CAF_CHECK_EQUAL(last_announced(), (segments{4, 9}));
}

CAF_TEST(faults spread wider than the window do not block) {
  start();
  auto gap = std::chrono::milliseconds(window_ms * 6 / 10);
  for (int i = 0; i < 10; ++i) {
    report(2, true);
    advance_time(gap);
    run();
  }
  CAF_CHECK(blocked_now().empty());
  CAF_CHECK(!recorded_blocked(2));
  CAF_CHECK_EQUAL(announced.size(), 1u);  // only the list at subscribe
  CAF_CHECK_EQUAL(db->probes, 0);         // nothing blocked, nothing probed
  // The same faults closer together do.
  report(2, true);
  report(2, true);
  CAF_CHECK(recorded_blocked(2));
}

CAF_TEST(a failing probe keeps the segment blocked and a good one unblocks it) {
  start();
  for (uint32_t i = 0; i < threshold; ++i)
    report(6, true);
  CAF_REQUIRE(recorded_blocked(6));
  db->failing_segments.insert(6);
  probe_intervals(5);
  CAF_CHECK_GREATER_OR_EQUAL(db->probes, 4);
  CAF_CHECK(recorded_blocked(6));
  CAF_CHECK_EQUAL(blocked_now().size(), 1u);
  CAF_CHECK_EQUAL(last_announced(), segments{6});
  // Reports of a blocked segment neither count nor unblock it.
  report(6, false);
  CAF_CHECK(recorded_blocked(6));
  // The storage is repaired: the next probe unblocks.
  db->failing_segments.clear();
  auto before = db->probes;
  probe_intervals(1);
  CAF_CHECK_EQUAL(db->probes, before + 1);
  CAF_CHECK(!recorded_blocked(6));
  CAF_REQUIRE_EQUAL(db->segment_states.count(6), 1u);
  CAF_CHECK_EQUAL(db->segment_states[6].reason, "probe succeeded");
  CAF_CHECK(blocked_now().empty());
  CAF_CHECK_EQUAL(last_announced(), segments{});
  // No more probes once healthy; the count starts from zero again.
  before = db->probes;
  probe_intervals(3);
  CAF_CHECK_EQUAL(db->probes, before);
  report(6, true);
  report(6, true);
  CAF_CHECK(!recorded_blocked(6));
  report(6, true);
  CAF_CHECK(recorded_blocked(6));
}

CAF_TEST(a manual block is not lifted by probes) {
  start();
  auto st = manual(5, true, "disk maintenance");
  CAF_REQUIRE(st.ok());
  CAF_CHECK(st->blocked);
  CAF_CHECK(st->manual);
  CAF_CHECK_EQUAL(st->reason, "disk maintenance");
  CAF_CHECK(recorded_blocked(5));
  CAF_CHECK(db->segment_states[5].manual);
  CAF_CHECK_EQUAL(last_announced(), segments{5});
  // The storage works, yet the operator's block holds: it is not even probed.
  probe_intervals(10);
  CAF_CHECK_EQUAL(db->probes, 0);
  CAF_CHECK(recorded_blocked(5));
  // An automatic block taken over by the operator is manual from then on.
  for (uint32_t i = 0; i < threshold; ++i)
    report(7, true);
  CAF_REQUIRE(recorded_blocked(7));
  db->failing_segments.insert(7);
  CAF_REQUIRE(manual(7, true, "").ok());
  CAF_CHECK(db->segment_states[7].manual);
  CAF_CHECK_EQUAL(db->segment_states[7].reason, "operator");
  db->failing_segments.clear();
  auto before = db->probes;
  probe_intervals(5);
  CAF_CHECK_EQUAL(db->probes, before);
  CAF_CHECK(recorded_blocked(7));
  // Only the operator unblocks.
  auto un = manual(5, false, "maintenance over");
  CAF_REQUIRE(un.ok());
  CAF_CHECK(!un->blocked);
  CAF_CHECK(!recorded_blocked(5));
  CAF_CHECK_EQUAL(last_announced(), segments{7});
  // Out of range is refused.
  auto bad = manual(1000, true, "x");
  CAF_REQUIRE(!bad.ok());
  CAF_CHECK_EQUAL(bad.error().code, errc::invalid_argument);
}

CAF_TEST(blocked states recorded before a restart are loaded at start) {
  // A first incarnation blocks segment 3 automatically and 8 by hand ...
  start();
  for (uint32_t i = 0; i < threshold; ++i)
    report(3, true);
  CAF_REQUIRE(manual(8, true, "operator said so").ok());
  CAF_REQUIRE(recorded_blocked(3));
  CAF_REQUIRE(recorded_blocked(8));
  db->segment_states[11] = segment_state{11, false, false, "probe succeeded"};
  // ... and dies (the node restarts, or the supervisor restarts it).
  caf::anon_send_exit(health, caf::exit_reason::kill);
  run();
  announced.clear();
  db->failing_segments = {3, 8};
  start();
  auto now_blocked = blocked_now();
  CAF_REQUIRE_EQUAL(now_blocked.size(), 2u);
  CAF_CHECK_EQUAL(now_blocked[0].segment, 3);
  CAF_CHECK(!now_blocked[0].manual);
  CAF_CHECK_EQUAL(now_blocked[1].segment, 8);
  CAF_CHECK(now_blocked[1].manual);
  CAF_CHECK_EQUAL(now_blocked[1].reason, "operator said so");
  CAF_CHECK_EQUAL(last_announced(), (segments{3, 8}));
  // The loaded automatic block is probed like any other; the manual one is
  // left alone.
  probe_intervals(3);
  CAF_CHECK(recorded_blocked(3));
  db->failing_segments.clear();
  probe_intervals(2);
  CAF_CHECK(!recorded_blocked(3));
  CAF_CHECK(recorded_blocked(8));
  CAF_CHECK_EQUAL(last_announced(), segments{8});
}

CAF_TEST(a subscriber that comes late gets the current list) {
  start();
  for (uint32_t i = 0; i < threshold; ++i)
    report(1, true);
  std::vector<segments> late;
  auto late_sub = sys.spawn([&late]() -> blocked_sink::behavior_type {
    return {
      [&late](blocked_atom, std::vector<int32_t>& list) {
        late.push_back(list);
      },
    };
  });
  spawned.push_back(caf::actor_cast<caf::actor>(late_sub));
  self->send(health, subscribe_atom::value, late_sub);
  run();
  CAF_REQUIRE_EQUAL(late.size(), 1u);
  CAF_CHECK_EQUAL(late[0], segments{1});
  // `late` ends with this test: its subscriber goes first.
  caf::anon_send_exit(late_sub, caf::exit_reason::kill);
  run();
}

CAF_TEST_FIXTURE_SCOPE_END()

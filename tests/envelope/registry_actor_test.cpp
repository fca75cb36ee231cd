#define CAF_SUITE envelope.registry_actor

#include "tests/support/actor_fixture.hpp"

#include "envelope/registry_actor.hpp"

using namespace hb;
using namespace hb::test;

namespace {

constexpr int64_t id_a = 2027011500000001100;
constexpr int64_t id_b = 2027011500000002201;
constexpr int64_t id_c = 2027011500000003302;

struct registry_fixture : actor_fixture {
  registry_settings reg_cfg;
  registry_actor registry;

  void start(uint32_t live_max = 100, uint32_t keep_live = 0) {
    reg_cfg.live_max = live_max;
    reg_cfg.keep_live = keep_live;
    reg_cfg.envelope = cfg;
    registry = spawn_registry(sys, store, reg_cfg);
    run();
  }

  // Kept envelopes check again every idle period, for ever: stop them
  // before the base fixture drains the timers.
  ~registry_fixture() {
    if (registry) {
      self->send(registry, stop_atom::value);
      run();
    }
  }

  // Moves the wall clock and the actors' clock on together.
  void pass(int64_t ms) {
    now += ms;
    advance_time(std::chrono::milliseconds(ms));
    run();
  }

  bool opens(int64_t id, const std::string& user) {
    auto h = self->request(registry, caf::infinite, open_atom::value, id, user,
                           int64_t{0});
    run();
    return take<open_result>(h).ok();
  }

  // Envelopes of 10 shares, each opened once by "u1" after the start.
  void start_opened(std::initializer_list<int64_t> ids, uint32_t live_max,
                    uint32_t keep_live) {
    cfg.idle_ms = 500;
    for (auto id : ids)
      db->add(id, 1000, 10);
    start(live_max, keep_live);
    for (auto id : ids)
      CAF_REQUIRE(opens(id, "u1"));
  }

  // An idle report as the actor of `id` sends it after that one open.
  void report_idle(int64_t id, int64_t quiet_ms) {
    self->send(registry, idle_atom::value,
               idle_report{id, uint64_t{1}, true, quiet_ms});
    run();
  }

  uint64_t live() {
    auto h = self->request(registry, caf::infinite, stats_atom::value);
    run();
    uint64_t n = 0;
    h.receive([&](uint64_t x) { n = x; }, [](caf::error&) {});
    return n;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(registry_tests, registry_fixture)

CAF_TEST(requests for one envelope share one activation) {
  db->add(id_a, 1000, 10);
  start();
  auto h1 = self->request(registry, caf::infinite, open_atom::value, id_a,
                          std::string{"u1"}, int64_t{0});
  auto h2 = self->request(registry, caf::infinite, open_atom::value, id_a,
                          std::string{"u2"}, int64_t{0});
  run();
  CAF_CHECK(take<open_result>(h1).ok());
  CAF_CHECK(take<open_result>(h2).ok());
  CAF_CHECK_EQUAL(db->activations, 1);
  CAF_CHECK_EQUAL(live(), 1u);
}

CAF_TEST(an idle envelope is passivated and reactivated on demand) {
  cfg.idle_ms = 500;
  db->add(id_a, 1000, 10);
  start();
  auto h1 = self->request(registry, caf::infinite, open_atom::value, id_a,
                          std::string{"u1"}, int64_t{0});
  run();
  auto first = take<open_result>(h1);
  CAF_REQUIRE(first.ok());
  for (int i = 0; i < 3; ++i) {
    advance_time(std::chrono::milliseconds(500));
    run();
  }
  CAF_CHECK_EQUAL(live(), 0u);
  // The next request activates the envelope again, from the database.
  auto h2 = self->request(registry, caf::infinite, open_atom::value, id_a,
                          std::string{"u1"}, int64_t{0});
  run();
  auto again = take<open_result>(h2);
  CAF_REQUIRE(again.ok());
  CAF_CHECK_EQUAL(again->amount_fen, first->amount_fen);
  CAF_CHECK(!again->first_time);
  CAF_CHECK_EQUAL(db->activations, 2);
}

CAF_TEST(the live actor cap answers busy) {
  db->add(id_a, 1000, 10);
  db->add(id_b, 1000, 10);
  start(1);
  auto h1 = self->request(registry, caf::infinite, grab_atom::value, id_a,
                          std::string{"u"});
  auto h2 = self->request(registry, caf::infinite, grab_atom::value, id_b,
                          std::string{"u"});
  run();
  CAF_CHECK(take<grab_result>(h1).ok());
  auto r2 = take<grab_result>(h2);
  CAF_REQUIRE(!r2.ok());
  CAF_CHECK_EQUAL(r2.error().code, errc::busy);
}

CAF_TEST(at the cap the quiet envelopes are asked to go and make room) {
  cfg.idle_ms = 30000;  // their own idle checks are far away
  for (auto id : {id_a, id_b, id_c})
    db->add(id, 1000, 10);
  start(2, 1);
  CAF_REQUIRE(opens(id_a, "u1"));
  CAF_REQUIRE(opens(id_b, "u1"));
  auto grab = [&](int64_t id) {
    auto h = self->request(registry, caf::infinite, grab_atom::value, id,
                           std::string{"u2"});
    run();
    return take<grab_result>(h);
  };
  // Both were just active: nothing is quiet enough, the cap holds.
  auto first = grab(id_c);
  CAF_REQUIRE(!first.ok());
  CAF_CHECK_EQUAL(first.error().code, errc::busy);
  CAF_CHECK_EQUAL(live(), 2u);
  // A second later `b` has an open in flight; `a` is quiet and goes.
  db->hold_commits = true;
  pass(1100);
  auto pending = self->request(registry, caf::infinite, open_atom::value, id_b,
                               std::string{"u3"}, int64_t{0});
  run();
  auto second = grab(id_c);
  CAF_REQUIRE(!second.ok());  // answered before the reports came back
  CAF_CHECK_EQUAL(second.error().code, errc::busy);
  CAF_CHECK_EQUAL(live(), 1u);
  auto activations = db->activations;
  CAF_CHECK(grab(id_c).ok());
  CAF_CHECK_EQUAL(db->activations, activations + 1);
  CAF_CHECK_EQUAL(live(), 2u);
  release_commits();
  CAF_CHECK(take<open_result>(pending).ok());
}

CAF_TEST(a malformed id is not found without touching the store) {
  start();
  auto h = self->request(registry, caf::infinite, get_atom::value,
                         int64_t{12345});
  run();
  auto r = take<envelope_detail>(h);
  CAF_REQUIRE(!r.ok());
  CAF_CHECK_EQUAL(r.error().code, errc::not_found);
  CAF_CHECK_EQUAL(db->activations, 0);
}

CAF_TEST(idle envelopes stay live while the node has room) {
  start_opened({id_a, id_b}, 100, 1);
  CAF_CHECK_EQUAL(live(), 2u);
  // Over the room of one: the first idle report lets its envelope go, the
  // other is kept, and stays through many idle periods.
  for (int i = 0; i < 10; ++i)
    pass(500);
  CAF_CHECK_EQUAL(live(), 1u);
  CAF_CHECK_EQUAL(db->activations, 2);
  // One of the two needs an activation again, the kept one does not.
  CAF_CHECK(opens(id_a, "u2"));
  CAF_CHECK(opens(id_b, "u2"));
  CAF_CHECK_EQUAL(db->activations, 3);
  CAF_CHECK_EQUAL(live(), 2u);
}

CAF_TEST(beyond the room the long idle envelopes go first) {
  start_opened({id_a, id_b}, 100, 1);
  // b newly idle before a, which has been idle for ten periods: over the
  // room of one, a goes and b stays.
  report_idle(id_b, 500);
  CAF_CHECK_EQUAL(live(), 2u);
  report_idle(id_a, 5000);
  CAF_CHECK_EQUAL(live(), 1u);
  CAF_CHECK(opens(id_b, "u2"));
  CAF_CHECK_EQUAL(db->activations, 2);
  CAF_CHECK(opens(id_a, "u2"));
  CAF_CHECK_EQUAL(db->activations, 3);
}

CAF_TEST(half way to the cap the newly idle envelopes go too) {
  start_opened({id_a, id_b, id_c}, 3, 1);  // half way from 1 to 3: 2
  report_idle(id_c, 500);
  CAF_CHECK_EQUAL(live(), 2u);
  report_idle(id_b, 500);
  CAF_CHECK_EQUAL(live(), 2u);  // at half way a newly idle one stays
}

CAF_TEST(a kept idle envelope refunds at its expiry) {
  cfg.idle_ms = 500;
  db->add(id_a, 1000, 10, envelope_kind::random, envelope_status::paid,
          now + 1800);
  start(100, 10);
  CAF_REQUIRE(opens(id_a, "u1"));
  for (int i = 0; i < 5; ++i)
    pass(500);
  CAF_CHECK_EQUAL(live(), 1u);
  CAF_CHECK_EQUAL(db->refunds, 1);
  CAF_CHECK_EQUAL(db->envelopes.at(id_a).status, envelope_status::refunded);
}

CAF_TEST(a failed activation is let go even with room) {
  cfg.idle_ms = 500;
  start(100, 10);
  auto h = self->request(registry, caf::infinite, get_atom::value, id_a);
  run();
  auto r = take<envelope_detail>(h);
  CAF_REQUIRE(!r.ok());
  CAF_CHECK_EQUAL(r.error().code, errc::not_found);
  CAF_CHECK_EQUAL(live(), 1u);
  for (int i = 0; i < 3; ++i)
    pass(500);
  CAF_CHECK_EQUAL(live(), 0u);
}

CAF_TEST_FIXTURE_SCOPE_END()

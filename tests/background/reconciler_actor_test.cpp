#define CAF_SUITE background.reconciler_actor

#include "tests/support/actor_fixture.hpp"

#include "background/reconciler_actor.hpp"

using namespace hb;
using namespace hb::test;

namespace {

// One reconcile the store was asked for.
struct store_run {
  int64_t since_ms = 0;
  int64_t now_ms = 0;
  bool repair = false;
};

// The reconciler against a store stand-in that records each run and
// answers it at once, or holds it until the test answers (`hold`).
struct reconciler_fixture : actor_fixture {
  std::vector<store_run> runs;
  // Runs held unanswered, oldest first, with their since_ms.
  std::vector<std::pair<caf::typed_response_promise<reconcile_report>,
                        int64_t>>
    held;
  bool hold = false;
  bool fail = false;
  size_t discrepancies = 0;  // in each report
  caf::actor store_stub;
  reconciler_actor reconciler;

  reconciler_fixture() {
    store_stub = sys.spawn([this](caf::event_based_actor* stub) -> caf::behavior {
      return {
        [this, stub](db_reconcile_atom,
                     const reconcile_run& run) -> caf::result<reconcile_report> {
          auto since_ms = run.since_ms;
          runs.push_back(store_run{run.since_ms, run.now_ms, run.repair});
          if (fail)
            return make_error(errc::unavailable, "database down");
          if (hold) {
            auto rp = stub->make_response_promise<reconcile_report>();
            held.emplace_back(rp, since_ms);
            return rp;
          }
          return report_for(since_ms);
        },
        // Answers the oldest held run (a promise is delivered from inside
        // its actor).
        [this](release_atom) {
          auto [rp, since_ms] = held.front();
          held.erase(held.begin());
          rp.deliver(report_for(since_ms));
        },
      };
    });
    reconciler = make_reconciler(0);
  }

  ~reconciler_fixture() {
    anon_send_exit(reconciler, caf::exit_reason::user_shutdown);
    anon_send_exit(store_stub, caf::exit_reason::user_shutdown);
  }

  reconcile_report report_for(int64_t since_ms) const {
    reconcile_report r;
    r.since_ms = since_ms;
    r.envelopes_checked = 5;
    for (size_t i = 0; i < discrepancies; ++i)
      r.discrepancies.push_back(
        discrepancy{"missing_credit", int64_t(i), "u", "lost", true});
    return r;
  }

  reconciler_actor make_reconciler(uint32_t interval_s) {
    reconciler_settings c;
    c.interval_s = interval_s;
    c.window_s = 3600;
    c.now_ms = [this] { return now; };
    auto r = spawn_reconciler(sys, caf::actor_cast<store_actor>(store_stub),
                              c);
    run();
    return r;
  }

  // Answers the oldest held run.
  void answer_one() {
    CAF_REQUIRE(!held.empty());
    self->send(store_stub, release_atom::value);
    run();
  }

  auto ask_reconcile(int64_t since_ms) {
    auto h = self->request(reconciler, caf::infinite, reconcile_atom::value,
                           since_ms);
    run();
    return h;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(reconciler_tests, reconciler_fixture)

CAF_TEST(an on demand run asks the store to check and repair its window) {
  auto h = ask_reconcile(1234);
  auto r = take<reconcile_report>(h);
  CAF_REQUIRE(r.ok());
  CAF_CHECK_EQUAL(r.value().since_ms, 1234);
  CAF_CHECK_EQUAL(r.value().envelopes_checked, 5);
  CAF_REQUIRE_EQUAL(runs.size(), 1u);
  CAF_CHECK_EQUAL(runs[0].since_ms, 1234);
  CAF_CHECK_EQUAL(runs[0].now_ms, now);
  CAF_CHECK(runs[0].repair);
}

CAF_TEST(periodic runs look back one window every interval) {
  anon_send_exit(reconciler, caf::exit_reason::user_shutdown);
  run();
  reconciler = make_reconciler(300);
  CAF_CHECK(runs.empty());  // the first run waits one interval
  sched.advance_time(std::chrono::seconds(299));
  run();
  CAF_CHECK(runs.empty());
  sched.advance_time(std::chrono::seconds(1));
  run();
  CAF_REQUIRE_EQUAL(runs.size(), 1u);
  CAF_CHECK_EQUAL(runs[0].since_ms, now - 3600 * 1000);
  now += 300000;
  sched.advance_time(std::chrono::seconds(300));
  run();
  CAF_REQUIRE_EQUAL(runs.size(), 2u);
  CAF_CHECK_EQUAL(runs[1].since_ms, now - 3600 * 1000);
}

CAF_TEST(one run at a time and queued requests run in order) {
  hold = true;
  auto a = ask_reconcile(100);
  auto b = ask_reconcile(200);
  CAF_REQUIRE_EQUAL(runs.size(), 1u);  // b waits for a
  answer_one();
  CAF_REQUIRE_EQUAL(runs.size(), 2u);
  CAF_CHECK_EQUAL(runs[1].since_ms, 200);
  answer_one();
  auto ra = take<reconcile_report>(a);
  auto rb = take<reconcile_report>(b);
  CAF_REQUIRE(ra.ok());
  CAF_REQUIRE(rb.ok());
  CAF_CHECK_EQUAL(ra.value().since_ms, 100);
  CAF_CHECK_EQUAL(rb.value().since_ms, 200);
}

CAF_TEST(a periodic run is skipped while runs wait) {
  hold = true;
  auto a = ask_reconcile(100);
  self->send(reconciler, tick_atom::value);  // as the interval timer does
  run();
  answer_one();
  // Only the on-demand run went to the store: the tick found it queued.
  CAF_CHECK_EQUAL(runs.size(), 1u);
  CAF_CHECK(held.empty());
  CAF_CHECK(take<reconcile_report>(a).ok());
  // With nothing queued the tick runs.
  self->send(reconciler, tick_atom::value);
  run();
  CAF_CHECK_EQUAL(runs.size(), 2u);
}

CAF_TEST(a failed run answers its requester and the next one runs) {
  fail = true;
  auto a = ask_reconcile(1);
  auto ra = take<reconcile_report>(a);
  CAF_REQUIRE(!ra.ok());
  CAF_CHECK_EQUAL(ra.error().code, errc::unavailable);
  fail = false;
  auto b = ask_reconcile(2);
  CAF_CHECK(take<reconcile_report>(b).ok());
  CAF_CHECK_EQUAL(runs.size(), 2u);
}

CAF_TEST(at most 16 runs wait and more are told busy) {
  hold = true;
  std::vector<decltype(ask_reconcile(0))> asked;
  for (int i = 0; i < 16; ++i)
    asked.push_back(ask_reconcile(i));
  auto extra = ask_reconcile(99);
  auto r = take<reconcile_report>(extra);
  CAF_REQUIRE(!r.ok());
  CAF_CHECK_EQUAL(r.error().code, errc::busy);
  CAF_CHECK_EQUAL(runs.size(), 1u);
  for (int i = 0; i < 16; ++i)
    answer_one();
  CAF_CHECK_EQUAL(runs.size(), 16u);
  for (auto& h : asked)
    CAF_CHECK(take<reconcile_report>(h).ok());
}

CAF_TEST(a long report is cut at 1000 discrepancies and says so) {
  discrepancies = 1500;
  auto h = ask_reconcile(0);
  auto r = take<reconcile_report>(h);
  CAF_REQUIRE(r.ok());
  auto& d = r.value().discrepancies;
  CAF_REQUIRE_EQUAL(d.size(), 1001u);
  CAF_CHECK_EQUAL(d[999].kind, "missing_credit");
  CAF_CHECK_EQUAL(d[1000].kind, "truncated");
  CAF_CHECK_NOT_EQUAL(d[1000].detail.find("500 more"), std::string::npos);
  discrepancies = 3;
  h = ask_reconcile(0);
  auto small = take<reconcile_report>(h);
  CAF_REQUIRE(small.ok());
  CAF_CHECK_EQUAL(small.value().discrepancies.size(), 3u);
}

CAF_TEST_FIXTURE_SCOPE_END()

#define CAF_SUITE background.expiry_sweeper_actor

#include "tests/support/actor_fixture.hpp"

#include <algorithm>
#include <memory>
#include <set>

#include "runtime/errors.hpp"
#include "background/expiry_sweeper_actor.hpp"

using namespace hb;
using namespace hb::test;

namespace {

struct sweeper_fixture : actor_fixture {
  std::set<int64_t> failing;   // refunds of these fail, every time
  std::vector<int64_t> asked;  // every refund the owner was asked for
  envelope_requests owner;
  expiry_sweeper_actor sweeper;

  sweeper_fixture() {
    // The owner refunds like an envelope actor would (the fake database's
    // envelope leaves the due list), except for the failing ones.
    owner = sys.spawn([this]() -> envelope_requests::behavior_type {
      auto refuse = [] {
        return make_error(errc::internal, "not used in this test");
      };
      return {
        [=](grab_atom, int64_t, std::string&) -> caf::result<grab_result> {
          return refuse();
        },
        [=](open_atom, int64_t, std::string&,
            int64_t) -> caf::result<open_result> {
          return refuse();
        },
        [=](pay_atom, int64_t, std::string&, bool) -> caf::result<envelope> {
          return refuse();
        },
        [=](get_atom, int64_t) -> caf::result<envelope_detail> {
          return refuse();
        },
        [this](refund_atom, int64_t id) -> caf::result<int64_t> {
          asked.push_back(id);
          if (failing.count(id) > 0)
            return make_error(errc::unavailable, "the segment's storage fails");
          auto& env = db->envelopes.at(id);
          auto amount = env.remaining_fen;
          env.status = envelope_status::refunded;
          env.refunded_fen = amount;
          env.remaining_fen = 0;
          return amount;
        },
      };
    });
  }

  ~sweeper_fixture() {
    anon_send_exit(sweeper, caf::exit_reason::user_shutdown);
    anon_send_exit(owner, caf::exit_reason::user_shutdown);
  }

  std::shared_ptr<node_metrics> metrics = std::make_shared<node_metrics>();

  void start(int32_t batch_max, int64_t clock_skew_max_ms = 2000) {
    expiry_sweeper_settings sc;
    sc.interval_ms = 1000;
    sc.batch_max = batch_max;
    sc.clock_skew_max_ms = clock_skew_max_ms;
    sc.clock_check_interval_ms = 1000;
    sc.metrics = metrics;
    sc.now_ms = [this] { return now; };
    sweeper = spawn_expiry_sweeper(sys, store, owner, sc);
    run();
  }

  void after_ms(int ms) {
    sched.advance_time(std::chrono::milliseconds(ms));
    run();
  }

  int64_t refunded() {
    int64_t n = 0;
    for (auto& kv : db->envelopes)
      n += kv.second.status == envelope_status::refunded ? 1 : 0;
    return n;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(expiry_sweeper_tests, sweeper_fixture)

CAF_TEST(due envelopes behind a page that always fails are still refunded) {
  // Five due envelopes, two per sweep; the two oldest fail every time (a
  // failing segment), the other three must be refunded all the same.
  for (int64_t id = 1; id <= 5; ++id)
    db->add(id, 500, 5, envelope_kind::random, envelope_status::paid,
            now - 1000);
  db->add(6, 500, 5, envelope_kind::random, envelope_status::paid,
          now + 3600 * 1000);  // not due
  failing = {1, 2};
  start(2);
  for (int i = 0; i < 5; ++i)
    after_ms(1000);
  CAF_CHECK_EQUAL(refunded(), 3);
  for (int64_t id = 3; id <= 5; ++id)
    CAF_CHECK(db->envelopes.at(id).status == envelope_status::refunded);
  CAF_CHECK(db->envelopes.at(6).status == envelope_status::paid);
  // The failing ones are tried again on every pass, not given up on.
  CAF_CHECK_GREATER(std::count(asked.begin(), asked.end(), 1), 1);
  // Once their storage works again, they are refunded too.
  failing.clear();
  for (int i = 0; i < 3; ++i)
    after_ms(1000);
  CAF_CHECK_EQUAL(refunded(), 5);
  CAF_CHECK_EQUAL(std::count(asked.begin(), asked.end(), 3), 1);
}

CAF_TEST(a node clock stepped forward expires nothing and shows its skew) {
  constexpr int64_t hour_ms = 3600 * 1000;
  db->db_now_ms = now;
  db->add(1, 500, 5, envelope_kind::random, envelope_status::paid,
          now + hour_ms);
  start(10);
  after_ms(1000);
  CAF_CHECK_GREATER(db->clock_reads, 0);
  CAF_CHECK_EQUAL(metrics->clock_skew_ms.load(), 0);
  CAF_CHECK_EQUAL(metrics->expiry_held.load(), 0);
  // NTP (or a resumed VM) steps this node's clock two days forward; the
  // database's clock goes on as before. By this node's clock envelope 1
  // expired long ago: without the check it would be refunded now.
  now += 48 * hour_ms;
  for (int i = 0; i < 5; ++i)
    after_ms(1000);
  CAF_CHECK_EQUAL(metrics->clock_skew_ms.load(), 48 * hour_ms);
  CAF_CHECK_LESS(metrics->clock_skew_uncertainty_ms.load(), 10);
  CAF_CHECK_EQUAL(metrics->expiry_held.load(), 1);
  CAF_CHECK_GREATER(metrics->expiry_held_sweeps.load(), 3u);
  CAF_CHECK(asked.empty());
  CAF_CHECK(db->envelopes.at(1).status == envelope_status::paid);
  auto stats = metrics->snapshot();
  auto shown = std::find(stats.begin(), stats.end(),
                         std::make_pair(std::string{"expiry.clock_skew_ms"},
                                        48 * hour_ms));
  CAF_CHECK(shown != stats.end());
  // The clock is put right: the skew is gone and expiry resumes, by the
  // time that is right for both.
  now -= 48 * hour_ms;
  after_ms(1000);
  after_ms(1000);
  CAF_CHECK_EQUAL(metrics->clock_skew_ms.load(), 0);
  CAF_CHECK_EQUAL(metrics->expiry_held.load(), 0);
  CAF_CHECK(asked.empty());
  now += hour_ms;
  db->db_now_ms += hour_ms;
  after_ms(1000);
  after_ms(1000);
  CAF_CHECK_EQUAL(asked, std::vector<int64_t>{1});
  CAF_CHECK(db->envelopes.at(1).status == envelope_status::refunded);
}

CAF_TEST(a skew within the bound or an unreadable clock does not hold expiry) {
  db->db_now_ms = now - 1500;  // the node runs 1.5 s ahead: within 2 s
  db->add(1, 500, 5, envelope_kind::random, envelope_status::paid, now - 1000);
  db->clock_fails = false;
  start(10);
  after_ms(1000);
  CAF_CHECK_EQUAL(metrics->clock_skew_ms.load(), 1500);
  CAF_CHECK_EQUAL(metrics->expiry_held.load(), 0);
  CAF_CHECK_EQUAL(asked, std::vector<int64_t>{1});
  // A database whose clock cannot be read is no reason to stop: the refund
  // statement checks its clock anyway.
  db->clock_fails = true;
  db->add(2, 500, 5, envelope_kind::random, envelope_status::paid, now - 500);
  for (int i = 0; i < 3; ++i)
    after_ms(1000);
  CAF_CHECK_EQUAL(asked, (std::vector<int64_t>{1, 2}));
}

CAF_TEST(the skew is measured from the middle of the round trip) {
  auto s = measure_skew(1000, 1200, 1000);
  CAF_CHECK_EQUAL(s.skew_ms, 100);
  CAF_CHECK_EQUAL(s.uncertainty_ms, 101);
  CAF_CHECK(!skew_holds_expiry(s, 50));  // could be 0: not proven
  s = measure_skew(1000, 1200, 500);
  CAF_CHECK_EQUAL(s.skew_ms, 600);
  CAF_CHECK(skew_holds_expiry(s, 400));
  CAF_CHECK(!skew_holds_expiry(s, 500));
  s = measure_skew(5000, 5000, 9000);  // behind by 4 s
  CAF_CHECK_EQUAL(s.skew_ms, -4000);
  CAF_CHECK(skew_holds_expiry(s, 2000));
}

CAF_TEST_FIXTURE_SCOPE_END()

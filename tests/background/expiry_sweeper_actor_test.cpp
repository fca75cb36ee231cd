#define CAF_SUITE background.expiry_sweeper_actor

#include "tests/support/actor_fixture.hpp"

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

  void start(int32_t batch_max) {
    expiry_sweeper_settings sc;
    sc.interval_ms = 1000;
    sc.batch_max = batch_max;
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

CAF_TEST_FIXTURE_SCOPE_END()

#define CAF_SUITE background.relay_actor

#include "tests/support/actor_fixture.hpp"

#include "runtime/metrics.hpp"
#include "background/relay_actor.hpp"

using namespace hb;
using namespace hb::test;

namespace {

struct relay_fixture : actor_fixture {
  std::shared_ptr<node_metrics> metrics = std::make_shared<node_metrics>();
  relay_actor relay;

  relay_fixture() {
    relay_settings rc;
    rc.batch_max = 10;
    rc.poll_ms = 200;
    rc.yield_ms = 20;
    rc.defer_max_ms = 100;
    rc.lag_log_ms = 0;
    rc.metrics = metrics;
    relay = spawn_relay(sys, store, rc);
    run();
  }

  ~relay_fixture() {
    anon_send_exit(relay, caf::exit_reason::user_shutdown);
  }

  void after_ms(int ms) {
    sched.advance_time(std::chrono::milliseconds(ms));
    run();
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(relay_tests, relay_fixture)

CAF_TEST(the relay yields to busy opens for at most defer_max_ms) {
  CAF_CHECK_EQUAL(db->relay_batches, 1);  // first look at start-up
  // Quiet: it polls every poll_ms.
  after_ms(200);
  CAF_CHECK_EQUAL(db->relay_batches, 2);
  CAF_CHECK_EQUAL(metrics->relay_yields.load(), 0u);
  // Opens wait in an envelope: the relay leaves the database to them ...
  metrics->queued_opens = 3;
  after_ms(200);
  CAF_CHECK_EQUAL(db->relay_batches, 2);
  CAF_CHECK_EQUAL(metrics->relay_yields.load(), 1u);
  for (int i = 0; i < 4; ++i)
    after_ms(20);
  CAF_CHECK_EQUAL(db->relay_batches, 2);
  CAF_CHECK_EQUAL(metrics->relay_yields.load(), 5u);
  // ... but not for longer than defer_max_ms (5 x 20 ms): then it drains.
  after_ms(20);
  CAF_CHECK_EQUAL(db->relay_batches, 3);
  CAF_CHECK_EQUAL(metrics->relay_yields.load(), 5u);
}

CAF_TEST(after yielding the relay drains the outbox before it yields again) {
  metrics->queued_opens = 1;
  after_ms(200);  // yields ...
  for (int i = 0; i < 4; ++i)
    after_ms(20);
  CAF_CHECK_EQUAL(metrics->relay_yields.load(), 5u);
  // ... then catches up: full batches follow each other without a pause
  // although the opens are still busy.
  db->relay_rows = 10;
  auto before = db->relay_batches;
  sched.advance_time(std::chrono::milliseconds(20));
  for (int i = 0; i < 12; ++i)
    sched.run_once();
  CAF_CHECK_GREATER_OR_EQUAL(db->relay_batches, before + 3);
  CAF_CHECK_EQUAL(metrics->relay_yields.load(), 5u);
  // Drained (a batch that is not full): yielding starts over.
  db->relay_rows = 0;
  run();
  auto drained = db->relay_batches;
  after_ms(200);
  CAF_CHECK_EQUAL(db->relay_batches, drained);
  CAF_CHECK_EQUAL(metrics->relay_yields.load(), 6u);
}

CAF_TEST(opens committed since the last look count as busy) {
  metrics->opens_committed = 50;
  after_ms(200);  // changed since the last look: busy
  CAF_CHECK_EQUAL(metrics->relay_yields.load(), 1u);
  CAF_CHECK_EQUAL(db->relay_batches, 1);
  after_ms(20);  // no new commits, nothing queued: the relay runs
  CAF_CHECK_EQUAL(metrics->relay_yields.load(), 1u);
  CAF_CHECK_EQUAL(db->relay_batches, 2);
}

CAF_TEST(defer_max_ms 0 never yields) {
  relay_settings rc;
  rc.defer_max_ms = 0;
  rc.poll_ms = 200;
  rc.metrics = metrics;
  anon_send_exit(relay, caf::exit_reason::user_shutdown);
  run();
  auto before = db->relay_batches;
  relay = spawn_relay(sys, store, rc);
  run();
  metrics->queued_opens = 5;
  after_ms(200);
  after_ms(200);
  CAF_CHECK_EQUAL(db->relay_batches, before + 3);
  CAF_CHECK_EQUAL(metrics->relay_yields.load(), 0u);
}

CAF_TEST_FIXTURE_SCOPE_END()

// The store's dispatcher: which worker gets the next call. choose_worker on
// its own, then make_worker_pool with stand-in workers whose gauges say
// stuck, down or busy (the gauges are what real store workers keep up to
// date; tests/store/store_actor_test.cpp stops a real backend).
#define CAF_SUITE store.worker_pool
#include "caf/test/unit_test.hpp"

#include <chrono>
#include <map>
#include <memory>
#include <vector>

#include "caf/all.hpp"

#include "store/worker_pool.hpp"

using namespace hb;

namespace {

constexpr int64_t stuck_ms = 1000;

worker_view idle() { return {}; }
worker_view busy(int64_t ms, uint32_t queued = 1) {
  worker_view w;
  w.busy_ms = ms;
  w.queued = queued;
  return w;
}
worker_view down(bool due) {
  worker_view w;
  w.connected = false;
  w.retry_due = due;
  return w;
}

} // namespace

CAF_TEST(an idle connected worker is taken before any other) {
  std::vector<worker_view> ws{busy(10), down(true), idle(), busy(5000)};
  for (size_t start = 0; start < ws.size(); ++start)
    CAF_CHECK_EQUAL(choose_worker(ws, start, stuck_ms), 2u);
}

CAF_TEST(equal idle workers take turns from the start) {
  std::vector<worker_view> ws{idle(), idle(), idle()};
  CAF_CHECK_EQUAL(choose_worker(ws, 0, stuck_ms), 0u);
  CAF_CHECK_EQUAL(choose_worker(ws, 1, stuck_ms), 1u);
  CAF_CHECK_EQUAL(choose_worker(ws, 2, stuck_ms), 2u);
}

CAF_TEST(a stuck worker gets no work while another can take it) {
  // Round robin would give every third call to worker 0, stuck for 5 s.
  std::vector<worker_view> ws{busy(5000), busy(20, 3), busy(30, 2)};
  for (size_t start = 0; start < ws.size(); ++start)
    CAF_CHECK_EQUAL(choose_worker(ws, start, stuck_ms), 2u);
}

CAF_TEST(a down worker whose backoff ended reconnects on an idle turn) {
  std::vector<worker_view> ws{down(false), busy(20), down(true)};
  CAF_CHECK_EQUAL(choose_worker(ws, 0, stuck_ms), 2u);
  // Still backing off: not before a busy connected worker.
  ws[2] = down(false);
  CAF_CHECK_EQUAL(choose_worker(ws, 0, stuck_ms), 1u);
}

CAF_TEST(when every worker is stuck or down the least queued gets the call) {
  std::vector<worker_view> ws{busy(5000, 4), down(false), busy(9000, 2)};
  CAF_CHECK_EQUAL(choose_worker(ws, 0, stuck_ms), 1u);
  ws[1].queued = 7;
  CAF_CHECK_EQUAL(choose_worker(ws, 0, stuck_ms), 2u);
}

namespace {

// A stand-in worker: answers with its number and counts the call out, as
// a store worker does when its call ends.
caf::behavior stand_in(caf::event_based_actor*, int n,
                       std::shared_ptr<worker_gauge> g) {
  return {
    [=](int32_t) {
      g->queued.fetch_sub(1);
      return n;
    },
  };
}

struct pool_fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  std::vector<std::shared_ptr<worker_gauge>> gauges;
  caf::actor pool;

  explicit pool_fixture(int n = 3) {
    pool = make_worker_pool(
      sys, static_cast<size_t>(n),
      [this](std::shared_ptr<worker_gauge> g) {
        auto k = static_cast<int>(gauges.size());
        gauges.push_back(g);
        return sys.spawn(stand_in, k, g);
      },
      stuck_ms);
  }

  ~pool_fixture() {
    self->send_exit(pool, caf::exit_reason::user_shutdown);
  }

  /// Which worker answered each of `calls` calls.
  std::map<int, int> ask(int calls) {
    std::map<int, int> out;
    for (int i = 0; i < calls; ++i)
      self->request(pool, std::chrono::seconds(5), int32_t{i})
        .receive([&](int n) { ++out[n]; },
                 [&](caf::error& e) { CAF_FAIL("no answer: " << to_string(e)); });
    return out;
  }
};

} // namespace

CAF_TEST(the pool hands calls to the free connected worker only) {
  pool_fixture f;
  CAF_REQUIRE_EQUAL(f.gauges.size(), 3u);
  // Each free worker gets a share while all are free.
  auto spread = f.ask(30);
  CAF_CHECK_EQUAL(spread.size(), 3u);
  // Worker 0 stuck in a call for 5 s, worker 1's connection down and
  // backing off: every call goes to worker 2.
  f.gauges[0]->queued = 1;
  f.gauges[0]->call_started_ms = steady_ms() - 5000;
  f.gauges[1]->retry_at_ms = steady_ms() + 60000;
  auto routed = f.ask(30);
  CAF_CHECK_EQUAL(routed.size(), 1u);
  CAF_CHECK_EQUAL(routed[2], 30);
  // Worker 1's backoff ends while worker 2 is in a call: worker 1 takes
  // the calls (and would reconnect first) rather than queue behind it.
  f.gauges[1]->retry_at_ms = steady_ms() - 1;
  f.gauges[2]->queued = 1;
  f.gauges[2]->call_started_ms = steady_ms();
  auto after = f.ask(30);
  CAF_CHECK_EQUAL(after.size(), 1u);
  CAF_CHECK_EQUAL(after[1], 30);
  // The calls end: every worker is back in turn.
  f.gauges[0]->queued = 0;
  f.gauges[0]->call_started_ms = 0;
  f.gauges[1]->retry_at_ms = 0;
  f.gauges[2]->queued = 0;
  f.gauges[2]->call_started_ms = 0;
  auto back = f.ask(30);
  CAF_CHECK_EQUAL(back.size(), 3u);
  for (auto& g : f.gauges)
    CAF_CHECK_EQUAL(g->queued.load(), 0u);
}

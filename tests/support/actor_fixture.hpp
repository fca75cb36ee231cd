#pragma once

// Shared fixture of the actor unit tests: CAF's deterministic test
// coordinator, the fake store and a controllable wall clock.

#include "caf/test/dsl.hpp"

#include "envelope/envelope_actor.hpp"
#include "runtime/errors.hpp"
#include "runtime/messages.hpp"
#include "tests/support/fake_store.hpp"

namespace hb::test {

/// The k-th of a run of well-formed envelope ids of 2027-01-15, in segments
/// 101.. (the batcher tests; any well-formed ids do).
inline int64_t nth_envelope_id(int k) {
  return 2027011500000001000 + 1000 * k + 100 + k;
}

struct test_config : caf::actor_system_config {
  test_config() {
    add_hongbao_types(*this);
  }
};

struct actor_fixture : test_coordinator_fixture<test_config> {
  std::shared_ptr<fake_db> db = std::make_shared<fake_db>();
  fake_store_actor fake;
  store_actor store;
  passivation_sink sink;
  std::vector<std::pair<int64_t, uint64_t>> idle_reports;
  int64_t now = 1800000000000;  // 2027-01-15, Unix ms
  envelope_settings cfg;

  actor_fixture() {
    fake = spawn_fake_store(sys, db);
    store = caf::actor_cast<store_actor>(fake);
    sink = sys.spawn([this]() -> passivation_sink::behavior_type {
      return {
        [this](idle_atom, const idle_report& r) {
          idle_reports.emplace_back(r.envelope_id, r.handled);
        },
      };
    });
    cfg.now_ms = [this] { return now; };
    cfg.rng_seed = 7;
    cfg.share_max_fen = 20000;
    run();
  }

  // Runs messages only. The base fixture's run() would also fire every timer
  // at once, which makes idle checks race the test; timers fire here only
  // through advance_time().
  void run() {
    sched.run();
  }

  ~actor_fixture() {
    db->hold_commits = false;
    self->send(fake, release_atom::value);
    // Drain messages and timers while the members the sink writes to are
    // still alive (the base destructor would do it after they are gone).
    test_coordinator_fixture::run();
  }

  envelope_actor spawn_env(int64_t id) {
    auto a = spawn_envelope(sys, id, store, sink, cfg);
    run();
    return a;
  }

  template <class... Ts>
  auto ask(const envelope_actor& dest, Ts&&... xs) {
    return self->request(dest, caf::infinite, std::forward<Ts>(xs)...);
  }

  /// The value of an answered request, or its error as a failure.
  template <class T, class Handle>
  outcome<T> take(Handle& h) {
    outcome<T> out{failure{errc::internal, "no reply"}};
    h.receive([&](T& x) { out = std::move(x); },
              [&](caf::error& e) { out = to_failure(e); });
    return out;
  }

  void release_commits() {
    self->send(fake, release_atom::value);
    run();
  }
};

} // namespace hb::test

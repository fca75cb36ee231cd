#include "background/expiry_sweeper_actor.hpp"

#include <chrono>
#include <cstdlib>
#include <memory>

#include "caf/all.hpp"

#include <spdlog/spdlog.h>

#include "runtime/errors.hpp"
#include "runtime/log.hpp"

namespace hb {

namespace {

constexpr auto sweep_timeout = std::chrono::seconds(60);
constexpr auto clock_timeout = std::chrono::seconds(10);
// While expiry is held, the reason goes to the log at most this often.
constexpr auto held_log_interval = std::chrono::seconds(60);

struct sweeper_state {
  expiry_sweeper_settings cfg;
  maintenance_store store;
  envelope_requests owner;
  bool sweeping = false;
  int64_t after_id = 0;  // the next sweep's page starts after it (0: oldest)
  int64_t started = 0;
  int64_t refunded = 0;
  // -- the node's clock against the database's ---------------------------------
  bool skew_known = false;
  clock_skew skew;
  caf::actor_clock::time_point last_check;  // of the database's clock
  bool held = false;                         // expiry held for the skew
  caf::actor_clock::time_point held_logged;  // its last log line
  int64_t logged_skew_ms = 0;                // the skew last logged
  static inline const char* name = "hb.expiry_sweeper";
};

using sweeper_pointer = expiry_sweeper_actor::stateful_pointer<sweeper_state>;

void next_sweep(sweeper_pointer self, bool at_once) {
  self->state.sweeping = false;
  if (at_once)
    self->send(self, tick_atom::value);
  else
    self->delayed_send(self, std::chrono::milliseconds(self->state.cfg.interval_ms),
                       tick_atom::value);
}

// Asks the owner of every due envelope of one page to refund it; the next
// sweep starts when all of them have answered, so at most batch_max are in
// flight. The sweeps page through the due envelopes in (expiry, id) order
// and start again from the oldest after a page that was not full: the
// oldest due envelopes may sit in a failing segment and fail every time,
// and a sweep that always began with them would never reach the others.
void refund_all(sweeper_pointer self, std::vector<int64_t>& ids) {
  auto& st = self->state;
  bool full = static_cast<int32_t>(ids.size()) >= st.cfg.batch_max;
  st.after_id = full ? ids.back() : 0;
  if (ids.empty()) {
    next_sweep(self, false);
    return;
  }
  auto left = std::make_shared<size_t>(ids.size());
  auto progress = std::make_shared<bool>(false);
  // Sweep again at once only when this sweep got somewhere: a page that
  // failed entirely must not turn the sweeper into a busy loop.
  auto finish_one = [=] {
    if (--*left == 0)
      next_sweep(self, full && *progress);
  };
  for (auto id : ids) {
    ++st.started;
    self->request(st.owner, sweep_timeout, refund_atom::value, id)
      .then(
        [=](int64_t amount) {
          if (amount > 0)
            ++self->state.refunded;
          *progress = true;
          finish_one();
        },
        [=](caf::error& err) {
          actors_log().warn("expiry_refund_failed envelope={} error={}", id,
                            to_failure(err).message);
          finish_one();
        });
  }
}

void scan(sweeper_pointer self) {
  auto& st = self->state;
  self->request(st.store, sweep_timeout, db_expired_atom::value,
                expiry_query{st.cfg.now_ms(), st.cfg.batch_max, st.after_id})
    .then([=](std::vector<int64_t>& ids) { refund_all(self, ids); },
          [=](caf::error& err) {
            actors_log().warn("expiry_sweep_failed error={}",
                              to_failure(err).message);
            next_sweep(self, false);
          });
}

void publish(sweeper_pointer self) {
  auto& st = self->state;
  if (!st.cfg.metrics)
    return;
  st.cfg.metrics->clock_skew_ms.store(st.skew.skew_ms,
                                      std::memory_order_relaxed);
  st.cfg.metrics->clock_skew_uncertainty_ms.store(st.skew.uncertainty_ms,
                                                  std::memory_order_relaxed);
  st.cfg.metrics->clock_skew_checks.fetch_add(1, std::memory_order_relaxed);
  st.cfg.metrics->expiry_held.store(st.held ? 1 : 0, std::memory_order_relaxed);
}

// A new reading of the database's clock: the skew, whether it holds expiry
// (said in the log when that changes, and again now and then while it
// lasts), and a log line when it moved by a quarter of the bound.
void on_clock(sweeper_pointer self, int64_t sent_ms, int64_t received_ms,
              int64_t db_ms) {
  auto& st = self->state;
  st.skew = measure_skew(sent_ms, received_ms, db_ms);
  bool first = !st.skew_known;
  st.skew_known = true;
  bool held = skew_holds_expiry(st.skew, st.cfg.clock_skew_max_ms);
  auto now = self->clock().now();
  if (held && (!st.held || now - st.held_logged >= held_log_interval)) {
    st.held_logged = now;
    actors_log().error(
      "expiry_held clock_skew_ms={} uncertainty_ms={} bound_ms={}: this "
      "node's clock is {} the database's by more than [expiry] "
      "clock_skew_max_ms; no envelope is expired until they agree (the "
      "database refuses early refunds anyway); fix the node's time (NTP)",
      st.skew.skew_ms, st.skew.uncertainty_ms, st.cfg.clock_skew_max_ms,
      st.skew.skew_ms > 0 ? "ahead of" : "behind");
  } else if (!held && st.held) {
    actors_log().warn("expiry_resumed clock_skew_ms={} uncertainty_ms={} "
                      "bound_ms={}",
                      st.skew.skew_ms, st.skew.uncertainty_ms,
                      st.cfg.clock_skew_max_ms);
  } else if (first
             || std::llabs(st.skew.skew_ms - st.logged_skew_ms) * 4
                  > st.cfg.clock_skew_max_ms) {
    actors_log().info("clock_skew skew_ms={} uncertainty_ms={} bound_ms={} "
                      "(node clock minus database clock)",
                      st.skew.skew_ms, st.skew.uncertainty_ms,
                      st.cfg.clock_skew_max_ms);
    st.logged_skew_ms = st.skew.skew_ms;
  }
  if (held)
    st.logged_skew_ms = st.skew.skew_ms;
  st.held = held;
  publish(self);
}

// The sweep proper, once the skew is known well enough: held while the
// node's clock and the database's disagree by more than the bound.
void sweep(sweeper_pointer self) {
  auto& st = self->state;
  if (st.held) {
    if (st.cfg.metrics)
      st.cfg.metrics->expiry_held_sweeps.fetch_add(1, std::memory_order_relaxed);
    next_sweep(self, false);
    return;
  }
  scan(self);
}

// Reads the database's clock when the last reading is older than the check
// interval (a cheap SELECT), then sweeps. A reading that fails keeps the
// last one: the refund statement checks the database's clock in any case.
void check_clock_then_sweep(sweeper_pointer self) {
  auto& st = self->state;
  auto now = self->clock().now();
  if (st.skew_known
      && now - st.last_check
           < std::chrono::milliseconds(st.cfg.clock_check_interval_ms)) {
    sweep(self);
    return;
  }
  st.last_check = now;
  auto sent = st.cfg.now_ms();
  self->request(st.store, clock_timeout, db_clock_atom::value)
    .then(
      [=](int64_t db_ms) {
        on_clock(self, sent, self->state.cfg.now_ms(), db_ms);
        sweep(self);
      },
      [=](caf::error& err) {
        actors_log().debug("clock_check_failed error={}",
                           to_failure(err).message);
        sweep(self);
      });
}

expiry_sweeper_actor::behavior_type
sweeper_impl(sweeper_pointer self, maintenance_store store, envelope_requests owner,
             expiry_sweeper_settings cfg) {
  if (!cfg.now_ms)
    cfg.now_ms = system_now_ms;
  self->state.cfg = std::move(cfg);
  self->state.store = std::move(store);
  self->state.owner = std::move(owner);
  self->send(self, tick_atom::value);
  return {
    [=](tick_atom) {
      auto& st = self->state;
      if (st.sweeping)
        return;
      st.sweeping = true;
      check_clock_then_sweep(self);
    },
    [=](stats_atom) -> caf::result<int64_t, int64_t> {
      return {self->state.started, self->state.refunded};
    },
  };
}

} // namespace

clock_skew measure_skew(int64_t sent_ms, int64_t received_ms, int64_t db_ms) {
  // The database read its clock somewhere between sending and receiving:
  // compared with the middle, the error is at most half the round trip. A
  // node clock that stepped back meanwhile makes the round trip negative;
  // its magnitude still bounds the error.
  clock_skew out;
  out.skew_ms = sent_ms + (received_ms - sent_ms) / 2 - db_ms;
  out.uncertainty_ms = std::llabs(received_ms - sent_ms) / 2 + 1;
  return out;
}

bool skew_holds_expiry(const clock_skew& s, int64_t bound_ms) {
  return std::llabs(s.skew_ms) - s.uncertainty_ms > bound_ms;
}

expiry_sweeper_actor spawn_expiry_sweeper(caf::actor_system& sys,
                                          maintenance_store store,
                                          envelope_requests owner,
                                          const expiry_sweeper_settings& cfg) {
  return sys.spawn(sweeper_impl, std::move(store), std::move(owner), cfg);
}

} // namespace hb

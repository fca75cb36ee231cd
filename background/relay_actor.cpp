#include "background/relay_actor.hpp"

#include <algorithm>
#include <chrono>

#include "caf/all.hpp"

#include <spdlog/spdlog.h>

#include "runtime/errors.hpp"
#include "runtime/log.hpp"

namespace hb {

namespace {

constexpr auto relay_timeout = std::chrono::seconds(60);

struct relay_state {
  relay_settings cfg;
  ledger_store store;
  relay_stats stats;
  bool running = false;     // a batch is in flight
  bool catching_up = false; // yielded for defer_max_ms: drain before yielding again
  uint32_t yields = 0;      // pauses in a row for busy opens
  uint64_t seen_opens = 0;  // opens_committed at the last look
  uint32_t backoff_ms = 0;  // 0 while healthy
  std::chrono::steady_clock::time_point batch_start;
  std::chrono::steady_clock::time_point last_lag_log;
  static inline const char* name = "hb.relay";
};

using relay_pointer = relay_actor::stateful_pointer<relay_state>;

void schedule(relay_pointer self, uint32_t delay_ms) {
  if (delay_ms == 0)
    self->send(self, tick_atom::value);
  else
    self->delayed_send(self, std::chrono::milliseconds(delay_ms),
                       tick_atom::value);
}

void on_batch(relay_pointer self, const relay_batch_result& res) {
  auto& st = self->state;
  st.running = false;
  if (st.backoff_ms != 0)
    actors_log().info("relay_recovered");
  st.backoff_ms = 0;
  if (res.rows > 0) {
    ++st.stats.batches;
    st.stats.credited += res.credited;
    st.stats.credited_fen += res.credited_fen;
    st.stats.duplicates += res.duplicates;
    if (auto& m = st.cfg.metrics) {
      m->relay_batches.fetch_add(1, std::memory_order_relaxed);
      m->relay_credited.fetch_add(res.credited, std::memory_order_relaxed);
      m->relay_duplicates.fetch_add(res.duplicates, std::memory_order_relaxed);
      auto spent = std::chrono::steady_clock::now() - st.batch_start;
      m->relay_busy_ms.fetch_add(
        std::chrono::duration_cast<std::chrono::milliseconds>(spent).count(),
        std::memory_order_relaxed);
    }
    actors_log().debug("relay_batch rows={} credited={} duplicates={}",
                       res.rows, res.credited, res.duplicates);
  }
  // A full batch means more is waiting: drain without pausing; while behind,
  // say how far from time to time.
  bool behind = res.rows >= st.cfg.batch_max;
  auto now = std::chrono::steady_clock::now();
  if (behind && now - st.last_lag_log >= std::chrono::milliseconds(st.cfg.lag_log_ms)) {
    st.last_lag_log = now;
    self->request(st.store, relay_timeout, db_lag_atom::value)
      .then(
        [](int64_t pending, int64_t oldest_age_ms) {
          actors_log().info("relay_lag pending={} oldest_age_ms={}", pending,
                            oldest_age_ms);
        },
        [](caf::error&) {});
  }
  if (!behind)
    st.catching_up = false;
  schedule(self, behind ? 0 : st.cfg.poll_ms);
}

/// Whether to let the opens have the database for yield_ms more: they are
/// busy (opens queued, or committed since the last look) and the relay has
/// not yielded for defer_max_ms in a row. Counted in ticks, not clock time,
/// so that the simulation replays it exactly.
bool should_yield(relay_pointer self) {
  auto& st = self->state;
  auto& m = st.cfg.metrics;
  if (!m || st.cfg.defer_max_ms == 0 || st.cfg.yield_ms == 0 || st.catching_up)
    return false;
  auto opens = m->opens_committed.load(std::memory_order_relaxed);
  bool busy = m->queued_opens.load(std::memory_order_relaxed) > 0
              || opens != st.seen_opens;
  st.seen_opens = opens;
  if (!busy) {
    st.yields = 0;
    return false;
  }
  if (st.yields * st.cfg.yield_ms < st.cfg.defer_max_ms) {
    ++st.yields;
    m->relay_yields.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  st.yields = 0;
  st.catching_up = true;
  return false;
}

void on_failure(relay_pointer self, const caf::error& err) {
  auto& st = self->state;
  st.running = false;
  ++st.stats.failures;
  st.backoff_ms = st.backoff_ms == 0
                    ? 100
                    : std::min(st.backoff_ms * 2, st.cfg.backoff_max_ms);
  actors_log().warn("relay_batch_failed error={} retry_in_ms={}",
                    to_failure(err).message, st.backoff_ms);
  schedule(self, st.backoff_ms);
}

relay_actor::behavior_type relay_impl(relay_pointer self, ledger_store store,
                                      relay_settings cfg) {
  self->state.cfg = cfg;
  self->state.store = std::move(store);
  schedule(self, 0);
  return {
    [=](tick_atom) {
      auto& st = self->state;
      if (st.running)
        return;
      if (should_yield(self)) {
        schedule(self, st.cfg.yield_ms);
        return;
      }
      st.running = true;
      st.batch_start = std::chrono::steady_clock::now();
      self->request(st.store, relay_timeout, db_relay_atom::value,
                    st.cfg.batch_max)
        .then([=](relay_batch_result& res) { on_batch(self, res); },
              [=](caf::error& err) { on_failure(self, err); });
    },
    [=](stats_atom) -> caf::result<relay_stats> {
      auto rp = self->make_response_promise<relay_stats>();
      self->request(self->state.store, relay_timeout, db_lag_atom::value)
        .then(
          [=](int64_t pending, int64_t oldest_age_ms) mutable {
            auto out = self->state.stats;
            out.pending = pending;
            out.oldest_age_ms = oldest_age_ms;
            rp.deliver(out);
          },
          [=](caf::error& err) mutable { rp.deliver(err); });
      return rp;
    },
  };
}

} // namespace

relay_actor spawn_relay(caf::actor_system& sys, ledger_store store,
                        const relay_settings& cfg) {
  return sys.spawn(relay_impl, std::move(store), cfg);
}

} // namespace hb

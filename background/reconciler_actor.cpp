#include "background/reconciler_actor.hpp"

#include <chrono>
#include <deque>
#include <vector>

#include "caf/all.hpp"

#include <spdlog/spdlog.h>

#include "envelope/envelope_actor.hpp"
#include "runtime/errors.hpp"
#include "runtime/log.hpp"

namespace hb {

namespace {

constexpr auto reconcile_timeout = std::chrono::minutes(10);

// One queued run: who asked (nobody for a periodic run) and its window.
struct pending_run {
  int64_t since_ms = 0;
  caf::typed_response_promise<reconcile_report> promise;
  bool periodic = false;
};

struct reconciler_state {
  reconciler_settings cfg;
  ledger_store store;
  bool running = false;
  std::deque<pending_run> queue;  // bounded by queue_max
  static inline const char* name = "hb.reconciler";
};

// Runs are heavy (they read every account and the whole window): at most
// this many wait; more get BUSY.
constexpr size_t queue_max = 16;

using reconciler_pointer = reconciler_actor::stateful_pointer<reconciler_state>;

void log_report(const reconcile_report& r) {
  if (r.discrepancies.empty()) {
    actors_log().info("reconcile_ok envelopes={} opens={} accounts={} "
                      "relay_pending={}",
                      r.envelopes_checked, r.opens_checked, r.accounts_checked,
                      r.relay_pending);
    return;
  }
  for (auto& d : r.discrepancies)
    actors_log().error("reconcile_discrepancy kind={} envelope={} user={} "
                       "repaired={} detail={}",
                       d.kind, d.envelope_id, log_safe(d.user), d.repaired,
                       log_safe(d.detail));
}

// A report travels to clients in one frame: past this many discrepancies
// the rest are summarised in one explicit "truncated" entry.
constexpr size_t discrepancies_max = 1000;

void cap_report(reconcile_report& r) {
  if (r.discrepancies.size() <= discrepancies_max)
    return;
  auto more = r.discrepancies.size() - discrepancies_max;
  r.discrepancies.resize(discrepancies_max);
  r.discrepancies.push_back(discrepancy{
    "truncated", 0, {},
    std::to_string(more) + " more discrepancies not listed; see the node log",
    false});
}

// Starts the next queued run unless one is running.
void run_next(reconciler_pointer self) {
  auto& st = self->state;
  if (st.running || st.queue.empty())
    return;
  st.running = true;
  auto since_ms = st.queue.front().since_ms;
  self->request(st.store, reconcile_timeout, db_reconcile_atom::value,
                reconcile_run{since_ms, st.cfg.now_ms(), true})
    .then(
      [=](reconcile_report& report) {
        auto& st = self->state;
        log_report(report);
        cap_report(report);
        auto job = std::move(st.queue.front());
        st.queue.pop_front();
        if (!job.periodic)
          job.promise.deliver(std::move(report));
        st.running = false;
        run_next(self);
      },
      [=](caf::error& err) {
        auto& st = self->state;
        actors_log().warn("reconcile_failed error={}", to_failure(err).message);
        auto job = std::move(st.queue.front());
        st.queue.pop_front();
        if (!job.periodic)
          job.promise.deliver(err);
        st.running = false;
        run_next(self);
      });
}

reconciler_actor::behavior_type reconciler_impl(reconciler_pointer self,
                                                ledger_store store,
                                                reconciler_settings cfg) {
  if (!cfg.now_ms)
    cfg.now_ms = system_now_ms;
  self->state.cfg = std::move(cfg);
  self->state.store = std::move(store);
  if (self->state.cfg.interval_s > 0)
    self->delayed_send(self, std::chrono::seconds(self->state.cfg.interval_s),
                       tick_atom::value);
  return {
    [=](tick_atom) {
      auto& st = self->state;
      // A periodic run is skipped while others wait: it would only repeat them.
      if (st.queue.empty()) {
        pending_run job;
        job.since_ms = st.cfg.now_ms() - int64_t{st.cfg.window_s} * 1000;
        job.periodic = true;
        st.queue.push_back(std::move(job));
        run_next(self);
      }
      self->delayed_send(self, std::chrono::seconds(st.cfg.interval_s),
                         tick_atom::value);
    },
    [=](reconcile_atom, int64_t since_ms) -> caf::result<reconcile_report> {
      auto& st = self->state;
      if (st.queue.size() >= queue_max)
        return make_error(errc::busy, "reconciliations are queued up; retry");
      pending_run job;
      job.since_ms = since_ms;
      job.promise = self->make_response_promise<reconcile_report>();
      auto rp = job.promise;
      st.queue.push_back(std::move(job));
      run_next(self);
      return rp;
    },
  };
}

} // namespace

reconciler_actor spawn_reconciler(caf::actor_system& sys, ledger_store store,
                                  const reconciler_settings& cfg) {
  return sys.spawn(reconciler_impl, std::move(store), cfg);
}

} // namespace hb

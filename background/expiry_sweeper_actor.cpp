#include "background/expiry_sweeper_actor.hpp"

#include <chrono>
#include <memory>

#include "caf/all.hpp"

#include <spdlog/spdlog.h>

#include "runtime/errors.hpp"
#include "runtime/log.hpp"

namespace hb {

namespace {

constexpr auto sweep_timeout = std::chrono::seconds(60);

struct sweeper_state {
  expiry_sweeper_settings cfg;
  maintenance_store store;
  envelope_requests owner;
  bool sweeping = false;
  int64_t after_id = 0;  // the next sweep's page starts after it (0: oldest)
  int64_t started = 0;
  int64_t refunded = 0;
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
      self->request(st.store, sweep_timeout, db_expired_atom::value,
                    expiry_query{st.cfg.now_ms(), st.cfg.batch_max,
                                 st.after_id})
        .then([=](std::vector<int64_t>& ids) { refund_all(self, ids); },
              [=](caf::error& err) {
                actors_log().warn("expiry_sweep_failed error={}",
                                  to_failure(err).message);
                next_sweep(self, false);
              });
    },
    [=](stats_atom) -> caf::result<int64_t, int64_t> {
      return {self->state.started, self->state.refunded};
    },
  };
}

} // namespace

expiry_sweeper_actor spawn_expiry_sweeper(caf::actor_system& sys,
                                          maintenance_store store,
                                          envelope_requests owner,
                                          const expiry_sweeper_settings& cfg) {
  return sys.spawn(sweeper_impl, std::move(store), std::move(owner), cfg);
}

} // namespace hb

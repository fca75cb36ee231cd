#include "background/partition_keeper_actor.hpp"

#include <chrono>

#include "caf/all.hpp"

#include <spdlog/spdlog.h>

#include "envelope/envelope_actor.hpp"
#include "runtime/errors.hpp"
#include "runtime/log.hpp"
#include "domain/envelope_id.hpp"

namespace hb {

namespace {

constexpr auto keeper_timeout = std::chrono::minutes(5);
constexpr int64_t day_ms = 24LL * 3600 * 1000;

struct keeper_state {
  partition_keeper_settings cfg;
  maintenance_store store;
  static inline const char* name = "hb.partition_keeper";
};

using keeper_pointer = partition_keeper_actor::stateful_pointer<keeper_state>;

void keep(keeper_pointer self) {
  auto& st = self->state;
  auto now = st.cfg.now_ms();
  auto from = day_offset(now, -1);
  auto to = day_offset(now, st.cfg.ahead_days);
  auto cutoff = day_offset(now, -st.cfg.hot_days);
  self->request(st.store, keeper_timeout, db_partitions_atom::value, from, to)
    .then(
      [=](int created) {
        if (created > 0)
          actors_log().info("partitions_created tables={} from={} to={}",
                            created, from, to);
        self->request(self->state.store, keeper_timeout,
                      db_detach_atom::value, cutoff)
          .then(
            [=](int moved) {
              if (moved > 0)
                actors_log().info("partitions_moved_cold days={} before={}",
                                  moved, cutoff);
            },
            [=](caf::error& err) {
              actors_log().warn("partitions_detach_failed error={}",
                                to_failure(err).message);
            });
      },
      [=](caf::error& err) {
        actors_log().warn("partitions_create_failed error={}",
                          to_failure(err).message);
      });
}

partition_keeper_actor::behavior_type keeper_impl(keeper_pointer self,
                                                  maintenance_store store,
                                                  partition_keeper_settings cfg) {
  if (!cfg.now_ms)
    cfg.now_ms = system_now_ms;
  self->state.cfg = std::move(cfg);
  self->state.store = std::move(store);
  self->send(self, tick_atom::value);
  return {
    [=](tick_atom) {
      keep(self);
      self->delayed_send(self, std::chrono::seconds(self->state.cfg.interval_s),
                         tick_atom::value);
    },
  };
}

} // namespace

int32_t day_offset(int64_t unix_ms, int32_t delta) {
  return utc_day_of(unix_ms + delta * day_ms);
}

partition_keeper_actor
spawn_partition_keeper(caf::actor_system& sys, maintenance_store store,
                       const partition_keeper_settings& cfg) {
  return sys.spawn(keeper_impl, std::move(store), cfg);
}

} // namespace hb

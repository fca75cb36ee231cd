#include "actors/store_actor.hpp"

#include <chrono>
#include <memory>

#include "caf/actor_pool.hpp"
#include "caf/all.hpp"

#include <spdlog/spdlog.h>

#include "actors/log.hpp"

#include "actors/errors.hpp"
#include "persistence/pg_store.hpp"

namespace hb {

namespace {

using persistence::pg_store;

struct store_worker_state {
  store_settings cfg;
  std::unique_ptr<pg_store> db;
  std::chrono::steady_clock::time_point next_connect_attempt{};
  static inline const char* name = "hb.store_worker";
};

using worker_actor = store_actor::stateful_pointer<store_worker_state>;

// Returns the connection, reconnecting at most once per interval. A worker
// owns its connection: this runs on the worker's own thread.
pg_store* connection(worker_actor self) {
  auto& st = self->state;
  if (st.db && st.db->connected())
    return st.db.get();
  auto now = std::chrono::steady_clock::now();
  if (st.db == nullptr) {
    if (now < st.next_connect_attempt)
      return nullptr;
    st.next_connect_attempt
      = now + std::chrono::milliseconds(st.cfg.reconnect_interval_ms);
    auto res = pg_store::connect(st.cfg.database_url);
    if (!res) {
      actors_log().warn("store_connect_failed error={}", res.error().message);
      return nullptr;
    }
    st.db = std::move(*res);
    actors_log().info("store_connected");
  }
  // A known connection that dropped: pg_store reconnects inside its calls.
  return st.db.get();
}

template <class T>
caf::result<T> lift(outcome<T>&& res) {
  if (res)
    return std::move(*res);
  return make_error(res.error());
}

caf::result<caf::ok_atom> lift_done(outcome<done>&& res) {
  if (res)
    return caf::ok_atom::value;
  return make_error(res.error());
}

caf::error not_connected() {
  return make_error(errc::unavailable, "database unavailable");
}

store_actor::behavior_type store_worker(worker_actor self, store_settings cfg) {
  self->state.cfg = std::move(cfg);
  connection(self);
  return {
    [=](db_create_atom, envelope& env) -> caf::result<envelope, bool> {
      auto db = connection(self);
      if (db == nullptr)
        return not_connected();
      auto res = db->create_envelope(env);
      if (!res)
        return make_error(res.error());
      return {std::move(res->env), res->created};
    },
    [=](db_activate_atom, int64_t id) -> caf::result<envelope_snapshot> {
      auto db = connection(self);
      if (db == nullptr)
        return not_connected();
      return lift(db->activate(id));
    },
    [=](db_load_atom, int64_t id) -> caf::result<envelope_snapshot> {
      auto db = connection(self);
      if (db == nullptr)
        return not_connected();
      return lift(db->load(id));
    },
    [=](db_pay_atom, payment& p) -> caf::result<caf::ok_atom> {
      auto db = connection(self);
      if (db == nullptr)
        return not_connected();
      return lift_done(db->confirm_payment(p));
    },
    [=](db_commit_atom, open_batch& batch) -> caf::result<caf::ok_atom> {
      auto db = connection(self);
      if (db == nullptr)
        return not_connected();
      return lift_done(db->commit_opens(batch));
    },
    [=](db_lease_atom, int32_t segment, int32_t day,
        int64_t block) -> caf::result<int64_t> {
      auto db = connection(self);
      if (db == nullptr)
        return not_connected();
      return lift(db->lease_sequence(segment, day, block));
    },
  };
}

} // namespace

store_actor spawn_pg_store(caf::actor_system& sys, const store_settings& cfg) {
  auto factory = [&sys, cfg] {
    return caf::actor_cast<caf::actor>(
      sys.spawn<caf::detached>(store_worker, cfg));
  };
  auto pool = caf::actor_pool::make(sys.dummy_execution_unit(), cfg.pool_size,
                                    factory, caf::actor_pool::round_robin());
  return caf::actor_cast<store_actor>(pool);
}

} // namespace hb

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

// Runs `f` on the worker's connection, or fails fast while it is down.
template <class... Ts, class F>
caf::result<Ts...> with_db(worker_actor self, F f) {
  auto db = connection(self);
  if (db == nullptr)
    return not_connected();
  return f(*db);
}

store_actor::behavior_type store_worker(worker_actor self, store_settings cfg) {
  self->state.cfg = std::move(cfg);
  connection(self);
  return {
    [=](db_create_atom, envelope& env) -> caf::result<envelope, bool> {
      return with_db<envelope, bool>(
        self, [&](pg_store& db) -> caf::result<envelope, bool> {
          auto res = db.create_envelope(env);
          if (!res)
            return make_error(res.error());
          return {std::move(res->env), res->created};
        });
    },
    [=](db_activate_atom, int64_t id) -> caf::result<envelope_snapshot> {
      return with_db<envelope_snapshot>(self, [&](pg_store& db) {
        return lift(db.activate(id));
      });
    },
    [=](db_load_atom, int64_t id) -> caf::result<envelope_snapshot> {
      return with_db<envelope_snapshot>(self, [&](pg_store& db) {
        return lift(db.load(id));
      });
    },
    [=](db_pay_atom, payment& p) -> caf::result<caf::ok_atom> {
      return with_db<caf::ok_atom>(self, [&](pg_store& db) {
        return lift_done(db.confirm_payment(p));
      });
    },
    [=](db_commit_atom, open_batch& batch) -> caf::result<caf::ok_atom> {
      return with_db<caf::ok_atom>(self, [&](pg_store& db) {
        return lift_done(db.commit_opens(batch));
      });
    },
    [=](db_lease_atom, int32_t segment, int32_t day,
        int64_t block) -> caf::result<int64_t> {
      return with_db<int64_t>(self, [&](pg_store& db) {
        return lift(db.lease_sequence(segment, day, block));
      });
    },
    [=](db_refund_atom, int64_t id, int64_t epoch) -> caf::result<int64_t> {
      return with_db<int64_t>(self, [&](pg_store& db) {
        return lift(db.refund(id, epoch));
      });
    },
    [=](db_relay_atom, int32_t limit) -> caf::result<relay_batch_result> {
      return with_db<relay_batch_result>(self, [&](pg_store& db) {
        return lift(db.relay_batch(limit));
      });
    },
    [=](db_lag_atom) -> caf::result<int64_t, int64_t> {
      return with_db<int64_t, int64_t>(
        self, [&](pg_store& db) -> caf::result<int64_t, int64_t> {
          auto res = db.outbox_lag();
          if (!res)
            return make_error(res.error());
          return {res->pending, res->oldest_age_ms};
        });
    },
    [=](db_expired_atom, int64_t now_ms,
        int32_t limit) -> caf::result<std::vector<int64_t>> {
      return with_db<std::vector<int64_t>>(self, [&](pg_store& db) {
        return lift(db.expired_envelopes(now_ms, limit));
      });
    },
    [=](db_history_atom, history_query& q) -> caf::result<history_page> {
      return with_db<history_page>(self, [&](pg_store& db) {
        return lift(db.history(q));
      });
    },
    [=](db_balance_atom, std::string& user) -> caf::result<balance_info> {
      return with_db<balance_info>(self, [&](pg_store& db) {
        return lift(db.balance(user));
      });
    },
    [=](db_reconcile_atom, int64_t since_ms, int64_t now_ms,
        bool repair) -> caf::result<reconcile_report> {
      return with_db<reconcile_report>(self, [&](pg_store& db) {
        return lift(db.reconcile(since_ms, now_ms, repair));
      });
    },
    [=](db_partitions_atom, int32_t from, int32_t to) -> caf::result<int> {
      return with_db<int>(self, [&](pg_store& db) {
        return lift(db.ensure_partitions(from, to));
      });
    },
    [=](db_detach_atom, int32_t cutoff) -> caf::result<int> {
      return with_db<int>(self, [&](pg_store& db) {
        return lift(db.detach_cold(cutoff));
      });
    },
    [=](db_deposit_atom, std::string& user, int64_t amount,
        std::string& key) -> caf::result<caf::ok_atom> {
      return with_db<caf::ok_atom>(self, [&](pg_store& db) {
        return lift_done(db.deposit(user, amount, key));
      });
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

#include "store/store_actor.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <set>

#include "caf/all.hpp"

#include <spdlog/spdlog.h>

#include "runtime/errors.hpp"
#include "runtime/log.hpp"
#include "domain/envelope_id.hpp"
#include "persistence/pg_store.hpp"
#include "store/worker_pool.hpp"

namespace hb {

namespace {

using persistence::pg_store;

// What the workers of one pool share: how many times one of them
// reconnected. A worker waiting out its backoff tries again at once when a
// sibling got through since its own last failure: the database is back, and
// requests that reach it should not fail for up to the backoff's cap while
// its siblings serve.
//
// And how many calls hit their deadline. One stalled connection makes the
// others suspect (a stopped server or a black-holed path hangs them all,
// but each worker only finds out in its next call): a worker that has not
// probed since the last stall first probes its connection with a short
// deadline, so that a hot envelope's next write does not wait out a full
// deadline on every worker in turn.
struct pool_shared {
  std::atomic<uint64_t> reconnects{0};
  std::atomic<uint64_t> stalls{0};
};

/// The probe's deadline: long enough for a loaded healthy server, short
/// against call_timeout_ms.
constexpr uint32_t probe_timeout_ms_max = 500;

struct store_worker_state {
  store_settings cfg;
  std::shared_ptr<pool_shared> pool;
  std::shared_ptr<worker_gauge> gauge;  // what the dispatcher sees
  std::unique_ptr<pg_store> db;
  std::chrono::steady_clock::time_point next_attempt{};
  uint32_t backoff_ms = 0;  // 0 while connected
  uint64_t reconnects_seen = 0;  // pool->reconnects at the last failure
  uint64_t stalls_seen = 0;      // pool->stalls at this worker's last probe
  static inline const char* name = "hb.store_worker";
};

using worker_actor = store_actor::stateful_pointer<store_worker_state>;

persistence::connection_options options_of(const store_config& c) {
  persistence::connection_options o;
  o.keepalives_idle_s = c.keepalives_idle_s;
  o.keepalives_interval_s = c.keepalives_interval_s;
  o.keepalives_count = c.keepalives_count;
  o.tcp_user_timeout_ms = c.tcp_user_timeout_ms;
  o.statement_timeout_ms = c.statement_timeout_ms;
  o.lock_timeout_ms = c.lock_timeout_ms;
  o.idle_in_transaction_session_timeout_ms
    = c.idle_in_transaction_session_timeout_ms;
  o.client_connection_check_interval_ms
    = c.client_connection_check_interval_ms;
  o.call_timeout_ms = c.call_timeout_ms;
  return o;
}

// The connection lost or never made: wait before the next attempt, doubling
// the wait up to the cap, so that a database outage costs one cheap failure
// per request instead of a connection attempt.
void back_off(worker_actor self) {
  auto& st = self->state;
  if (st.backoff_ms == 0)
    actors_log().warn("store_connection_lost retry_in_ms={}",
                      st.cfg.reconnect_interval_ms);
  st.backoff_ms = st.backoff_ms == 0
                    ? st.cfg.reconnect_interval_ms
                    : std::min(st.backoff_ms * 2, st.cfg.reconnect_interval_max_ms);
  st.next_attempt = std::chrono::steady_clock::now()
                    + std::chrono::milliseconds(st.backoff_ms);
  st.gauge->retry_at_ms.store(steady_ms() + st.backoff_ms,
                              std::memory_order_relaxed);
  st.reconnects_seen = st.pool->reconnects.load(std::memory_order_relaxed);
}

// Whether to wait longer before trying to connect: the backoff runs and no
// sibling has reconnected since this worker last failed.
bool waiting_out_backoff(const store_worker_state& st) {
  return std::chrono::steady_clock::now() < st.next_attempt
         && st.pool->reconnects.load(std::memory_order_relaxed)
              == st.reconnects_seen;
}

// Returns the connection, or nullptr while it is down and the backoff has
// not expired. A worker owns its connection: this runs on its own thread.
pg_store* connection(worker_actor self) {
  auto& st = self->state;
  if (st.db && st.db->connected())
    return st.db.get();
  if (waiting_out_backoff(st))
    return nullptr;
  if (st.db == nullptr) {
    auto res = pg_store::connect(st.cfg.database_url, options_of(st.cfg));
    if (!res) {
      back_off(self);
      return nullptr;
    }
    st.db = std::move(*res);
    st.db->set_identity(st.cfg.identity);
  } else if (!st.db->exec("SELECT 1")) {  // reconnects inside
    back_off(self);
    return nullptr;
  }
  if (st.backoff_ms != 0) {
    actors_log().info("store_reconnected after_backoff_ms={}", st.backoff_ms);
    st.pool->reconnects.fetch_add(1, std::memory_order_relaxed);
  }
  st.backoff_ms = 0;
  st.gauge->retry_at_ms.store(0, std::memory_order_relaxed);
  st.stalls_seen = st.pool->stalls.load(std::memory_order_relaxed);
  // A new backend: prepare today's commit statements now rather than in the
  // first commit that comes this way (see pg_store::warm_up).
  auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  if (!st.db->warm_up(utc_day_of(now_ms)))
    actors_log().debug("store_warm_up_skipped");
  return st.db.get();
}

// Tells the segment health supervisor how a call on a segment's data went.
// A lost connection is the database's problem, not the segment's.
template <class T>
outcome<T> reported(worker_actor self, int32_t segment, outcome<T> res) {
  auto& st = self->state;
  bool lost = st.db == nullptr || !st.db->connected();
  if (!res && res.error().code == errc::not_owner && st.cfg.metrics)
    st.cfg.metrics->owner_refusals.fetch_add(1, std::memory_order_relaxed);
  if (st.cfg.health && !(lost && !res)) {
    bool fault = !res && res.error().code == errc::unavailable;
    self->send(st.cfg.health, seg_report_atom::value, segment, fault);
  }
  return res;
}

// A transaction over the data of many segments (the batchers') that
// worked: each segment worked. One that failed is not charged to any of
// them: the batcher sends each request alone, and those are reported on
// their own segment (a fault of one segment must not count against the
// others of the batch).
void report_success(worker_actor self, const std::set<int32_t>& segments) {
  for (auto seg : segments)
    reported(self, seg, outcome<done>{done{}});
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

// One call as the dispatcher sees it: running from here, and counted out
// of the worker's queue when it ends, whatever the outcome.
class call_scope {
public:
  explicit call_scope(worker_gauge& g) : g_(g) {
    g_.call_started_ms.store(steady_ms(), std::memory_order_relaxed);
  }
  ~call_scope() {
    g_.call_started_ms.store(0, std::memory_order_relaxed);
    g_.queued.fetch_sub(1, std::memory_order_relaxed);
  }
  call_scope(const call_scope&) = delete;
  call_scope& operator=(const call_scope&) = delete;

private:
  worker_gauge& g_;
};

// Whether a sibling's call hit its deadline since this worker last looked
// and a short probe of this worker's connection then failed (the probe
// dropped it; the caller reconnects). A connection made after the stall is
// not probed.
bool suspect(worker_actor self) {
  auto& st = self->state;
  auto stalls = st.pool->stalls.load(std::memory_order_relaxed);
  if (stalls == st.stalls_seen || st.cfg.call_timeout_ms == 0)
    return false;
  st.stalls_seen = stalls;
  st.db->set_call_timeout(std::min(st.cfg.call_timeout_ms, probe_timeout_ms_max));
  auto ok = st.db->exec("SELECT 1").ok();
  st.db->set_call_timeout(st.cfg.call_timeout_ms);
  if (ok)
    return false;
  actors_log().warn("store_probe_failed after_stall={}", stalls);
  return !st.db->connected();
}

// Runs `f` on the worker's connection, or fails fast while it is down.
// Every statement of `f` has the call deadline (call_timeout_ms): a
// database that stops answering costs this worker one deadline, then the
// connection is dropped and the worker serves again (after a reconnect).
template <class... Ts, class F>
caf::result<Ts...> with_db(worker_actor self, F f) {
  call_scope scope{*self->state.gauge};
  auto db = connection(self);
  if (db != nullptr && suspect(self))
    db = connection(self);  // the probe failed: reconnect now
  if (db == nullptr)
    return not_connected();
  auto start = std::chrono::steady_clock::now();
  auto res = f(*db);
  auto took = std::chrono::steady_clock::now() - start;
  if (auto& m = self->state.cfg.metrics)
    m->store_latency_us.record(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(took).count()));
  if (!db->connected()) {
    auto took_ms
      = std::chrono::duration_cast<std::chrono::milliseconds>(took).count();
    auto limit = self->state.cfg.call_timeout_ms;
    if (limit > 0 && took_ms >= limit) {
      actors_log().warn("store_call_deadline_passed took_ms={} "
                        "call_timeout_ms={}",
                        took_ms, limit);
      self->state.stalls_seen
        = self->state.pool->stalls.fetch_add(1, std::memory_order_relaxed) + 1;
    }
    back_off(self);
  }
  return res;
}

store_actor::behavior_type store_worker(worker_actor self, store_settings cfg,
                                        std::shared_ptr<pool_shared> pool,
                                        std::shared_ptr<worker_gauge> gauge) {
  self->state.cfg = std::move(cfg);
  self->state.pool = std::move(pool);
  self->state.gauge = std::move(gauge);
  connection(self);
  return {
    [=](db_create_atom, envelope& env) -> caf::result<envelope, bool> {
      return with_db<envelope, bool>(
        self, [&](pg_store& db) -> caf::result<envelope, bool> {
          auto res = reported(self, segment_of(env.id), db.create_envelope(env));
          if (!res)
            return make_error(res.error());
          return {std::move(res->env), res->created};
        });
    },
    [=](db_create_many_atom,
        std::vector<envelope>& envs) -> caf::result<std::vector<envelope>> {
      return with_db<std::vector<envelope>>(
        self, [&](pg_store& db) -> caf::result<std::vector<envelope>> {
          auto res = db.create_envelopes(envs);
          if (res) {
            std::set<int32_t> segments;
            for (auto& e : envs)
              segments.insert(segment_of(e.id));
            report_success(self, segments);
          }
          return lift(std::move(res));
        });
    },
    [=](db_activate_atom, int64_t id) -> caf::result<envelope_snapshot> {
      return with_db<envelope_snapshot>(self, [&](pg_store& db) {
        return lift(reported(self, segment_of(id), db.activate(id)));
      });
    },
    [=](db_activate_many_atom, std::vector<int64_t>& ids)
      -> caf::result<std::vector<envelope_snapshot>> {
      return with_db<std::vector<envelope_snapshot>>(
        self, [&](pg_store& db) -> caf::result<std::vector<envelope_snapshot>> {
          auto res = db.activate_many(ids);
          if (res) {
            std::set<int32_t> segments;
            for (auto id : ids)
              segments.insert(segment_of(id));
            report_success(self, segments);
          }
          return lift(std::move(res));
        });
    },
    [=](db_load_atom, int64_t id) -> caf::result<envelope_snapshot> {
      return with_db<envelope_snapshot>(self, [&](pg_store& db) {
        return lift(reported(self, segment_of(id), db.load(id)));
      });
    },
    [=](db_pay_atom, payment& p) -> caf::result<caf::ok_atom> {
      return with_db<caf::ok_atom>(self, [&](pg_store& db) {
        return lift_done(
          reported(self, segment_of(p.envelope_id), db.confirm_payment(p)));
      });
    },
    [=](db_pay_many_atom,
        std::vector<payment>& ps) -> caf::result<std::vector<int64_t>> {
      return with_db<std::vector<int64_t>>(
        self, [&](pg_store& db) -> caf::result<std::vector<int64_t>> {
          auto res = db.confirm_payments(ps);
          if (res) {
            std::set<int32_t> segments;
            for (auto& p : ps)
              segments.insert(segment_of(p.envelope_id));
            report_success(self, segments);
          }
          return lift(std::move(res));
        });
    },
    [=](db_commit_atom, open_batch& batch) -> caf::result<caf::ok_atom> {
      return with_db<caf::ok_atom>(self, [&](pg_store& db) {
        return lift_done(reported(self, segment_of(batch.envelope_id),
                                  db.commit_opens(batch)));
      });
    },
    [=](db_commit_many_atom,
        std::vector<open_batch>& batches) -> caf::result<std::vector<int32_t>> {
      return with_db<std::vector<int32_t>>(
        self, [&](pg_store& db) -> caf::result<std::vector<int32_t>> {
          auto res = db.commit_many(batches);
          if (!res) {
            for (auto& b : batches)
              reported(self, segment_of(b.envelope_id), outcome<done>{res.error()});
            return make_error(res.error());
          }
          std::vector<int32_t> codes;
          for (size_t i = 0; i < batches.size(); ++i) {
            auto& f = (*res)[i];
            reported(self, segment_of(batches[i].envelope_id),
                     f.code == errc::none ? outcome<done>{done{}}
                                          : outcome<done>{f});
            codes.push_back(static_cast<int32_t>(f.code));
          }
          return codes;
        });
    },
    [=](db_lease_atom, const lease_request& r) -> caf::result<int64_t> {
      return with_db<int64_t>(self, [&](pg_store& db) {
        return lift(reported(self, r.segment,
                             db.lease_sequence(r.segment, r.day, r.block)));
      });
    },
    [=](db_refund_atom, int64_t id, int64_t epoch) -> caf::result<int64_t> {
      return with_db<int64_t>(self, [&](pg_store& db) {
        return lift(reported(self, segment_of(id), db.refund(id, epoch)));
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
    [=](db_expired_atom,
        const expiry_query& q) -> caf::result<std::vector<int64_t>> {
      return with_db<std::vector<int64_t>>(self, [&](pg_store& db) {
        return lift(db.expired_envelopes(q.now_ms, q.limit, q.after_id));
      });
    },
    [=](db_clock_atom) -> caf::result<int64_t> {
      return with_db<int64_t>(self, [&](pg_store& db) {
        return lift(db.db_now_ms());
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
    [=](db_reconcile_atom,
        const reconcile_run& r) -> caf::result<reconcile_report> {
      return with_db<reconcile_report>(self, [&](pg_store& db) {
        return lift(db.reconcile(r.since_ms, r.now_ms, r.repair));
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
    [=](db_segments_atom) -> caf::result<std::vector<segment_state>> {
      return with_db<std::vector<segment_state>>(self, [&](pg_store& db) {
        return lift(db.blocked_segments());
      });
    },
    [=](db_segment_set_atom,
        segment_state& state) -> caf::result<caf::ok_atom> {
      return with_db<caf::ok_atom>(self, [&](pg_store& db) {
        return lift_done(db.set_segment_state(state));
      });
    },
    [=](db_probe_atom, int32_t segment,
        int32_t day) -> caf::result<caf::ok_atom> {
      return with_db<caf::ok_atom>(self, [&](pg_store& db) {
        return lift_done(db.probe_segment(segment, day));
      });
    },
    [=](db_deposit_atom,
        const deposit_request& d) -> caf::result<caf::ok_atom> {
      return with_db<caf::ok_atom>(self, [&](pg_store& db) {
        return lift_done(db.deposit(d.user, d.amount_fen, d.key));
      });
    },
    [=](db_join_atom, const join_request& req) -> caf::result<set_view> {
      return with_db<set_view>(self,
                               [&](pg_store& db) { return lift(db.join(req)); });
    },
    [=](db_renew_atom, const renew_request& req) -> caf::result<set_view> {
      return with_db<set_view>(self,
                               [&](pg_store& db) { return lift(db.renew(req)); });
    },
    [=](db_take_atom,
        const take_request& req) -> caf::result<std::vector<segment_owner>> {
      return with_db<std::vector<segment_owner>>(
        self, [&](pg_store& db) { return lift(db.take(req)); });
    },
    [=](db_give_atom,
        const give_request& req) -> caf::result<std::vector<segment_owner>> {
      return with_db<std::vector<segment_owner>>(
        self, [&](pg_store& db) { return lift(db.give(req)); });
    },
    [=](db_drain_atom, const drain_request& req) -> caf::result<set_view> {
      return with_db<set_view>(self,
                               [&](pg_store& db) { return lift(db.drain(req)); });
    },
    [=](db_leave_atom, const leave_request& req) -> caf::result<bool> {
      return with_db<bool>(self,
                           [&](pg_store& db) { return lift(db.leave(req)); });
    },
  };
}

} // namespace

store_actor spawn_pg_store(caf::actor_system& sys, const store_settings& cfg) {
  auto shared = std::make_shared<pool_shared>();
  auto spawn = [&sys, cfg, shared](std::shared_ptr<worker_gauge> gauge) {
    return caf::actor_cast<caf::actor>(
      sys.spawn<caf::detached>(store_worker, cfg, shared, std::move(gauge)));
  };
  auto pool = make_worker_pool(sys, cfg.pool_size, spawn, cfg.stuck_after_ms);
  return caf::actor_cast<store_actor>(pool);
}

} // namespace hb

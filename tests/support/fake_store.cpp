#include "tests/support/fake_store.hpp"

#include <algorithm>
#include <deque>

#include "caf/all.hpp"

namespace hb::test {

envelope& fake_db::add(int64_t id, int64_t total_fen, int32_t count,
                       envelope_kind kind, envelope_status status,
                       int64_t expires_at_ms) {
  envelope env;
  env.id = id;
  env.sender = "sender";
  env.group = "group";
  env.idempotency_key = "key-" + std::to_string(id);
  env.kind = kind;
  env.status = status;
  env.total_fen = total_fen;
  env.count = count;
  env.remaining_fen = total_fen;
  env.remaining_count = count;
  if (status != envelope_status::created) {
    env.payment_txn = "txn-" + std::to_string(id);
    env.expires_at_ms = expires_at_ms;
  }
  return envelopes[id] = env;
}

namespace {

struct held_commit {
  open_batch batch;
  caf::typed_response_promise<caf::ok_atom> promise;
};

// A held db_commit_many: the batches of many envelopes and the one answer.
struct held_commit_many {
  std::vector<open_batch> batches;
  caf::typed_response_promise<std::vector<int32_t>> promise;
};

caf::result<caf::ok_atom> finish_commit(fake_db& db, const open_batch& b);

// One errc per batch (0: committed), as pg_store::commit_many answers.
std::vector<int32_t> finish_commit_many(fake_db& db,
                                        const std::vector<open_batch>& batches) {
  std::vector<int32_t> codes;
  for (auto& b : batches) {
    auto res = finish_commit(db, b);
    codes.push_back(res.flag == caf::rt_value
                      ? 0
                      : static_cast<int32_t>(to_failure(res.err).code));
  }
  return codes;
}

struct fake_state {
  std::shared_ptr<fake_db> db;
  std::deque<held_commit> held;
  std::deque<held_commit_many> held_many;
  static inline const char* name = "hb.fake_store";
};

using fake_pointer = fake_store_actor::stateful_pointer<fake_state>;

caf::error apply_commit(fake_db& db, const open_batch& b) {
  auto it = db.envelopes.find(b.envelope_id);
  if (it == db.envelopes.end() || it->second.epoch != b.epoch
      || it->second.status != envelope_status::paid)
    return make_error(errc::stale_epoch, "stale epoch");
  auto& opens = db.opens[b.envelope_id];
  for (auto& rec : b.opens)
    for (auto& o : opens)
      if (o.user == rec.user || o.seq == rec.seq)
        return make_error(errc::internal, "duplicate open");
  opens.insert(opens.end(), b.opens.begin(), b.opens.end());
  it->second.remaining_fen = b.remaining_fen;
  it->second.remaining_count = b.remaining_count;
  it->second.status = b.status;
  ++db.commits_applied;
  return {};
}

caf::result<caf::ok_atom> finish_commit(fake_db& db, const open_batch& b) {
  if (db.fail_next_commit) {
    db.fail_next_commit = false;
    return make_error(errc::unavailable, "injected commit failure");
  }
  if (auto err = apply_commit(db, b))
    return err;
  return caf::ok_atom::value;
}

fake_store_actor::behavior_type fake_impl(fake_pointer self,
                                          std::shared_ptr<fake_db> db) {
  self->state.db = std::move(db);
  auto down = [=]() -> caf::error {
    if (self->state.db->fail_everything)
      return make_error(errc::unavailable, "injected outage");
    return {};
  };
  return {
    [=](db_create_many_atom,
        std::vector<envelope>& envs) -> caf::result<std::vector<envelope>> {
      // As pg_store::create_envelopes: the envelopes with new keys.
      if (auto err = down())
        return err;
      auto& db = *self->state.db;
      db.create_batches.push_back(envs.size());
      if (db.fail_next_create_many) {
        db.fail_next_create_many = false;
        return make_error(errc::unavailable, "injected create failure");
      }
      std::vector<envelope> out;
      for (auto& env : envs) {
        bool known = false;
        for (auto& kv : db.envelopes)
          known = known
                  || (kv.second.sender == env.sender
                      && kv.second.idempotency_key == env.idempotency_key);
        if (known || env.id <= 0)
          continue;
        db.envelopes[env.id] = env;
        out.push_back(env);
      }
      return out;
    },
    [=](db_create_atom, envelope& env) -> caf::result<envelope, bool> {
      if (auto err = down())
        return err;
      auto& db = *self->state.db;
      ++db.creates_alone;
      for (auto& kv : db.envelopes)
        if (kv.second.sender == env.sender
            && kv.second.idempotency_key == env.idempotency_key)
          return {kv.second, false};
      db.envelopes[env.id] = env;
      return {env, true};
    },
    [=](db_activate_atom, int64_t id) -> caf::result<envelope_snapshot> {
      if (auto err = down())
        return err;
      auto& db = *self->state.db;
      auto it = db.envelopes.find(id);
      if (it == db.envelopes.end())
        return make_error(errc::not_found, "no such envelope");
      ++it->second.epoch;
      ++db.activations;
      return envelope_snapshot{it->second, db.opens[id]};
    },
    [=](db_activate_many_atom, std::vector<int64_t>& ids)
      -> caf::result<std::vector<envelope_snapshot>> {
      if (auto err = down())
        return err;
      auto& db = *self->state.db;
      db.activation_batches.push_back(ids.size());
      if (db.fail_next_activate_many) {
        db.fail_next_activate_many = false;
        return make_error(errc::unavailable, "injected activation failure");
      }
      std::sort(ids.begin(), ids.end());
      std::vector<envelope_snapshot> out;
      for (auto id : ids) {
        auto it = db.envelopes.find(id);
        if (it == db.envelopes.end() || db.not_hot.count(id) > 0)
          continue;
        ++it->second.epoch;
        ++db.activations;
        out.push_back(envelope_snapshot{it->second, db.opens[id]});
      }
      return out;
    },
    [=](db_load_atom, int64_t id) -> caf::result<envelope_snapshot> {
      auto& db = *self->state.db;
      auto it = db.envelopes.find(id);
      if (it == db.envelopes.end())
        return make_error(errc::not_found, "no such envelope");
      return envelope_snapshot{it->second, db.opens[id]};
    },
    [=](db_pay_many_atom,
        std::vector<payment>& ps) -> caf::result<std::vector<int64_t>> {
      // As pg_store::confirm_payments: external payments of CREATED
      // envelopes under their epoch, the first of each envelope.
      if (auto err = down())
        return err;
      auto& db = *self->state.db;
      db.pay_batches.push_back(ps.size());
      if (db.fail_next_pay_many) {
        db.fail_next_pay_many = false;
        return make_error(errc::unavailable, "injected payment failure");
      }
      std::vector<int64_t> out;
      for (auto& p : ps) {
        auto it = db.envelopes.find(p.envelope_id);
        if (p.from_wallet || p.payment_txn.empty() || it == db.envelopes.end()
            || it->second.epoch != p.epoch
            || it->second.status != envelope_status::created)
          continue;
        auto& env = it->second;
        env.status = envelope_status::paid;
        env.payment_txn = p.payment_txn;
        env.paid_at_ms = p.paid_at_ms;
        env.expires_at_ms = p.expires_at_ms;
        out.push_back(p.envelope_id);
      }
      std::sort(out.begin(), out.end());
      return out;
    },
    [=](db_pay_atom, payment& p) -> caf::result<caf::ok_atom> {
      if (auto err = down())
        return err;
      auto& db = *self->state.db;
      ++db.payments_alone;
      auto it = db.envelopes.find(p.envelope_id);
      if (it == db.envelopes.end() || it->second.epoch != p.epoch)
        return make_error(errc::stale_epoch, "stale epoch");
      auto& env = it->second;
      if (env.status != envelope_status::created)
        return env.payment_txn == p.payment_txn
                 ? caf::result<caf::ok_atom>{caf::ok_atom::value}
                 : caf::result<caf::ok_atom>{
                   make_error(errc::payment_mismatch, "other txn")};
      env.status = envelope_status::paid;
      env.payment_txn = p.payment_txn;
      env.paid_at_ms = p.paid_at_ms;
      env.expires_at_ms = p.expires_at_ms;
      return caf::ok_atom::value;
    },
    [=](db_commit_atom, open_batch& b) -> caf::result<caf::ok_atom> {
      if (auto err = down())
        return err;
      auto& db = *self->state.db;
      db.batch_sizes.push_back(b.opens.size());
      if (!db.hold_commits)
        return finish_commit(db, b);
      auto rp = self->make_response_promise<caf::ok_atom>();
      self->state.held.push_back(held_commit{std::move(b), rp});
      return rp;
    },
    [=](db_commit_many_atom,
        std::vector<open_batch>& batches) -> caf::result<std::vector<int32_t>> {
      if (auto err = down())
        return err;
      auto& db = *self->state.db;
      db.commit_groups.push_back(batches.size());
      if (db.fail_next_commit_many) {
        db.fail_next_commit_many = false;
        return make_error(errc::unavailable, "injected commit failure");
      }
      for (auto& b : batches)
        db.batch_sizes.push_back(b.opens.size());
      if (!db.hold_commits)
        return finish_commit_many(db, batches);
      auto rp = self->make_response_promise<std::vector<int32_t>>();
      self->state.held_many.push_back(
        held_commit_many{std::move(batches), rp});
      return rp;
    },
    [=](db_lease_atom, const lease_request& r) -> caf::result<int64_t> {
      if (auto err = down())
        return err;
      auto& next = self->state.db->leases[{r.segment, r.day}];
      if (next == 0)
        next = 1;
      auto first = next;
      next += r.block;
      return first;
    },
    [=](db_refund_atom, int64_t id, int64_t epoch) -> caf::result<int64_t> {
      if (auto err = down())
        return err;
      auto& db = *self->state.db;
      auto it = db.envelopes.find(id);
      if (it == db.envelopes.end() || it->second.epoch != epoch
          || it->second.status != envelope_status::paid)
        return make_error(errc::stale_epoch, "stale epoch");
      auto& env = it->second;
      if (db.db_now_ms != 0
          && (env.expires_at_ms == 0 || env.expires_at_ms > db.db_now_ms))
        return make_error(errc::not_expired,
                          "not expired by the database's clock");
      env.refunded_fen = env.remaining_fen;
      env.remaining_fen = 0;
      env.status = envelope_status::refunded;
      ++db.refunds;
      return env.refunded_fen;
    },
    [=](db_relay_atom, int32_t) -> caf::result<relay_batch_result> {
      auto& st = *self->state.db;
      ++st.relay_batches;
      relay_batch_result res;
      res.rows = st.relay_rows;
      res.credited = st.relay_rows;
      return res;
    },
    [=](db_lag_atom) -> caf::result<int64_t, int64_t> {
      return {int64_t{0}, int64_t{0}};
    },
    [=](db_clock_atom) -> caf::result<int64_t> {
      auto& db = *self->state.db;
      ++db.clock_reads;
      if (db.clock_fails || db.db_now_ms == 0)
        return make_error(errc::unavailable, "database clock unreachable");
      return db.db_now_ms;
    },
    [=](db_expired_atom,
        const expiry_query& q) -> caf::result<std::vector<int64_t>> {
      // In id order (the test envelopes share one expiry); after_id starts
      // the page after that id.
      std::vector<int64_t> out;
      for (auto& kv : self->state.db->envelopes)
        if (kv.second.status == envelope_status::paid
            && kv.second.expires_at_ms > 0
            && kv.second.expires_at_ms <= q.now_ms && kv.first > q.after_id
            && static_cast<int32_t>(out.size()) < q.limit)
          out.push_back(kv.first);
      return out;
    },
    [=](db_history_atom, history_query&) -> caf::result<history_page> {
      return history_page{};
    },
    [=](db_balance_atom, std::string& user) -> caf::result<balance_info> {
      return balance_info{user, 0};
    },
    [=](db_reconcile_atom, const reconcile_run&) -> caf::result<reconcile_report> {
      return reconcile_report{};
    },
    [=](db_partitions_atom, int32_t from, int32_t to) -> caf::result<int> {
      auto& db = *self->state.db;
      db.partition_requests.emplace_back(from, to);
      if (auto err = down())
        return err;
      if (db.fail_next_partitions) {
        db.fail_next_partitions = false;
        return make_error(errc::unavailable, "injected partitions failure");
      }
      return db.partitions_created;
    },
    [=](db_detach_atom, int32_t cutoff) -> caf::result<int> {
      auto& db = *self->state.db;
      db.detach_cutoffs.push_back(cutoff);
      if (auto err = down())
        return err;
      if (db.fail_next_detach) {
        db.fail_next_detach = false;
        return make_error(errc::unavailable, "injected detach failure");
      }
      return db.days_detached;
    },
    [=](db_deposit_atom, const deposit_request&) -> caf::result<caf::ok_atom> {
      return caf::ok_atom::value;
    },
    [=](db_segments_atom) -> caf::result<std::vector<segment_state>> {
      std::vector<segment_state> out;
      for (auto& kv : self->state.db->segment_states)
        if (kv.second.blocked)
          out.push_back(kv.second);
      return out;
    },
    [=](db_segment_set_atom, segment_state& s) -> caf::result<caf::ok_atom> {
      self->state.db->segment_states[s.segment] = s;
      return caf::ok_atom::value;
    },
    [=](db_join_atom, const join_request&) -> caf::result<set_view> {
      return make_error(errc::internal, "this store has no cluster tables");
    },
    [=](db_renew_atom, const renew_request&) -> caf::result<set_view> {
      return make_error(errc::internal, "this store has no cluster tables");
    },
    [=](db_take_atom, const take_request&)
      -> caf::result<std::vector<segment_owner>> {
      return make_error(errc::internal, "this store has no cluster tables");
    },
    [=](db_give_atom, const give_request&)
      -> caf::result<std::vector<segment_owner>> {
      return make_error(errc::internal, "this store has no cluster tables");
    },
    [=](db_drain_atom, const drain_request&) -> caf::result<set_view> {
      return make_error(errc::internal, "this store has no cluster tables");
    },
    [=](db_leave_atom, const leave_request&) -> caf::result<bool> {
      return make_error(errc::internal, "this store has no cluster tables");
    },
    [=](db_probe_atom, int32_t segment, int32_t) -> caf::result<caf::ok_atom> {
      ++self->state.db->probes;
      if (self->state.db->failing_segments.count(segment) > 0)
        return make_error(errc::unavailable, "injected segment fault");
      return caf::ok_atom::value;
    },
    [=](release_atom) {
      auto& st = self->state;
      while (!st.held.empty()) {
        auto h = std::move(st.held.front());
        st.held.pop_front();
        auto res = finish_commit(*st.db, h.batch);
        if (res.flag == caf::rt_value)
          h.promise.deliver(caf::ok_atom::value);
        else
          h.promise.deliver(res.err);
      }
      while (!st.held_many.empty()) {
        auto h = std::move(st.held_many.front());
        st.held_many.pop_front();
        h.promise.deliver(finish_commit_many(*st.db, h.batches));
      }
    },
  };
}

} // namespace

fake_store_actor spawn_fake_store(caf::actor_system& sys,
                                  std::shared_ptr<fake_db> db) {
  return sys.spawn(fake_impl, std::move(db));
}

} // namespace hb::test

#include "sim/sim_store.hpp"

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <utility>

#include "caf/all.hpp"

#include "runtime/errors.hpp"
#include "domain/envelope_id.hpp"
#include "runtime/bugs.hpp"

namespace hb::sim {

namespace {

// How one call goes; drawn when it arrives.
struct call_plan {
  bool apply = true;     // the transaction commits
  bool reply = true;     // an answer reaches the caller
  bool error = false;    // the answer is an error whatever the outcome
  std::string error_text;
  int64_t apply_delay_ms = 1;
  int64_t reply_delay_ms = 0;
  // Segment health: a call on a segment's data is reported, with whether
  // the segment's storage failed -- unless the connection was lost, which
  // says nothing about one segment (as store/store_actor.cpp does).
  int32_t segment = -1;
  std::vector<int32_t> also;  // more segments the call touches (commit_many)
  bool report = false;
  bool segment_fault = false;
};

struct store_state {
  world* w = nullptr;
  bool reports = false;  // the hot store reports to segment health
  uint64_t next_token = 1;
  // Planned steps (apply, or a late answer) by token, run when the store's
  // own delayed message for the token arrives.
  std::map<uint64_t, std::function<void()>> pending;
  static inline const char* name = "sim.store";
};

using store_pointer = sim_store_actor::stateful_pointer<store_state>;

constexpr int32_t no_segment = -1;

// Calls on a segment's data (reported to segment health by the hot store).
constexpr bool segment_data = true;

call_plan make_plan(store_pointer self, int32_t segment, bool write,
                    bool on_segment_data = false) {
  auto& w = *self->state.w;
  call_plan p;
  p.segment = segment;
  p.report = self->state.reports && on_segment_data && segment >= 0;
  p.apply_delay_ms = w.between(1, 8);
  if (w.in_outage()) {
    p.report = false;
    p.apply = false;
    p.error = true;
    p.error_text = "database unavailable (outage)";
    return p;
  }
  auto rate = w.segment_error_rate.count(segment) > 0
                ? w.segment_error_rate[segment]
                : 0.0;
  if (w.segment_broken.count(segment) > 0 && w.segment_broken[segment] > 0)
    rate = 0.9;
  if (w.maybe(fault::store_error, rate)) {
    p.apply = false;
    p.error = true;
    p.segment_fault = true;
    p.error_text = "statement failed on segment " + std::to_string(segment);
    return p;
  }
  if (w.maybe(fault::store_lost_request)) {
    p.apply = false;
    p.reply = false;
    p.report = false;
    return p;
  }
  if (write && w.maybe(fault::store_error_after_commit)) {
    p.error = true;
    p.error_text = "connection lost; the outcome is unknown";
    p.report = false;
  } else if (w.maybe(fault::store_lost_reply)) {
    p.reply = false;
    p.report = false;
  }
  if (w.maybe(fault::latency_spike)) {
    if (w.coin(0.5))
      p.apply_delay_ms += w.between(5000, 45000);
    else
      p.reply_delay_ms = w.between(5000, 45000);
  }
  return p;
}

caller caller_of(store_pointer self);

// The envelope actor a batch came from: the store may get it from the
// commit batcher, so the driver notes who sent each batch first.
caller origin_of(store_pointer self, const open_batch& b) {
  auto& origins = self->state.w->batch_origin;
  auto it = origins.find(batch_key(b));
  if (it != origins.end())
    return caller{it->second, true};
  return caller_of(self);
}

// The envelope actor a payment came from: the store may get it from the pay
// batcher (noted by the driver as for batches).
caller payment_origin(store_pointer self, const payment& p) {
  auto& origins = self->state.w->batch_origin;
  auto it = origins.find(payment_key(p));
  if (it != origins.end())
    return caller{it->second, true};
  return caller_of(self);
}

caller caller_of(store_pointer self) {
  caller who;
  auto& sender = self->current_sender();
  if (!sender)
    return who;
  who.actor_id = sender->id();
  auto local = dynamic_cast<caf::local_actor*>(
    caf::actor_cast<caf::abstract_actor*>(sender));
  who.envelope_actor = local != nullptr
                       && std::string(local->name()) == "hb.envelope";
  return who;
}

// Sometimes the envelope actor dies while its write is on its way and the
// write is slow: the next activation (a new owner, a new epoch) usually
// comes first, and the late write must be refused.
void crash_in_flight(store_pointer self, call_plan& plan, const caller& who) {
  auto& w = *self->state.w;
  if (!who.envelope_actor)
    return;
  auto victim = w.alive(who.actor_id);
  if (!victim || !w.maybe(fault::envelope_crash, crash_in_flight_prob))
    return;
  w.kill(victim);
  plan.apply_delay_ms += w.between(200, 5000);
}

void after(store_pointer self, int64_t delay_ms, std::function<void()> f) {
  auto token = self->state.next_token++;
  self->state.pending.emplace(token, std::move(f));
  ++self->state.w->store_pending;
  self->delayed_send(self, std::chrono::milliseconds(delay_ms),
                     sim_apply_atom::value, token);
}

// Plans a call, applies it later and answers (or not) per the plan.
// `apply` returns an outcome<T>; `ok` delivers its value to the promise.
template <class Promise, class Apply, class Ok>
Promise submit(store_pointer self, call_plan plan, Apply apply, Ok ok,
               std::function<void(bool committed)> after_apply = nullptr) {
  // Until it is answered (or dropped), the call's promise refers to its
  // caller: the orphan check must know (world::store_holds). (Read the
  // sender first: making the promise moves it out of the message.)
  auto& sender = self->current_sender();
  uint64_t holder = sender ? sender->id() : 0;
  auto rp = self->template make_response_promise<Promise>();
  self->state.w->store_holds.insert(holder);
  auto release = [self, holder] {
    auto& holds = self->state.w->store_holds;
    auto it = holds.find(holder);
    if (it != holds.end())
      holds.erase(it);
  };
  after(self, plan.apply_delay_ms, [=]() mutable {
    auto& w = *self->state.w;
    if (plan.report && w.segment_report) {
      w.segment_report(plan.segment, plan.segment_fault);
      for (auto segment : plan.also)
        w.segment_report(segment, plan.segment_fault);
    }
    std::function<void()> answer;
    if (plan.apply) {
      auto res = apply();
      if (after_apply)
        after_apply(res.ok());
      if (res)
        answer = [=]() mutable { ok(rp, *res); };
      else
        answer = [=]() mutable { rp.deliver(make_error(res.error())); };
    }
    if (plan.error)
      answer = [=]() mutable {
        rp.deliver(make_error(errc::unavailable, plan.error_text));
      };
    if (!plan.reply || !answer) {
      release();
      return;  // the caller's timeout tells it: outcome unknown
    }
    if (plan.reply_delay_ms > 0) {
      after(self, plan.reply_delay_ms, [answer, release]() mutable {
        answer();
        release();
      });
    } else {
      answer();
      release();
    }
  });
  return rp;
}

template <class T>
auto deliver_value() {
  return [](auto& rp, T& value) { rp.deliver(std::move(value)); };
}

auto deliver_ok() {
  return [](auto& rp, done&) { rp.deliver(caf::ok_atom::value); };
}

sim_store_actor::behavior_type store_impl(store_pointer self, world* w,
                                          bool reports) {
  self->state.w = w;
  self->state.reports = reports;
  auto& db = w->db;
  return {
    [=](sim_apply_atom, uint64_t token) {
      auto& pending = self->state.pending;
      auto it = pending.find(token);
      if (it == pending.end())
        return;
      auto f = std::move(it->second);
      pending.erase(it);
      --w->store_pending;
      ++w->db_version;
      f();
    },
    [=, &db](db_create_atom, envelope& env) -> caf::result<envelope, bool> {
      auto plan = make_plan(self, segment_of(env.id), true, segment_data);
      return submit<caf::typed_response_promise<envelope, bool>>(
        self, plan, [=, &db] { return db.create_envelope(env); },
        [](auto& rp, create_outcome& c) { rp.deliver(c.env, c.created); });
    },
    [=, &db](db_create_many_atom, std::vector<envelope>& envs)
      -> caf::result<std::vector<envelope>> {
      // One transaction for the creates of many segments; a fault fails
      // all.
      auto first = envs.empty() ? no_segment : segment_of(envs[0].id);
      auto plan = make_plan(self, first, true, segment_data);
      for (size_t i = 1; i < envs.size(); ++i)
        plan.also.push_back(segment_of(envs[i].id));
      return submit<caf::typed_response_promise<std::vector<envelope>>>(
        self, plan, [=, &db] { return db.create_envelopes(envs); },
        deliver_value<std::vector<envelope>>());
    },
    [=, &db](db_activate_atom, int64_t id) -> caf::result<envelope_snapshot> {
      auto who = caller_of(self);
      auto plan = make_plan(self, segment_of(id), true, segment_data);
      return submit<caf::typed_response_promise<envelope_snapshot>>(
        self, plan, [=, &db] { return db.activate(id, who); },
        deliver_value<envelope_snapshot>());
    },
    [=, &db](db_activate_many_atom, std::vector<int64_t>& ids)
      -> caf::result<std::vector<envelope_snapshot>> {
      // One transaction: a fault fails all. The caller is the activation
      // batcher; the driver notes which envelope actor gets each snapshot
      // (note_snapshot_owner).
      auto who = caller_of(self);
      auto first = ids.empty() ? no_segment : segment_of(ids[0]);
      auto plan = make_plan(self, first, true, segment_data);
      for (size_t i = 1; i < ids.size(); ++i)
        plan.also.push_back(segment_of(ids[i]));
      return submit<caf::typed_response_promise<std::vector<envelope_snapshot>>>(
        self, plan,
        [=, &db] {
          std::vector<size_t> order(ids.size());
          for (size_t i = 0; i < order.size(); ++i)
            order[i] = i;
          std::sort(order.begin(), order.end(),
                    [&](size_t x, size_t y) { return ids[x] < ids[y]; });
          std::vector<envelope_snapshot> out;
          for (auto i : order) {
            auto snap = db.activate(ids[i], who);
            if (snap)
              out.push_back(std::move(*snap));
          }
          return outcome<std::vector<envelope_snapshot>>{std::move(out)};
        },
        deliver_value<std::vector<envelope_snapshot>>());
    },
    [=, &db](db_load_atom, int64_t id) -> caf::result<envelope_snapshot> {
      auto who = caller_of(self);
      auto plan = make_plan(self, segment_of(id), false, segment_data);
      return submit<caf::typed_response_promise<envelope_snapshot>>(
        self, plan, [=, &db] { return db.load(id, who); },
        deliver_value<envelope_snapshot>());
    },
    [=, &db](db_pay_many_atom, std::vector<payment>& ps)
      -> caf::result<std::vector<int64_t>> {
      // One transaction for the payments of many envelopes; a fault fails
      // all.
      std::vector<caller> who;
      for (auto& p : ps)
        who.push_back(payment_origin(self, p));
      auto first = ps.empty() ? no_segment : segment_of(ps[0].envelope_id);
      auto plan = make_plan(self, first, true, segment_data);
      for (size_t i = 1; i < ps.size(); ++i)
        plan.also.push_back(segment_of(ps[i].envelope_id));
      if (!who.empty())
        crash_in_flight(self, plan, who[0]);
      return submit<caf::typed_response_promise<std::vector<int64_t>>>(
        self, plan, [=, &db] { return db.confirm_payments(ps, who); },
        deliver_value<std::vector<int64_t>>());
    },
    [=, &db](db_pay_atom, payment& p) -> caf::result<caf::ok_atom> {
      auto who = payment_origin(self, p);
      auto plan = make_plan(self, segment_of(p.envelope_id), true, segment_data);
      crash_in_flight(self, plan, who);
      return submit<caf::typed_response_promise<caf::ok_atom>>(
        self, plan, [=, &db] { return db.confirm_payment(p, who); },
        deliver_ok());
    },
    [=, &db](db_commit_atom, open_batch& b) -> caf::result<caf::ok_atom> {
      auto who = origin_of(self, b);
      auto plan = make_plan(self, segment_of(b.envelope_id), true, segment_data);
      crash_in_flight(self, plan, who);
      // Sometimes the envelope actor dies right after its batch committed,
      // before the answer reaches it: only the replies are lost.
      auto crash = [=](bool committed) {
        auto sender = who.envelope_actor ? w->alive(who.actor_id) : nullptr;
        if (committed && sender
            && w->maybe(fault::envelope_crash, crash_after_commit_prob))
          w->kill(sender);
      };
      return submit<caf::typed_response_promise<caf::ok_atom>>(
        self, plan, [=, &db] { return db.commit_opens(b, who); }, deliver_ok(),
        crash);
    },
    [=, &db](db_commit_many_atom, std::vector<open_batch>& batches)
      -> caf::result<std::vector<int32_t>> {
      // One transaction for the batches of many envelopes, each with its
      // own epoch guard and outcome; a fault of the transaction fails all.
      std::vector<caller> who;
      for (auto& b : batches)
        who.push_back(origin_of(self, b));
      auto first = batches.empty() ? no_segment
                                   : segment_of(batches[0].envelope_id);
      auto plan = make_plan(self, first, true, segment_data);
      for (size_t i = 1; i < batches.size(); ++i)
        plan.also.push_back(segment_of(batches[i].envelope_id));
      if (!who.empty())
        crash_in_flight(self, plan, who[0]);
      return submit<caf::typed_response_promise<std::vector<int32_t>>>(
        self, plan,
        [=, &db] {
          std::vector<int32_t> codes;
          for (size_t i = 0; i < batches.size(); ++i) {
            auto res = db.commit_opens(batches[i], who[i]);
            codes.push_back(res ? 0 : static_cast<int32_t>(res.error().code));
          }
          return outcome<std::vector<int32_t>>{std::move(codes)};
        },
        deliver_value<std::vector<int32_t>>());
    },
    [=, &db](db_lease_atom, const lease_request& r) -> caf::result<int64_t> {
      auto plan = make_plan(self, r.segment, true, segment_data);
      return submit<caf::typed_response_promise<int64_t>>(
        self, plan,
        [=, &db] { return db.lease_sequence(r.segment, r.day, r.block); },
        deliver_value<int64_t>());
    },
    [=, &db](db_refund_atom, int64_t id,
             int64_t epoch) -> caf::result<int64_t> {
      auto who = caller_of(self);
      auto plan = make_plan(self, segment_of(id), true, segment_data);
      crash_in_flight(self, plan, who);
      return submit<caf::typed_response_promise<int64_t>>(
        self, plan, [=, &db] { return db.refund(id, epoch, who); },
        deliver_value<int64_t>());
    },
    [=, &db](db_relay_atom, int32_t limit) -> caf::result<relay_batch_result> {
      auto plan = make_plan(self, no_segment, true);
      if (bugs::on(bug::relay_credit_before_mark)) {
        // The bug relay_credit_before_mark: the credits commit on their own; marking what
        // the batch took (opens transferred, outbox rows delivered) is a
        // second transaction, lost whenever the call fails.
        bool faulted = !plan.apply || plan.error || !plan.reply;
        plan.apply = true;
        return submit<caf::typed_response_promise<relay_batch_result>>(
          self, plan,
          [=, &db] {
            auto res = db.relay_batch(limit);
            if (res && !faulted)
              db.mark_relayed(limit);
            return res;
          },
          deliver_value<relay_batch_result>());
      }
      return submit<caf::typed_response_promise<relay_batch_result>>(
        self, plan, [=, &db] { return db.relay_batch(limit); },
        deliver_value<relay_batch_result>());
    },
    [=, &db](db_lag_atom) -> caf::result<int64_t, int64_t> {
      auto plan = make_plan(self, no_segment, false);
      return submit<caf::typed_response_promise<int64_t, int64_t>>(
        self, plan, [=, &db] { return db.outbox_lag(); },
        [](auto& rp, lag_info& lag) {
          rp.deliver(lag.pending, lag.oldest_age_ms);
        });
    },
    [=, &db](db_expired_atom,
             const expiry_query& q) -> caf::result<std::vector<int64_t>> {
      auto plan = make_plan(self, no_segment, false);
      return submit<caf::typed_response_promise<std::vector<int64_t>>>(
        self, plan,
        [=, &db] { return db.expired_envelopes(q.now_ms, q.limit, q.after_id); },
        deliver_value<std::vector<int64_t>>());
    },
    [=, &db](db_clock_atom) -> caf::result<int64_t> {
      auto plan = make_plan(self, no_segment, false);
      return submit<caf::typed_response_promise<int64_t>>(
        self, plan, [=, &db] { return outcome<int64_t>{db.now_ms()}; },
        deliver_value<int64_t>());
    },
    [=, &db](db_history_atom, history_query& q) -> caf::result<history_page> {
      auto plan = make_plan(self, no_segment, false);
      return submit<caf::typed_response_promise<history_page>>(
        self, plan, [=, &db] { return db.history(q); },
        deliver_value<history_page>());
    },
    [=, &db](db_balance_atom, std::string& user) -> caf::result<balance_info> {
      auto plan = make_plan(self, no_segment, false);
      return submit<caf::typed_response_promise<balance_info>>(
        self, plan, [=, &db] { return db.balance(user); },
        deliver_value<balance_info>());
    },
    [=, &db](db_reconcile_atom,
             const reconcile_run& r) -> caf::result<reconcile_report> {
      auto plan = make_plan(self, no_segment, r.repair);
      return submit<caf::typed_response_promise<reconcile_report>>(
        self, plan,
        [=, &db] { return db.reconcile(r.since_ms, r.now_ms, r.repair); },
        deliver_value<reconcile_report>());
    },
    [=](db_partitions_atom, int32_t, int32_t) -> caf::result<int> {
      // Day partitions and cold storage are not simulated.
      return 0;
    },
    [=](db_detach_atom, int32_t) -> caf::result<int> { return 0; },
    [=, &db](db_deposit_atom,
             const deposit_request& d) -> caf::result<caf::ok_atom> {
      auto plan = make_plan(self, no_segment, true);
      return submit<caf::typed_response_promise<caf::ok_atom>>(
        self, plan,
        [=, &db] { return db.deposit(d.user, d.amount_fen, d.key); },
        deliver_ok());
    },
    [=, &db](db_segments_atom) -> caf::result<std::vector<segment_state>> {
      auto plan = make_plan(self, no_segment, false);
      return submit<caf::typed_response_promise<std::vector<segment_state>>>(
        self, plan, [=, &db] { return db.blocked_segments(); },
        deliver_value<std::vector<segment_state>>());
    },
    [=, &db](db_segment_set_atom,
             segment_state& s) -> caf::result<caf::ok_atom> {
      auto plan = make_plan(self, no_segment, true);
      return submit<caf::typed_response_promise<caf::ok_atom>>(
        self, plan, [=, &db] { return db.set_segment_state(s); },
        deliver_ok());
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
    [=](db_probe_atom, int32_t segment,
        int32_t) -> caf::result<caf::ok_atom> {
      // A probe fails exactly like the segment's real statements would.
      auto plan = make_plan(self, segment, false);
      return submit<caf::typed_response_promise<caf::ok_atom>>(
        self, plan, [] { return outcome<done>{done{}}; }, deliver_ok());
    },
  };
}

} // namespace

sim_store_actor spawn_sim_store(caf::actor_system& sys, world& w,
                                bool reports_health) {
  return sys.spawn(store_impl, &w, reports_health);
}

} // namespace hb::sim

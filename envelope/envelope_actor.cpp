#include "envelope/envelope_actor.hpp"

#include <chrono>
#include <cstdlib>
#include <deque>
#include <random>
#include <unordered_map>

#include "caf/all.hpp"

#include <spdlog/spdlog.h>

#include "runtime/log.hpp"

#include "runtime/errors.hpp"
#include "runtime/failpoints.hpp"
#include "runtime/bugs.hpp"
#include "domain/assert.hpp"
#include "domain/envelope_phase.hpp"
#include "domain/open_plan.hpp"

namespace hb {

namespace {

using open_promise = caf::typed_response_promise<open_result>;
using pay_promise = caf::typed_response_promise<envelope>;
using refund_promise = caf::typed_response_promise<int64_t>;

// A store write that does not answer within this time is treated as failed
// with an unknown outcome: the actor stops and the next activation re-reads
// the truth from the database (fencing keeps a late commit safe).
constexpr auto store_timeout = std::chrono::seconds(30);

struct envelope_state {
  int64_t id = 0;
  envelope_settings cfg;
  envelope_store store;
  passivation_sink registry;
  std::mt19937_64 rng;

  // -- committed state (as in the database) ---------------------------------
  envelope env;
  std::vector<open_record> opens;                  // by seq
  std::unordered_map<std::string, size_t> opened;  // user -> index in opens

  // -- lifecycle ----------------------------------------------------------------
  // Changed only through enter(), which asserts the domain's transition rule.
  envelope_phase phase = envelope_phase::loading;
  // A stop (passivation or shutdown) waits for the write in flight. Not a
  // phase of its own: it can arrive during each write phase (paying,
  // writing, refunding) and must not forget which write is in flight; it
  // takes effect (phase stopped) as soon as none is.
  bool stop_requested = false;
  bool flush_before_stop = false;  // a handoff: commit the queue, then stop

  // -- work in progress -------------------------------------------------------
  std::deque<std::string> queue;  // users waiting for the next write
  std::unordered_map<std::string, std::vector<open_promise>> waiters;
  std::unordered_map<std::string, int64_t> deadlines;  // of queued users
  open_batch inflight;            // the write in flight, if writing
  caf::actor_clock::time_point write_started;  // when it went out
  std::string paying_txn;         // the txn of the payment while paying
  std::vector<pay_promise> pay_waiters;
  std::vector<refund_promise> refund_waiters;
  int64_t gauge_reported = 0;     // this actor's share of queued_opens

  // -- passivation -------------------------------------------------------------
  uint64_t handled = 0;  // requests taken from the registry
  caf::actor_clock::time_point last_active;
  // Timers, not lifecycle: whether one is scheduled is independent of the
  // phase (an idle check runs in every phase, and CAF 0.17 cannot cancel a
  // timer, so these only keep one of each in the clock at a time).
  bool tick_pending = false;  // an idle check is scheduled
  bool expiry_armed = false;  // the expiry timer is scheduled
  caf::error failure;    // set when activation failed

  // -- the database's clock ------------------------------------------------------
  // The database decides expiry (persistence/pg_store.hpp): it refuses the
  // commit of an envelope expired by its clock, and the refund of one that
  // is not. Each refusal overrides this node's clock until the next look.
  bool db_expired = false;    // a commit was refused: expired (for good)
  bool db_says_live = false;  // a refund was refused: not expired yet

  static inline const char* name = "hb.envelope";
};

using envelope_pointer = envelope_actor::stateful_pointer<envelope_state>;

// Moves the actor to its next phase; any move the domain's lifecycle does
// not allow is a bug.
void enter(envelope_state& st, envelope_phase to) {
  HB_ASSERT(phase_transition_allowed(st.phase, to),
            "envelope {}: phase {} -> {} is not allowed", st.id,
            to_string(st.phase), to_string(to));
  st.phase = to;
}

// A broken money invariant also goes to the node log (flushed) before
// HB_ASSERT aborts: the log is where an operator looks first.
void log_if_broken(const envelope_state& st, const char* where,
                   const std::string& problem) {
  if (problem.empty())
    return;
  actors_log().critical("invariant_broken envelope={} where={} problem={}",
                        st.id, where, problem);
  actors_log().flush();
}

// The full check, O(opens): on activation, where the state comes from the
// database, around the payment and after the refund, which come once per
// envelope.
void require_invariants(const envelope_state& st, const char* where) {
  auto problem = check_invariants(st.env, st.opens);
  log_if_broken(st, where, problem);
  HB_ASSERT(problem.empty(), "envelope {}: {} ({})", st.id, problem, where);
}

// The check around each batch, O(batch): before it is written and after it
// is committed. Given that the invariants held before, they hold after
// exactly when this passes; a full check per batch would make a hot
// envelope quadratic in its opens.
void require_batch_invariants(const envelope_state& st,
                              const envelope& before, const open_batch& b,
                              const char* where) {
  auto problem = batch_change_problem(before, b);
  log_if_broken(st, where, problem);
  HB_ASSERT(problem.empty(), "envelope {}: {} ({})", st.id, problem, where);
}

// Brings this actor's share of the node's queued-opens gauge up to date.
void sync_gauge(envelope_state& st, bool gone = false) {
  if (!st.cfg.metrics)
    return;
  int64_t now = gone ? 0
                     : static_cast<int64_t>(st.queue.size()
                                            + st.inflight.opens.size());
  st.cfg.metrics->queued_opens.fetch_add(now - st.gauge_reported,
                                         std::memory_order_relaxed);
  st.gauge_reported = now;
}

int64_t reserved(const envelope_state& st) {
  return static_cast<int64_t>(st.inflight.opens.size() + st.queue.size());
}

bool is_expired(const envelope_state& st) {
  if (st.env.status == envelope_status::expired
      || st.env.status == envelope_status::refunded)
    return true;
  if (st.env.status != envelope_status::paid)
    return false;
  if (st.db_expired)
    return true;
  if (st.db_says_live)
    return false;
  return st.env.expires_at_ms > 0 && st.cfg.now_ms() >= st.env.expires_at_ms;
}

// Arms the next idle check one idle period from now, unless one is armed
// already (also after an idle report that the registry answered with keep).
void rearm_idle_check(envelope_pointer self) {
  auto& st = self->state;
  if (!st.tick_pending) {
    st.tick_pending = true;
    self->delayed_send(self, std::chrono::milliseconds(st.cfg.idle_ms),
                       tick_atom::value);
  }
}

// Records activity and makes sure an idle check is scheduled. The check is
// armed only while none is pending, so a hot envelope does not schedule one
// timer per request, and an idle actor schedules none at all.
void touch(envelope_pointer self) {
  self->state.last_active = self->clock().now();
  rearm_idle_check(self);
}

caf::error shares_pending_error() {
  return make_error(errc::shares_pending,
                    "the last shares are being written for other users; "
                    "retry shortly (if that write fails they are free again)");
}

// Why a new open cannot be taken, or none.
caf::error open_refusal(const envelope_state& st) {
  if (st.stop_requested)
    return make_error(errc::unavailable,
                      "the envelope is moving or the node is shutting down; "
                      "retry");
  if (st.env.status == envelope_status::created)
    return make_error(errc::not_paid, "the envelope has not been paid yet");
  if (is_expired(st))
    return make_error(errc::expired, "the envelope has expired");
  if (st.env.remaining_count <= 0)
    return make_error(errc::exhausted, "all shares are taken (手慢了)");
  // 手慢了 only once every share is committed: the shares of a write in
  // flight (or queued for the next one) go back if that write fails.
  if (st.env.remaining_count - reserved(st) <= 0)
    return bugs::on(bug::exhausted_while_pending)
             ? make_error(errc::exhausted, "all shares are taken (手慢了)")
             : shares_pending_error();
  // Cold storage holds days long past any expiry, so the checks above
  // refuse every open of an archived envelope; this one keeps a read-only
  // copy from ever writing.
  if (st.phase == envelope_phase::archived)
    return make_error(errc::expired, "the envelope is archived (read-only)");
  if (st.queue.size() >= st.cfg.queue_max)
    return make_error(errc::busy, "this envelope is busy; retry shortly");
  return {};
}

void fail_all_waiters(envelope_pointer self, const caf::error& err) {
  auto& st = self->state;
  for (auto& kv : st.waiters)
    for (auto& rp : kv.second)
      rp.deliver(err);
  st.waiters.clear();
  st.queue.clear();
  st.deadlines.clear();
  for (auto& rp : st.pay_waiters)
    rp.deliver(err);
  st.pay_waiters.clear();
  for (auto& rp : st.refund_waiters)
    rp.deliver(err);
  st.refund_waiters.clear();
}

// Answers every queued open with `err` (they never reached a write).
void fail_queued(envelope_state& st, const caf::error& err) {
  for (auto& user : st.queue) {
    auto it = st.waiters.find(user);
    if (it == st.waiters.end())
      continue;
    for (auto& rp : it->second)
      rp.deliver(err);
    st.waiters.erase(it);
  }
  st.queue.clear();
  st.deadlines.clear();
}

caf::error expired_error() {
  return make_error(errc::expired, "the envelope has expired");
}

// A stop that waited for a write in flight completes once nothing is.
bool finish_stop(envelope_pointer self) {
  auto& st = self->state;
  if (!st.stop_requested || write_in_flight(st.phase))
    return false;
  if (st.flush_before_stop && !st.queue.empty())
    return false;  // the last batch goes out first
  enter(st, envelope_phase::stopped);
  self->quit();
  return true;
}


// The write failed or its outcome is unknown: every waiter gets a retryable
// error, and the actor stops so that the next request re-activates the
// envelope from the database, which alone knows what was committed.
void stop_after_write_failure(envelope_pointer self, const caf::error& err,
                              const char* what) {
  auto f = to_failure(err);
  if (self->state.cfg.metrics)
    self->state.cfg.metrics->write_failures.fetch_add(1);
  actors_log().warn("envelope_write_failed envelope={} write={} code={} error={}",
               self->state.id, what, to_string(f.code), f.message);
  auto reply = f.code == errc::stale_epoch
                 ? make_error(errc::stale_epoch,
                              "the envelope moved to another owner; retry")
               : f.code == errc::not_owner
                 ? make_error(errc::not_owner,
                              "the envelope's segment moved to another node; "
                              "retry")
                 : make_error(errc::unavailable,
                              "the write failed (" + f.message
                                + "); retry the same request");
  fail_all_waiters(self, reply);
  sync_gauge(self->state, true);
  enter(self->state, envelope_phase::stopped);
  self->quit(reply);
}

void deliver_open(envelope_state& st, const open_record& rec) {
  auto it = st.waiters.find(rec.user);
  if (it == st.waiters.end())
    return;
  bool first = true;
  for (auto& rp : it->second) {
    rp.deliver(open_result{rec.amount_fen, rec.seq, first, st.env.count});
    first = false;
  }
  st.waiters.erase(it);
}

// Whether the refund is due, whether or not a write is in flight.
bool due_for_refund(const envelope_state& st) {
  return st.env.status == envelope_status::paid
         && st.phase != envelope_phase::archived && is_expired(st);
}

void on_refunded(envelope_pointer self, int64_t amount) {
  auto& st = self->state;
  // The database refunds the remainder it holds; another amount means this
  // copy and the database disagree about the money.
  if (amount != st.env.remaining_fen)
    log_if_broken(st, "on refund", "refunded " + std::to_string(amount)
                                     + " fen, remaining "
                                     + std::to_string(st.env.remaining_fen));
  HB_ASSERT(amount == st.env.remaining_fen,
            "envelope {}: refunded {} fen but {} fen remain", st.id, amount,
            st.env.remaining_fen);
  st.env.status = envelope_status::refunded;
  st.env.refunded_fen = amount;
  st.env.remaining_fen = 0;
  require_invariants(st, "after refund");
  enter(st, envelope_phase::refunded);
  if (st.cfg.metrics)
    st.cfg.metrics->refunds.fetch_add(1, std::memory_order_relaxed);
  actors_log().info("envelope_refunded envelope={} refunded_fen={} "
                    "opened={}",
                    st.id, amount, st.opens.size());
  for (auto& rp : st.refund_waiters)
    rp.deliver(amount);
  st.refund_waiters.clear();
  if (finish_stop(self))
    return;
  touch(self);
}

void dispatch(envelope_pointer self);

// The database refused the refund: by its clock the envelope has not
// expired (this node's clock runs ahead, e.g. after a step forward).
// Nothing changed. Until the next look, one idle period from now, the
// envelope is live: opens go to the database, which refuses them once it
// is expired by its own clock. Whoever asked for the refund hears 0.
void on_refund_refused(envelope_pointer self, const std::string& why) {
  auto& st = self->state;
  actors_log().warn("refund_refused envelope={} reason=not_expired "
                    "expires_at_ms={} node_now_ms={} detail={}",
                    st.id, st.env.expires_at_ms, st.cfg.now_ms(), why);
  st.db_says_live = true;
  enter(st, envelope_phase::paid);
  for (auto& rp : st.refund_waiters)
    rp.deliver(int64_t{0});
  st.refund_waiters.clear();
  self->delayed_send(self, std::chrono::milliseconds(st.cfg.idle_ms),
                     expire_atom::value);
  if (finish_stop(self))
    return;
  touch(self);
  dispatch(self);
}

// Refunds an expired envelope's remainder to the sender, once. Like an open
// batch it is an exclusive write: it waits for a batch in flight, and opens
// that arrive meanwhile find the envelope expired.
void maybe_refund(envelope_pointer self) {
  auto& st = self->state;
  if (!due_for_refund(st)) {
    // Nothing is due (any more): e.g. the batch in flight took the last
    // share. Whoever asked for a refund hears so now, not after a timeout.
    if (st.phase != envelope_phase::refunding) {
      for (auto& rp : st.refund_waiters)
        rp.deliver(st.env.refunded_fen);
      st.refund_waiters.clear();
    }
    return;
  }
  if (write_in_flight(st.phase))
    return;
  fail_queued(st, expired_error());
  // No full check here: right after a commit the batch's opens may not be
  // filed yet (the next write goes out first, see on_committed), and the
  // envelope was checked by that commit; the full check follows the refund.
  enter(st, envelope_phase::refunding);
  self->request(st.store, store_timeout, db_refund_atom::value, st.id,
                st.env.epoch)
    .then([=](int64_t amount) { on_refunded(self, amount); },
          [=](caf::error& err) {
            if (to_failure(err).code == errc::not_expired) {
              on_refund_refused(self, to_failure(err).message);
              return;
            }
            stop_after_write_failure(self, err, "refund");
          });
}

// Schedules the refund for the moment the envelope expires, once that is
// at most one idle period away; until then each idle check looks again. A
// timer cannot be cancelled in CAF 0.17 and holds its actor: armed a day
// ahead, every envelope activated that day would stay in the clock's
// schedule (and in memory) until its expiry, passivated or not. A
// passivated actor has no timer; the durable sweeper takes over.
bool expiry_ahead(const envelope_state& st) {
  return !st.expiry_armed && st.env.status == envelope_status::paid
         && st.env.expires_at_ms > 0 && st.phase != envelope_phase::archived;
}

void arm_expiry(envelope_pointer self) {
  auto& st = self->state;
  if (!expiry_ahead(st))
    return;
  auto delay = std::max<int64_t>(0, st.env.expires_at_ms - st.cfg.now_ms());
  if (delay > static_cast<int64_t>(st.cfg.idle_ms))
    return;
  st.expiry_armed = true;
  self->delayed_send(self, std::chrono::milliseconds(delay),
                     expire_atom::value);
}

// Whether anything is in flight or waiting: such an actor is not idle.
bool has_work(const envelope_state& st) {
  return write_in_flight(st.phase) || !st.queue.empty();
}

// Tells the registry this actor has been quiet for `quiet` and may stop.
void report_idle(envelope_pointer self, caf::timespan quiet) {
  auto& st = self->state;
  self->send(st.registry, idle_atom::value,
             idle_report{st.id, st.handled, true,
                         static_cast<int64_t>(
                           std::chrono::duration_cast<std::chrono::milliseconds>(
                             quiet)
                             .count())});
}

void on_committed(envelope_pointer self) {
  auto& st = self->state;
  auto& b = st.inflight;
  auto before = st.env;
  st.env.remaining_fen = b.remaining_fen;
  st.env.remaining_count = b.remaining_count;
  st.env.status = b.status;
  require_batch_invariants(st, before, b, "after commit");

  if (st.cfg.metrics)
    st.cfg.metrics->record_batch(b.opens.size());
  if (failpoint("crash_after_commit")) {
    actors_log().critical("failpoint crash_after_commit envelope={} batch={}",
                     st.id, b.opens.size());
    actors_log().flush();
    std::_Exit(86);
  }
  actors_log().debug("open_committed envelope={} batch={} remaining_count={}",
                st.id, b.opens.size(), st.env.remaining_count);
  // The next write goes out first: it needs only the remainder, and the
  // database works on it while this batch is filed and answered (a hot
  // envelope's writes follow each other without that time in between).
  auto committed = std::move(b.opens);
  st.inflight = open_batch{};
  enter(st, resting_phase(st.env.status));
  if (!st.stop_requested || st.flush_before_stop)
    dispatch(self);
  auto first = st.opens.size();
  for (auto& rec : committed) {
    st.opened.emplace(rec.user, st.opens.size());
    st.opens.push_back(std::move(rec));
  }
  if (st.opened.size() != st.opens.size())
    log_if_broken(st, "after commit", "a user opened twice");
  HB_ASSERT(st.opened.size() == st.opens.size(),
            "envelope {}: a user opened twice ({} users, {} opens)", st.id,
            st.opened.size(), st.opens.size());
  for (auto i = first; i < st.opens.size(); ++i)
    deliver_open(st, st.opens[i]);
  sync_gauge(st);
  if (finish_stop(self))
    return;
  touch(self);
  maybe_refund(self);
}

// Whether a write sent to the commit batcher has waited longer than the
// batcher's own store timeout: then the batcher died with the write (CAF
// 0.17 drops a dead actor's promises without an answer). Checked by the idle
// tick, which a writing actor keeps armed, so it is noticed within one idle
// period after store_timeout.
bool commit_overdue(envelope_pointer self) {
  auto& st = self->state;
  return st.phase == envelope_phase::writing && st.cfg.committer
         && self->clock().now() - st.write_started > store_timeout;
}

// Takes the users of the next batch off the queue: at most batch_max and
// at most the shares left. A user whose client deadline has passed is
// answered DEADLINE_EXCEEDED and not taken.
std::vector<std::string> take_batch_users(envelope_state& st, int64_t now) {
  std::vector<std::string> users;
  auto take_max = std::min<int64_t>(st.cfg.batch_max,
                                    std::max(0, st.env.remaining_count));
  while (!st.queue.empty() && static_cast<int64_t>(users.size()) < take_max) {
    auto user = std::move(st.queue.front());
    st.queue.pop_front();
    int64_t deadline = 0;
    if (auto dl = st.deadlines.find(user); dl != st.deadlines.end()) {
      deadline = dl->second;
      st.deadlines.erase(dl);
    }
    if (deadline != 0 && now >= deadline) {
      // Nobody waits for this answer any more: drop it, do not execute it.
      auto it = st.waiters.find(user);
      for (auto& rp : it->second)
        rp.deliver(make_error(errc::deadline_exceeded,
                              "the client's deadline passed while the open "
                              "waited; it was not executed"));
      st.waiters.erase(it);
      if (st.cfg.metrics)
        st.cfg.metrics->deadline_drops.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    users.push_back(std::move(user));
  }
  return users;
}

// Answers every queued user with SHARES_PENDING: the batch about to be
// written takes every share left, but it is not committed yet.
void fail_queued_pending(envelope_state& st) {
  fail_queued(st, shares_pending_error());
}

// The database refused the batch in flight: the envelope expired by its
// clock (which may run ahead of this node's). Nothing was written; the
// batch's users and the queued ones hear EXPIRED, as they would have from
// this node's clock, and the refund follows (the database agrees it is due).
void on_commit_expired(envelope_pointer self) {
  auto& st = self->state;
  actors_log().info("open_refused_expired envelope={} batch={} "
                    "(expired by the database's clock)",
                    st.id, st.inflight.opens.size());
  st.db_expired = true;
  st.db_says_live = false;
  for (auto& rec : st.inflight.opens) {
    auto it = st.waiters.find(rec.user);
    if (it == st.waiters.end())
      continue;
    for (auto& rp : it->second)
      rp.deliver(expired_error());
    st.waiters.erase(it);
  }
  st.inflight = open_batch{};
  fail_queued(st, expired_error());
  enter(st, envelope_phase::paid);
  sync_gauge(st);
  if (finish_stop(self))
    return;
  touch(self);
  maybe_refund(self);
}

// Decides the shares of the next batch (the domain's plan) and sends it as
// one write.
void dispatch(envelope_pointer self) {
  auto& st = self->state;
  if (write_in_flight(st.phase) || st.queue.empty())
    return;
  if (is_expired(st)) {
    // Opens queued behind the last batch lost the race against expiry.
    fail_queued(st, expired_error());
    maybe_refund(self);
    return;
  }
  auto now = st.cfg.now_ms();
  auto users = take_batch_users(st, now);
  auto plan = plan_open_batch(
    st.env, std::move(users),
    [&st](const std::string& user) { return st.opened.count(user) > 0; },
    money{st.cfg.share_max_fen}, now, st.rng);
  // An open is queued only when the user has no share and is not queued
  // yet, and no more users are taken than shares are left.
  HB_ASSERT(plan.repeats.empty() && plan.unserved.empty(),
            "envelope {}: a queued user holds a share or got none ({} "
            "repeats, {} unserved)",
            st.id, plan.repeats.size(), plan.unserved.size());
  auto& b = plan.batch;
  // Users the reservation rule let in but who find no share left (only
  // possible if limits changed underneath) retry: the batch may fail.
  if (b.remaining_count == 0)
    fail_queued_pending(st);
  if (b.opens.empty())
    return;
  require_batch_invariants(st, st.env, b, "before commit");
  st.inflight = b;
  enter(st, envelope_phase::writing);
  sync_gauge(st);
  auto on_ok = [=](caf::ok_atom) { on_committed(self); };
  auto on_err = [=](caf::error& err) {
    if (bugs::on(bug::reply_on_failed_write)
        && to_failure(err).code == errc::unavailable) {
      on_committed(self);
      return;
    }
    if (to_failure(err).code == errc::expired) {
      on_commit_expired(self);
      return;
    }
    stop_after_write_failure(self, err, "commit_opens");
  };
  // Urgent: the answer jumps the grabs and opens queued in this mailbox, so
  // that the next write is not held up behind them (CAF gives a response
  // the priority of its request).
  constexpr auto urgent = caf::message_priority::high;
  st.write_started = self->clock().now();
  if (st.cfg.committer)
    // No CAF timeout: one per batch cost the clock thread an entry it never
    // cancels (~10 % of the node's CPU in open loop). The batcher answers
    // within its own store timeout; if it dies without answering, the idle
    // check notices the overdue write (see commit_overdue).
    self->request<urgent>(st.cfg.committer, caf::infinite,
                          db_commit_atom::value, std::move(b))
      .then(on_ok, on_err);
  else
    self->request<urgent>(st.store, store_timeout, db_commit_atom::value,
                          std::move(b))
      .then(on_ok, on_err);
}

// The latest deadline of a queued user's requests; 0 when one has none.
void note_deadline(envelope_state& st, const std::string& user,
                   int64_t deadline_ms, bool first) {
  auto& d = st.deadlines[user];
  if (first)
    d = deadline_ms;
  else if (d != 0)
    d = deadline_ms == 0 ? 0 : std::max(d, deadline_ms);
}

caf::result<open_result> handle_open(envelope_pointer self, std::string& user,
                                     int64_t deadline_ms) {
  auto& st = self->state;
  auto done = st.opened.find(user);
  if (done != st.opened.end()) {
    auto& rec = st.opens[done->second];
    return open_result{rec.amount_fen, rec.seq, false, st.env.count};
  }
  auto waiting = st.waiters.find(user);
  if (waiting != st.waiters.end()) {
    auto rp = self->make_response_promise<open_result>();
    waiting->second.push_back(rp);
    note_deadline(st, user, deadline_ms, false);
    return rp;
  }
  if (auto err = open_refusal(st)) {
    maybe_refund(self);
    return err;
  }
  auto rp = self->make_response_promise<open_result>();
  st.waiters[user].push_back(rp);
  note_deadline(st, user, deadline_ms, true);
  st.queue.push_back(std::move(user));
  dispatch(self);
  sync_gauge(st);
  return rp;
}

grab_result handle_grab(envelope_state& st, const std::string& user) {
  grab_result res;
  res.remaining_count
    = static_cast<int32_t>(std::max<int64_t>(0, st.env.remaining_count
                                                  - reserved(st)));
  auto done = st.opened.find(user);
  if (done != st.opened.end()) {
    res.outcome = grab_outcome::already_opened;
    res.amount_fen = st.opens[done->second].amount_fen;
  } else if (st.env.status == envelope_status::created) {
    res.outcome = grab_outcome::not_paid;
  } else if (is_expired(st)) {
    res.outcome = grab_outcome::expired;
  } else if (st.waiters.count(user) > 0) {
    res.outcome = grab_outcome::can_open;
  } else if (st.env.remaining_count <= 0
             || (res.remaining_count == 0
                 && bugs::on(bug::exhausted_while_pending))) {
    // 手慢了 only once every share is committed; while the last ones are
    // only reserved, an open hears SHARES_PENDING and retries.
    res.outcome = grab_outcome::exhausted;
  } else {
    res.outcome = grab_outcome::can_open;
  }
  return res;
}

caf::result<int64_t> handle_refund(envelope_pointer self) {
  auto& st = self->state;
  if (st.env.status == envelope_status::refunded)
    return st.env.refunded_fen;
  if (!due_for_refund(st))
    return int64_t{0};
  auto rp = self->make_response_promise<int64_t>();
  st.refund_waiters.push_back(rp);
  maybe_refund(self);
  return rp;
}

caf::result<envelope> handle_pay(envelope_pointer self, std::string& txn,
                                 bool from_wallet) {
  auto& st = self->state;
  if (txn.empty())
    return make_error(errc::invalid_argument, "payment_txn must not be empty");
  if (st.phase == envelope_phase::archived)
    return make_error(errc::invalid_argument,
                      "the envelope is archived and can no longer be paid");
  if (st.env.status != envelope_status::created) {
    if (st.env.payment_txn == txn)
      return st.env;
    return make_error(errc::payment_mismatch,
                      "the envelope was paid with another payment txn");
  }
  if (st.phase == envelope_phase::paying) {
    if (st.paying_txn != txn)
      return make_error(errc::busy, "another payment is being recorded; retry");
    auto rp = self->make_response_promise<envelope>();
    st.pay_waiters.push_back(rp);
    return rp;
  }
  payment p;
  p.envelope_id = st.id;
  p.epoch = st.env.epoch;
  p.payment_txn = txn;
  p.paid_at_ms = st.cfg.now_ms();
  p.expires_at_ms = p.paid_at_ms + st.cfg.expiry_ms;
  p.from_wallet = from_wallet;
  require_invariants(st, "before payment");
  enter(st, envelope_phase::paying);
  st.paying_txn = txn;
  auto rp = self->make_response_promise<envelope>();
  st.pay_waiters.push_back(rp);
  auto sent = st.cfg.payer
                ? self->request(st.cfg.payer, store_timeout, db_pay_atom::value, p)
                : self->request(st.store, store_timeout, db_pay_atom::value, p);
  std::move(sent).then(
      [=](caf::ok_atom) {
        auto& st = self->state;
        st.env.status = envelope_status::paid;
        st.env.payment_txn = p.payment_txn;
        st.env.paid_at_ms = p.paid_at_ms;
        st.env.expires_at_ms = p.expires_at_ms;
        st.paying_txn.clear();
        require_invariants(st, "after payment");
        enter(st, envelope_phase::paid);
        actors_log().info("envelope_paid envelope={} total_fen={} count={}", st.id,
                     st.env.total_fen, st.env.count);
        for (auto& w : st.pay_waiters)
          w.deliver(st.env);
        st.pay_waiters.clear();
        if (finish_stop(self))
          return;
        arm_expiry(self);
      },
      [=](caf::error& err) {
        auto& st = self->state;
        st.paying_txn.clear();
        auto f = to_failure(err);
        if (f.code == errc::payment_mismatch || f.code == errc::conflict
            || f.code == errc::insufficient_funds
            || f.code == errc::invalid_argument) {
          // The database refused the txn and changed nothing.
          enter(st, envelope_phase::unpaid);
          for (auto& w : st.pay_waiters)
            w.deliver(err);
          st.pay_waiters.clear();
          return;
        }
        stop_after_write_failure(self, err, "confirm_payment");
      });
  return rp;
}

envelope_actor::behavior_type running(envelope_pointer self) {
  return {
    [=](grab_atom, int64_t, const std::string& user) -> grab_result {
      ++self->state.handled;
      touch(self);
      return handle_grab(self->state, user);
    },
    [=](open_atom, int64_t, std::string& user,
        int64_t deadline_ms) -> caf::result<open_result> {
      ++self->state.handled;
      touch(self);
      return handle_open(self, user, deadline_ms);
    },
    [=](grab_atom, int64_t, const std::string& user,
        direct_atom) -> grab_result {
      touch(self);
      return handle_grab(self->state, user);
    },
    [=](open_atom, int64_t, std::string& user, int64_t deadline_ms,
        direct_atom) -> caf::result<open_result> {
      touch(self);
      return handle_open(self, user, deadline_ms);
    },
    [=](pay_atom, int64_t, std::string& txn,
        bool from_wallet) -> caf::result<envelope> {
      ++self->state.handled;
      touch(self);
      return handle_pay(self, txn, from_wallet);
    },
    [=](get_atom, int64_t) -> envelope_detail {
      ++self->state.handled;
      touch(self);
      return envelope_detail{self->state.env, self->state.opens};
    },
    [=](refund_atom, int64_t) -> caf::result<int64_t> {
      ++self->state.handled;
      touch(self);
      return handle_refund(self);
    },
    [=](expire_atom) {
      // Also the look again after a refund the database refused.
      self->state.db_says_live = false;
      maybe_refund(self);
    },
    [=](keep_atom) {
      rearm_idle_check(self);
      arm_expiry(self);  // a kept idle actor refunds on time itself
    },
    // The registry is at its cap and looks for room: an actor quiet for
    // `quiet_min_ms` with nothing in flight reports idle now instead of at
    // its next idle check (the registry decides, as for any idle report).
    [=](idle_check_atom, int64_t quiet_min_ms) {
      auto& st = self->state;
      auto quiet = self->clock().now() - st.last_active;
      if (!has_work(st) && quiet >= std::chrono::milliseconds(quiet_min_ms))
        report_idle(self, quiet);
    },
    // Passivation or shutdown: a write in flight is finished first (its
    // waiters get their answer); queued opens are told to retry.
    [=](stop_atom) {
      auto& st = self->state;
      fail_queued(st, make_error(errc::unavailable,
                                 "the envelope is moving or the node is "
                                 "shutting down; retry"));
      st.stop_requested = true;
      finish_stop(self);
    },
    [=](handoff_atom) {
      auto& st = self->state;
      st.stop_requested = true;
      st.flush_before_stop = true;
      dispatch(self);  // the queue as one more batch, if none is in flight
      finish_stop(self);
    },
    [=](tick_atom) {
      auto& st = self->state;
      st.tick_pending = false;
      if (commit_overdue(self)) {
        stop_after_write_failure(
          self,
          make_error(errc::unavailable,
                     "the commit batcher did not answer the write in time"),
          "commit_opens");
        return;
      }
      auto idle = std::chrono::milliseconds(st.cfg.idle_ms);
      bool busy = has_work(st);
      auto quiet = self->clock().now() - st.last_active;
      if (!busy && quiet >= idle) {
        // Reported once; new work arms the next check. The registry lets
        // an idle actor go, and the sweeper refunds it when it expires, or
        // keeps it while the node has room (keep_atom re-arms the check).
        report_idle(self, quiet);
        return;
      }
      st.tick_pending = true;
      auto wait = busy ? idle
                       : std::chrono::duration_cast<std::chrono::milliseconds>(
                         idle - quiet);
      self->delayed_send(self, wait, tick_atom::value);
      arm_expiry(self);  // the next check may come too late for the expiry
    },
  };
}

// Activation failed (e.g. no such envelope): answer every request with the
// error until the registry lets the actor go. A missing envelope is
// remembered for one idle period so that repeated requests for it do not
// reach the database; any other failure is reported idle at once.
envelope_actor::behavior_type failed(envelope_pointer self) {
  auto fail = [=] {
    auto& st = self->state;
    ++st.handled;
    // A transient failure (the database was unreachable) is reported idle
    // again at once, so that the registry lets the actor go and the next
    // request re-activates it; only a missing envelope waits an idle period.
    if (to_failure(st.failure).code == errc::not_found) {
      touch(self);
    } else if (!st.tick_pending) {
      st.tick_pending = true;
      self->send(self, tick_atom::value);
    }
    return st.failure;
  };
  return {
    [=](grab_atom, int64_t, const std::string&) -> caf::result<grab_result> {
      return fail();
    },
    [=](open_atom, int64_t, std::string&, int64_t) -> caf::result<open_result> {
      return fail();
    },
    [=](grab_atom, int64_t, const std::string&,
        direct_atom) -> caf::result<grab_result> {
      return self->state.failure;
    },
    [=](open_atom, int64_t, std::string&, int64_t,
        direct_atom) -> caf::result<open_result> {
      return self->state.failure;
    },
    [=](pay_atom, int64_t, std::string&, bool) -> caf::result<envelope> {
      return fail();
    },
    [=](get_atom, int64_t) -> caf::result<envelope_detail> { return fail(); },
    [=](refund_atom, int64_t) -> caf::result<int64_t> { return fail(); },
    [=](expire_atom) {},
    [=](stop_atom) {
      enter(self->state, envelope_phase::stopped);
      self->quit();
    },
    [=](handoff_atom) {
      enter(self->state, envelope_phase::stopped);
      self->quit();
    },
    [=](keep_atom) {},  // never sent: a failed actor reports unhealthy
    [=](idle_check_atom, int64_t) {
      auto& st = self->state;
      self->send(st.registry, idle_atom::value,
                 idle_report{st.id, st.handled, false, 0});
    },
    [=](tick_atom) {
      auto& st = self->state;
      st.tick_pending = false;
      self->send(st.registry, idle_atom::value,
                 idle_report{st.id, st.handled, false, 0});
    },
  };
}

// Until the envelope is loaded, requests wait in the mailbox; `become`
// re-delivers them afterwards in their original order.
envelope_actor::behavior_type loading(envelope_pointer self) {
  return {
    [=](grab_atom, int64_t, const std::string&) -> caf::result<grab_result> {
      return caf::skip;
    },
    [=](open_atom, int64_t, std::string&, int64_t) -> caf::result<open_result> {
      return caf::skip;
    },
    [=](grab_atom, int64_t, const std::string&,
        direct_atom) -> caf::result<grab_result> {
      return caf::skip;
    },
    [=](open_atom, int64_t, std::string&, int64_t,
        direct_atom) -> caf::result<open_result> {
      return caf::skip;
    },
    [=](pay_atom, int64_t, std::string&, bool) -> caf::result<envelope> {
      return caf::skip;
    },
    [=](get_atom, int64_t) -> caf::result<envelope_detail> {
      return caf::skip;
    },
    [=](refund_atom, int64_t) -> caf::result<int64_t> { return caf::skip; },
    [=](expire_atom) -> caf::result<void> { return caf::skip; },
    [=](stop_atom) -> caf::result<void> { return caf::skip; },
    [=](handoff_atom) -> caf::result<void> { return caf::skip; },
    [=](keep_atom) -> caf::result<void> { return caf::skip; },
    [=](idle_check_atom, int64_t) -> caf::result<void> { return caf::skip; },
    [=](tick_atom) -> caf::result<void> { return caf::skip; },
  };
}

void on_activated(envelope_pointer self, envelope_snapshot& snap) {
  auto& st = self->state;
  enter(st, loaded_phase(snap));
  st.env = std::move(snap.env);
  st.opens = std::move(snap.opens);
  for (size_t i = 0; i < st.opens.size(); ++i)
    st.opened.emplace(st.opens[i].user, i);
  require_invariants(st, "on activation");
  if (st.cfg.metrics)
    st.cfg.metrics->activations.fetch_add(1);
  actors_log().debug("envelope_activated envelope={} epoch={} opens={}", st.id,
                st.env.epoch, st.opens.size());
  self->become(running(self));
  touch(self);
  arm_expiry(self);
}

void on_activation_failed(envelope_pointer self, caf::error& err) {
  auto& st = self->state;
  auto f = to_failure(err);
  if (f.code != errc::not_found)
    actors_log().warn("envelope_activation_failed envelope={} code={} error={}",
                 st.id, to_string(f.code), f.message);
  if (f.code == errc::not_found)
    st.failure = make_error(errc::not_found,
                            "no envelope with id " + std::to_string(st.id));
  else
    st.failure = make_error(errc::unavailable,
                            "cannot load the envelope (" + f.message
                              + "); retry");
  enter(st, envelope_phase::failed);
  self->become(failed(self));
  auto wait = f.code == errc::not_found
                ? std::chrono::milliseconds(st.cfg.idle_ms)
                : std::chrono::milliseconds(0);
  st.tick_pending = true;
  self->delayed_send(self, wait, tick_atom::value);
}

envelope_actor::behavior_type envelope_impl(envelope_pointer self, int64_t id,
                                            envelope_store store,
                                            passivation_sink registry,
                                            envelope_settings cfg) {
  auto& st = self->state;
  st.id = id;
  st.store = std::move(store);
  st.registry = std::move(registry);
  if (!cfg.now_ms)
    cfg.now_ms = system_now_ms;
  // One draw from the OS per process; each envelope mixes in its id.
  static const uint64_t process_seed = std::random_device{}()
                                       ^ (uint64_t{std::random_device{}()} << 32);
  st.rng.seed(cfg.rng_seed != 0 ? cfg.rng_seed
                                : process_seed ^ (static_cast<uint64_t>(id)
                                                  * 0x9E3779B97F4A7C15ULL));
  self->attach_functor([self] { sync_gauge(self->state, true); });
  st.cfg = std::move(cfg);
  auto on_snapshot = [=](envelope_snapshot& snap) { on_activated(self, snap); };
  auto on_error = [=](caf::error& err) { on_activation_failed(self, err); };
  if (bugs::on(bug::skip_epoch_bump))
    self->request(st.store, store_timeout, db_load_atom::value, id)
      .then(on_snapshot, on_error);
  else if (st.cfg.activator)
    self->request(st.cfg.activator, store_timeout, db_activate_atom::value, id)
      .then(on_snapshot, on_error);
  else
    self->request(st.store, store_timeout, db_activate_atom::value, id)
      .then(on_snapshot, on_error);
  return loading(self);
}

} // namespace

int64_t system_now_ms() {
  using namespace std::chrono;
  // Real-process tests shift a node's wall clock (e.g. 40 days back to make
  // old envelopes) with HONGBAO_CLOCK_OFFSET_MS; production never sets it.
  static const int64_t offset_ms = [] {
    auto env = std::getenv("HONGBAO_CLOCK_OFFSET_MS");
    return env != nullptr ? std::strtoll(env, nullptr, 10) : 0LL;
  }();
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch())
           .count()
         + offset_ms;
}

envelope_actor spawn_envelope(caf::actor_system& sys, int64_t envelope_id,
                              envelope_store store, passivation_sink registry,
                              const envelope_settings& cfg) {
  return sys.spawn(envelope_impl, envelope_id, std::move(store),
                   std::move(registry), cfg);
}

} // namespace hb

#include "load/engine.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <memory>
#include <queue>
#include <random>
#include <thread>

#include <poll.h>

namespace hb::bench {

namespace {

using steady = std::chrono::steady_clock;

constexpr size_t events_max = 10;

size_t error_slot(errc code) {
  auto i = static_cast<size_t>(code);
  return i < error_slots - 1 ? i : error_slots - 1;
}

int64_t micros(steady::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

double seconds(steady::duration d) {
  return std::chrono::duration<double>(d).count();
}

/// The engine's view of one flow while it runs.
struct flow_state {
  op_kind kind = op_kind::grab;  ///< the request in progress
  steady::time_point issued;     ///< when the user asked (latency origin)
  uint32_t attempt = 0;
  bool maybe_committed = false;  ///< an earlier attempt of this open may have
  bool repeated = false;
};

struct due_retry {
  steady::time_point due;
  uint32_t flow;
  bool operator>(const due_retry& other) const { return due > other.due; }
};

class engine {
public:
  engine(target& tgt, run_book& book, const std::vector<flow>& flows,
         const engine_options& opts)
    : tgt_(tgt), book_(book), flows_(flows), opts_(opts),
      state_(flows.size()), rng_(opts.seed * 0x2545f4914f6cdd1dULL + 3) {
    result_.flows_total = flows.size();
    result_.told.resize(book.envelopes.size());
    result_.unknown.resize(book.envelopes.size());
    held_.resize(book.envelopes.size());
    for (uint32_t i = 0; i < flows.size(); ++i) {
      if (flows[i].held)
        held_[flows[i].env].push_back(i);
      else
        runnable_.push_back(i);
    }
  }

  run_result run() {
    if (!connect_all())
      return std::move(result_);
    start_ = steady::now();
    next_tick_ = start_ + std::chrono::seconds(1);
    last_tick_ = start_;
    last_answer_ = start_;
    for (;;) {
      auto now = steady::now();
      if (!stopping_ && opts_.duration_s > 0
          && seconds(now - start_) >= opts_.duration_s)
        stop(now);
      start_flows(now);
      move_due_retries(now);
      dispatch();
      if (!flush_all()) {
        abandon_rest();
        break;
      }
      if (finished()) {
        if (!stopping_)
          stop(now);
        break;
      }
      if (stopping_ && seconds(now - stop_at_) > opts_.drain_s) {
        note("gave up waiting for " + std::to_string(active_)
             + " flows " + std::to_string(opts_.drain_s)
             + " s after the last one started");
        abandon_rest();
        break;
      }
      // Stalls are judged after reading, so that answers waiting in a
      // socket while the loop was busy elsewhere count as heard.
      if (!wait_and_read(now) || !reconnect_stalled(steady::now())) {
        abandon_rest();
        break;
      }
      if (opts_.progress && steady::now() >= next_tick_)
        print_progress();
    }
    result_.wall_s = seconds(last_answer_ - start_);
    result_.stop_s = seconds(stop_at_ - start_);
    return std::move(result_);
  }

private:
  // -- Sessions ----------------------------------------------------------------

  bool connect_all() {
    for (uint32_t i = 0; i < opts_.connections; ++i) {
      auto s = tgt_.connect(book_, opts_.window);
      if (!s) {
        result_.failure = s.error().message;
        return false;
      }
      sessions_.push_back(std::move(*s));
      in_room_.push_back(true);
      room_.push_back(i);
    }
    session_reconnects_.assign(sessions_.size(), 0);
    session_heard_.assign(sessions_.size(), steady::now());
    return true;
  }

  void make_room(uint32_t s) {
    if (!in_room_[s] && sessions_[s]->in_flight() < sessions_[s]->window()) {
      in_room_[s] = true;
      room_.push_back(s);
    }
  }

  /// A session broke: its requests have unknown outcomes and go again
  /// (every request is idempotent) over a new connection.
  bool on_broken(uint32_t s, const std::string& why) {
    note("connection " + std::to_string(s) + " lost (" + why + ")");
    auto now = steady::now();
    for (auto tag : sessions_[s]->abandon()) {
      auto f = static_cast<uint32_t>(tag);
      if (state_[f].kind == op_kind::open)
        state_[f].maybe_committed = true;
      retry_or_give_up(f, now);
    }
    for (uint32_t attempt = 0; reconnects_left(s); ++attempt) {
      result_.reconnects++;
      session_reconnects_[s]++;
      auto fresh = tgt_.connect(book_, opts_.window);
      if (fresh) {
        sessions_[s] = std::move(*fresh);
        session_heard_[s] = steady::now();
        in_room_[s] = false;
        make_room(s);
        return true;
      }
      note("reconnect failed: " + fresh.error().message);
      std::this_thread::sleep_for(
        std::chrono::milliseconds(reconnect_pause_ms(opts_, attempt)));
    }
    result_.failure = "connection " + std::to_string(s) + " lost for good: " + why;
    return false;
  }

  bool reconnects_left(uint32_t s) const {
    auto used = opts_.reconnects_per_session ? session_reconnects_[s]
                                             : result_.reconnects;
    return used < opts_.reconnects_max;
  }

  /// A session with requests out and no answer for stall_ms: the target is
  /// stuck on it. Count it, then start over on a fresh connection.
  bool reconnect_stalled(steady::time_point now) {
    if (opts_.stall_ms <= 0)
      return true;
    auto limit = std::chrono::milliseconds(opts_.stall_ms);
    for (uint32_t s = 0; s < sessions_.size(); ++s) {
      if (sessions_[s]->in_flight() == 0) {
        session_heard_[s] = now;
        continue;
      }
      if (now - session_heard_[s] <= limit)
        continue;
      result_.stalls++;
      note("connection " + std::to_string(s) + ": no answer within "
           + std::to_string(opts_.stall_ms) + " ms with "
           + std::to_string(sessions_[s]->in_flight())
           + " requests in flight; reconnecting");
      if (!on_broken(s, "stalled"))
        return false;
    }
    return true;
  }

  // -- Flows -------------------------------------------------------------------

  void stop(steady::time_point now) {
    stopping_ = true;
    stop_at_ = now;
  }

  void start_flows(steady::time_point now) {
    if (stopping_)
      return;
    if (opts_.rate <= 0) {
      while (active_ < opts_.users && !runnable_.empty())
        start_flow(now, now);
      return;
    }
    for (;;) {
      if (runnable_.empty())
        return;
      auto due = start_ + std::chrono::duration_cast<steady::duration>(
                            std::chrono::duration<double>(
                              static_cast<double>(scheduled_) / opts_.rate));
      if (due > now)
        return;
      result_.start_lag_max_ms = std::max(
        result_.start_lag_max_ms, static_cast<double>(micros(now - due)) / 1000.0);
      scheduled_++;
      start_flow(due, now);
    }
  }

  void start_flow(steady::time_point issued, steady::time_point) {
    auto f = runnable_.front();
    runnable_.pop_front();
    active_++;
    result_.flows_started++;
    issue(f, flows_[f].sender ? op_kind::create : op_kind::grab, issued);
  }

  void issue(uint32_t f, op_kind kind, steady::time_point issued) {
    auto& st = state_[f];
    st.kind = kind;
    st.issued = issued;
    st.attempt = 0;
    ready_.push_back(f);
  }

  void finish_flow(uint32_t) {
    active_--;
    result_.flows_done++;
  }

  bool finished() const {
    return active_ == 0 && ready_.empty() && retries_.empty()
           && (runnable_.empty() || stopping_);
  }

  // -- Sending -----------------------------------------------------------------

  void move_due_retries(steady::time_point now) {
    while (!retries_.empty() && retries_.top().due <= now) {
      ready_.push_back(retries_.top().flow);
      retries_.pop();
    }
  }

  void dispatch() {
    while (!ready_.empty() && !room_.empty()) {
      auto s = room_.front();
      room_.pop_front();
      in_room_[s] = false;
      auto& sess = *sessions_[s];
      while (!ready_.empty() && sess.in_flight() < sess.window()) {
        auto f = ready_.front();
        ready_.pop_front();
        const auto& fl = flows_[f];
        request req{state_[f].kind, fl.env, fl.user, rng_()};
        result_.ops[static_cast<size_t>(req.kind)].sent++;
        if (req.kind == op_kind::open && result_.first_open_s < 0)
          result_.first_open_s = seconds(steady::now() - start_);
        // The stall clock of a session runs only while it has requests out.
        if (sess.in_flight() == 0)
          session_heard_[s] = steady::now();
        sess.submit(f, req);
        // Spread the requests over the sessions, a few at a time.
        if (sess.window() > 1 && sess.in_flight() % 16 == 0)
          break;
      }
      make_room(s);
    }
  }

  bool flush_all() {
    for (uint32_t s = 0; s < sessions_.size(); ++s) {
      if (!sessions_[s]->wants_write())
        continue;
      std::string why;
      if (!sessions_[s]->flush(why) && !on_broken(s, why))
        return false;
    }
    return true;
  }

  // -- Receiving ---------------------------------------------------------------

  bool wait_and_read(steady::time_point now) {
    auto until = now + std::chrono::milliseconds(100);
    if (!retries_.empty())
      until = std::min(until, retries_.top().due);
    if (opts_.rate > 0 && !stopping_ && !runnable_.empty())
      until = std::min(until, start_ + std::chrono::duration_cast<steady::duration>(
                                         std::chrono::duration<double>(
                                           static_cast<double>(scheduled_)
                                           / opts_.rate)));
    if (opts_.progress)
      until = std::min(until, next_tick_);
    auto wait = std::max<int64_t>(0, micros(until - now));
    pfds_.resize(sessions_.size());
    for (size_t s = 0; s < sessions_.size(); ++s) {
      pfds_[s].fd = sessions_[s]->fd();
      pfds_[s].events = static_cast<short>(
        POLLIN | (sessions_[s]->wants_write() ? POLLOUT : 0));
      pfds_[s].revents = 0;
    }
    timespec ts{static_cast<time_t>(wait / 1000000),
                static_cast<long>((wait % 1000000) * 1000)};
    int n = ::ppoll(pfds_.data(), pfds_.size(), &ts, nullptr);
    if (n <= 0)
      return true;
    for (uint32_t s = 0; s < sessions_.size(); ++s) {
      if ((pfds_[s].revents & (POLLIN | POLLERR | POLLHUP)) == 0)
        continue;
      done_.clear();
      std::string why;
      bool ok = sessions_[s]->read(done_, why);
      auto at = steady::now();
      for (auto& c : done_)
        on_answer(static_cast<uint32_t>(c.tag), c.rep, at);
      if (!done_.empty()) {
        last_answer_ = at;
        session_heard_[s] = at;
      }
      make_room(s);
      if (!ok && !on_broken(s, why))
        return false;
    }
    return true;
  }

  void on_answer(uint32_t f, reply& rep, steady::time_point now) {
    auto& st = state_[f];
    auto& ops = result_.ops[static_cast<size_t>(st.kind)];
    if (rep.unexpected)
      result_.unexpected_responses++;
    if (rep.code != errc::none) {
      ops.errors[error_slot(rep.code)]++;
      if (retryable(rep.code)) {
        // UNAVAILABLE: the node does not know whether the open committed.
        if (st.kind == op_kind::open && rep.code == errc::unavailable)
          st.maybe_committed = true;
        retry_or_give_up(f, now);
        return;
      }
      if (result_.events.size() < events_max
          && rep.code != errc::exhausted)
        note(std::string{to_string(st.kind)} + " answered "
             + to_string(rep.code) + ": " + rep.message);
    }
    ops.answered++;
    if (rep.code == errc::none || !opts_.latency_ok_only)
      ops.latency_us.push_back(micros(now - st.issued));
    if (rep.code == errc::none)
      ops.ok++;
    const auto& fl = flows_[f];
    if (rep.code != errc::none) {
      finish_flow(f);
      return;
    }
    switch (st.kind) {
      case op_kind::create:
        book_.envelopes[fl.env].id = rep.envelope_id;
        issue(f, op_kind::pay, now);
        return;
      case op_kind::pay:
        // The group is notified: its members start (storm).
        for (auto member : held_[fl.env])
          runnable_.push_back(member);
        held_[fl.env].clear();
        finish_flow(f);
        return;
      case op_kind::grab: {
        auto slot = static_cast<size_t>(rep.outcome);
        result_.grab_outcomes[slot < 8 ? slot : 0]++;
        if (rep.outcome == grab_outcome::can_open)
          issue(f, op_kind::open, now);
        else
          finish_flow(f);
        return;
      }
      case op_kind::open:
        result_.last_open_s = seconds(now - start_);
        result_.told[fl.env].push_back(
          load::told_share{fl.user, rep.amount_fen, rep.seq, rep.first_time});
        (rep.first_time ? result_.opens_first : result_.opens_repeat)++;
        if (fl.repeat && !st.repeated) {
          st.repeated = true;
          st.maybe_committed = false;
          issue(f, op_kind::open, now);
        } else {
          finish_flow(f);
        }
        return;
    }
  }

  void retry_or_give_up(uint32_t f, steady::time_point now) {
    auto& st = state_[f];
    auto& ops = result_.ops[static_cast<size_t>(st.kind)];
    if (st.attempt >= opts_.retries_max) {
      ops.gave_up++;
      give_up(f);
      return;
    }
    st.attempt++;
    ops.retries++;
    auto ceiling = retry_backoff_ceiling_ms(opts_, st.attempt);
    std::uniform_int_distribution<int64_t> jitter(ceiling / 2, ceiling);
    retries_.push(due_retry{now + std::chrono::milliseconds(jitter(rng_)), f});
  }

  void give_up(uint32_t f) {
    const auto& st = state_[f];
    if (st.kind == op_kind::open && st.maybe_committed)
      result_.unknown[flows_[f].env].push_back(flows_[f].user);
    finish_flow(f);
  }

  /// The drain took too long: whatever is still out counts as given up.
  void abandon_rest() {
    for (auto& s : sessions_)
      for (auto tag : s->abandon()) {
        state_[tag].maybe_committed = true;
        result_.ops[static_cast<size_t>(state_[tag].kind)].gave_up++;
        give_up(static_cast<uint32_t>(tag));
      }
    for (auto f : ready_) {
      result_.ops[static_cast<size_t>(state_[f].kind)].gave_up++;
      give_up(f);
    }
    ready_.clear();
    while (!retries_.empty()) {
      auto f = retries_.top().flow;
      retries_.pop();
      result_.ops[static_cast<size_t>(state_[f].kind)].gave_up++;
      give_up(f);
    }
  }

  // -- Reporting ---------------------------------------------------------------

  void note(std::string text) {
    if (result_.events.size() < events_max)
      result_.events.push_back(std::move(text));
  }

  void print_progress() {
    auto now = steady::now();
    auto opens = result_.ops[static_cast<size_t>(op_kind::open)].ok;
    progress_view v;
    v.phase = opts_.phase.c_str();
    v.t_s = seconds(now - start_);
    v.opens_per_s = static_cast<double>(opens - opens_at_tick_)
                    / std::max(1e-3, seconds(now - last_tick_));
    for (auto& s : sessions_)
      v.in_flight += s->in_flight();
    v.waiting = ready_.size();
    v.result = &result_;
    if (opts_.on_progress)
      opts_.on_progress(v);
    else
      print_progress_line(v);
    opens_at_tick_ = opens;
    last_tick_ = now;
    while (next_tick_ <= now)
      next_tick_ += std::chrono::seconds(1);
  }

  target& tgt_;
  run_book& book_;
  const std::vector<flow>& flows_;
  const engine_options& opts_;
  std::vector<flow_state> state_;
  std::mt19937_64 rng_;
  run_result result_;

  std::vector<std::unique_ptr<session>> sessions_;
  std::vector<uint32_t> session_reconnects_;
  std::vector<steady::time_point> session_heard_;  ///< last answer or idle
  std::vector<bool> in_room_;
  std::deque<uint32_t> room_;  ///< sessions with room for another request
  std::vector<pollfd> pfds_;
  std::vector<completion> done_;

  std::deque<uint32_t> runnable_;             ///< flows not started yet
  std::vector<std::vector<uint32_t>> held_;   ///< per envelope: waiting for pay
  std::deque<uint32_t> ready_;                ///< requests waiting for a session
  std::priority_queue<due_retry, std::vector<due_retry>, std::greater<due_retry>>
    retries_;
  uint64_t active_ = 0;
  uint64_t scheduled_ = 0;  ///< open loop: flows started on the schedule

  steady::time_point start_;
  steady::time_point stop_at_;
  steady::time_point last_answer_;
  steady::time_point next_tick_;
  steady::time_point last_tick_;
  uint64_t opens_at_tick_ = 0;
  bool stopping_ = false;
};

} // namespace

void print_progress_line(const progress_view& v) {
  const auto& r = *v.result;
  auto count = [&](op_kind k) {
    return static_cast<unsigned long long>(r.ops[static_cast<size_t>(k)].ok);
  };
  uint64_t errors = 0;
  uint64_t retries = 0;
  for (auto& o : r.ops) {
    retries += o.retries;
    for (auto e : o.errors)
      errors += e;
  }
  std::fprintf(stderr,
               "  [%s %5.1f s] open %llu (%.0f/s)  grab %llu  create %llu  "
               "pay %llu | flows %llu/%llu | in flight %llu, waiting %zu | "
               "errors %llu, retries %llu\n",
               v.phase, v.t_s, count(op_kind::open), v.opens_per_s,
               count(op_kind::grab), count(op_kind::create), count(op_kind::pay),
               static_cast<unsigned long long>(r.flows_done),
               static_cast<unsigned long long>(r.flows_total),
               static_cast<unsigned long long>(v.in_flight), v.waiting,
               static_cast<unsigned long long>(errors),
               static_cast<unsigned long long>(retries));
}

int reconnect_pause_ms(const engine_options& opts, uint32_t attempt) {
  int64_t pause = static_cast<int64_t>(opts.reconnect_pause_first_ms)
                  << std::min(attempt, 16u);
  return static_cast<int>(std::min<int64_t>(opts.reconnect_pause_max_ms, pause));
}

int64_t retry_backoff_ceiling_ms(const engine_options& opts, uint32_t attempt) {
  return std::min<int64_t>(
    opts.backoff_max_ms,
    static_cast<int64_t>(opts.backoff_first_ms) << std::min(attempt - 1, 20u));
}

run_result run_flows(target& tgt, run_book& book, const std::vector<flow>& flows,
                     const engine_options& opts) {
  engine e{tgt, book, flows, opts};
  return e.run();
}

} // namespace hb::bench

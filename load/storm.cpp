#include "load/storm.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <queue>
#include <random>
#include <thread>
#include <unordered_map>
#include <utility>

#include "domain/requests.hpp"

namespace hb::demo {

namespace {

using steady = std::chrono::steady_clock;

constexpr size_t events_max = 10;
constexpr size_t error_slot_unknown = 16;

/// Counters the progress line reads while the workers run.
struct progress_counters {
  std::atomic<uint64_t> grabs_answered{0};
  std::atomic<uint64_t> opens_committed{0};
  std::atomic<uint64_t> retries{0};
};

/// One thing a user does: grab or open one envelope.
struct op {
  uint32_t user = 0;
  uint32_t env = 0;  ///< index into storm_settings::envelope_ids
  bool open = false;
  uint32_t attempt = 0;  ///< resends so far
  /// An earlier attempt of this open may have committed (UNAVAILABLE or a
  /// lost connection); only a final answer settles it.
  bool maybe_committed = false;
};

struct in_flight {
  op what;
  steady::time_point sent;
};

struct pending_retry {
  steady::time_point due;
  op what;
  bool operator>(const pending_retry& other) const { return due > other.due; }
};

size_t error_slot(errc code) {
  auto i = static_cast<size_t>(code);
  return i < error_slot_unknown ? i : error_slot_unknown;
}

int64_t micros(steady::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

/// Connects and authenticates one connection. On failure returns false and
/// a message for people in `why`.
bool open_connection(const storm_settings& cfg, client::connection& out,
                     std::string& why) {
  auto conn = client::connection::connect(cfg.server.host, cfg.server.port,
                                          cfg.timeout_ms);
  if (!conn) {
    why = conn.error().message;
    return false;
  }
  auto ok = conn->authenticate(cfg.token, cfg.timeout_ms);
  if (!ok) {
    why = "authentication failed: " + ok.error().message;
    return false;
  }
  out = std::move(*conn);
  return true;
}

/// Drives one connection: keeps up to `window` requests in flight, sends a
/// user's open as soon as its grab says can_open, retries retryable answers
/// after a backoff, and reconnects (bounded) when the connection breaks.
class worker {
public:
  worker(const storm_settings& cfg, uint32_t index, client::connection conn,
         progress_counters& progress)
    : cfg_(cfg), index_(index), conn_(std::move(conn)), progress_(progress),
      rng_(cfg.seed ^ (0x9e3779b97f4a7c15ULL * (index + 1))) {
    report_.told.resize(cfg.envelope_ids.size());
    report_.unknown.resize(cfg.envelope_ids.size());
    plan_grabs();
  }

  void run() {
    last_answer_ = steady::now();
    while (!finished()) {
      if (!conn_.connected() && !reconnect()) {
        abandon_all();
        return;
      }
      fill_window();
      if (!conn_.connected())
        continue;
      if (inflight_.empty()) {
        sleep_until_next_retry();
        continue;
      }
      receive_one();
    }
  }

  storm_report& report() { return report_; }

  /// When this worker sent its first Open and got its last OpenResult.
  std::optional<steady::time_point> first_open_sent() const { return first_open_sent_; }
  std::optional<steady::time_point> last_commit() const { return last_commit_; }

private:
  // -- Planning ----------------------------------------------------------------

  /// Every (user, envelope) of this connection's users, in a seeded random
  /// order: users do not queue up politely.
  void plan_grabs() {
    auto envelopes = static_cast<uint32_t>(cfg_.envelope_ids.size());
    for (uint32_t u = index_; u < cfg_.users; u += cfg_.connections)
      for (uint32_t e = 0; e < envelopes; ++e)
        grabs_.push_back(op{u, e, false, 0, false});
    std::shuffle(grabs_.begin(), grabs_.end(), rng_);
  }

  bool finished() const {
    return next_grab_ == grabs_.size() && ready_.empty() && retries_.empty()
           && inflight_.empty();
  }

  // -- Sending -----------------------------------------------------------------

  /// Sends until the window is full or nothing is ready. Opens and due
  /// retries go before new grabs.
  void fill_window() {
    auto now = steady::now();
    while (!retries_.empty() && retries_.top().due <= now) {
      ready_.push_back(retries_.top().what);
      retries_.pop();
    }
    while (inflight_.size() < cfg_.window && conn_.connected()) {
      op next;
      if (!ready_.empty()) {
        next = ready_.front();
        ready_.pop_front();
      } else if (next_grab_ < grabs_.size()) {
        next = grabs_[next_grab_++];
      } else {
        return;
      }
      send(next);
    }
  }

  void send(const op& what) {
    auto id = conn_.next_request_id();
    auto env_id = cfg_.envelope_ids[what.env];
    auto user = user_name(what.user, cfg_.users);
    request_body body = what.open ? request_body{open_request{env_id, user}}
                                  : request_body{grab_request{env_id, user}};
    // Record first: if the send breaks the connection, the request counts as
    // in flight with an unknown outcome.
    auto now = steady::now();
    if (what.open && !first_open_sent_)
      first_open_sent_ = now;
    // The stall clock runs only while something is in flight.
    if (inflight_.empty())
      last_answer_ = now;
    inflight_.emplace(id, in_flight{what, now});
    counts(what).sent++;
    auto sent = conn_.send(client_request{id, std::move(body)});
    if (!sent)
      on_broken(sent.error().message);
  }

  answer_counts& counts(const op& what) {
    return what.open ? report_.opens : report_.grabs;
  }

  // -- Receiving ---------------------------------------------------------------

  void receive_one() {
    // With a full window nothing can be sent before an answer arrives; with
    // room in it, fill_window sent all that was ready, so wake up for the
    // next retry at the latest. Never spin: the node shares the CPU.
    int wait_ms = 50;
    if (inflight_.size() < cfg_.window && !retries_.empty()) {
      auto until = retries_.top().due - steady::now();
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(until);
      wait_ms = static_cast<int>(std::clamp<int64_t>(ms.count() + 1, 1, 50));
    }
    auto resp = conn_.receive(wait_ms);
    auto now = steady::now();
    if (!resp) {
      if (!conn_.connected()) {
        on_broken(resp.error().message);
      } else if (now - last_answer_
                 > std::chrono::milliseconds(cfg_.timeout_ms)) {
        // In-flight requests and no answer at all for timeout_ms: the node
        // is stuck on this connection. Count it, then start over cleanly.
        report_.stalls++;
        note("connection " + std::to_string(index_) + ": no answer within "
             + std::to_string(cfg_.timeout_ms) + " ms with "
             + std::to_string(inflight_.size())
             + " requests in flight; reconnecting");
        conn_.close();
        on_broken("stalled");
      }
      return;
    }
    last_answer_ = now;
    on_response(*resp, now);
  }

  void on_response(client_response& resp, steady::time_point now) {
    if (resp.request_id == 0) {
      // An error about the connection itself: the node closes it.
      std::string what = "?";
      if (auto* err = std::get_if<error_reply>(&resp.body))
        what = std::string{to_string(err->code)} + ": " + err->message;
      report_.unexpected_responses++;
      note("connection " + std::to_string(index_)
           + ": the node reported a connection error (" + what + ")");
      conn_.close();
      on_broken("connection error");
      return;
    }
    auto it = inflight_.find(resp.request_id);
    if (it == inflight_.end()) {
      report_.unexpected_responses++;
      note("connection " + std::to_string(index_)
           + ": response to unknown request id "
           + std::to_string(resp.request_id));
      return;
    }
    op what = it->second.what;
    auto latency = micros(now - it->second.sent);
    inflight_.erase(it);
    if (auto* err = std::get_if<error_reply>(&resp.body))
      on_error(what, *err);
    else if (auto* g = std::get_if<grab_result>(&resp.body); g && !what.open)
      on_grab(what, *g, latency);
    else if (auto* o = std::get_if<open_result>(&resp.body); o && what.open)
      on_open(what, *o, latency);
    else
      on_wrong_body(what);
  }

  void on_grab(const op& what, const grab_result& res, int64_t latency_us) {
    auto slot = static_cast<size_t>(res.outcome);
    report_.grabs.results[slot < 8 ? slot : 0]++;
    report_.grabs.latency_us.push_back(latency_us);
    progress_.grabs_answered++;
    if (res.outcome == grab_outcome::can_open)
      ready_.push_back(op{what.user, what.env, true, 0, false});
  }

  void on_open(const op& what, const open_result& res, int64_t latency_us) {
    report_.opens.results[0]++;
    report_.opens.latency_us.push_back(latency_us);
    last_commit_ = steady::now();
    if (!res.first_time)
      report_.opens.repeats++;
    report_.told[what.env].push_back(
      told_share{what.user, res.amount_fen, res.seq, res.first_time});
    progress_.opens_committed++;
  }

  void on_error(op what, const error_reply& err) {
    counts(what).errors[error_slot(err.code)]++;
    if (!retryable(err.code)) {
      // Final: exhausted (手慢了 at the open), expired, ...
      if (!what.open)
        progress_.grabs_answered++;
      return;
    }
    // UNAVAILABLE means the node does not know whether the open committed.
    if (what.open && err.code == errc::unavailable)
      what.maybe_committed = true;
    retry_or_give_up(what);
  }

  void on_wrong_body(const op& what) {
    report_.unexpected_responses++;
    note("connection " + std::to_string(index_) + ": a "
         + (what.open ? "Open" : "Grab")
         + " was answered with the wrong kind of response");
  }

  // -- Retries and reconnects --------------------------------------------------

  void retry_or_give_up(op what) {
    auto& c = counts(what);
    if (what.attempt >= cfg_.retries_max) {
      c.gave_up++;
      if (what.open && what.maybe_committed)
        report_.unknown[what.env].push_back(what.user);
      return;
    }
    what.attempt++;
    c.retries++;
    progress_.retries++;
    // Exponential backoff with jitter, as docs/protocol.md section 5 advises.
    int64_t ceiling = std::min<int64_t>(
      cfg_.backoff_max_ms,
      static_cast<int64_t>(cfg_.backoff_first_ms) << std::min(what.attempt - 1, 20u));
    std::uniform_int_distribution<int64_t> jitter(ceiling / 2, ceiling);
    retries_.push(pending_retry{
      steady::now() + std::chrono::milliseconds(jitter(rng_)), what});
  }

  /// The connection broke: whatever was in flight has an unknown outcome and
  /// is sent again (every request is idempotent) after reconnecting.
  void on_broken(const std::string& why) {
    note("connection " + std::to_string(index_) + " lost (" + why + ") with "
         + std::to_string(inflight_.size()) + " requests in flight");
    auto lost = std::move(inflight_);
    inflight_.clear();
    for (auto& [id, entry] : lost) {
      op what = entry.what;
      if (what.open)
        what.maybe_committed = true;
      retry_or_give_up(what);
    }
  }

  /// Reconnects with a growing pause between attempts (a node restarting
  /// takes a moment), at most reconnects_max attempts per connection.
  bool reconnect() {
    std::string why = "no attempt left";
    while (reconnects_ < cfg_.reconnects_max) {
      auto pause_ms = std::min<int64_t>(cfg_.backoff_max_ms,
                                        int64_t{250} << std::min(reconnects_, 16u));
      std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
      reconnects_++;
      report_.reconnects++;
      if (open_connection(cfg_, conn_, why)) {
        last_answer_ = steady::now();
        return true;
      }
    }
    report_.failure = "connection " + std::to_string(index_) + " gave up after "
                      + std::to_string(cfg_.reconnects_max)
                      + " reconnects: " + why;
    return false;
  }

  /// The connection is gone for good: nothing more gets an answer.
  void abandon_all() {
    for (auto& what : ready_)
      give_up(what);
    while (!retries_.empty()) {
      give_up(retries_.top().what);
      retries_.pop();
    }
    for (; next_grab_ < grabs_.size(); ++next_grab_)
      give_up(grabs_[next_grab_]);
    ready_.clear();
  }

  void give_up(const op& what) {
    counts(what).gave_up++;
    if (what.open && what.maybe_committed)
      report_.unknown[what.env].push_back(what.user);
  }

  void sleep_until_next_retry() {
    if (retries_.empty())
      return;
    std::this_thread::sleep_until(retries_.top().due);
  }

  void note(std::string text) {
    if (report_.events.size() < events_max)
      report_.events.push_back(std::move(text));
  }

  const storm_settings& cfg_;
  uint32_t index_;
  client::connection conn_;
  progress_counters& progress_;
  std::mt19937_64 rng_;
  storm_report report_;

  std::vector<op> grabs_;
  size_t next_grab_ = 0;
  std::deque<op> ready_;
  std::priority_queue<pending_retry, std::vector<pending_retry>,
                      std::greater<pending_retry>>
    retries_;
  std::unordered_map<uint64_t, in_flight> inflight_;
  steady::time_point last_answer_;
  uint32_t reconnects_ = 0;
  std::optional<steady::time_point> first_open_sent_;
  std::optional<steady::time_point> last_commit_;
};

void merge_counts(answer_counts& into, answer_counts& from) {
  for (size_t i = 0; i < into.results.size(); ++i)
    into.results[i] += from.results[i];
  for (size_t i = 0; i < into.errors.size(); ++i)
    into.errors[i] += from.errors[i];
  into.sent += from.sent;
  into.retries += from.retries;
  into.gave_up += from.gave_up;
  into.repeats += from.repeats;
  into.latency_us.insert(into.latency_us.end(), from.latency_us.begin(),
                         from.latency_us.end());
}

void merge(storm_report& into, storm_report& from) {
  merge_counts(into.grabs, from.grabs);
  merge_counts(into.opens, from.opens);
  for (size_t e = 0; e < into.told.size(); ++e) {
    into.told[e].insert(into.told[e].end(), from.told[e].begin(),
                        from.told[e].end());
    into.unknown[e].insert(into.unknown[e].end(), from.unknown[e].begin(),
                           from.unknown[e].end());
  }
  into.reconnects += from.reconnects;
  into.stalls += from.stalls;
  into.unexpected_responses += from.unexpected_responses;
  for (auto& e : from.events)
    if (into.events.size() < events_max)
      into.events.push_back(std::move(e));
  if (into.failure.empty())
    into.failure = std::move(from.failure);
}

/// Prints "grabs 5012/15000, opens 480" to stderr about once a second until
/// told to stop.
class progress_printer {
public:
  progress_printer(const progress_counters& c, uint64_t grabs_total,
                   steady::time_point start)
    : counters_(c), grabs_total_(grabs_total), start_(start) {}

  void run() {
    std::unique_lock<std::mutex> lock{mutex_};
    while (!cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; })) {
      double secs = std::chrono::duration<double>(steady::now() - start_).count();
      std::fprintf(stderr,
                   "  [%5.1f s] grabs %llu/%llu answered, opens %llu committed, "
                   "retries %llu\n",
                   secs,
                   static_cast<unsigned long long>(counters_.grabs_answered.load()),
                   static_cast<unsigned long long>(grabs_total_),
                   static_cast<unsigned long long>(counters_.opens_committed.load()),
                   static_cast<unsigned long long>(counters_.retries.load()));
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock{mutex_};
      stop_ = true;
    }
    cv_.notify_all();
  }

private:
  const progress_counters& counters_;
  uint64_t grabs_total_;
  steady::time_point start_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
};

} // namespace

std::string user_name(uint32_t index, uint32_t users) {
  int digits = 1;
  for (uint32_t n = users; n >= 10; n /= 10)
    ++digits;
  char buf[32];
  std::snprintf(buf, sizeof(buf), "user-%0*u", digits, index + 1);
  return buf;
}

storm_report run_storm(const storm_settings& cfg) {
  storm_report total;
  total.told.resize(cfg.envelope_ids.size());
  total.unknown.resize(cfg.envelope_ids.size());

  // Connect everything first, so that the clock measures the storm only.
  std::vector<client::connection> conns(cfg.connections);
  for (uint32_t i = 0; i < cfg.connections; ++i) {
    std::string why;
    if (!open_connection(cfg, conns[i], why)) {
      total.failure = why;
      return total;
    }
  }

  progress_counters progress;
  std::vector<std::unique_ptr<worker>> workers;
  for (uint32_t i = 0; i < cfg.connections; ++i)
    workers.push_back(
      std::make_unique<worker>(cfg, i, std::move(conns[i]), progress));

  auto start = steady::now();
  progress_printer printer{progress,
                           uint64_t{cfg.users} * cfg.envelope_ids.size(), start};
  std::thread printer_thread;
  if (cfg.progress)
    printer_thread = std::thread{[&printer] { printer.run(); }};
  std::vector<std::thread> threads;
  for (auto& w : workers)
    threads.emplace_back([&w] { w->run(); });
  for (auto& t : threads)
    t.join();
  total.wall_s = std::chrono::duration<double>(steady::now() - start).count();
  printer.stop();
  if (printer_thread.joinable())
    printer_thread.join();

  auto since_start = [start](steady::time_point t) {
    return std::chrono::duration<double>(t - start).count();
  };
  for (auto& w : workers) {
    merge(total, w->report());
    if (auto t = w->first_open_sent())
      if (total.first_open_s < 0 || since_start(*t) < total.first_open_s)
        total.first_open_s = since_start(*t);
    if (auto t = w->last_commit())
      total.last_commit_s = std::max(total.last_commit_s, since_start(*t));
  }
  return total;
}

} // namespace hb::demo

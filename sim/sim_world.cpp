#include "sim/sim_world.hpp"

#include <chrono>
#include <cstdio>

#include "caf/all.hpp"

namespace hb::sim {

namespace {

constexpr const char* fault_names[fault_count] = {
  "store_error",      "store_error_after_commit",
  "store_lost_reply", "store_lost_request",
  "store_outage",     "latency_spike",
  "envelope_crash",   "relay_crash",
  "child_crash",      "node_crash",       "duplicate_request",
  "client_retry",     "reorder",
  "clock_jump",
};

// Default probability per opportunity (a store call, a request, a commit,
// a retryable error); scheduled faults (outages, crashes, jumps) use it as
// the expected number of events per run instead.
constexpr double default_prob[fault_count] = {
  0.0,   // store_error: per segment, drawn per run
  0.03,  // store_error_after_commit: per write
  0.02,  // store_lost_reply: per call
  0.02,  // store_lost_request: per call
  1.0,   // store_outage: windows per run
  0.02,  // latency_spike: per call
  3.0,   // envelope_crash: kills per run (plus crash_after_commit below)
  1.0,   // relay_crash: per run (a fifth of them a burst that escalates)
  1.0,   // child_crash: per run
  0.7,   // node_crash: per run
  0.1,   // duplicate_request: per request
  0.7,   // client_retry: per retryable error while faults are on
  1.0,   // reorder: always (counted when it happens)
  0.5,   // clock_jump: per run
};

} // namespace

const char* to_string(fault f) {
  return fault_names[static_cast<size_t>(f)];
}

std::string payment_key(const payment& p) {
  return "pay:" + std::to_string(p.envelope_id) + ":" + std::to_string(p.epoch)
         + ":" + p.payment_txn;
}

std::string batch_key(const open_batch& b) {
  std::string key = std::to_string(b.envelope_id) + ":"
                    + std::to_string(b.epoch) + ":"
                    + std::to_string(b.remaining_fen) + ":"
                    + std::to_string(b.remaining_count);
  for (auto& o : b.opens)
    key += ":" + o.user;
  return key;
}

bool parse_fault(const std::string& text, fault& out) {
  for (size_t i = 0; i < fault_count; ++i)
    if (text == fault_names[i]) {
      out = static_cast<fault>(i);
      return true;
    }
  return false;
}

world::world(const sim_options& options,
             caf::scheduler::test_coordinator& coordinator)
  : opt(options), sched(coordinator), rng(options.seed) {
  t0_ = sched.clock().current_time;
  // 2027-01-15 00:00 UTC plus a time of day drawn from the seed, so that
  // some runs cross midnight (new id leases per day).
  base_ms = 1799971200000LL + between(0, 24LL * 3600 * 1000 - 1);
  db.now_ms = [this] { return now_ms(); };
  // Each fault kind is switched on for a run with some probability, so that
  // kinds are also tested alone and in small combinations.
  for (size_t i = 0; i < fault_count; ++i) {
    auto f = static_cast<fault>(i);
    bool always = f == fault::reorder || f == fault::client_retry;
    active[i] = opt.fault_on[i] && (always || coin(0.7));
    prob[i] = default_prob[i] * opt.fault_rate;
  }
}

double world::uniform() {
  return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0);
}

int64_t world::between(int64_t lo, int64_t hi) {
  if (hi <= lo)
    return lo;
  auto span = static_cast<uint64_t>(hi - lo) + 1;
  return lo + static_cast<int64_t>(next() % span);
}

int64_t world::sim_ms() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           sched.clock().current_time - t0_)
    .count();
}

bool world::maybe(fault f) {
  return maybe(f, prob[static_cast<size_t>(f)]);
}

bool world::maybe(fault f, double p) {
  if (!can(f) || p <= 0.0)
    return false;
  if (!coin(p))
    return false;
  count(f);
  return true;
}

void world::kill(const caf::strong_actor_ptr& who) {
  if (!who)
    return;
  killed.insert(who->id());
  // High priority: the victim handles the exit before anything else in its
  // mailbox, as if the process died between two messages.
  who->enqueue(nullptr, caf::make_message_id(caf::message_priority::high),
               caf::make_message(
                 caf::exit_msg{who->address(), caf::exit_reason::kill}),
               nullptr);
}

caf::strong_actor_ptr world::alive(uint64_t id) const {
  auto it = actors.find(id);
  if (it == actors.end())
    return nullptr;
  auto ptr = caf::actor_cast<caf::strong_actor_ptr>(it->second.handle);
  return running(ptr) ? ptr : nullptr;
}

bool world::running(const caf::strong_actor_ptr& who) {
  if (!who)
    return false;
  auto raw = caf::actor_cast<caf::abstract_actor*>(who);
  return !raw->getf(caf::abstract_actor::is_terminated_flag);
}

void world::trace(const std::string& line) {
  for (unsigned char c : line) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  hash ^= '\n';
  hash *= 1099511628211ULL;
  if (opt.trace)
    std::printf("%9.3f %s\n", static_cast<double>(sim_ms()) / 1000.0,
                line.c_str());
}

void world::violate(const std::string& what) {
  if (!violation.empty())
    return;
  char where[96];
  std::snprintf(where, sizeof(where), " [phase %s, t=%.3fs, step %llu]", phase,
                static_cast<double>(sim_ms()) / 1000.0,
                static_cast<unsigned long long>(steps));
  violation = what + where;
  if (opt.trace)
    std::printf("VIOLATION %s\n", violation.c_str());
}

void world::note(const std::string& what) {
  if (notes.size() < 20)
    notes.push_back(what);
}

} // namespace hb::sim

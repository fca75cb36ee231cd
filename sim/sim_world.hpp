#pragma once

// The world of one simulation run: its options, the one random generator
// that drives everything, the simulated clock, the fault switches and
// counters, the trace hash and the first invariant violation. Everything in
// a run happens on one thread (CAF's test coordinator runs every actor
// inline), so the world is plain shared state.

#include <array>
#include <cstdint>
#include <map>
#include <utility>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "caf/fwd.hpp"
#include "caf/scheduler/test_coordinator.hpp"
#include "caf/weak_intrusive_ptr.hpp"

#include "sim/sim_db.hpp"

namespace hb::sim {

/// Every kind of fault the simulation injects. Each has a switch (options)
/// and a probability; the run counts how often each actually fired.
enum class fault : uint8_t {
  store_error,               ///< a store call fails, nothing applied (per segment)
  store_error_after_commit,  ///< applied, but the reply is an error
  store_lost_reply,          ///< applied, no reply: the caller times out
  store_lost_request,        ///< not applied, no reply: the caller times out
  store_outage,              ///< every store call fails for a while
  latency_spike,             ///< a call applies or replies seconds late
  envelope_crash,            ///< an envelope actor is killed (also right after a commit)
  relay_crash,               ///< the relay is killed (sometimes again and again)
  child_crash,               ///< another supervised child of the node is killed
  node_crash,                ///< every production actor is killed; memory lost
  duplicate_request,         ///< a client sends the same request twice at once
  client_retry,              ///< a client retries after a retryable error
  reorder,                   ///< the scheduler runs another actor than the oldest ready
  clock_jump,                ///< the wall clock jumps forward (past expiries)
};

constexpr size_t fault_count = 14;

const char* to_string(fault f);

/// Identifies an open batch by its content.
std::string batch_key(const open_batch& b);
std::string payment_key(const payment& p);
bool parse_fault(const std::string& text, fault& out);

/// What one run does; everything not given here comes from the seed.
struct sim_options {
  uint64_t seed = 1;
  /// Multiplies the workload (envelopes, users, operations, load time).
  double scale = 1.0;
  int32_t users = 40;
  int32_t envelopes = 8;
  int32_t ops = 300;
  int64_t load_ms = 90000;    ///< faults and new requests only in this phase
  int64_t expiry_ms = 60000;  ///< envelope expiry (short, so that runs see it)
  /// After faults stop, every request must have its final answer within this.
  int64_t heal_bound_ms = 240000;
  /// After the last expiry, the relay and the sweeper must be done within this.
  int64_t quiesce_bound_ms = 120000;
  std::array<bool, fault_count> fault_on;  ///< switches
  double fault_rate = 1.0;                  ///< scales every probability
  bool trace = false;                       ///< print every delivered message
  std::string log_level = "off";            ///< spdlog level of the actors
  uint64_t max_steps = 3000000;

  sim_options() {
    fault_on.fill(true);
  }
};

/// An actor the driver has seen run.
struct seen_actor {
  caf::weak_actor_ptr handle;
  std::string name;
  bool sim = false;  ///< part of the simulation (store, clients), not the node
};

class world {
public:
  world(const sim_options& options, caf::scheduler::test_coordinator& sched);

  sim_options opt;
  caf::scheduler::test_coordinator& sched;
  sim_db db;

  // -- randomness: one generator for everything ----------------------------------
  std::mt19937_64 rng;
  uint64_t next() { return rng(); }
  /// Uniform in [0, 1).
  double uniform();
  bool coin(double p) { return uniform() < p; }
  /// Uniform in [lo, hi].
  int64_t between(int64_t lo, int64_t hi);

  // -- the clock -------------------------------------------------------------------
  /// Milliseconds since the run started (the test coordinator's clock).
  int64_t sim_ms() const;
  /// Wall time in Unix ms: base + sim time + forward jumps.
  int64_t now_ms() const { return base_ms + sim_ms() + wall_offset_ms; }
  int64_t base_ms = 0;
  int64_t wall_offset_ms = 0;
  /// The coordinator's time when the run started.
  caf::actor_clock::time_point t0() const { return t0_; }

  // -- faults ------------------------------------------------------------------------
  /// Whether faults are injected now (false once the run heals).
  bool faults_on = true;
  std::array<bool, fault_count> active;  ///< switched on for this run
  std::array<double, fault_count> prob;  ///< per opportunity
  std::array<uint64_t, fault_count> fired{};
  /// Store error rate per segment (-1: calls that touch no segment).
  std::map<int32_t, double> segment_error_rate;
  /// Segments whose storage is broken now (most calls fail), with a count
  /// of the overlapping breakdowns.
  std::map<int32_t, int> segment_broken;
  int64_t outage_until_sim_ms = -1;

  bool can(fault f) const {
    return faults_on && active[static_cast<size_t>(f)];
  }
  /// Draws whether `f` fires now, and counts it if so.
  bool maybe(fault f);
  /// Draws with an explicit probability.
  bool maybe(fault f, double p);
  void count(fault f) { ++fired[static_cast<size_t>(f)]; }
  bool in_outage() const { return sim_ms() < outage_until_sim_ms; }
  /// Store calls planned but not yet applied or answered (the store's count).
  size_t store_pending = 0;
  /// Actor ids of the callers of store calls not yet answered or dropped
  /// (their promises refer to them).
  std::multiset<uint64_t> store_holds;
  /// Bumped whenever the store may have changed the database.
  uint64_t db_version = 0;

  // -- actors the driver has seen, by id ----------------------------------------------
  std::map<uint64_t, seen_actor> actors;
  /// Sends `who` an exit with reason kill, ahead of its other messages,
  /// and remembers it (a killed actor's open requests die with it).
  void kill(const caf::strong_actor_ptr& who);
  std::set<uint64_t> killed;
  /// Whether the actor with this id is known and still running.
  caf::strong_actor_ptr alive(uint64_t id) const;
  /// Whether this actor has not terminated.
  static bool running(const caf::strong_actor_ptr& who);

  /// Open batches by content -> the envelope actor that sent it first
  /// (writes may reach the store through the commit batcher).
  std::map<std::string, uint64_t> batch_origin;

  /// Where the hot store reports per-segment results (segment health).
  std::function<void(int32_t segment, bool fault)> segment_report;

  // -- the trace: every delivered message, hashed in order ----------------------------
  uint64_t hash = 1469598103934665603ULL;
  uint64_t messages = 0;
  uint64_t steps = 0;
  void trace(const std::string& line);

  // -- the verdict ------------------------------------------------------------------
  std::string violation;  ///< the first broken invariant, empty while none
  void violate(const std::string& what);
  bool failed() const { return !violation.empty(); }
  /// Non-fatal observations worth printing (e.g. an internal error reply).
  std::vector<std::string> notes;
  void note(const std::string& what);

  /// The phase of the run, for messages.
  const char* phase = "load";

private:
  caf::actor_clock::time_point t0_;
};

} // namespace hb::sim

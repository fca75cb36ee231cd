#pragma once

// One simulation run: the production actors of a node on CAF's test
// coordinator, the simulated store, clock and clients, and the driver loop
// that decides -- from the seed alone -- which ready actor runs next, when
// time advances, which requests arrive and which faults strike.
//
// A run goes through four phases:
//   load     requests arrive at random times and faults strike;
//   heal     faults stop; every request without a final answer is asked
//            again and must get one within heal_bound_ms (liveness);
//   quiesce  time moves past every expiry; the sweeper must refund and the
//            relay must credit everything within quiesce_bound_ms;
//   final    a reconciliation through the router must find nothing, and
//            the full invariant checks run.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "sim/sim_world.hpp"

namespace hb::sim {

struct sim_result {
  uint64_t seed = 0;
  uint64_t hash = 0;  ///< of every delivered message, in order
  uint64_t messages = 0;
  uint64_t steps = 0;
  int64_t sim_ms = 0;
  std::array<uint64_t, fault_count> fired{};
  std::array<bool, fault_count> active{};
  std::string violation;  ///< empty: every invariant held
  std::vector<std::string> notes;
  uint64_t ops = 0;
  uint64_t opens_ok = 0;
  uint64_t envelopes = 0;
  uint64_t opens = 0;
  uint64_t refunds = 0;
  uint64_t credits = 0;
  uint64_t stale_refused = 0;  ///< guarded writes refused for their epoch
  uint64_t commits = 0;        ///< open batches committed
  uint64_t segment_blocks = 0; ///< segments blocked by segment health
  /// Users told 手慢了 whose share later went back to the sender unopened.
  uint64_t false_exhausted = 0;
  uint64_t pending_answers = 0;  ///< SHARES_PENDING answers
  uint64_t expired_refused = 0;  ///< commits refused: expired by the db clock
  int generations = 0;   ///< node starts
  int escalations = 0;   ///< supervisor gave up (beyond restart intensity)
};

sim_result run_simulation(const sim_options& opt);

} // namespace hb::sim

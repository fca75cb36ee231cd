#pragma once

// The load engine: drives the flows of a scenario against a target over a
// few sessions from one thread with one poll loop (the generator shares the
// machine with what it measures, so it must not burn a core of its own
// spinning).
//
// Closed loop: `users` flows are active at once; when one ends the next
// starts. Open loop: flows start at `rate` per second on a fixed schedule
// whatever the target does, and every latency counts from the moment the
// schedule said the user acted, so that a slow target cannot hide its
// queueing (no coordinated omission). In both, a request waits in the
// generator until a session has room (a connection pool's wait), and that
// wait is part of its latency.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "load/scenario.hpp"
#include "load/target.hpp"
#include "load/audit.hpp"

namespace hb::bench {

/// Error answers by code; the last slot counts codes this tool does not know.
constexpr size_t error_slots = 18;

struct engine_options {
  uint32_t connections = 16;
  uint32_t window = 1024;
  uint32_t users = 10000;  ///< closed loop: flows active at once
  double rate = 0;         ///< open loop: flows started per second; 0: closed
  double duration_s = 0;   ///< stop starting flows after this; 0: run all
  double drain_s = 120;    ///< then wait at most this long for answers
  uint32_t retries_max = 20;
  int backoff_first_ms = 20;
  int backoff_max_ms = 1000;
  uint32_t reconnects_max = 16;
  uint64_t seed = 1;
  bool progress = true;
  std::string phase = "run";  ///< for the progress lines
};

struct op_stats {
  uint64_t sent = 0;      ///< requests written, retries included
  uint64_t answered = 0;  ///< final answers: success or a final error
  uint64_t ok = 0;
  uint64_t retries = 0;
  uint64_t gave_up = 0;   ///< still retryable after retries_max
  std::array<uint64_t, error_slots> errors{};  ///< every error answer
  /// Request issued → final answer, µs (retries and queueing included).
  std::vector<int64_t> latency_us;
};

struct run_result {
  double wall_s = 0;  ///< first flow started → last answer
  double stop_s = 0;  ///< when flows stopped starting (duration or done)
  uint64_t flows_started = 0;
  uint64_t flows_done = 0;
  uint64_t flows_total = 0;
  std::array<op_stats, op_kinds> ops;
  std::array<uint64_t, 8> grab_outcomes{};
  uint64_t opens_first = 0;   ///< new shares committed
  uint64_t opens_repeat = 0;  ///< the same share again (first_time false)
  double start_lag_max_ms = 0;  ///< open loop: flows started behind schedule
  /// Per envelope: what Open answers told users, and users whose open
  /// outcome stayed unknown (a lost connection, then no final answer).
  std::vector<std::vector<load::told_share>> told;
  std::vector<std::vector<uint32_t>> unknown;
  uint64_t reconnects = 0;
  std::vector<std::string> events;  ///< the first few notable happenings
  /// Non-empty: the run could not go on (no connection).
  std::string failure;
};

/// Runs `flows` (updating `book` with envelope ids as Creates answer).
run_result run_flows(target& tgt, run_book& book, const std::vector<flow>& flows,
                     const engine_options& opts);

} // namespace hb::bench

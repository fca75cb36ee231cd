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
#include <functional>
#include <string>
#include <vector>

#include "load/scenario.hpp"
#include "load/target.hpp"
#include "load/audit.hpp"

namespace hb::bench {

/// Error answers by code; the last slot counts codes this tool does not know.
constexpr size_t error_slots = 18;

struct run_result;

/// What a progress line may show, about once a second.
struct progress_view {
  const char* phase = "";
  double t_s = 0;             ///< since the first flow started
  double opens_per_s = 0;     ///< opens answered ok since the last line
  uint64_t in_flight = 0;     ///< requests the sessions hold
  size_t waiting = 0;         ///< requests waiting for a session
  const run_result* result = nullptr;  ///< counts so far
};

using progress_printer = std::function<void(const progress_view&)>;

/// The bench's progress line on stderr ("[run 3.0 s] open 1234 (410/s) ...").
void print_progress_line(const progress_view& v);

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
  /// Reconnect attempts, counted over the whole run or, with
  /// reconnects_per_session, per session (enough to ride out a restart).
  uint32_t reconnects_max = 16;
  bool reconnects_per_session = false;
  /// The pause after a failed reconnect doubles from the first to the max.
  int reconnect_pause_first_ms = 200;
  int reconnect_pause_max_ms = 200;
  /// A session with requests in flight and no answer for this long counts
  /// as stalled and is reconnected; 0: never.
  int stall_ms = 0;
  uint64_t seed = 1;
  /// Latency samples of successful answers only (the demo's "how long an
  /// open took"); else of every final answer, errors included (the bench).
  bool latency_ok_only = false;
  bool progress = true;
  std::string phase = "run";  ///< for the progress lines
  /// Prints the progress lines; empty: print_progress_line.
  progress_printer on_progress;
};

struct op_stats {
  uint64_t sent = 0;      ///< requests written, retries included
  uint64_t answered = 0;  ///< final answers: success or a final error
  uint64_t ok = 0;
  uint64_t retries = 0;
  uint64_t gave_up = 0;   ///< still retryable after retries_max
  std::array<uint64_t, error_slots> errors{};  ///< every error answer
  /// Request issued → final answer, µs (retries and queueing included);
  /// see engine_options::latency_ok_only.
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
  /// Seconds into the run when the first Open went out and when the last
  /// Open was answered with a share (-1: none): how fast the shares went.
  double first_open_s = -1;
  double last_open_s = -1;
  /// Per envelope: what Open answers told users, and users whose open
  /// outcome stayed unknown (a lost connection, then no final answer).
  std::vector<std::vector<load::told_share>> told;
  std::vector<std::vector<uint32_t>> unknown;
  uint64_t reconnects = 0;
  uint64_t stalls = 0;  ///< sessions silent for stall_ms with requests out
  /// Answers of the wrong kind for their request (a protocol bug).
  uint64_t unexpected_responses = 0;
  std::vector<std::string> events;  ///< the first few notable happenings
  /// Non-empty: the run could not go on (no connection).
  std::string failure;
};

/// The pause before reconnect attempt `attempt` (0-based): doubling from
/// the first pause, capped at the max.
int reconnect_pause_ms(const engine_options& opts, uint32_t attempt);

/// The longest wait before resend `attempt` (at least 1) of a retryable
/// answer: exponential backoff from backoff_first_ms, capped at
/// backoff_max_ms. The engine waits a random time in its upper half
/// (jitter, as docs/protocol.md section 5 advises).
int64_t retry_backoff_ceiling_ms(const engine_options& opts, uint32_t attempt);

/// Runs `flows` (updating `book` with envelope ids as Creates answer).
run_result run_flows(target& tgt, run_book& book, const std::vector<flow>& flows,
                     const engine_options& opts);

} // namespace hb::bench

#pragma once

// The storm: many users grab (抢) and open (拆) envelopes at once, over a few
// pipelined TCP connections, the way a busy group chat hits the service.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "client/client.hpp"
#include "load/audit.hpp"
#include "domain/errc.hpp"

namespace hb::demo {

/// Hard limits on what one demo run may ask for, so that a typo cannot make
/// it allocate without bound.
constexpr uint32_t users_max = 1000000;
constexpr uint32_t envelopes_max = 1000;
constexpr uint64_t attempts_max = 20000000;  // users × envelopes
constexpr uint32_t connections_max = 1024;
constexpr uint32_t window_max = 4096;
constexpr uint32_t retries_max_max = 100;

/// "user-00042": user names sort in number order.
std::string user_name(uint32_t index, uint32_t users);

struct storm_settings {
  client::host_port server;
  std::string token;
  std::vector<int64_t> envelope_ids;
  uint32_t users = 3000;
  uint32_t connections = 16;
  /// Requests in flight per connection (pipelining depth).
  uint32_t window = 64;
  uint64_t seed = 1;
  /// Connect timeout, and how long a connection may go without any answer
  /// while requests are in flight before it counts as stalled.
  int timeout_ms = 10000;
  /// Retries of one request after retryable errors (BUSY, UNAVAILABLE,
  /// STALE_EPOCH) or a lost connection, before giving up on it.
  uint32_t retries_max = 8;
  int backoff_first_ms = 50;
  int backoff_max_ms = 2000;
  /// Reconnect attempts per connection (0.25 s, 0.5 s, 1 s, then 2 s apart)
  /// before the storm gives up on it: enough to ride out a node restart.
  uint32_t reconnects_max = 6;
  /// Prints a progress line to stderr about once a second.
  bool progress = true;
};

/// What one Open reply told a user ("you got X"); the audit shares it.
using load::told_share;

/// Answers to one kind of request, by outcome.
struct answer_counts {
  /// Indexed by grab_outcome (grabs); [0] counts OpenResults (opens).
  std::array<uint64_t, 8> results{};
  /// Indexed by errc; the last slot counts codes this client does not know.
  std::array<uint64_t, 17> errors{};
  uint64_t sent = 0;       ///< requests written, retries included
  uint64_t retries = 0;    ///< resends after a retryable answer or a lost connection
  uint64_t gave_up = 0;    ///< requests abandoned after retries_max
  /// Opens answered first_time = false: an earlier attempt whose answer was
  /// lost had committed, and the node returned the same share again.
  uint64_t repeats = 0;
  std::vector<int64_t> latency_us;  ///< send → answer, per answered request
};

struct storm_report {
  double wall_s = 0;  ///< from the first request to the last answer
  /// Seconds into the storm when the first Open went out and when the last
  /// OpenResult came back (-1: none): how fast the shares were gone.
  double first_open_s = -1;
  double last_commit_s = -1;
  answer_counts grabs;
  answer_counts opens;
  /// Per envelope (index into envelope_ids): every Open reply received.
  std::vector<std::vector<told_share>> told;
  /// Per envelope: users whose Open outcome stayed unknown (UNAVAILABLE or
  /// a lost connection, then no final answer within the retries).
  std::vector<std::vector<uint32_t>> unknown;
  uint64_t reconnects = 0;
  uint64_t stalls = 0;                ///< connections with no answer for timeout_ms
  uint64_t unexpected_responses = 0;  ///< unknown request id or wrong body type
  std::vector<std::string> events;    ///< first few notable happenings, for people
  /// Non-empty when a connection could not be (re-)established: the storm
  /// did not finish.
  std::string failure;
};

/// Runs the storm: every user grabs every envelope (users × envelopes grabs,
/// in a seeded random order), and opens each envelope whose grab answers
/// can_open. User u talks over connection u % connections.
storm_report run_storm(const storm_settings& cfg);

} // namespace hb::demo

#pragma once

// hongbao-demo, the quickstart's demo, over the real client protocol: wraps
// (包) and pays (发) a few envelopes, lets thousands of users grab (抢) and
// open (拆) them at once through the load engine (load/engine.hpp), then
// fetches every envelope and shows who got what, 手气最佳 (best luck),
// whether the money is conserved, and how fast it went.
//
// Exit status: 0 ok; 1 conservation or the split rule failed, or the node
// refused a setup request; 2 usage error; 3 cannot reach the node (or the
// token is refused), or a connection failed for good.

#include <cstdint>
#include <string>

namespace hb::demo {

constexpr int exit_ok = 0;
constexpr int exit_failed = 1;
constexpr int exit_usage = 2;
constexpr int exit_transport = 3;

/// Hard limits on what one demo run may ask for, so that a typo cannot make
/// it allocate without bound.
constexpr uint32_t users_max = 1000000;
constexpr uint32_t envelopes_max = 1000;
constexpr uint64_t attempts_max = 20000000;  // users × envelopes
constexpr uint32_t connections_max = 1024;
constexpr uint32_t window_max = 4096;
constexpr uint32_t retries_max_max = 100;

struct demo_options {
  std::string server = "127.0.0.1:7700";
  std::string token;
  uint32_t envelopes = 5;
  int32_t count = 100;
  uint32_t users = 3000;
  uint32_t connections = 16;
  /// Requests in flight per connection (pipelining depth).
  uint32_t window = 64;
  uint64_t seed = 0;  ///< 0: pick one (printed, so the run can be repeated)
  /// Resends of one request after retryable errors (BUSY, UNAVAILABLE,
  /// STALE_EPOCH) or a lost connection, before giving up on it.
  uint32_t retries = 8;
  /// Connect timeout, and how long a connection may go without any answer
  /// while requests are in flight before it counts as stalled.
  int timeout_ms = 10000;
  bool json = false;
  bool quiet = false;
};

/// Runs the demo and prints its report (text, or one JSON object with
/// `json`); returns the exit status.
int run_demo(demo_options opts);

/// Reports a usage error the way run_demo reports its failures (a JSON
/// object on stdout with --json); returns exit_usage.
int usage_error(bool json, const std::string& message);

} // namespace hb::demo

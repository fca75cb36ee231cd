#pragma once

// The dispatcher in front of the store's workers: each call goes to a
// worker that is free and whose connection is up, not blindly to the next
// one in turn. A worker stuck in a call (a database that stopped answering
// holds it until its call deadline) or whose connection is down gets new
// work only when no other worker can take it.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "caf/actor.hpp"
#include "caf/actor_system.hpp"

namespace hb {

/// What the dispatcher knows of one worker. The dispatcher counts a call
/// in (queued) when it hands it over; the worker counts it out when done,
/// and keeps the rest up to date itself.
struct worker_gauge {
  /// Calls handed to the worker and not finished yet.
  std::atomic<uint32_t> queued{0};
  /// Steady-clock ms when the running call started; 0: none runs.
  std::atomic<int64_t> call_started_ms{0};
  /// 0 while the connection is up; else the steady-clock ms from which the
  /// worker tries to connect again (its backoff ends).
  std::atomic<int64_t> retry_at_ms{0};
};

/// One worker as the choice sees it (a snapshot of its gauge).
struct worker_view {
  uint32_t queued = 0;
  int64_t busy_ms = 0;   ///< how long the running call has run; 0: idle
  bool connected = true;
  bool retry_due = false;  ///< down, and its backoff has ended
};

/// The worker for the next call, by index into `ws` (not empty), in tiers:
/// an idle worker with a connection; an idle one whose connection is down
/// but whose backoff has ended (the call reconnects it); a connected one
/// that is not stuck (busy for less than `stuck_after_ms`) with the fewest
/// calls queued; else any with the fewest queued. Within a tier the search
/// starts at `start` (rotation spreads equal workers).
size_t choose_worker(const std::vector<worker_view>& ws, size_t start,
                     int64_t stuck_after_ms);

/// Milliseconds of std::chrono::steady_clock (the gauges' clock).
int64_t steady_ms();

/// Spawns `n` workers with `spawn` (each given its gauge) behind a
/// caf::actor_pool that dispatches by choose_worker.
caf::actor make_worker_pool(
  caf::actor_system& sys, size_t n,
  std::function<caf::actor(std::shared_ptr<worker_gauge>)> spawn,
  int64_t stuck_after_ms);

} // namespace hb

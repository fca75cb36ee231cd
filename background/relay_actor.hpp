#pragma once

#include <cstdint>
#include <memory>

#include "caf/typed_actor.hpp"

#include "runtime/messages.hpp"
#include "runtime/metrics.hpp"
#include "store/store_actor.hpp"

namespace hb {

/// The outbox relay: drains what the relay owes (outbox rows, and opens
/// COMMITTED but not yet credited: an open is its own outbox entry), off
/// the open's critical path. Each batch is one store transaction that credits wallets
/// from escrow exactly once (idempotency keys), writes received records and
/// marks the opens TRANSFERRED. It drains back to back while batches come
/// back full, polls when idle, and backs off exponentially while the
/// database fails.
///
/// Opens come first: while opens are queued or being committed on this node
/// (seen in the node metrics), the relay yields — it waits yield_ms and
/// looks again — for at most defer_max_ms in a row; then it drains the
/// backlog completely before it yields again. Credits lag by at most about
/// defer_max_ms plus one drain, and during a burst the database and the
/// cores serve the opens users are waiting for.
using relay_actor = caf::typed_actor<
  caf::reacts_to<tick_atom>,
  // Counters plus the current lag (asks the store).
  caf::replies_to<stats_atom>::with<relay_stats>>;

struct relay_settings : relay_config {
  /// Node-wide counters; may be null.
  std::shared_ptr<node_metrics> metrics;
};

relay_actor spawn_relay(caf::actor_system& sys, ledger_store store,
                        const relay_settings& cfg);

} // namespace hb

#pragma once

#include "caf/typed_actor.hpp"

#include "store/create_batcher.hpp"
#include "envelope/envelope_actor.hpp"
#include "envelope/id_allocator_actor.hpp"
#include "background/reconciler_actor.hpp"
#include "envelope/registry_actor.hpp"
#include "cluster/membership_actor.hpp"
#include "background/relay_actor.hpp"
#include "store/store_actor.hpp"
#include "domain/limits.hpp"

namespace hb {

/// The entry point for every client request. Envelope requests go by id ->
/// segment -> owner: to the local registry with `delegate` (the reply skips
/// the router) when this node serves the segment, else in a cluster to the
/// owner's router as a request with the forward deadline (a request lost
/// with a node link is never answered in CAF 0.17). A request forwarded to
/// a node that does not own the segment is answered NOT_OWNER, never
/// forwarded again. While this node hands a segment over, its requests
/// wait here (bounded in number and time) and then go to the new owner.
/// Creates are validated, get an id from the allocator
/// (in a cluster: in a segment this node owns; a node that owns none
/// forwards the create) and are stored.
using router_actor = envelope_requests::extend<
  // 包: wrap a new envelope; idempotent on (sender, idempotency_key).
  caf::replies_to<create_atom, create_request>::with<envelope>,
  // A user's sent or received history, paged.
  caf::replies_to<history_atom, history_query>::with<history_page>,
  // A wallet's balance.
  caf::replies_to<balance_atom, std::string>::with<balance_info>,
  // Reconciliation on demand (since Unix ms).
  caf::replies_to<reconcile_atom, int64_t>::with<reconcile_report>,
  // From segment health: the segments now blocked.
  caf::reacts_to<blocked_atom, std::vector<int32_t>>,
  // Operators: a snapshot of the node.
  caf::replies_to<stats_atom>::with<node_stats>,
  // Operators: block or unblock a segment by hand.
  caf::replies_to<segment_atom, segment_request>::with<segment_state>,
  // Operators: drain, undrain, rebalance (the membership does it).
  caf::replies_to<drain_atom, control_request>::with<control_result>,
  // In a cluster, from the membership: where each segment is served.
  caf::reacts_to<route_atom, route_table>,
  // Timer: requests held for moving segments that waited too long.
  caf::reacts_to<tick_atom>>;

/// What the router asks of the store: creates (when no create batcher
/// stands in between), and a user's history and balance.
using router_store = envelope_store::extend_with<ledger_store>;

struct router_settings : router_config {
  envelope_limits limits;
  // For stats and segment control; any may be null (tests).
  std::string node_name;
  std::shared_ptr<node_metrics> metrics;
  relay_actor relay;
  segment_admin health;
  std::function<int64_t()> now_ms;
  /// Where new envelopes are stored (batched with other creates); null: the
  /// store.
  create_sink creator;
  /// In a cluster: the membership (stats, stale routes) and the forwarding
  /// limits. Null: a node on its own, which serves every segment.
  membership_actor membership;
  uint32_t forward_timeout_ms = 2000;
  uint32_t forward_inflight_max = 20000;
  /// Requests held for segments this node is handing over: at most this
  /// many at once (more get BUSY), each at most hold_ms (then UNAVAILABLE,
  /// retryable).
  uint32_t hold_max = 20000;
  uint32_t hold_ms = 5000;
};

router_actor spawn_router(caf::actor_system& sys, registry_actor registry,
                          id_allocator_actor ids, router_store store,
                          reconciler_actor reconciler,
                          const router_settings& cfg);

} // namespace hb

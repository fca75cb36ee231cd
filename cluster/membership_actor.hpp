#pragma once

#include <functional>
#include <memory>
#include <string>

#include "caf/typed_actor.hpp"

#include "config/services.hpp"
#include "envelope/id_allocator_actor.hpp"
#include "envelope/registry_actor.hpp"
#include "runtime/messages.hpp"
#include "runtime/metrics.hpp"
#include "store/store_actor.hpp"

namespace hb {

/// A node's place in the cluster (docs/cluster.md). It joins its SET in the
/// SET's database with a new incarnation, renews its lease every renew_ms
/// and fences itself (stops its envelope actors, serves nothing) when it
/// cannot renew before its local deadline; it takes the segments whose
/// owner's lease has run out and for which it is the preferred live node
/// (compare-and-set on owner_epoch); it links to the other nodes over
/// CAF's middleman, pulls the other SETs' owners from their nodes and gives
/// the router a route per segment. It hands segments over by plan
/// (compare-and-set of the owner row, after their envelope actors have
/// finished their writes): all of them when it is drained or stops, and
/// those whose preferred owner has come (back) and settled. It is published on the node's peer port:
/// peers talk to it first.
using membership_actor = caf::typed_actor<
  // From a peer over a new link: introductions both ways.
  caf::replies_to<hello_atom, peer_hello>::with<peer_hello>,
  // From nodes of other SETs: this node's latest view of its SET.
  caf::replies_to<view_atom>::with<set_view>,
  // From the router: the route of this segment proved stale.
  caf::reacts_to<refresh_atom, int32_t>,
  // The router that gets the route tables (and is named to peers).
  caf::reacts_to<subscribe_atom, caf::actor>,
  // Operators: the cluster as this node sees it.
  caf::replies_to<stats_atom>::with<cluster_info>,
  // Operators (and peers passing them on): drain or undrain a node, or
  // rebalance (docs/cluster.md, "Planned moves").
  caf::replies_to<drain_atom, control_request>::with<control_result>,
  // From a peer: rebalance now, without waiting for the settling time.
  caf::reacts_to<rebalance_atom>,
  // From a peer of this SET: segments it has just handed to this node (the
  // owner rows as moved); the answer comes once the router knows.
  caf::replies_to<handoff_atom, std::vector<segment_owner>>::with<bool>,
  // The node is stopping: hand every segment over, end the lease; the
  // answer is how many segments were still owned at the end (0: all
  // handed over).
  caf::replies_to<stop_atom>::with<int32_t>,
  // Timers: lease renewal, and links plus other SETs' views.
  caf::reacts_to<tick_atom>,
  caf::reacts_to<sync_atom>>;

struct membership_settings : cluster_config {
  std::string node;
  std::string zone;
  std::string gateway;  ///< "host:port" of this node's client gateway
  std::shared_ptr<node_identity> identity;
  registry_actor registry;
  id_allocator_actor ids;
  segment_sync_sink health;
  std::shared_ptr<node_metrics> metrics;
};

membership_actor spawn_membership(caf::actor_system& sys, cluster_store store,
                                  const membership_settings& cfg);

} // namespace hb

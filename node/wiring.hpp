#pragma once

#include <memory>
#include <vector>

#include "background/expiry_sweeper_actor.hpp"
#include "gateway/gateway_actor.hpp"
#include "envelope/id_allocator_actor.hpp"
#include "runtime/metrics.hpp"
#include "background/partition_keeper_actor.hpp"
#include "background/reconciler_actor.hpp"
#include "envelope/registry_actor.hpp"
#include "background/relay_actor.hpp"
#include "cluster/router_actor.hpp"
#include "store/store_actor.hpp"
#include "config/node_config.hpp"
#include "supervision/segment_health_actor.hpp"
#include "supervision/supervisor.hpp"

namespace hb {

/// The current handles of a node's subsystems. A child's start function
/// reads the handles of what it depends on and stores its own; the
/// supervisor restarts dependents after a restart, so nobody keeps a dead
/// handle.
struct node_context {
  std::shared_ptr<node_metrics> metrics = std::make_shared<node_metrics>();
  store_actor background;  // relay, sweeper, reconciler, partitions, health
  segment_health_actor health;
  store_actor store;       // the hot path: opens, creates, activations
  commit_sink committer;   // open batches of many envelopes, grouped
  activation_sink activator;  // activations of many envelopes, grouped
  payment_sink payer;         // payments of many envelopes, grouped
  create_sink creator;        // creates of many envelopes, grouped
  id_allocator_actor ids;
  registry_actor registry;
  relay_actor relay;
  reconciler_actor reconciler;
  partition_keeper_actor keeper;
  router_actor router;
  expiry_sweeper_actor sweeper;
  gateway_handle gateway;
};

/// The node's subsystems in start order, with their dependencies.
std::vector<child_spec> node_children(caf::actor_system& sys,
                                      const node_config& cfg,
                                      std::shared_ptr<node_context> ctx);

} // namespace hb

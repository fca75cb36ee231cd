#pragma once

// One hongbao node, booted by start_node() of node/ as hongbao-node boots
// it -- under the node supervisor, with segment health -- with the
// simulation's environment: no gateway (the simulated clients talk to the
// router directly), the simulated stores and clock, seeds drawn from the
// world, and small limits (sim_node_config).
//
// The two stores (the hot path's and the background one) are simulation
// actors: they stand for the database and its connection pools, so they
// survive a node crash, and calls the crashed node sent them may still
// commit afterwards. A crash kills every other actor -- the supervisor, its
// children and every envelope actor -- and the memory is lost; a restart
// starts a new supervisor.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "caf/fwd.hpp"

#include "config/node_config.hpp"
#include "node/node.hpp"
#include "sim/sim_world.hpp"

namespace hb::sim {

/// The node's config in the simulation: small limits everywhere, so that a
/// short run reaches them (leases run out, queues fill, batches split,
/// actors passivate and come back).
node_config sim_node_config(const world& w);

/// The segments the simulated node allocates ids in.
const std::vector<int32_t>& node_segments();

class sim_node {
public:
  /// `store` serves the hot path, `background` the relay, sweeper,
  /// reconciler, partitions and segment health.
  sim_node(caf::actor_system& sys, world& w, store_actor store,
           store_actor background);

  /// Starts a new generation: a supervisor and all its children.
  void start();

  /// Kills every actor of the node (also the envelope actors).
  void crash();

  /// Kills one live envelope actor; returns false if there was none.
  bool crash_envelope();

  /// Kills the relay (its supervisor restarts it and its dependents).
  bool crash_relay();

  /// Kills another supervised child at random; returns its name ("": none).
  std::string crash_child();

  /// The actor id of the current registry (0: none).
  uint64_t registry_id() const;

  /// Whether the node runs: started, not crashed, and its supervisor alive
  /// (beyond its restart intensity a supervisor gives up and stops).
  bool up() const;

  /// True once after the supervisor escalated (gave up) on its own.
  bool escalated();

  int generation() const { return generation_; }
  router_actor router() const {
    return node_.ctx ? node_.ctx->router : router_actor{};
  }

  /// The envelope limits the router enforces (the workload respects them).
  envelope_limits limits() const;

private:
  node_env environment();

  caf::actor_system& sys_;
  world& w_;
  node_config cfg_;
  store_actor store_;
  store_actor background_;
  bool started_ = false;
  int generation_ = 0;
  node_handle node_;
  segment_health_actor health_;
};

} // namespace hb::sim

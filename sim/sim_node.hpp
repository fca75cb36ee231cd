#pragma once

// One hongbao node made of the production actors, wired the way
// node/wiring.cpp wires them -- under the node supervisor, with segment
// health -- minus the gateway (the simulated clients talk to the router
// directly), on top of the simulated stores and clock.
//
// The two stores (the hot path's and the background one, as in wiring.cpp)
// are simulation actors: they stand for the database and its connection
// pools, so they survive a node crash, and calls the crashed node sent them
// may still commit afterwards. A crash kills every other actor -- the
// supervisor, its children and every envelope actor -- and the memory is
// lost; a restart starts a new supervisor.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "caf/fwd.hpp"

#include "store/commit_batcher.hpp"
#include "background/expiry_sweeper_actor.hpp"
#include "envelope/id_allocator_actor.hpp"
#include "runtime/metrics.hpp"
#include "background/partition_keeper_actor.hpp"
#include "background/reconciler_actor.hpp"
#include "envelope/registry_actor.hpp"
#include "background/relay_actor.hpp"
#include "cluster/router_actor.hpp"
#include "store/store_actor.hpp"
#include "supervision/segment_health_actor.hpp"
#include "supervision/supervisor.hpp"
#include "sim/sim_world.hpp"

namespace hb::sim {

/// The segments the simulated node allocates ids in.
const std::vector<int32_t>& node_segments();

/// The current handles of the node's subsystems (wiring.cpp's node_context).
struct sim_node_context {
  std::shared_ptr<node_metrics> metrics = std::make_shared<node_metrics>();
  segment_health_actor health;
  commit_sink committer;
  activation_sink activator;
  payment_sink payer;
  create_sink creator;
  id_allocator_actor ids;
  registry_actor registry;
  relay_actor relay;
  reconciler_actor reconciler;
  partition_keeper_actor keeper;
  router_actor router;
  expiry_sweeper_actor sweeper;
};

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
  router_actor router() const { return ctx_ ? ctx_->router : router_actor{}; }

  /// The envelope limits the router enforces (the workload respects them).
  envelope_limits limits() const;

private:
  std::vector<child_spec> children();

  caf::actor_system& sys_;
  world& w_;
  store_actor store_;
  store_actor background_;
  bool started_ = false;
  int generation_ = 0;
  std::shared_ptr<sim_node_context> ctx_;
  supervisor_actor supervisor_;
};

} // namespace hb::sim

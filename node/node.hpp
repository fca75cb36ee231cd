#pragma once

// The one wiring of a node: hongbao-node and hongbao-sim both boot it with
// start_node(), each with its own environment (FoundationDB's fdbd runs in
// both the real world and the simulation). The environment supplies what
// differs: how the stores are made and whether they outlive the node, the
// clock, the envelopes' random seed, the segment-health hook and whether a
// client gateway runs.

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "admin/admin_actor.hpp"
#include "admin/metrics_http.hpp"
#include "background/expiry_sweeper_actor.hpp"
#include "background/partition_keeper_actor.hpp"
#include "background/reconciler_actor.hpp"
#include "background/relay_actor.hpp"
#include "cluster/membership_actor.hpp"
#include "cluster/router_actor.hpp"
#include "config/node_config.hpp"
#include "envelope/id_allocator_actor.hpp"
#include "envelope/registry_actor.hpp"
#include "gateway/gateway_actor.hpp"
#include "runtime/metrics.hpp"
#include "store/store_actor.hpp"
#include "supervision/segment_health_actor.hpp"
#include "supervision/supervisor.hpp"

namespace hb {

/// The current handles of a node's subsystems. A child's start function
/// reads the handles of what it depends on and stores its own; the
/// supervisor restarts dependents after a restart, so nobody keeps a dead
/// handle.
struct node_context {
  std::shared_ptr<node_metrics> metrics = std::make_shared<node_metrics>();
  /// In a cluster: who the hot store writes for (name, incarnation).
  std::shared_ptr<node_identity> identity;
  store_actor members_store;  // in a cluster: leases and owners only
  membership_actor membership;
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
  admin_actor admin;          // [admin] port: the operator's console
  uint16_t admin_port = 0;    // where it is published
  metrics_http_handle metrics_http;  // [admin] metrics_port: GET /metrics
};

/// The two stores of a node.
enum class store_role {
  background,  ///< relay, sweeper, reconciler, partitions, segment health
  hot,         ///< opens, creates, activations, payments
  membership,  ///< a cluster node's lease and segment owners (one connection)
};

/// The network to peer nodes (a cluster node only): how the membership is
/// published on the node's peer port. Null: not published (the simulation).
struct node_peers {
  std::function<caf::expected<uint16_t>(const caf::actor&, const std::string&,
                                        uint16_t)>
    publish;
};

/// What differs between the program and the simulator.
struct node_env {
  /// Makes one of the two stores from the settings the node derived from
  /// its config (pool, health sink, metrics).
  std::function<caf::expected<store_actor>(caf::actor_system&, store_role,
                                           const store_settings&)>
    make_store;
  /// Whether the stores outlive the node: the simulation's stores stand for
  /// the database, so the supervisor never stops them.
  bool stores_outlive_node = false;
  /// The wall clock in Unix milliseconds of every actor that reads one.
  std::function<int64_t()> now_ms = system_now_ms;
  /// Seed of the envelopes' share generators; 0: each draws from the OS.
  uint64_t envelope_seed = 0;
  /// Called with segment health each time it (re)starts, e.g. so that the
  /// simulated database reports segment faults into it.
  std::function<void(const segment_health_actor&)> health_started;
  /// Whether the client gateway runs (the simulated clients talk to the
  /// router directly).
  bool gateway = true;
  node_peers peers;
};

/// The program's environment: PostgreSQL stores, the wall clock, seeds
/// from the OS and the client gateway.
node_env production_env();

/// A running node: its supervisor and the current handles of its children.
struct node_handle {
  supervisor_actor supervisor;
  std::shared_ptr<node_context> ctx;
};

/// Starts the node's subsystems in their fixed order under one supervisor,
/// which stops them in reverse; fails if a subsystem cannot start.
caf::expected<node_handle> start_node(caf::actor_system& sys,
                                      const node_config& cfg, node_env env);

/// The node's subsystems in start order, with their dependencies (what
/// start_node supervises; exposed for tests).
std::vector<child_spec> node_children(caf::actor_system& sys,
                                      const node_config& cfg,
                                      std::shared_ptr<const node_env> env,
                                      std::shared_ptr<node_context> ctx);

} // namespace hb

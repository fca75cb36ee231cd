#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "caf/actor.hpp"
#include "caf/expected.hpp"

#include "config/services.hpp"
#include "domain/limits.hpp"
#include "runtime/metrics.hpp"
#include "cluster/router_actor.hpp"

namespace hb {

/// The client gateway: a CAF broker that accepts TCP connections and speaks
/// the framed Protobuf protocol of docs/protocol.md. Every connection gets
/// its own forked broker; requests go to the router, responses return in
/// whatever order they complete (pipelining).
struct gateway_settings : gateway_config {
  std::string node_name;
  /// Longest user id (bytes), checked here for requests that skip the router
  /// (the node's envelope limits).
  size_t text_size_max = envelope_limits{}.text_size_max;
  /// Node-wide counters (answers per request kind and result); may be null.
  std::shared_ptr<node_metrics> metrics;
};

/// Counters shared by all connections of one gateway.
struct gateway_counters {
  std::atomic<uint32_t> inflight{0};
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> rejected{0};
};

struct gateway_handle {
  caf::actor acceptor;  ///< send it stop_atom to close the listening socket
  uint16_t port = 0;
  std::shared_ptr<gateway_counters> counters;
};

/// Binds the listening socket and starts accepting. Fails (e.g. port in use)
/// before anything is spawned.
caf::expected<gateway_handle> spawn_gateway(caf::actor_system& sys,
                                            router_actor router,
                                            const gateway_settings& cfg);

} // namespace hb

#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "caf/actor.hpp"
#include "caf/expected.hpp"

#include "cluster/router_actor.hpp"
#include "runtime/metrics.hpp"

namespace hb {

/// GET /metrics in Prometheus' text format (admin/prometheus.hpp) over
/// HTTP/1.1 on the operator side: a CAF broker that reads one request per
/// connection (at most 8 KiB of head), asks the router for the node's
/// stats, answers and closes. Any other path is 404, any other method 405.
struct metrics_http_settings {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  ///< 0: a free port (the handle says which)
  std::string zone;
  router_actor router;
  std::shared_ptr<node_metrics> metrics;
  uint32_t timeout_ms = 5000;  ///< the router's stats answer
};

struct metrics_http_handle {
  caf::actor broker;  ///< send it stop_atom to close the socket
  uint16_t port = 0;
};

caf::expected<metrics_http_handle>
spawn_metrics_http(caf::actor_system& sys, const metrics_http_settings& cfg);

} // namespace hb

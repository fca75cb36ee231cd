#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "domain/errc.hpp"
#include "domain/limits.hpp"

namespace hb {

/// envelope_keep_live when the file does not set it: half of live_max.
constexpr uint32_t keep_live_default = UINT32_MAX;

/// Everything a node reads from its TOML file (see config/node.example.toml,
/// which documents every key). Each limit has a default here.
struct node_config {
  // [node]
  std::string node_name = "node-1";
  std::string zone = "zone-a";
  /// How long an idle scheduler thread keeps looking for work every 50 µs
  /// before it sleeps until work arrives (CAF's moderate polling; CAF's own
  /// default is 25 000). 0: it sleeps at once.
  uint32_t idle_poll_us = 0;

  // [gateway]
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 7700;
  std::string auth_token;             ///< required, no default
  uint32_t frame_size_max = 64 * 1024;
  uint32_t connection_inflight_max = 1024;  ///< pipelined requests per connection
  uint32_t node_inflight_max = 50000;       ///< requests in flight on the node

  // [database]
  std::string database_url;           ///< any libpq connection string
  uint32_t store_pool_size = 16;      ///< connections, each on its own thread
  uint32_t commits_in_flight = 4;     ///< group-commit transactions at once (≤ pool_size)
  /// Activation, payment and create transactions at once, each kind (at most
  /// half of pool_size is used), and requests per such transaction.
  uint32_t batches_in_flight = 2;
  uint32_t batch_max = 64;

  // [limits]
  envelope_limits limits;

  // [envelope]
  uint32_t envelope_queue_max = 2000;      ///< queued opens before BUSY
  uint32_t envelope_batch_max = 2000;      ///< opens per group-commit write
  uint32_t envelope_idle_ms = 30000;       ///< passivate after this idle time
  uint32_t live_envelopes_max = 100000;    ///< live envelope actors per node
  /// Idle envelope actors stay live while the node holds at most this many
  /// (default: half of live_max); above it they passivate after idle_ms.
  uint32_t envelope_keep_live = keep_live_default;
  /// At live_max, the registry asks the actors quiet this long (nothing in
  /// flight) to report idle at once, at most once per cap_check_ms.
  uint32_t envelope_cap_quiet_ms = 1000;
  uint32_t envelope_cap_check_ms = 1000;

  // [relay]
  int32_t relay_batch_max = 100;           ///< outbox rows per relay transaction
  uint32_t relay_poll_ms = 200;            ///< pause when the outbox is drained
  uint32_t relay_yield_ms = 20;            ///< pause while opens are busy
  uint32_t relay_defer_max_ms = 1000;      ///< longest run of pauses (0: never)

  // [expiry]
  uint32_t sweep_interval_ms = 1000;       ///< expiry sweeper pause
  int32_t sweep_batch_max = 100;           ///< refunds in flight per sweep

  // [reconcile]
  uint32_t reconcile_interval_s = 300;     ///< periodic run; 0 = on demand only
  uint32_t reconcile_window_s = 172800;    ///< how far back the periodic run looks

  // [partitions]
  int32_t hot_days = 31;                   ///< days kept hot before moving cold
  int32_t partitions_ahead_days = 3;       ///< day partitions created ahead
  uint32_t partitions_interval_s = 3600;   ///< how often the keeper runs

  // [segments]
  uint32_t segment_window_ms = 10000;      ///< fault counting window
  uint32_t segment_fault_threshold = 5;    ///< faults in the window that block
  uint32_t segment_probe_interval_ms = 1000;  ///< probes of blocked segments

  // [supervisor]
  uint32_t restarts_max = 5;               ///< restarts within the window ...
  uint32_t restart_window_s = 30;          ///< ... before escalating

  // [ids]
  std::vector<int32_t> segments;           ///< segments this node allocates in
  uint32_t id_lease_block = 1000;          ///< sequence numbers per lease

  // [log]
  std::string log_level = "info";
};

/// Parses a TOML file into a node config; every problem is reported with the
/// key and what is wrong.
outcome<node_config> load_node_config(const std::string& path);

/// Same, from TOML text (used by tests).
outcome<node_config> parse_node_config(const std::string& toml_text);

} // namespace hb

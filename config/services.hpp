#pragma once

// The tunables of each service of a node, one plain struct per service with
// its defaults written here and nowhere else (Seastar's `struct config` per
// service). node_config composes them; an actor's `*_settings` derives from
// its service's struct and adds only runtime handles (actor handles, the
// metrics, the clock), so that the wiring copies whole structs.
//
// A field with a TOML key is documented in config/node.example.toml; a field
// without one is a limit the node does not expose (yet), but the simulator
// and the tests set it.

#include <cstdint>
#include <string>
#include <vector>

#include "domain/cluster.hpp"

namespace hb {

/// envelope.keep_live when the file does not set it: half of live_max.
constexpr uint32_t keep_live_default = UINT32_MAX;

/// [node]: who the node is and how its scheduler threads wait.
struct node_basics_config {
  std::string name = "node-1";
  std::string zone = "zone-a";
  /// How long an idle scheduler thread keeps looking for work every 50 µs
  /// before it sleeps until work arrives (CAF's moderate polling; CAF's own
  /// default is 25 000). 0: it sleeps at once.
  uint32_t idle_poll_us = 0;
};

/// [cluster] and [[cluster.sets]]: the node's place in a cluster of SETs
/// over three zones (docs/cluster.md). Absent: a node on its own, with
/// [database].url and [ids].segments as before.
struct cluster_config {
  bool enabled = false;          ///< the file has a [cluster] section
  std::string set;               ///< this node's SET (a name in `sets`)
  std::string peer_host = "127.0.0.1";  ///< where node links (BASP) listen
  uint16_t peer_port = 0;        ///< required in a cluster
  std::vector<std::string> seeds;  ///< "host:port" of peers to dial first
  std::vector<std::string> zones;  ///< exactly three, in order
  std::vector<set_config> sets;    ///< segment ranges -> SET -> database
  uint32_t lease_ms = 3000;      ///< a node lease lasts this long (database clock)
  uint32_t renew_ms = 500;       ///< renewed this often
  /// A node fences itself this long before its lease would end, measured
  /// from when it sent the last successful renewal (its monotonic clock).
  uint32_t lease_margin_ms = 500;
  /// After joining, a node waits this long before taking segments, so that
  /// the nodes of a starting cluster all count when segments are placed.
  uint32_t settle_ms = 3000;
  uint32_t sync_ms = 1000;       ///< other SETs' owners pulled this often
  uint32_t forward_timeout_ms = 2000;  ///< deadline of a forwarded request
  uint32_t forward_inflight_max = 20000;  ///< forwarded requests at once
  uint32_t heartbeat_ms = 500;   ///< node link heartbeats
  uint32_t link_timeout_ms = 3000;  ///< a silent link is closed after this
  /// A node that (re)joined or was undrained gets its preferred segments
  /// back once it has served this long (database clock): no flapping.
  uint32_t rebalance_settle_ms = 10000;
  uint32_t handoff_batch = 32;   ///< segments one planned move hands over
  /// How long a move waits for the segments' envelope actors to finish
  /// their writes before it commits anyway (fencing refuses a late write).
  uint32_t handoff_timeout_ms = 3000;
  /// On SIGTERM a node hands its segments over for at most this long
  /// before it stops (what is left is taken after its lease ends, at once).
  uint32_t drain_timeout_ms = 20000;
  /// Segments a node can serve; 0: not checked. Stats and the log say when
  /// a zone's loss would give a survivor more ("one third spare").
  uint32_t node_capacity_segments = 0;
};

/// [admin]: the operator side (docs/operations.md, "The console"): the
/// admin actor published for hongbao-console on its own port, the audit
/// log of operator actions and the Prometheus endpoint. Off unless a port
/// is configured.
struct admin_config {
  std::string host = "127.0.0.1";  ///< where the admin port and metrics listen
  uint16_t port = 0;               ///< the admin actor's port; 0: no admin actor
  uint16_t metrics_port = 0;       ///< GET /metrics over HTTP; 0: off
  /// The operator secret every console request carries (or read from
  /// secret_file at load). Never logged.
  std::string secret;
  std::string secret_file;
  /// The credential's name, written to the audit log with the user.
  std::string credential = "operator";
  /// One JSON line per operator action (block, unblock, reconcile, ...).
  std::string audit_file = "hongbao-audit.jsonl";
  /// A demo may keep the example secret; anything else is refused with it.
  bool demo = false;
  /// Deadline of a request the admin forwards to another node's admin.
  uint32_t forward_timeout_ms = 5000;
  /// Deadline of what the admin asks its own node (stats, reconcile, ...).
  uint32_t request_timeout_ms = 60000;
};

/// The operator secret of config/node.example.toml: refused outside a demo.
constexpr const char* admin_example_secret = "example-operator-secret-change-me";

/// [gateway]: the client TCP broker.
struct gateway_config {
  std::string host = "127.0.0.1";
  uint16_t port = 7700;  ///< 0 picks a free port
  std::string auth_token;  ///< required in the file, no default
  uint32_t frame_size_max = 64 * 1024;
  uint32_t connection_inflight_max = 1024;  ///< pipelined requests per connection
  uint32_t node_inflight_max = 50000;       ///< requests in flight on the node
  /// A request the router does not answer within this long gets an error.
  uint32_t request_timeout_ms = 10000;
  /// Open client connections on the node, and from one remote address; a
  /// connection over either cap is closed at once (after a BUSY frame).
  uint32_t connections_max = 10000;
  uint32_t connections_per_address_max = 2000;
  /// A connection that has not authenticated within this long is closed.
  uint32_t auth_timeout_ms = 5000;
  /// An authenticated connection with no request in flight for this long is
  /// closed; 0 = never.
  uint32_t idle_timeout_ms = 300000;
  /// Largest frame before authentication (an Auth frame is small).
  uint32_t auth_frame_size_max = 1024;
  /// Unsent response bytes of one connection past which the node stops
  /// reading its requests, until the client has read them.
  uint32_t output_buffer_max = 1 << 20;
};

/// One store actor: a pool of connections, each on its own thread.
struct store_config {
  std::string database_url;  ///< any libpq connection string
  uint32_t pool_size = 16;
  /// A worker whose connection is down retries connecting after this long,
  /// doubling up to the cap while it keeps failing; requests in between fail
  /// fast with errc::unavailable.
  uint32_t reconnect_interval_ms = 100;
  /// Cap of the exponential backoff between connection attempts.
  uint32_t reconnect_interval_max_ms = 5000;
  // What each connection sets (see persistence::connection_options; 0
  // leaves a setting to libpq or the server). TCP keepalives and
  // tcp_user_timeout find a dead peer or a black-holed path in ~20 s
  // (idle 10 s + 3 probes 3 s apart) or 10 s of unacknowledged data.
  uint32_t keepalives_idle_s = 10;
  uint32_t keepalives_interval_s = 3;
  uint32_t keepalives_count = 3;
  uint32_t tcp_user_timeout_ms = 10000;
  // Server side: a statement, a lock wait and an open transaction whose
  // client went quiet end on the server; the server checks for a vanished
  // client this often while a query runs.
  uint32_t statement_timeout_ms = 10000;
  uint32_t lock_timeout_ms = 3000;
  uint32_t idle_in_transaction_session_timeout_ms = 10000;
  uint32_t client_connection_check_interval_ms = 1000;
  /// Client side deadline of every round trip to the database (needs
  /// nothing from the server): then the connection is dropped, the call
  /// fails with errc::unavailable and the worker reconnects. 0: none.
  uint32_t call_timeout_ms = 5000;
  /// A worker in one call for this long gets new work only when no other
  /// worker can take it.
  uint32_t stuck_after_ms = 1000;
};

/// The commit batcher: open batches of many envelopes in one transaction.
struct commit_batcher_config {
  uint32_t inflight_max = 4;    ///< transactions in flight (≤ the pool size)
  /// A store call not answered in this long fails its batches (retryable):
  /// the store's own deadline answers sooner; this covers a lost reply.
  uint32_t reply_timeout_ms = 10000;
  uint32_t batch_max = 256;     ///< envelope batches per transaction
  uint32_t queue_max = 100000;  ///< waiting batches before BUSY
};

/// The activation, payment and create batchers (each its own instance).
struct batcher_config {
  uint32_t inflight_max = 2;  ///< transactions in flight (< the pool size)
  uint32_t reply_timeout_ms = 10000;  ///< as commit_batcher_config's
  uint32_t batch_max = 64;    ///< requests per transaction
};

/// [database]: the stores and the batchers in front of the hot path's.
struct database_config {
  store_config store;  ///< the hot path's store (url, pool_size)
  /// Connections of the background store (relay, sweeper, reconciler,
  /// partitions, segment health): a long relay batch or reconciliation
  /// never holds up an open.
  uint32_t background_pool_size = 2;
  /// The background store's call deadline and statement_timeout: a
  /// reconciliation over days of history runs for minutes (its own limit is
  /// the reconciler waits 10 minutes); a black-holed path is still found by
  /// the keepalives and tcp_user_timeout.
  uint32_t background_call_timeout_ms = 600000;
  uint32_t background_statement_timeout_ms = 600000;
  commit_batcher_config commits;  ///< commits_in_flight
  batcher_config batches;         ///< batches_in_flight, batch_max
};

/// [envelope], the envelope actor's part.
struct envelope_config {
  uint32_t queue_max = 2000;  ///< opens waiting for the next write; BUSY beyond
  uint32_t batch_max = 2000;  ///< opens per group-commit write
  uint32_t idle_ms = 30000;   ///< report idle after this long without work
};

/// [envelope], the registry's part: how many envelope actors live.
struct registry_config {
  uint32_t live_max = 100000;  ///< live envelope actors per node; BUSY beyond
  /// Idle healthy actors stay live while at most this many are: an
  /// activation costs a transaction (epoch bump and reload), a live idle
  /// envelope only memory. Above it, the long idle go first: an actor
  /// idle for two idle periods or more passivates, a newly idle one only
  /// once the node is half-way from keep_live to live_max. 0: always.
  /// keep_live_default stands for half of live_max.
  uint32_t keep_live = keep_live_default;
  /// At the cap, actors quiet for this long (nothing in flight) are asked
  /// to report idle at once, at most once per cap_check_ms, so that a node
  /// full of recently active envelopes makes room for new ones in
  /// milliseconds instead of answering BUSY for an idle period.
  uint32_t cap_quiet_ms = 1000;
  uint32_t cap_check_ms = 1000;
};

/// keep_live with its default resolved against live_max.
inline uint32_t keep_live_of(const registry_config& cfg) {
  return cfg.keep_live == keep_live_default ? cfg.live_max / 2 : cfg.keep_live;
}

/// The router: creates in flight and their retries.
struct router_config {
  /// Creates being stored at once; more get a BUSY reply.
  uint32_t creates_inflight_max = 2000;
  /// A create whose segment failed is retried with a fresh id (in another
  /// segment) this many times, invisibly to the client.
  uint32_t create_attempts_max = 3;
};

/// [relay]: the outbox relay that credits wallets.
struct relay_config {
  int32_t batch_max = 100;         ///< outbox rows per relay transaction
  uint32_t poll_ms = 200;          ///< pause after a batch that was not full
  uint32_t backoff_max_ms = 5000;  ///< cap of the exponential backoff
  uint32_t lag_log_ms = 5000;      ///< log the lag this often while behind
  uint32_t yield_ms = 20;          ///< pause while opens are busy
  uint32_t defer_max_ms = 1000;    ///< longest run of pauses; 0: never yield
};

/// [expiry]: the sweeper that refunds expired envelopes.
struct expiry_config {
  uint32_t interval_ms = 1000;  ///< pause between sweeps that found little
  int32_t batch_max = 100;      ///< envelopes refunded concurrently
  /// Node clock minus database clock beyond which nothing is expired.
  int64_t clock_skew_max_ms = 2000;
  /// How often the sweeper reads the database's clock.
  uint32_t clock_check_interval_ms = 5000;
};

/// [reconcile]: periodic reconciliation (对账).
struct reconcile_config {
  uint32_t interval_s = 300;  ///< periodic run; 0 = only on demand
  /// How far back the periodic run looks (the global checks see everything).
  uint32_t window_s = 2 * 24 * 3600;
};

/// [partitions]: the keeper of day partitions.
struct partitions_config {
  uint32_t interval_s = 3600;  ///< how often the keeper runs
  int32_t ahead_days = 3;      ///< partitions created for today + this many days
  int32_t hot_days = 31;       ///< days kept hot before moving cold
};

/// [segments]: segment health, which blocks failing segments.
struct segments_config {
  uint32_t window_ms = 10000;        ///< sliding window of the fault count
  uint32_t fault_threshold = 5;      ///< faults in the window that block
  uint32_t probe_interval_ms = 1000; ///< probes of blocked segments
};

/// [supervisor]: the restart intensity of the node supervisor.
struct supervisor_config {
  uint32_t restarts_max = 5;   ///< restarts within the window ...
  uint32_t window_ms = 30000;  ///< ... before escalating (the file says window_s)
};

/// The segments 0..15, where a node allocates ids unless told otherwise.
inline std::vector<int32_t> default_id_segments() {
  std::vector<int32_t> out;
  for (int32_t i = 0; i < 16; ++i)
    out.push_back(i);
  return out;
}

/// [ids]: the envelope id allocator.
struct ids_config {
  std::vector<int32_t> segments = default_id_segments();
  int64_t lease_block = 1000;    ///< sequence numbers per lease
  uint32_t waiting_max = 10000;  ///< requests waiting for a lease
};

/// [log]
struct log_config {
  std::string level = "info";
};

} // namespace hb

#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "caf/typed_actor.hpp"

#include "config/services.hpp"
#include "runtime/messages.hpp"
#include "runtime/metrics.hpp"

namespace hb {

// The store: the database seen as an actor. Every request is answered with
// a value or an hb error (errc::unavailable, errc::stale_epoch, ...). The
// production implementation is a pool of detached workers that each own one
// PostgreSQL connection, so no query ever blocks a CAF scheduler thread.
// Tests and the simulation provide other implementations.
//
// One interface per concern: each client holds only the part it uses (the
// relay a ledger_store, the id allocator a segment_store), so what an actor
// may ask of the database shows in its type. A store implements their union,
// store_actor, which converts to each part.

/// The envelopes' own rows: created, activated, paid, opened, refunded.
using envelope_store = caf::typed_actor<
  // Insert an envelope, idempotent on (sender, idempotency_key). The bool
  // says whether this call created it.
  caf::replies_to<db_create_atom, envelope>::with<envelope, bool>,
  // Insert many envelopes with new keys in one transaction; those it
  // inserted, as stored. The others (a key seen before): create alone.
  caf::replies_to<db_create_many_atom,
                  std::vector<envelope>>::with<std::vector<envelope>>,
  // Bump the fencing epoch and load the envelope with its opens.
  caf::replies_to<db_activate_atom, int64_t>::with<envelope_snapshot>,
  // Activate many distinct envelopes in one transaction; the snapshots of
  // those it bumped (hot ones), in id order. The others: activate alone.
  caf::replies_to<db_activate_many_atom,
                  std::vector<int64_t>>::with<std::vector<envelope_snapshot>>,
  // Load without touching the epoch.
  caf::replies_to<db_load_atom, int64_t>::with<envelope_snapshot>,
  // CREATED -> PAID, guarded by the epoch.
  caf::replies_to<db_pay_atom, payment>::with<caf::ok_atom>,
  // Many external payments in one transaction; the ids it paid. The others
  // (from a wallet, not CREATED under the epoch, repeated): pay alone.
  caf::replies_to<db_pay_many_atom,
                  std::vector<payment>>::with<std::vector<int64_t>>,
  // One group-commit write, guarded by the epoch.
  caf::replies_to<db_commit_atom, open_batch>::with<caf::ok_atom>,
  // The writes of many envelopes in one transaction; one errc per batch
  // (0: committed), each batch guarded by its own epoch.
  caf::replies_to<db_commit_many_atom, std::vector<open_batch>>::with<std::vector<int32_t>>,
  // PAID -> REFUNDED guarded by the epoch (envelope id, epoch); replies the
  // refunded amount.
  caf::replies_to<db_refund_atom, int64_t, int64_t>::with<int64_t>>;

/// The money after the open: the relay's outbox, wallets, history and the
/// reconciliation.
using ledger_store = caf::typed_actor<
  // One outbox relay batch of at most this many rows.
  caf::replies_to<db_relay_atom, int32_t>::with<relay_batch_result>,
  // Outbox lag: pending rows and the oldest one's age in ms.
  caf::replies_to<db_lag_atom>::with<int64_t, int64_t>,
  // A page of a user's sent or received history.
  caf::replies_to<db_history_atom, history_query>::with<history_page>,
  // A wallet's balance.
  caf::replies_to<db_balance_atom, std::string>::with<balance_info>,
  // Credit a wallet from the external account.
  caf::replies_to<db_deposit_atom, deposit_request>::with<caf::ok_atom>,
  // Reconcile a window, repairing lost credits if asked.
  caf::replies_to<db_reconcile_atom, reconcile_run>::with<reconcile_report>>;

/// The id segments: sequence leases and the segments' durable health.
using segment_store = caf::typed_actor<
  // Lease a block of sequence numbers; replies the first.
  caf::replies_to<db_lease_atom, lease_request>::with<int64_t>,
  // Segments recorded as blocked.
  caf::replies_to<db_segments_atom>::with<std::vector<segment_state>>,
  // Record a segment's state durably.
  caf::replies_to<db_segment_set_atom, segment_state>::with<caf::ok_atom>,
  // Exercise a segment's storage (segment, day yyyymmdd); rolled back.
  caf::replies_to<db_probe_atom, int32_t, int32_t>::with<caf::ok_atom>>;

/// Housekeeping of the storage: day partitions, cold storage, expiry.
using maintenance_store = caf::typed_actor<
  // Create day partitions [from, to] (yyyymmdd); replies how many tables.
  caf::replies_to<db_partitions_atom, int32_t, int32_t>::with<int>,
  // Move days before the cutoff (yyyymmdd) to cold storage; replies days.
  caf::replies_to<db_detach_atom, int32_t>::with<int>,
  // A page of the PAID envelopes past their expiry.
  caf::replies_to<db_expired_atom, expiry_query>::with<std::vector<int64_t>>,
  // The database's clock, Unix ms (the sweeper watches the node's skew).
  caf::replies_to<db_clock_atom>::with<int64_t>>;

/// The SET's membership: node leases and segment owners, on the database
/// clock (see domain/cluster.hpp and runtime/messages.hpp).
using cluster_store = caf::typed_actor<
  // Join the SET with a new incarnation; the SET's view after the join.
  // errc::conflict if the database belongs to another SET.
  caf::replies_to<db_join_atom, join_request>::with<set_view>,
  // Renew the lease and read the SET's view in the same transaction.
  // errc::not_owner if the lease was replaced or has expired.
  caf::replies_to<db_renew_atom, renew_request>::with<set_view>,
  // Compare-and-set takes; the owner rows as taken (owner_epoch + 1).
  caf::replies_to<db_take_atom, take_request>::with<std::vector<segment_owner>>,
  // Planned moves by compare-and-set; the owner rows as moved.
  caf::replies_to<db_give_atom, give_request>::with<std::vector<segment_owner>>,
  // Mark a node of the SET draining or serving; the SET's view after it.
  caf::replies_to<db_drain_atom, drain_request>::with<set_view>,
  // A stopping node ends its lease now; whether it was current.
  caf::replies_to<db_leave_atom, leave_request>::with<bool>>;

/// Every concern: what a store implements.
using store_actor = envelope_store::extend_with<ledger_store, segment_store,
                                                maintenance_store,
                                                cluster_store>;

/// Where store workers report, per segment, whether each call that touched
/// the segment's data succeeded or hit a database fault (true). Connection
/// losses are not reported: they say nothing about one segment.
using segment_report_sink
  = caf::typed_actor<caf::reacts_to<seg_report_atom, int32_t, bool>>;

/// The operator's view of segment health: the blocked segments, and manual
/// block (true) / unblock (false) with a reason.
using segment_admin = caf::typed_actor<
  caf::replies_to<segment_atom>::with<std::vector<segment_state>>,
  caf::replies_to<segment_atom, segment_request>::with<segment_state>>;

/// Who wants to know which segments are blocked (the id allocator, the
/// router): gets the full list now and on every change.
using blocked_sink
  = caf::typed_actor<caf::reacts_to<blocked_atom, std::vector<int32_t>>>;

/// What the cluster tells segment health: the blocks recorded in the SET's
/// database by any node (adopted within a renewal), and the segments this
/// node owns (only the owner of a segment probes it: once per SET).
using segment_sync_sink = caf::typed_actor<
  caf::reacts_to<segment_sync_atom, std::vector<segment_state>>,
  caf::reacts_to<owned_atom, std::vector<int32_t>>>;

struct store_settings : store_config {
  /// The cluster node this store writes for; null: a node without a
  /// cluster (no owner rows, no owner checks).
  std::shared_ptr<node_identity> identity;
  /// Receives per-segment results; may be null.
  segment_report_sink health;
  /// Node-wide counters (store latency); may be null.
  std::shared_ptr<node_metrics> metrics;
};

/// Spawns the PostgreSQL store: `pool_size` detached workers, each with its
/// own connection (options and call deadline from `cfg`), behind a
/// dispatcher that hands each call to a free, connected worker
/// (store/worker_pool.hpp).
store_actor spawn_pg_store(caf::actor_system& sys, const store_settings& cfg);

} // namespace hb

#pragma once

#include <cstdint>
#include <string>

#include "caf/typed_actor.hpp"

#include "actors/messages.hpp"

namespace hb {

/// The store: the database seen as an actor. Every request is answered with
/// a value or an hb error (errc::unavailable, errc::stale_epoch, ...). The
/// production implementation is a pool of detached workers that each own one
/// PostgreSQL connection, so no query ever blocks a CAF scheduler thread.
/// Tests and the simulation provide other implementations of this interface.
using store_actor = caf::typed_actor<
  // Insert an envelope, idempotent on (sender, idempotency_key). The bool
  // says whether this call created it.
  caf::replies_to<db_create_atom, envelope>::with<envelope, bool>,
  // Bump the fencing epoch and load the envelope with its opens.
  caf::replies_to<db_activate_atom, int64_t>::with<envelope_snapshot>,
  // Load without touching the epoch.
  caf::replies_to<db_load_atom, int64_t>::with<envelope_snapshot>,
  // CREATED -> PAID, guarded by the epoch.
  caf::replies_to<db_pay_atom, payment>::with<caf::ok_atom>,
  // One group-commit write, guarded by the epoch.
  caf::replies_to<db_commit_atom, open_batch>::with<caf::ok_atom>,
  // Lease `block` sequence numbers of (segment, day); replies the first.
  caf::replies_to<db_lease_atom, int32_t, int32_t, int64_t>::with<int64_t>,
  // PAID -> REFUNDED guarded by the epoch; replies the refunded amount.
  caf::replies_to<db_refund_atom, int64_t, int64_t>::with<int64_t>,
  // One outbox relay batch of at most this many rows.
  caf::replies_to<db_relay_atom, int32_t>::with<relay_batch_result>,
  // Outbox lag: pending rows and the oldest one's age in ms.
  caf::replies_to<db_lag_atom>::with<int64_t, int64_t>,
  // PAID envelopes expired at (now_ms), at most this many.
  caf::replies_to<db_expired_atom, int64_t, int32_t>::with<std::vector<int64_t>>,
  caf::replies_to<db_history_atom, history_query>::with<history_page>,
  caf::replies_to<db_balance_atom, std::string>::with<balance_info>,
  // Reconcile since (ms) at now (ms), repairing lost credits if true.
  caf::replies_to<db_reconcile_atom, int64_t, int64_t, bool>::with<reconcile_report>,
  // Create day partitions [from, to] (yyyymmdd); replies how many tables.
  caf::replies_to<db_partitions_atom, int32_t, int32_t>::with<int>,
  // Move days before the cutoff (yyyymmdd) to cold storage; replies days.
  caf::replies_to<db_detach_atom, int32_t>::with<int>,
  // Credit a wallet from the external account (user, amount, key).
  caf::replies_to<db_deposit_atom, std::string, int64_t, std::string>::with<caf::ok_atom>>;

struct store_settings {
  std::string database_url;
  uint32_t pool_size = 4;
  /// A worker whose connection is down retries connecting at most this
  /// often; requests in between fail fast with errc::unavailable.
  uint32_t reconnect_interval_ms = 500;
};

/// Spawns the PostgreSQL store: `pool_size` detached workers behind a
/// round-robin dispatcher.
store_actor spawn_pg_store(caf::actor_system& sys, const store_settings& cfg);

} // namespace hb

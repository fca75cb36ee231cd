#pragma once

// An in-memory store with the semantics of the PostgreSQL store (fencing
// epochs, unique opens, idempotent creates) for actor unit tests. It can hold
// commits until released and fail the next commit on demand, so tests control
// exactly when a write completes.

#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "runtime/errors.hpp"
#include "store/store_actor.hpp"

namespace hb::test {

using release_atom = caf::atom_constant<caf::atom("release")>;

struct fake_db {
  std::map<int64_t, envelope> envelopes;
  std::map<int64_t, std::vector<open_record>> opens;
  std::map<std::pair<int32_t, int32_t>, int64_t> leases;
  std::vector<size_t> batch_sizes;  // every commit attempt, in order
  std::vector<size_t> commit_groups;  // envelope batches of each db_commit_many
  bool fail_next_commit_many = false; // the whole statement fails
  int commits_applied = 0;
  int activations = 0;                    // envelopes activated, alone or not
  std::vector<size_t> activation_batches; // ids of each db_activate_many
  std::set<int64_t> not_hot;              // left out of db_activate_many
  bool fail_next_activate_many = false;
  std::vector<size_t> pay_batches;        // payments of each db_pay_many
  std::vector<size_t> create_batches;     // envelopes of each db_create_many
  int creates_alone = 0;                  // db_create calls
  bool fail_next_create_many = false;
  int payments_alone = 0;                 // db_pay calls
  bool fail_next_pay_many = false;
  int refunds = 0;
  int probes = 0;
  int relay_batches = 0;                  // relay transactions asked for
  int32_t relay_rows = 0;                 // rows each relay batch reports
  std::set<int32_t> failing_segments;            // probes fail
  std::map<int32_t, segment_state> segment_states;  // recorded durably
  bool hold_commits = false;
  bool fail_next_commit = false;
  bool fail_everything = false;
  std::vector<std::pair<int32_t, int32_t>> partition_requests; // [from, to]
  std::vector<int32_t> detach_cutoffs;    // each db_detach, in order
  int partitions_created = 0;             // db_partitions replies this
  int days_detached = 0;                  // db_detach replies this
  bool fail_next_partitions = false;
  bool fail_next_detach = false;
  /// The database's clock (db_clock), Unix ms; 0: it answers unavailable.
  /// When set, a refund of an envelope whose expiry is after it is refused
  /// (errc::not_expired), as the real refund statement does.
  int64_t db_now_ms = 0;
  bool clock_fails = false;
  int clock_reads = 0;

  /// Adds a PAID (or CREATED) envelope and returns it.
  envelope& add(int64_t id, int64_t total_fen, int32_t count,
                envelope_kind kind = envelope_kind::random,
                envelope_status status = envelope_status::paid,
                int64_t expires_at_ms = 0);
};

/// The fake store actor: answers like the real one, except that held commits
/// (alone or many) wait for a `release` message.
using fake_store_actor
  = store_actor::extend<caf::reacts_to<release_atom>>;

fake_store_actor spawn_fake_store(caf::actor_system& sys,
                                  std::shared_ptr<fake_db> db);

} // namespace hb::test

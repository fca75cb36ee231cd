#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "domain/envelope.hpp"
#include "domain/errc.hpp"
#include "domain/limits.hpp"

struct pg_conn;

namespace hb::persistence {

/// The result of an idempotent create: the stored envelope, and whether this
/// call inserted it (false: the idempotency key was seen before).
struct create_result {
  envelope env;
  bool created = false;
};

/// One PostgreSQL connection and every query the service runs. Blocking:
/// an instance belongs to one thread (a detached store worker actor), never
/// to a CAF scheduler thread.
///
/// Error mapping: connection loss or a server that is down -> errc::unavailable
/// (the next call reconnects); a fencing epoch that is no longer current ->
/// errc::stale_epoch with nothing changed; anything unexpected -> errc::internal.
class pg_store {
public:
  /// Opens a connection. Does not apply migrations.
  static outcome<std::unique_ptr<pg_store>> connect(const std::string& url);

  ~pg_store();
  pg_store(const pg_store&) = delete;
  pg_store& operator=(const pg_store&) = delete;

  /// Applies every migration not yet recorded in schema_migrations, each in
  /// its own transaction, serialised across processes by an advisory lock.
  /// Returns how many were applied now.
  outcome<int> migrate();

  /// The highest applied migration version (0 on an empty database).
  outcome<int> schema_version();

  /// Inserts a new envelope (status CREATED), or, when (sender,
  /// idempotency_key) exists already, returns the stored one with
  /// created = false. A reused key with a different total, count or kind is
  /// errc::conflict.
  outcome<create_result> create_envelope(const envelope& env);

  /// Activation: bumps the envelope's fencing epoch and loads it with all its
  /// opens (ordered by seq), in one transaction. errc::not_found if absent.
  outcome<envelope_snapshot> activate(int64_t envelope_id);

  /// Reads an envelope and its opens without touching the epoch.
  outcome<envelope_snapshot> load(int64_t envelope_id);

  /// CREATED -> PAID guarded by the epoch: records the payment txn, paid and
  /// expiry times, and an outbox row of kind 'paid' (the group notification).
  outcome<done> confirm_payment(const payment& p);

  /// One group-commit transaction: checks the epoch and updates remaining
  /// amount/count/status, inserts every open and one outbox row of kind
  /// 'open' per open. A stale epoch or any failure changes nothing.
  outcome<done> commit_opens(const open_batch& batch);

  /// Leases `block` sequence numbers of a segment for a day; returns the first
  /// of them. Leases never overlap, across processes too.
  outcome<int64_t> lease_sequence(int32_t segment, int32_t day, int64_t block);

  /// Runs a statement that returns nothing (tests and tools).
  outcome<done> exec(const std::string& sql);

  /// Whether the connection is currently usable.
  bool connected() const;

private:
  explicit pg_store(pg_conn* conn, std::string url);
  bool ensure_connected();

  pg_conn* conn_;
  std::string url_;
};

} // namespace hb::persistence

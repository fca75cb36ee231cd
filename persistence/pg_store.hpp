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
///
/// In detail, every call first reconnects once (PQreset) if the connection
/// is broken. errc::unavailable: no connection, connection lost (SQLSTATE
/// class 08, 57P01-57P03), the server short of resources (classes 53, 58),
/// a statement timeout (57014), a serialization failure or deadlock (40001,
/// 40P01). Nothing is half-written, but after a lost connection a write may
/// or may not have committed: retrying the same call is safe (create,
/// confirm_payment and commit_opens recognise their own earlier success).
/// Text containing a NUL byte -> errc::invalid_argument. Constraint
/// violations that mean a caller bug -> errc::internal with the server's
/// primary message (never parameter values). Nothing is logged here.
class pg_store {
public:
  /// Opens a connection (connect_timeout 5 s unless `url` sets one; client
  /// encoding UTF8). Does not apply migrations. A malformed `url` ->
  /// errc::invalid_argument; a server that cannot be reached or refuses the
  /// login -> errc::unavailable.
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
  /// errc::conflict. Only id, sender, group, greeting, idempotency_key, kind,
  /// total_fen, count and created_at_ms (0: now) are read from `env`; the
  /// segment is id % 1000 and the rest starts as CREATED, remaining =
  /// total/count, epoch 0. A retry with another id returns the stored id.
  outcome<create_result> create_envelope(const envelope& env);

  /// Activation: bumps the envelope's fencing epoch and loads it with all its
  /// opens (ordered by seq), in one transaction. errc::not_found if absent.
  /// Waits for an in-flight write of the previous owner and includes it.
  outcome<envelope_snapshot> activate(int64_t envelope_id);

  /// Reads an envelope and its opens without touching the epoch.
  outcome<envelope_snapshot> load(int64_t envelope_id);

  /// CREATED -> PAID guarded by the epoch: records the payment txn, paid and
  /// expiry times, and an outbox row of kind 'paid' (the group notification).
  /// Nothing changes unless the envelope is CREATED under `p.epoch`.
  /// Already paid with the same txn -> done (idempotent). errc::stale_epoch
  /// if the epoch is not current (checked first), errc::payment_mismatch if
  /// paid with another txn or the txn paid another envelope, errc::not_found,
  /// errc::invalid_argument for an empty txn. paid_at_ms 0 means now;
  /// expires_at_ms 0 means never.
  outcome<done> confirm_payment(const payment& p);

  /// One group-commit transaction: checks the epoch and updates remaining
  /// amount/count/status, inserts every open and one outbox row of kind
  /// 'open' per open. A stale epoch or any failure changes nothing.
  /// One statement, one round trip. It applies only if the envelope is PAID
  /// under `batch.epoch` and its stored remaining amount/count equal the
  /// batch's remaining plus the batch's shares (the batch continues exactly
  /// the state the actor holds). Outcomes: done; done again for a replay of
  /// a batch that already committed; errc::stale_epoch if the epoch is not
  /// current or the envelope is no longer PAID (reload via activate);
  /// errc::not_found; errc::internal for a batch that does not continue the
  /// stored state, a user or seq twice in the batch, a user who opened
  /// before, a status other than PAID/EXHAUSTED, or a CHECK violation
  /// (e.g. remaining below 0, EXHAUSTED with shares left, PAID with none).
  outcome<done> commit_opens(const open_batch& batch);

  /// Leases `block` sequence numbers of a segment for a day; returns the first
  /// of them. Leases never overlap, across processes too. Sequences of a
  /// (segment, day) start at 1. block < 1 -> errc::internal. The caller
  /// checks the end of the block against sequence_max.
  outcome<int64_t> lease_sequence(int32_t segment, int32_t day, int64_t block);

  /// Runs trusted SQL, possibly several statements, without parameters and
  /// discards any rows (tests and tools). Never pass user data in `sql`.
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

#pragma once

// Private to persistence/: the libpq plumbing shared by the pg_*.cpp files
// of pg_store (one per concern). Nothing outside this folder includes it.

#include <libpq-fe.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "domain/cluster.hpp"
#include "domain/envelope.hpp"
#include "domain/errc.hpp"

namespace hb::persistence::detail {

// -- Statement results ---------------------------------------------------------

using result_ptr = std::unique_ptr<PGresult, decltype(&PQclear)>;

/// The answer to one statement: its rows, or a failure already mapped to an
/// errc, plus what the caller needs to tell one failure from another.
struct reply {
  result_ptr res{nullptr, &PQclear};
  failure error{errc::none, {}};
  std::string sqlstate;    ///< Five-character SQLSTATE of a failed statement.
  std::string constraint;  ///< The violated constraint's name, if any.
  std::string primary;     ///< The server's primary message, if any.

  bool ok() const { return error.code == errc::none; }
  int rows() const { return PQntuples(res.get()); }
  /// Rows changed by an INSERT/UPDATE/DELETE without RETURNING.
  int64_t affected() const;
  bool null(int row, int col) const {
    return PQgetisnull(res.get(), row, col) != 0;
  }
  std::string text(int row, int col) const {
    return {PQgetvalue(res.get(), row, col),
            static_cast<size_t>(PQgetlength(res.get(), row, col))};
  }
  int64_t i64(int row, int col) const;
  bool boolean(int row, int col) const {
    return PQgetvalue(res.get(), row, col)[0] == 't';
  }
};

/// libpq messages end in newlines and may span lines; callers log one line.
std::string one_line(const char* msg);

/// A failed reply that never reached the server.
reply fail(errc code, std::string message);

/// errc::unavailable for a connection that could not be (re)established.
failure unreachable(PGconn* conn);

// -- Parameters ----------------------------------------------------------------

/// Statement parameters, all in text format; the server infers or the SQL
/// casts their types. User data only ever travels here, never in SQL text.
class params {
public:
  params& add(int64_t value) { return add(std::to_string(value)); }
  params& add(int32_t value) { return add(int64_t{value}); }
  params& add(bool value) { return add(std::string(value ? "t" : "f")); }
  params& add(const char* value) { return add(std::string(value)); }
  params& add(std::string value);
  params& add_null();

  bool has_nul() const { return has_nul_; }
  int size() const { return static_cast<int>(values_.size()); }
  std::vector<const char*> pointers() const;

private:
  std::vector<std::string> values_;
  std::vector<bool> nulls_;
  bool has_nul_ = false;
};

/// One statement with parameters (one implicit transaction unless inside
/// a `transaction`). Text holding a NUL byte never reaches the server.
reply run(PGconn* conn, const char* what, const char* sql, const params& p);

/// `run` for the statements on the hot paths (commit, activation, create,
/// pay): prepared once per connection and executed by name, so that the
/// server plans them once instead of at every call (planning was about 0.7
/// ms of a 500-open commit and most of a 10-open one). `sql` must have
/// static storage duration (a literal or a static constexpr): it is the
/// cache key. The name is derived from the text, so a statement prepared on
/// a connection by another thread, or lost with a reset connection, is
/// recognised and handled.
reply run_prepared(PGconn* conn, const char* what, const char* sql,
                   const params& p);

/// Drops what run_prepared and set_call_timeout remember of a connection
/// about to be closed.
void forget_connection(PGconn* conn);

/// The client side deadline of every round trip on `conn` (0: none); see
/// connection_options::call_timeout_ms. Every statement of this file is
/// sent with libpq's asynchronous API and waited for with poll() on the
/// connection's socket until then: the wait needs nothing from the server.
/// When it passes the socket is shut down, which breaks the connection (the
/// next call resets it), and the statement fails with errc::unavailable.
void set_call_timeout(PGconn* conn, uint32_t timeout_ms);

/// Trusted SQL without parameters; may hold several statements.
reply run_script(PGconn* conn, const char* what, const char* sql);

/// Whether a failed statement was refused for lack of a partition for its
/// row ("no partition of relation ... found for row").
bool no_partition(const reply& r);

// -- Transactions --------------------------------------------------------------

/// BEGIN ... COMMIT with ROLLBACK on every early return. A rollback on a
/// lost connection fails harmlessly: the server discards the transaction.
class transaction {
public:
  /// `begin_sql` may name an isolation level, e.g.
  /// "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY".
  transaction(PGconn* conn, const char* what, const char* begin_sql = "BEGIN")
    : conn_(conn), what_(what), begin_sql_(begin_sql) {}
  ~transaction();
  transaction(const transaction&) = delete;
  transaction& operator=(const transaction&) = delete;

  reply begin();
  reply commit();

private:
  PGconn* conn_;
  const char* what_;
  const char* begin_sql_;
  bool open_ = false;
};

// -- Array literals ------------------------------------------------------------

/// A PostgreSQL text[] literal. Every element is double-quoted, so commas,
/// braces, spaces and the word NULL stay data; inside the quotes only `"`
/// and `\` need a backslash.
std::string text_array(const std::vector<std::string>& xs);

/// A bigint[] (or int[]) literal.
std::string number_array(const std::vector<int64_t>& xs);

/// The users of a batch as a text[] literal.
std::string user_array(const std::vector<open_record>& opens);

/// One numeric field of every open of a batch as an array literal.
template <class Get>
std::string open_field_array(const std::vector<open_record>& opens, Get get) {
  std::vector<int64_t> xs;
  xs.reserve(opens.size());
  for (auto& o : opens)
    xs.push_back(get(o));
  return number_array(xs);
}

// -- Rows ----------------------------------------------------------------------

// Unix milliseconds <-> timestamptz; NULL reads as 0.
#define HB_MS(col) "COALESCE((extract(epoch FROM " col ") * 1000)::bigint, 0)"

/// The envelope columns in the order read_envelope expects (alias e; works
/// on the hot table, the cold one and the envelopes_all view alike).
#define HB_ENVELOPE_COLUMNS                                                    \
  "e.id, e.sender, e.group_id, e.greeting, e.idempotency_key, e.kind, "        \
  "e.status, e.total_fen, e.count, e.remaining_fen, e.remaining_count, "       \
  "COALESCE(e.payment_txn, ''), " HB_MS("e.created_at") ", "                   \
  HB_MS("e.paid_at") ", " HB_MS("e.expires_at") ", e.epoch, e.refunded_fen"

constexpr int envelope_column_count = 17;

/// A CTE `owed` that queues the opens of the CTE `ins` (its envelope_id and
/// user_id columns) for the relay, 64 to a credits_owed row (migration 5):
/// written by the commit statements with the opens they insert, and by a
/// repair that re-enqueues lost credits.
#define HB_OWED_FROM_INS                                                       \
  " owed AS ("                                                                 \
  " INSERT INTO credits_owed (envelope_ids, user_ids)"                         \
  " SELECT array_agg(envelope_id), array_agg(user_id)"                         \
  " FROM (SELECT envelope_id, user_id, row_number() OVER () - 1 AS n"          \
  "  FROM ins) o GROUP BY n / 64) "

// -- Cluster fences ------------------------------------------------------------

/// The second fence of the writes to a PAID or CREATED envelope of a node in
/// a cluster (commits, payments, refunds), ANDed to the statement's guard on
/// the envelope row `t` (its table name or alias): the segment's owner_epoch
/// is still the one the envelope was created or activated under, so that a
/// deposed owner's write is refused even for an envelope its successor has
/// not activated. An envelope written without a cluster has owner_epoch 0
/// and is not checked. One probe of segment_owners' primary key per row.
#define HB_OWNER_EPOCH_CURRENT(t)                                              \
  " AND (" t ".owner_epoch = 0 OR EXISTS (SELECT 1 FROM segment_owners so"     \
  " WHERE so.segment = " t ".segment AND so.owner_epoch = " t ".owner_epoch))"

/// errc::none when `me` (at its current incarnation) owns `segment` now;
/// errc::not_owner saying who does; the error of a failed read.
failure owner_check(PGconn* conn, const char* what, int32_t segment,
                    const node_identity& me);

/// errc::not_owner when the hot envelope was created or activated under an
/// owner_epoch that its segment has moved on from (its owner was deposed
/// since); errc::none when it was not, or the envelope is not hot (an
/// archived one is never activated again, and refuses writes anyway); the
/// error of a failed read.
failure deposed(PGconn* conn, const char* what, int64_t envelope_id);

/// Reads HB_ENVELOPE_COLUMNS from `row`.
outcome<envelope> read_envelope(const reply& r, int row);

/// One consistent read (a single statement, one snapshot) of an envelope and
/// its opens, hot or cold (through the *_all views); `archived` tells which.
/// errc::not_found when the envelope is in neither.
outcome<envelope_snapshot> read_snapshot(PGconn* conn, const char* what,
                                         int64_t envelope_id);

std::string not_found_message(int64_t envelope_id);

} // namespace hb::persistence::detail

#include "persistence/pg_store.hpp"

#include <libpq-fe.h>

#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "domain/envelope_id.hpp"
#include "persistence/migrations.hpp"

namespace hb::persistence {

namespace {

// -- Statement results -------------------------------------------------------

using result_ptr = std::unique_ptr<PGresult, decltype(&PQclear)>;

/// The answer to one statement: its rows, or a failure already mapped to an
/// errc, plus what the caller needs to tell one failure from another.
struct reply {
  result_ptr res{nullptr, &PQclear};
  failure error{errc::none, {}};
  std::string sqlstate;    ///< Five-character SQLSTATE of a failed statement.
  std::string constraint;  ///< The violated constraint's name, if any.

  bool ok() const { return error.code == errc::none; }
  int rows() const { return PQntuples(res.get()); }
  bool null(int row, int col) const {
    return PQgetisnull(res.get(), row, col) != 0;
  }
  std::string text(int row, int col) const {
    return {PQgetvalue(res.get(), row, col),
            static_cast<size_t>(PQgetlength(res.get(), row, col))};
  }
  int64_t i64(int row, int col) const {
    return std::strtoll(PQgetvalue(res.get(), row, col), nullptr, 10);
  }
};

// libpq messages end in newlines and may span lines; callers log one line.
std::string one_line(const char* msg) {
  std::string out = msg != nullptr ? msg : "";
  for (auto& c : out)
    if (c == '\n' || c == '\t')
      c = ' ';
  while (!out.empty() && out.back() == ' ')
    out.pop_back();
  return out;
}

std::string field(const PGresult* res, int code) {
  auto value = PQresultErrorField(res, code);
  return value != nullptr ? value : "";
}

/// Whether a failure is the database's fault rather than the statement's:
/// the connection is gone (the next call reconnects), or the server is short
/// of resources or gave up on a transaction it rolled back. Retrying the same
/// call later is safe for all of them; the segment health supervisor counts
/// them as database faults.
bool database_fault(PGconn* conn, const std::string& sqlstate) {
  if (PQstatus(conn) == CONNECTION_BAD)
    return true;
  auto sqlclass = sqlstate.substr(0, 2);
  // connection exception, insufficient resources (disk full, out of memory,
  // too many connections), system error (I/O).
  if (sqlclass == "08" || sqlclass == "53" || sqlclass == "58")
    return true;
  // admin_shutdown, crash_shutdown, cannot_connect_now (starting up),
  // query_canceled (statement timeout), serialization failure, deadlock.
  return sqlstate == "57P01" || sqlstate == "57P02" || sqlstate == "57P03"
         || sqlstate == "57014" || sqlstate == "40001" || sqlstate == "40P01";
}

/// Takes ownership of `raw` and maps its status to a reply. The message is
/// the server's primary message only: details may quote user data.
reply finish(PGconn* conn, const char* what, PGresult* raw) {
  reply r;
  r.res.reset(raw);
  auto status = raw != nullptr ? PQresultStatus(raw) : PGRES_FATAL_ERROR;
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK
      || status == PGRES_EMPTY_QUERY)
    return r;
  std::string msg;
  if (raw != nullptr) {
    r.sqlstate = field(raw, PG_DIAG_SQLSTATE);
    r.constraint = field(raw, PG_DIAG_CONSTRAINT_NAME);
    msg = field(raw, PG_DIAG_MESSAGE_PRIMARY);
  }
  if (msg.empty())
    msg = one_line(PQerrorMessage(conn));
  if (msg.empty())
    msg = std::string("unexpected result status ") + PQresStatus(status);
  r.error.code = database_fault(conn, r.sqlstate) ? errc::unavailable
                                                  : errc::internal;
  r.error.message = std::string(what) + ": " + msg;
  return r;
}

reply fail(errc code, std::string message) {
  reply r;
  r.error = failure{code, std::move(message)};
  return r;
}

// -- Parameters --------------------------------------------------------------

/// Statement parameters, all in text format; the server infers or the SQL
/// casts their types. User data only ever travels here, never in SQL text.
class params {
public:
  params& add(int64_t value) { return add(std::to_string(value)); }

  params& add(std::string value) {
    // PostgreSQL text cannot hold NUL, and libpq would cut the value there.
    if (value.find('\0') != std::string::npos)
      has_nul_ = true;
    values_.push_back(std::move(value));
    nulls_.push_back(false);
    return *this;
  }

  params& add_null() {
    values_.emplace_back();
    nulls_.push_back(true);
    return *this;
  }

  /// An empty text becomes NULL (for nullable unique columns).
  params& add_or_null(const std::string& value) {
    return value.empty() ? add_null() : add(value);
  }

  bool has_nul() const { return has_nul_; }
  int size() const { return static_cast<int>(values_.size()); }

  std::vector<const char*> pointers() const {
    std::vector<const char*> out;
    out.reserve(values_.size());
    for (size_t i = 0; i < values_.size(); ++i)
      out.push_back(nulls_[i] ? nullptr : values_[i].c_str());
    return out;
  }

private:
  std::vector<std::string> values_;
  std::vector<bool> nulls_;
  bool has_nul_ = false;
};

reply run(PGconn* conn, const char* what, const char* sql, const params& p) {
  if (p.has_nul())
    return fail(errc::invalid_argument,
                std::string(what) + ": text contains a NUL byte");
  auto ptrs = p.pointers();
  return finish(conn, what,
                PQexecParams(conn, sql, p.size(), nullptr, ptrs.data(),
                             nullptr, nullptr, 0));
}

/// Trusted SQL without parameters; may hold several statements.
reply run_script(PGconn* conn, const char* what, const char* sql) {
  return finish(conn, what, PQexec(conn, sql));
}

// -- Array literals ----------------------------------------------------------

/// A PostgreSQL text[] literal. Every element is double-quoted, so commas,
/// braces, spaces and the word NULL stay data; inside the quotes only `"`
/// and `\` need a backslash.
std::string text_array(const std::vector<open_record>& opens) {
  std::string out = "{";
  for (size_t i = 0; i < opens.size(); ++i) {
    if (i > 0)
      out += ',';
    out += '"';
    for (char c : opens[i].user) {
      if (c == '"' || c == '\\')
        out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

template <class Get>
std::string number_array(const std::vector<open_record>& opens, Get get) {
  std::string out = "{";
  for (size_t i = 0; i < opens.size(); ++i) {
    if (i > 0)
      out += ',';
    out += std::to_string(get(opens[i]));
  }
  out += '}';
  return out;
}

// -- Rows --------------------------------------------------------------------

// Unix milliseconds <-> timestamptz; NULL reads as 0.
#define HB_MS(col) "COALESCE((extract(epoch FROM " col ") * 1000)::bigint, 0)"

/// The envelope columns in the order read_envelope expects (alias e).
#define HB_ENVELOPE_COLUMNS                                                    \
  "e.id, e.sender, e.group_id, e.greeting, e.idempotency_key, e.kind, "        \
  "e.status, e.total_fen, e.count, e.remaining_fen, e.remaining_count, "       \
  "COALESCE(e.payment_txn, ''), " HB_MS("e.created_at") ", "                   \
  HB_MS("e.paid_at") ", " HB_MS("e.expires_at") ", e.epoch"

constexpr int envelope_column_count = 16;

bool read_kind(int64_t raw, envelope_kind& out) {
  if (raw != 1 && raw != 2)
    return false;
  out = static_cast<envelope_kind>(raw);
  return true;
}

bool read_status(int64_t raw, envelope_status& out) {
  if (raw < 1 || raw > 5)
    return false;
  out = static_cast<envelope_status>(raw);
  return true;
}

outcome<envelope> read_envelope(const reply& r, int row) {
  envelope e;
  e.id = r.i64(row, 0);
  e.sender = r.text(row, 1);
  e.group = r.text(row, 2);
  e.greeting = r.text(row, 3);
  e.idempotency_key = r.text(row, 4);
  if (!read_kind(r.i64(row, 5), e.kind) || !read_status(r.i64(row, 6), e.status))
    return failure{errc::internal, "envelope " + std::to_string(e.id)
                                     + " has an unknown kind or status"};
  e.total_fen = r.i64(row, 7);
  e.count = static_cast<int32_t>(r.i64(row, 8));
  e.remaining_fen = r.i64(row, 9);
  e.remaining_count = static_cast<int32_t>(r.i64(row, 10));
  e.payment_txn = r.text(row, 11);
  e.created_at_ms = r.i64(row, 12);
  e.paid_at_ms = r.i64(row, 13);
  e.expires_at_ms = r.i64(row, 14);
  e.epoch = r.i64(row, 15);
  return e;
}

/// One consistent read (a single statement, one snapshot) of an envelope and
/// its opens: one row per open, or one row with NULL open columns.
outcome<envelope_snapshot> read_snapshot(PGconn* conn, const char* what,
                                         int64_t envelope_id) {
  static constexpr const char* sql =
    "SELECT " HB_ENVELOPE_COLUMNS ", o.user_id, o.amount_fen, o.seq, "
    HB_MS("o.opened_at") " "
    "FROM envelopes e LEFT JOIN opens o ON o.envelope_id = e.id "
    "WHERE e.id = $1 ORDER BY o.seq";
  auto r = run(conn, what, sql, params{}.add(envelope_id));
  if (!r.ok())
    return r.error;
  if (r.rows() == 0)
    return failure{errc::not_found,
                   "no envelope with id " + std::to_string(envelope_id)};
  auto env = read_envelope(r, 0);
  if (!env)
    return env.error();
  envelope_snapshot snap;
  snap.env = std::move(*env);
  constexpr int c = envelope_column_count;
  for (int row = 0; row < r.rows(); ++row) {
    if (r.null(row, c))
      continue;
    snap.opens.push_back(open_record{r.text(row, c), r.i64(row, c + 1),
                                     static_cast<int32_t>(r.i64(row, c + 2)),
                                     r.i64(row, c + 3)});
  }
  return snap;
}

// -- Transactions ------------------------------------------------------------

/// BEGIN ... COMMIT with ROLLBACK on every early return. A rollback on a
/// lost connection fails harmlessly: the server discards the transaction.
class transaction {
public:
  transaction(PGconn* conn, const char* what) : conn_(conn), what_(what) {}
  ~transaction() {
    if (open_)
      run_script(conn_, what_, "ROLLBACK");
  }
  transaction(const transaction&) = delete;
  transaction& operator=(const transaction&) = delete;

  reply begin() {
    auto r = run_script(conn_, what_, "BEGIN");
    open_ = r.ok();
    return r;
  }

  reply commit() {
    open_ = false;
    return run_script(conn_, what_, "COMMIT");
  }

private:
  PGconn* conn_;
  const char* what_;
  bool open_ = false;
};

// -- Connections -------------------------------------------------------------

/// Opens a connection from any libpq connection string. Defaults that the
/// string may override come before it; what the code relies on comes after.
PGconn* open_connection(const std::string& url) {
  const char* keys[] = {"connect_timeout", "fallback_application_name",
                        "dbname", "client_encoding", nullptr};
  const char* values[] = {"5", "hongbao", url.c_str(), "UTF8", nullptr};
  auto conn = PQconnectdbParams(keys, values, 1);
  // Server notices (e.g. "already exists, skipping") would go to stderr;
  // persistence prints nothing, and the setting survives PQreset.
  if (conn != nullptr)
    PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
  return conn;
}

failure unreachable(PGconn* conn) {
  return failure{errc::unavailable,
                 "database unreachable: " + one_line(PQerrorMessage(conn))};
}

/// Serialises migrations of all processes on one database ("hbmig").
constexpr int64_t migration_lock_key = 0x6862'6d69'67;

outcome<std::set<int>> applied_versions(PGconn* conn) {
  auto r = run_script(conn, "migrate",
                      "CREATE TABLE IF NOT EXISTS schema_migrations ("
                      " version INT PRIMARY KEY, name TEXT NOT NULL,"
                      " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())");
  if (!r.ok())
    return r.error;
  r = run_script(conn, "migrate", "SELECT version FROM schema_migrations");
  if (!r.ok())
    return r.error;
  std::set<int> out;
  for (int row = 0; row < r.rows(); ++row)
    out.insert(static_cast<int>(r.i64(row, 0)));
  return out;
}

failure apply_one(PGconn* conn, const migration& m) {
  transaction tx{conn, "migrate"};
  auto r = tx.begin();
  if (r.ok())
    r = run_script(conn, "migrate", m.sql);
  if (r.ok())
    r = run(conn, "migrate",
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            params{}.add(int64_t{m.version}).add(m.name));
  if (r.ok())
    r = tx.commit();
  if (!r.ok())
    r.error.message = "migration " + std::to_string(m.version) + " ("
                      + m.name + ") failed: " + r.error.message;
  return r.error;
}

/// Runs while the advisory lock is held.
outcome<int> apply_missing(PGconn* conn) {
  auto applied = applied_versions(conn);
  if (!applied)
    return applied.error();
  int count = 0;
  for (auto& m : all_migrations()) {
    if (applied->count(m.version) > 0)
      continue;
    auto err = apply_one(conn, m);
    if (err.code != errc::none)
      return err;
    ++count;
  }
  return count;
}

// -- Checks before a write ---------------------------------------------------

/// Problems in a batch that are bugs in the caller; the database would catch
/// most of them too, but with less helpful messages.
std::string batch_problem(const open_batch& b) {
  if (b.status != envelope_status::paid
      && b.status != envelope_status::exhausted)
    return "a batch must leave the envelope paid or exhausted";
  std::set<std::string> users;
  std::set<int32_t> seqs;
  for (auto& o : b.opens) {
    if (!users.insert(o.user).second)
      return "user appears twice in one batch";
    if (!seqs.insert(o.seq).second)
      return "seq " + std::to_string(o.seq) + " appears twice in one batch";
  }
  return {};
}

bool same_content(const envelope& a, const envelope& b) {
  return a.total_fen == b.total_fen && a.count == b.count && a.kind == b.kind
         && a.group == b.group;
}

// -- Explaining a refused write ---------------------------------------------

outcome<create_result> existing_envelope(PGconn* conn, const envelope& env) {
  // The key was seen before: this is a retry, or a reuse with new content.
  static constexpr const char* sql =
    "SELECT " HB_ENVELOPE_COLUMNS " FROM envelopes e "
    "WHERE e.sender = $1 AND e.idempotency_key = $2";
  auto r = run(conn, "create_envelope", sql,
               params{}.add(env.sender).add(env.idempotency_key));
  if (!r.ok())
    return r.error;
  if (r.rows() != 1)
    return failure{errc::internal,
                   "create_envelope: idempotency key neither new nor stored"};
  auto stored = read_envelope(r, 0);
  if (!stored)
    return stored.error();
  if (!same_content(*stored, env))
    return failure{errc::conflict,
                   "idempotency key already used for envelope "
                     + std::to_string(stored->id)
                     + " with a different total, count, kind or group"};
  return create_result{std::move(*stored), false};
}

outcome<done> explain_unpaid(PGconn* conn, const payment& p) {
  // Nothing changed; find out why. A repeat of the same confirmation is
  // success (idempotency), anything else is refused.
  auto r = run(conn, "confirm_payment",
               "SELECT epoch, status, COALESCE(payment_txn, '') "
               "FROM envelopes WHERE id = $1",
               params{}.add(p.envelope_id));
  if (!r.ok())
    return r.error;
  if (r.rows() == 0)
    return failure{errc::not_found,
                   "no envelope with id " + std::to_string(p.envelope_id)};
  auto epoch = r.i64(0, 0);
  if (epoch != p.epoch)
    return failure{errc::stale_epoch, "epoch " + std::to_string(p.epoch)
                                        + " is stale (current "
                                        + std::to_string(epoch) + ")"};
  if (r.i64(0, 1) == static_cast<int>(envelope_status::created))
    return failure{errc::internal, "confirm_payment: envelope changed "
                                   "concurrently under a current epoch"};
  if (r.text(0, 2) != p.payment_txn)
    return failure{errc::payment_mismatch,
                   "envelope already paid with a different payment txn"};
  return done{};
}

outcome<bool> stored_opens_match(PGconn* conn, const open_batch& batch) {
  static constexpr const char* sql =
    "SELECT count(*) FROM opens o"
    " JOIN unnest($2::text[], $3::bigint[], $4::int[]) AS x(u, a, s)"
    " ON o.user_id = x.u AND o.amount_fen = x.a AND o.seq = x.s"
    " WHERE o.envelope_id = $1";
  params p;
  p.add(batch.envelope_id).add(text_array(batch.opens));
  p.add(number_array(batch.opens, [](auto& o) { return o.amount_fen; }));
  p.add(number_array(batch.opens, [](auto& o) { return o.seq; }));
  auto r = run(conn, "commit_opens", sql, p);
  if (!r.ok())
    return r.error;
  return r.i64(0, 0) == static_cast<int64_t>(batch.opens.size());
}

outcome<done> explain_refused(PGconn* conn, const open_batch& batch) {
  // Nothing changed; find out why. The batch may have committed already
  // (a retry after a lost reply), which counts as success.
  auto r = run(conn, "commit_opens",
               "SELECT epoch, status, remaining_fen, remaining_count "
               "FROM envelopes WHERE id = $1",
               params{}.add(batch.envelope_id));
  if (!r.ok())
    return r.error;
  if (r.rows() == 0)
    return failure{errc::not_found,
                   "no envelope with id " + std::to_string(batch.envelope_id)};
  auto epoch = r.i64(0, 0);
  if (epoch != batch.epoch)
    return failure{errc::stale_epoch, "epoch " + std::to_string(batch.epoch)
                                        + " is stale (current "
                                        + std::to_string(epoch) + ")"};
  auto status = r.i64(0, 1);
  bool state_matches = status == static_cast<int>(batch.status)
                       && r.i64(0, 2) == batch.remaining_fen
                       && r.i64(0, 3) == batch.remaining_count;
  if (state_matches && !batch.opens.empty()) {
    auto stored = stored_opens_match(conn, batch);
    if (!stored)
      return stored.error();
    if (*stored)
      return done{};
  }
  if (status != static_cast<int>(envelope_status::paid))
    return failure{errc::stale_epoch,
                   std::string("envelope is no longer paid (status ")
                     + to_string(static_cast<envelope_status>(status)) + ")"};
  return failure{errc::internal,
                 "commit_opens: batch does not continue the stored remaining "
                 "amount and count of envelope "
                   + std::to_string(batch.envelope_id)};
}

} // namespace

// -- pg_store ----------------------------------------------------------------

pg_store::pg_store(pg_conn* conn, std::string url)
  : conn_(conn), url_(std::move(url)) {
}

pg_store::~pg_store() {
  PQfinish(conn_);
}

outcome<std::unique_ptr<pg_store>> pg_store::connect(const std::string& url) {
  // A malformed string is a configuration error, not an outage.
  char* err = nullptr;
  auto opts = PQconninfoParse(url.c_str(), &err);
  if (opts == nullptr) {
    failure f{errc::invalid_argument, "invalid database url: " + one_line(err)};
    PQfreemem(err);
    return f;
  }
  PQconninfoFree(opts);
  auto conn = open_connection(url);
  if (conn == nullptr)
    return failure{errc::internal, "out of memory opening a connection"};
  if (PQstatus(conn) != CONNECTION_OK) {
    auto f = unreachable(conn);
    PQfinish(conn);
    return f;
  }
  return std::unique_ptr<pg_store>(new pg_store(conn, url));
}

bool pg_store::connected() const {
  return PQstatus(conn_) == CONNECTION_OK;
}

bool pg_store::ensure_connected() {
  // One reset per call: the caller owns the backoff between attempts.
  if (PQstatus(conn_) == CONNECTION_OK)
    return true;
  PQreset(conn_);
  return PQstatus(conn_) == CONNECTION_OK;
}

outcome<int> pg_store::migrate() {
  if (!ensure_connected())
    return unreachable(conn_);
  auto lock = run(conn_, "migrate", "SELECT pg_advisory_lock($1)",
                  params{}.add(migration_lock_key));
  if (!lock.ok())
    return lock.error;
  auto applied = apply_missing(conn_);
  // A failed unlock means a lost connection, which releases the lock anyway.
  run(conn_, "migrate", "SELECT pg_advisory_unlock($1)",
      params{}.add(migration_lock_key));
  return applied;
}

outcome<int> pg_store::schema_version() {
  if (!ensure_connected())
    return unreachable(conn_);
  auto r = run_script(conn_, "schema_version",
                      "SELECT to_regclass('schema_migrations') IS NOT NULL");
  if (!r.ok())
    return r.error;
  if (r.text(0, 0) != "t")
    return 0;
  r = run_script(conn_, "schema_version",
                 "SELECT COALESCE(max(version), 0) FROM schema_migrations");
  if (!r.ok())
    return r.error;
  return static_cast<int>(r.i64(0, 0));
}

outcome<create_result> pg_store::create_envelope(const envelope& env) {
  if (env.id <= 0)
    return failure{errc::internal, "create_envelope: envelope id must be > 0"};
  if (!ensure_connected())
    return unreachable(conn_);
  // Status, remaining amount/count, payment and epoch of a new envelope
  // follow from the rest; the caller's values for them are not used.
  static constexpr const char* insert_sql =
    "INSERT INTO envelopes AS e (id, segment, sender, group_id, greeting,"
    " idempotency_key, kind, status, total_fen, count, remaining_fen,"
    " remaining_count, created_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $8, $9,"
    " COALESCE(to_timestamp(NULLIF($10::bigint, 0) / 1000.0), now())) "
    "ON CONFLICT (sender, idempotency_key) DO NOTHING "
    "RETURNING " HB_ENVELOPE_COLUMNS;
  params p;
  p.add(env.id).add(int64_t{segment_of(env.id)}).add(env.sender).add(env.group);
  p.add(env.greeting).add(env.idempotency_key);
  p.add(int64_t{static_cast<int>(env.kind)}).add(env.total_fen);
  p.add(int64_t{env.count}).add(env.created_at_ms);
  auto r = run(conn_, "create_envelope", insert_sql, p);
  if (!r.ok())
    return r.error;
  if (r.rows() == 1) {
    auto stored = read_envelope(r, 0);
    if (!stored)
      return stored.error();
    return create_result{std::move(*stored), true};
  }
  return existing_envelope(conn_, env);
}

outcome<envelope_snapshot> pg_store::activate(int64_t envelope_id) {
  if (!ensure_connected())
    return unreachable(conn_);
  // The bump waits for any in-flight write of the old owner; the read that
  // follows is a new statement with a new snapshot, so it sees that write.
  transaction tx{conn_, "activate"};
  auto r = tx.begin();
  if (!r.ok())
    return r.error;
  r = run(conn_, "activate",
          "UPDATE envelopes SET epoch = epoch + 1 WHERE id = $1",
          params{}.add(envelope_id));
  if (!r.ok())
    return r.error;
  if (std::strcmp(PQcmdTuples(r.res.get()), "1") != 0)
    return failure{errc::not_found,
                   "no envelope with id " + std::to_string(envelope_id)};
  auto snap = read_snapshot(conn_, "activate", envelope_id);
  if (!snap)
    return snap.error();
  r = tx.commit();
  if (!r.ok())
    return r.error;
  return snap;
}

outcome<envelope_snapshot> pg_store::load(int64_t envelope_id) {
  if (!ensure_connected())
    return unreachable(conn_);
  return read_snapshot(conn_, "load", envelope_id);
}

outcome<done> pg_store::confirm_payment(const payment& p) {
  if (p.payment_txn.empty())
    return failure{errc::invalid_argument, "payment txn must not be empty"};
  if (!ensure_connected())
    return unreachable(conn_);
  // One statement is one transaction: the status change and its outbox row
  // commit together or not at all.
  static constexpr const char* sql =
    "WITH upd AS ("
    " UPDATE envelopes SET status = 2, payment_txn = $3,"
    "  paid_at = COALESCE(to_timestamp(NULLIF($4::bigint, 0) / 1000.0), now()),"
    "  expires_at = to_timestamp(NULLIF($5::bigint, 0) / 1000.0)"
    " WHERE id = $1 AND epoch = $2 AND status = 1 RETURNING id),"
    " box AS ("
    " INSERT INTO outbox (kind, envelope_id, idempotency_key)"
    " SELECT 'paid', id, 'paid:' || id FROM upd) "
    "SELECT count(*) FROM upd";
  params ps;
  ps.add(p.envelope_id).add(p.epoch).add(p.payment_txn).add(p.paid_at_ms);
  ps.add(p.expires_at_ms);
  auto r = run(conn_, "confirm_payment", sql, ps);
  if (!r.ok() && r.constraint == "envelopes_payment_txn_key")
    return failure{errc::payment_mismatch,
                   "payment txn already used for another envelope"};
  if (!r.ok())
    return r.error;
  if (r.i64(0, 0) == 1)
    return done{};
  return explain_unpaid(conn_, p);
}

outcome<done> pg_store::commit_opens(const open_batch& batch) {
  auto problem = batch_problem(batch);
  if (!problem.empty())
    return failure{errc::internal, "commit_opens: " + problem};
  if (!ensure_connected())
    return unreachable(conn_);
  // One statement, one round trip, one transaction. The update matches only
  // under the current epoch of a PAID envelope whose stored remaining amount
  // and count are exactly the batch's result plus the batch's shares; the
  // inserts read from the update, so a refused batch writes nothing.
  static constexpr const char* sql =
    "WITH x AS ("
    " SELECT * FROM unnest($6::text[], $7::bigint[], $8::int[], $9::bigint[])"
    "  AS x(u, a, s, t)),"
    " upd AS ("
    " UPDATE envelopes SET remaining_fen = $3, remaining_count = $4, status = $5"
    " WHERE id = $1 AND epoch = $2 AND status = 2"
    "  AND remaining_fen = $3::bigint + (SELECT COALESCE(sum(a), 0) FROM x)"
    "  AND remaining_count = $4::int + (SELECT count(*) FROM x)"
    " RETURNING id),"
    " ins AS ("
    " INSERT INTO opens (envelope_id, user_id, amount_fen, seq, opened_at)"
    " SELECT upd.id, x.u, x.a, x.s, to_timestamp(x.t / 1000.0) FROM upd, x"
    " RETURNING envelope_id, user_id, amount_fen),"
    " box AS ("
    " INSERT INTO outbox (kind, envelope_id, user_id, amount_fen, idempotency_key)"
    " SELECT 'open', envelope_id, user_id, amount_fen,"
    "  'open:' || envelope_id || ':' || user_id FROM ins) "
    "SELECT count(*) FROM upd";
  params p;
  p.add(batch.envelope_id).add(batch.epoch).add(batch.remaining_fen);
  p.add(int64_t{batch.remaining_count});
  p.add(int64_t{static_cast<int>(batch.status)});
  p.add(text_array(batch.opens));
  p.add(number_array(batch.opens, [](auto& o) { return o.amount_fen; }));
  p.add(number_array(batch.opens, [](auto& o) { return o.seq; }));
  p.add(number_array(batch.opens, [](auto& o) { return o.opened_at_ms; }));
  auto r = run(conn_, "commit_opens", sql, p);
  if (!r.ok())
    return r.error;
  if (r.i64(0, 0) == 1)
    return done{};
  return explain_refused(conn_, batch);
}

outcome<int64_t> pg_store::lease_sequence(int32_t segment, int32_t day,
                                          int64_t block) {
  if (block < 1)
    return failure{errc::internal, "lease_sequence: block must be >= 1"};
  if (!ensure_connected())
    return unreachable(conn_);
  // The upsert takes the row lock, so concurrent leases queue up and each
  // gets its own range.
  static constexpr const char* sql =
    "INSERT INTO segment_leases AS l (segment, day, next_seq)"
    " VALUES ($1, $2, 1 + $3::bigint)"
    " ON CONFLICT (segment, day) DO UPDATE SET next_seq = l.next_seq + $3::bigint"
    " RETURNING l.next_seq - $3::bigint";
  auto r = run(conn_, "lease_sequence", sql,
               params{}.add(int64_t{segment}).add(int64_t{day}).add(block));
  if (!r.ok())
    return r.error;
  return r.i64(0, 0);
}

outcome<done> pg_store::exec(const std::string& sql) {
  if (!ensure_connected())
    return unreachable(conn_);
  auto r = run_script(conn_, "exec", sql.c_str());
  if (!r.ok())
    return r.error;
  return done{};
}

} // namespace hb::persistence

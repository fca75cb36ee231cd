#include "persistence/pg_detail.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace hb::persistence::detail {

namespace {

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
  // query_canceled (statement timeout), serialization failure, deadlock,
  // lock_not_available (a lock_timeout of partition maintenance).
  return sqlstate == "57P01" || sqlstate == "57P02" || sqlstate == "57P03"
         || sqlstate == "57014" || sqlstate == "40001" || sqlstate == "40P01"
         || sqlstate == "55P03";
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
    r.primary = msg;
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

} // namespace

// -- Statement results ---------------------------------------------------------

int64_t reply::affected() const {
  return std::strtoll(PQcmdTuples(res.get()), nullptr, 10);
}

int64_t reply::i64(int row, int col) const {
  return std::strtoll(PQgetvalue(res.get(), row, col), nullptr, 10);
}

std::string one_line(const char* msg) {
  std::string out = msg != nullptr ? msg : "";
  for (auto& c : out)
    if (c == '\n' || c == '\t')
      c = ' ';
  while (!out.empty() && out.back() == ' ')
    out.pop_back();
  return out;
}

reply fail(errc code, std::string message) {
  reply r;
  r.error = failure{code, std::move(message)};
  return r;
}

failure unreachable(PGconn* conn) {
  return failure{errc::unavailable,
                 "database unreachable: " + one_line(PQerrorMessage(conn))};
}

// -- Parameters ----------------------------------------------------------------

params& params::add(std::string value) {
  // PostgreSQL text cannot hold NUL, and libpq would cut the value there.
  if (value.find('\0') != std::string::npos)
    has_nul_ = true;
  values_.push_back(std::move(value));
  nulls_.push_back(false);
  return *this;
}

params& params::add_null() {
  values_.emplace_back();
  nulls_.push_back(true);
  return *this;
}

std::vector<const char*> params::pointers() const {
  std::vector<const char*> out;
  out.reserve(values_.size());
  for (size_t i = 0; i < values_.size(); ++i)
    out.push_back(nulls_[i] ? nullptr : values_[i].c_str());
  return out;
}

namespace {

using clock_type = std::chrono::steady_clock;

std::mutex timeouts_mutex;
std::unordered_map<PGconn*, uint32_t> call_timeouts;

uint32_t call_timeout_of(PGconn* conn) {
  std::lock_guard<std::mutex> guard{timeouts_mutex};
  auto it = call_timeouts.find(conn);
  return it == call_timeouts.end() ? 0 : it->second;
}

/// Waits until the socket is ready for `events` or `until` passes (false).
/// A poll error returns true: libpq's next call reports it.
bool wait_socket(PGconn* conn, short events, bool bounded,
                 clock_type::time_point until) {
  for (;;) {
    int wait_ms = -1;
    if (bounded) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    until - clock_type::now())
                    .count();
      if (left <= 0)
        return false;
      wait_ms = static_cast<int>(left) + 1;
    }
    pollfd p{PQsocket(conn), events, 0};
    if (p.fd < 0)
      return true;
    auto n = ::poll(&p, 1, wait_ms);
    if (n > 0 || (n < 0 && errno != EINTR))
      return true;
  }
}

/// The deadline passed: shut the socket down so that libpq sees the
/// connection end (CONNECTION_BAD; the next call resets it), and drain what
/// libpq still holds. The server's side ends when its backend next reads
/// (or client_connection_check_interval notices). A write abandoned here
/// may still commit on the server, late: what the callers write is fenced
/// (the envelope's epoch, the segment's owner_epoch) and idempotent, and
/// their failure is "outcome unknown" (errc::unavailable, retry the same
/// request), which reloads the truth from the database.
reply abandon(PGconn* conn, const char* what, uint32_t timeout_ms) {
  if (PQsocket(conn) >= 0)
    ::shutdown(PQsocket(conn), SHUT_RDWR);
  PQconsumeInput(conn);
  for (int i = 0; i < 64; ++i) {
    if (PQstatus(conn) != CONNECTION_BAD && PQisBusy(conn))
      break;  // cannot happen after the shutdown; never block here
    auto r = PQgetResult(conn);
    if (r == nullptr)
      break;
    PQclear(r);
  }
  return fail(errc::unavailable,
              std::string(what) + ": no answer from the database within "
                + std::to_string(timeout_ms)
                + " ms (call_timeout_ms); the connection was dropped");
}

/// Sends with `send` (a PQsend* call) and collects the answer as PQexec
/// would (the first error, else the last result), but waits for the socket
/// with poll() and at most the connection's call timeout.
template <class Send>
reply execute(PGconn* conn, const char* what, Send send) {
  auto timeout_ms = call_timeout_of(conn);
  bool bounded = timeout_ms > 0;
  auto until = clock_type::now() + std::chrono::milliseconds(timeout_ms);
  // Non-blocking: a large statement to a server that stopped reading must
  // not block in send() either. The flag survives PQreset.
  PQsetnonblocking(conn, 1);
  if (send() == 0)
    return finish(conn, what, nullptr);
  for (;;) {
    auto f = PQflush(conn);
    if (f <= 0)
      break;  // -1: the failure shows in the results below
    if (!wait_socket(conn, POLLIN | POLLOUT, bounded, until))
      return abandon(conn, what, timeout_ms);
    PQconsumeInput(conn);
  }
  PGresult* kept = nullptr;
  for (;;) {
    while (PQisBusy(conn)) {
      if (!wait_socket(conn, POLLIN, bounded, until)) {
        if (kept != nullptr)
          PQclear(kept);
        return abandon(conn, what, timeout_ms);
      }
      if (PQconsumeInput(conn) == 0)
        break;  // connection lost: PQgetResult reports it without waiting
    }
    auto r = PQgetResult(conn);
    if (r == nullptr)
      break;
    if (kept != nullptr && PQresultStatus(kept) == PGRES_FATAL_ERROR) {
      PQclear(r);
      continue;
    }
    if (kept != nullptr)
      PQclear(kept);
    kept = r;
  }
  return finish(conn, what, kept);
}

} // namespace

void set_call_timeout(PGconn* conn, uint32_t timeout_ms) {
  std::lock_guard<std::mutex> guard{timeouts_mutex};
  call_timeouts[conn] = timeout_ms;
}

reply run(PGconn* conn, const char* what, const char* sql, const params& p) {
  if (p.has_nul())
    return fail(errc::invalid_argument,
                std::string(what) + ": text contains a NUL byte");
  auto ptrs = p.pointers();
  return execute(conn, what, [&] {
    return PQsendQueryParams(conn, sql, p.size(), nullptr, ptrs.data(),
                             nullptr, nullptr, 0);
  });
}

namespace {

/// What has been prepared on each connection, valid for one backend process
/// (a reset connection gets a new one and forgets its statements). Shared
/// by all threads: a connection is used by one thread at a time (libpq's
/// rule), but not always the same one.
struct prepared_set {
  int backend_pid = 0;
  std::unordered_map<const char*, std::string> names;
};

std::mutex prepared_mutex;
std::unordered_map<PGconn*, prepared_set> prepared_sets;

/// The name under which `sql` is prepared on `conn`, or "" if it is not.
std::string prepared_name(PGconn* conn, const char* sql) {
  std::lock_guard<std::mutex> guard{prepared_mutex};
  auto& set = prepared_sets[conn];
  auto pid = PQbackendPID(conn);
  if (set.backend_pid != pid) {
    set.backend_pid = pid;
    set.names.clear();
  }
  auto it = set.names.find(sql);
  return it == set.names.end() ? std::string{} : it->second;
}

void remember_prepared(PGconn* conn, const char* sql, std::string name) {
  std::lock_guard<std::mutex> guard{prepared_mutex};
  prepared_sets[conn].names[sql] = std::move(name);
}

/// One statement lost means the session was reset (DISCARD ALL, DEALLOCATE
/// ALL, a pooler): the others are gone too.
void forget_prepared(PGconn* conn) {
  std::lock_guard<std::mutex> guard{prepared_mutex};
  prepared_sets[conn].names.clear();
}

std::string statement_name(const char* sql) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "hb_%016zx",
                std::hash<std::string_view>{}(std::string_view{sql}));
  return buf;
}

constexpr const char* undefined_prepared_statement = "26000";

} // namespace

reply run_prepared(PGconn* conn, const char* what, const char* sql,
                   const params& p) {
  if (p.has_nul())
    return fail(errc::invalid_argument,
                std::string(what) + ": text contains a NUL byte");
  auto ptrs = p.pointers();
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto name = prepared_name(conn, sql);
    if (name.empty()) {
      // Maybe prepared already (before a lost statement made us forget):
      // ask first, because a failed PREPARE would break the caller's
      // transaction.
      name = statement_name(sql);
      const char* args[] = {name.c_str()};
      auto known = execute(conn, what, [&] {
        return PQsendQueryParams(conn,
                                 "SELECT 1 FROM pg_prepared_statements"
                                 " WHERE name = $1",
                                 1, nullptr, args, nullptr, nullptr, 0);
      });
      if (!known.ok())
        return known;
      if (known.rows() == 0) {
        auto prep = execute(conn, what, [&] {
          return PQsendPrepare(conn, name.c_str(), sql, p.size(), nullptr);
        });
        if (!prep.ok())
          return prep;
      }
      remember_prepared(conn, sql, name);
    }
    auto r = execute(conn, what, [&] {
      return PQsendQueryPrepared(conn, name.c_str(), p.size(), ptrs.data(),
                                 nullptr, nullptr, 0);
    });
    if (r.ok() || r.sqlstate != undefined_prepared_statement)
      return r;
    // Deallocated behind our back: prepare again, unless the failure broke
    // the caller's transaction; then the caller's retry does it.
    forget_prepared(conn);
    if (PQtransactionStatus(conn) == PQTRANS_INERROR) {
      r.error.code = errc::unavailable;
      return r;
    }
  }
  return fail(errc::internal, std::string(what) + ": statement lost twice");
}

void forget_connection(PGconn* conn) {
  {
    std::lock_guard<std::mutex> guard{prepared_mutex};
    prepared_sets.erase(conn);
  }
  std::lock_guard<std::mutex> guard{timeouts_mutex};
  call_timeouts.erase(conn);
}

reply run_script(PGconn* conn, const char* what, const char* sql) {
  return execute(conn, what, [&] { return PQsendQuery(conn, sql); });
}

bool no_partition(const reply& r) {
  // check_violation is also every CHECK constraint, but those name their
  // constraint; the message may be translated (lc_messages).
  return r.sqlstate == "23514" && r.constraint.empty();
}

// -- Transactions --------------------------------------------------------------

transaction::~transaction() {
  if (open_)
    run_script(conn_, what_, "ROLLBACK");
}

reply transaction::begin() {
  auto r = run_script(conn_, what_, begin_sql_);
  open_ = r.ok();
  return r;
}

reply transaction::commit() {
  open_ = false;
  return run_script(conn_, what_, "COMMIT");
}

// -- Array literals ------------------------------------------------------------

std::string text_array(const std::vector<std::string>& xs) {
  std::string out = "{";
  for (size_t i = 0; i < xs.size(); ++i) {
    if (i > 0)
      out += ',';
    out += '"';
    for (char c : xs[i]) {
      if (c == '"' || c == '\\')
        out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

std::string number_array(const std::vector<int64_t>& xs) {
  std::string out = "{";
  for (size_t i = 0; i < xs.size(); ++i) {
    if (i > 0)
      out += ',';
    out += std::to_string(xs[i]);
  }
  out += '}';
  return out;
}

std::string user_array(const std::vector<open_record>& opens) {
  std::vector<std::string> users;
  users.reserve(opens.size());
  for (auto& o : opens)
    users.push_back(o.user);
  return text_array(users);
}

// -- Rows ----------------------------------------------------------------------

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
  e.refunded_fen = r.i64(row, 16);
  return e;
}

outcome<envelope_snapshot> read_snapshot(PGconn* conn, const char* what,
                                         int64_t envelope_id) {
  // Both views prune to one day partition per side (hot and cold).
  static constexpr const char* sql =
    "SELECT " HB_ENVELOPE_COLUMNS ", e.archived, o.user_id, o.amount_fen,"
    " o.seq, " HB_MS("o.opened_at") " "
    "FROM envelopes_all e LEFT JOIN opens_all o ON o.envelope_id = e.id "
    "WHERE e.id = $1 ORDER BY o.seq";
  auto r = run_prepared(conn, what, sql, params{}.add(envelope_id));
  if (!r.ok())
    return r.error;
  if (r.rows() == 0)
    return failure{errc::not_found, not_found_message(envelope_id)};
  auto env = read_envelope(r, 0);
  if (!env)
    return env.error();
  envelope_snapshot snap;
  snap.env = std::move(*env);
  constexpr int c = envelope_column_count;
  snap.archived = r.boolean(0, c);
  for (int row = 0; row < r.rows(); ++row) {
    if (r.null(row, c + 1))
      continue;
    snap.opens.push_back(open_record{r.text(row, c + 1), r.i64(row, c + 2),
                                     static_cast<int32_t>(r.i64(row, c + 3)),
                                     r.i64(row, c + 4)});
  }
  return snap;
}

failure owner_check(PGconn* conn, const char* what, int32_t segment,
                    const node_identity& me) {
  auto incarnation = me.incarnation.load();
  auto r = run(conn, what,
               "SELECT COALESCE(owner, ''), owner_incarnation, owner_epoch"
               " FROM segment_owners WHERE segment = $1",
               params{}.add(segment));
  if (!r.ok())
    return r.error;
  auto seg = "segment " + std::to_string(segment);
  auto me_text = me.node + " (incarnation " + std::to_string(incarnation) + ")";
  if (r.rows() == 0)
    return failure{errc::not_owner, seg + " has no owner row in this SET's "
                                          "database; not owned by " + me_text};
  auto owner = r.text(0, 0);
  if (owner == me.node && r.i64(0, 1) == incarnation)
    return failure{errc::none, {}};
  if (owner.empty())
    return failure{errc::not_owner, seg + " has no owner yet; not owned by "
                                      + me_text};
  return failure{errc::not_owner,
                 seg + " is owned by " + owner + " (incarnation " + r.text(0, 1)
                   + ", owner_epoch " + r.text(0, 2) + "), not by " + me_text};
}

failure deposed(PGconn* conn, const char* what, int64_t envelope_id) {
  auto r = run(conn, what,
               "SELECT e.owner_epoch, e.segment, so.owner_epoch,"
               " COALESCE(so.owner, '')"
               " FROM envelopes e"
               " LEFT JOIN segment_owners so ON so.segment = e.segment"
               " WHERE e.id = $1",
               params{}.add(envelope_id));
  if (!r.ok())
    return r.error;
  if (r.rows() == 0 || r.i64(0, 0) == 0
      || (!r.null(0, 2) && r.i64(0, 2) == r.i64(0, 0)))
    return failure{errc::none, {}};
  auto now = r.null(0, 2) ? std::string{"no owner row"}
                          : "owner_epoch " + r.text(0, 2) + " (owner "
                              + r.text(0, 3) + ")";
  return failure{errc::not_owner,
                 "envelope " + std::to_string(envelope_id)
                   + " was activated under owner_epoch " + r.text(0, 0)
                   + " of segment " + r.text(0, 1) + ", which is now at "
                   + now + ": its writer no longer owns the segment"};
}

std::string not_found_message(int64_t envelope_id) {
  return "no envelope with id " + std::to_string(envelope_id);
}

} // namespace hb::persistence::detail

// pg_store: the connection (connect, reconnect, trusted SQL) and the schema
// migrations. The queries live in the files named for what they touch; the
// libpq plumbing they share is in pg_detail.cpp.
#include "persistence/pg_store.hpp"

#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "persistence/migrations.hpp"
#include "persistence/pg_detail.hpp"

namespace hb::persistence {

using namespace detail;

namespace {

// -- Connections ---------------------------------------------------------------

/// The url's own `options` (or PGOPTIONS when it has none, as libpq would
/// use): they go after ours, so that the operator's win.
std::string user_options(const std::string& url) {
  std::string out;
  char* err = nullptr;
  auto opts = PQconninfoParse(url.c_str(), &err);
  if (err != nullptr)
    PQfreemem(err);
  if (opts == nullptr)
    return out;
  for (auto o = opts; o->keyword != nullptr; ++o)
    if (std::strcmp(o->keyword, "options") == 0 && o->val != nullptr)
      out = o->val;
  PQconninfoFree(opts);
  if (out.empty())
    if (auto env = std::getenv("PGOPTIONS"))
      out = env;
  return out;
}

/// Opens a connection from any libpq connection string. Defaults that the
/// string may override come before it; what the code relies on comes after
/// (the `options` after it hold the url's own options at their end).
PGconn* open_connection(const std::string& url, const connection_options& o) {
  std::vector<std::string> keys{"connect_timeout", "fallback_application_name"};
  std::vector<std::string> values{"5", "hongbao"};
  auto before = [&](const char* key, uint32_t value) {
    if (value == 0)
      return;
    keys.emplace_back(key);
    values.push_back(std::to_string(value));
  };
  if (o.keepalives_idle_s + o.keepalives_interval_s + o.keepalives_count > 0)
    before("keepalives", 1);
  before("keepalives_idle", o.keepalives_idle_s);
  before("keepalives_interval", o.keepalives_interval_s);
  before("keepalives_count", o.keepalives_count);
  before("tcp_user_timeout", o.tcp_user_timeout_ms);
  keys.emplace_back("dbname");
  values.push_back(url);
  keys.emplace_back("client_encoding");
  values.emplace_back("UTF8");
  auto options = server_options(o, user_options(url));
  if (!options.empty()) {
    keys.emplace_back("options");
    values.push_back(options);
  }
  std::vector<const char*> k, v;
  for (size_t i = 0; i < keys.size(); ++i) {
    k.push_back(keys[i].c_str());
    v.push_back(values[i].c_str());
  }
  k.push_back(nullptr);
  v.push_back(nullptr);
  auto conn = PQconnectdbParams(k.data(), v.data(), 1);
  // Server notices (e.g. "already exists, skipping") would go to stderr;
  // persistence prints nothing, and the setting survives PQreset.
  if (conn != nullptr)
    PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
  return conn;
}

} // namespace

std::string server_options(const connection_options& o,
                           const std::string& user_options) {
  std::string out;
  auto add = [&](const char* name, uint32_t ms) {
    if (ms == 0)
      return;
    out += (out.empty() ? "" : " ") + std::string{"-c "} + name + "="
           + std::to_string(ms);
  };
  add("statement_timeout", o.statement_timeout_ms);
  add("lock_timeout", o.lock_timeout_ms);
  add("idle_in_transaction_session_timeout",
      o.idle_in_transaction_session_timeout_ms);
  add("client_connection_check_interval",
      o.client_connection_check_interval_ms);
  if (!user_options.empty())
    out += (out.empty() ? "" : " ") + user_options;
  return out;
}

namespace {

// -- Migrations ----------------------------------------------------------------

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

} // namespace

// -- Connection ----------------------------------------------------------------

pg_store::pg_store(pg_conn* conn, std::string url)
  : conn_(conn), url_(std::move(url)) {
}

pg_store::~pg_store() {
  forget_connection(conn_);
  PQfinish(conn_);
}

outcome<std::unique_ptr<pg_store>> pg_store::connect(const std::string& url) {
  return connect(url, connection_options{});
}

outcome<std::unique_ptr<pg_store>> pg_store::connect(
  const std::string& url, const connection_options& options) {
  // A malformed string is a configuration error, not an outage.
  char* err = nullptr;
  auto opts = PQconninfoParse(url.c_str(), &err);
  if (opts == nullptr) {
    failure f{errc::invalid_argument, "invalid database url: " + one_line(err)};
    PQfreemem(err);
    return f;
  }
  PQconninfoFree(opts);
  auto conn = open_connection(url, options);
  if (conn == nullptr)
    return failure{errc::internal, "out of memory opening a connection"};
  if (PQstatus(conn) != CONNECTION_OK) {
    auto f = unreachable(conn);
    PQfinish(conn);
    return f;
  }
  detail::set_call_timeout(conn, options.call_timeout_ms);
  return std::unique_ptr<pg_store>(new pg_store(conn, url));
}

bool pg_store::connected() const {
  return PQstatus(conn_) == CONNECTION_OK;
}

void pg_store::set_call_timeout(uint32_t timeout_ms) {
  detail::set_call_timeout(conn_, timeout_ms);
}

bool pg_store::ensure_connected() {
  // One reset per call: the caller owns the backoff between attempts.
  if (PQstatus(conn_) == CONNECTION_OK)
    return true;
  PQreset(conn_);
  return PQstatus(conn_) == CONNECTION_OK;
}

outcome<done> pg_store::exec(const std::string& sql) {
  if (!ensure_connected())
    return unreachable(conn_);
  auto r = run_script(conn_, "exec", sql.c_str());
  if (!r.ok())
    return r.error;
  return done{};
}

// -- Migrations ----------------------------------------------------------------

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

} // namespace hb::persistence

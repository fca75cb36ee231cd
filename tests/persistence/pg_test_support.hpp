// Helpers shared by the persistence integration tests: scratch databases on
// the test cluster (HONGBAO_TEST_DB_URL, without dbname) and libpq access to
// check what the store wrote from the outside.
#pragma once

#include "caf/test/unit_test.hpp"

#include <libpq-fe.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "persistence/pg_store.hpp"

namespace hb::persistence::test_support {

// -- Values shared by the suites ---------------------------------------------

/// The day (yyyymmdd) of the envelopes made by the fixtures that do not
/// count days from today.
constexpr int32_t test_day = 20261126;

constexpr int64_t day_ms = 86400000;
/// An expiry no test reaches (2100-01-01): the database's clock decides
/// expiry, and it stands at the real now, past the fixed test days.
constexpr int64_t live_expiry_ms = 4102444800000;

/// (user, amount_fen) of each open of a batch.
using shares = std::vector<std::pair<std::string, int64_t>>;

inline std::string str(int64_t x) {
  return std::to_string(x);
}

// -- Helpers around libpq, used to check the store from the outside ---------

inline std::string base_url() {
  auto url = std::getenv("HONGBAO_TEST_DB_URL");
  if (url == nullptr || *url == '\0')
    CAF_FAIL("HONGBAO_TEST_DB_URL is not set. Start the test cluster and "
             "export its url without dbname, e.g.: scripts/pg start && "
             "export HONGBAO_TEST_DB_URL=\"host=127.0.0.1 port=55432 "
             "user=hongbao\"");
  return url;
}

inline PGconn* admin_connect(const std::string& url) {
  auto conn = PQconnectdb(url.c_str());
  if (PQstatus(conn) != CONNECTION_OK)
    CAF_FAIL("cannot connect to " << url << ": " << PQerrorMessage(conn));
  return conn;
}

/// Runs a statement with text parameters and returns the first column of
/// the first row ("" when there is none); fails the test on an error.
inline std::string query(PGconn* conn, const std::string& sql,
                  const std::vector<std::string>& args = {}) {
  std::vector<const char*> ptrs;
  for (auto& a : args)
    ptrs.push_back(a.c_str());
  auto res = PQexecParams(conn, sql.c_str(), static_cast<int>(ptrs.size()),
                          nullptr, ptrs.data(), nullptr, nullptr, 0);
  auto status = PQresultStatus(res);
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
    std::string msg = PQresultErrorMessage(res);
    PQclear(res);
    CAF_FAIL("query failed: " << sql << ": " << msg);
  }
  std::string out;
  if (status == PGRES_TUPLES_OK && PQntuples(res) > 0)
    out = PQgetvalue(res, 0, 0);
  PQclear(res);
  return out;
}

/// Runs trusted SQL that may hold several statements (e.g. BEGIN; ...;
/// COMMIT), discarding rows; fails the test on an error.
inline void script(PGconn* conn, const std::string& sql) {
  auto res = PQexec(conn, sql.c_str());
  auto status = PQresultStatus(res);
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
    std::string msg = PQresultErrorMessage(res);
    PQclear(res);
    PQclear(PQexec(conn, "ROLLBACK"));
    CAF_FAIL("script failed: " << sql << ": " << msg);
  }
  PQclear(res);
}

inline int64_t query_int(PGconn* conn, const std::string& sql,
                  const std::vector<std::string>& args = {}) {
  return std::stoll(query(conn, sql, args));
}

inline std::string quote_ident(const std::string& name) {
  return "\"" + name + "\"";
}

inline bool process_alive(long pid) {
  return kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

/// Drops test databases left behind by runs that aborted (a failed
/// CAF_REQUIRE aborts the process, skipping the cleanup at exit).
inline void drop_abandoned(PGconn* admin) {
  auto res = PQexec(admin, "SELECT datname FROM pg_database "
                           "WHERE datname LIKE 'hb\\_test\\_%'");
  std::vector<std::string> names;
  for (int i = 0; i < PQntuples(res); ++i)
    names.emplace_back(PQgetvalue(res, i, 0));
  PQclear(res);
  for (auto& name : names) {
    auto pid = std::strtol(name.c_str() + 8, nullptr, 10);
    if (pid > 0 && !process_alive(pid))
      PQclear(PQexec(admin, ("DROP DATABASE IF EXISTS " + quote_ident(name)
                             + " WITH (FORCE)").c_str()));
  }
}

/// A database of its own, dropped with this object (shared_db: at exit).
class scratch_db {
public:
  explicit scratch_db(const std::string& suffix) {
    using namespace std::chrono;
    base_ = base_url();
    auto ms = duration_cast<milliseconds>(system_clock::now().time_since_epoch());
    name_ = "hb_test_" + std::to_string(getpid()) + "_"
            + std::to_string(ms.count()) + suffix;
    auto admin = admin_connect(base_ + " dbname=postgres");
    drop_abandoned(admin);
    query(admin, "CREATE DATABASE " + quote_ident(name_));
    PQfinish(admin);
    verify_ = admin_connect(url());
  }

  ~scratch_db() {
    PQfinish(verify_);
    auto admin = PQconnectdb((base_ + " dbname=postgres").c_str());
    PQclear(PQexec(admin, ("DROP DATABASE IF EXISTS " + quote_ident(name_)
                           + " WITH (FORCE)").c_str()));
    PQfinish(admin);
  }

  std::string url() const { return base_ + " dbname=" + name_; }

  /// An independent connection for checking what the store wrote.
  PGconn* verify() const { return verify_; }

private:
  std::string base_;
  std::string name_;
  PGconn* verify_ = nullptr;
};

/// The migrated database shared by all tests of this run.
inline scratch_db& shared_db() {
  static scratch_db db{""};
  static bool migrated = [] {
    auto store = pg_store::connect(db.url());
    if (!store)
      CAF_FAIL("connect: " << store.error().message);
    auto n = (*store)->migrate();
    if (!n)
      CAF_FAIL("migrate: " << n.error().message);
    return true;
  }();
  static_cast<void>(migrated);
  return db;
}

template <class T>
inline std::string code_of(const outcome<T>& x) {
  return x ? "ok" : to_string(x.error().code);
}

/// The value of an outcome, by value (a reference into a temporary outcome
/// would dangle inside CAF_CHECK_EQUAL); fails the test on an error.
template <class T>
T value_of(outcome<T> x) {
  if (!x)
    CAF_FAIL("unexpected " << to_string(x.error().code) << ": "
                           << x.error().message);
  return std::move(*x);
}

template <class T>
inline std::string message_of(const outcome<T>& x) {
  return x ? "" : x.error().message;
}

inline std::unique_ptr<pg_store> connect_or_fail(const std::string& url) {
  auto store = pg_store::connect(url);
  if (!store)
    CAF_FAIL("connect: " << store.error().message);
  return std::move(*store);
}

/// A fresh migrated database of its own, e.g. one per test: tests that
/// count rows or audit the whole ledger need nobody else's data.
class fresh_db {
public:
  fresh_db() : db_(next_suffix()) {
    auto store = connect_or_fail(db_.url());
    auto n = store->migrate();
    if (!n)
      CAF_FAIL("migrate: " << n.error().message);
  }

  std::string url() const { return db_.url(); }
  PGconn* verify() const { return db_.verify(); }

private:
  static std::string next_suffix() {
    static std::atomic<int> n{0};
    return "_f" + std::to_string(n++);
  }

  scratch_db db_;
};

} // namespace hb::persistence::test_support

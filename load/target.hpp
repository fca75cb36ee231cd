#pragma once

// What hongbao-bench measures: a *target* is a system that keeps red
// envelopes — hongbao itself, or one of the baselines built the way people
// usually build it (a PostgreSQL row lock, a single conditional UPDATE, a
// Redis Lua script). Every target speaks the same four requests (create,
// pay, grab, open) with the same meaning (docs/protocol.md), so that one
// load generator drives them all on the same workload, and every target can
// hand its records back for the same audit.
//
// A target opens *sessions*: one connection each, driven without blocking
// by the engine's poll loop. A session takes requests up to its window,
// writes them when the socket takes them, and reports answers as they
// arrive, tagged with what the engine gave it.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "domain/errc.hpp"
#include "domain/requests.hpp"

namespace hb::bench {

enum class op_kind : uint8_t { create = 0, pay = 1, grab = 2, open = 3 };
constexpr size_t op_kinds = 4;
const char* to_string(op_kind x);

/// One envelope of the run: what its sender wraps, and its id once created.
struct envelope_plan {
  create_request create;
  std::string payment_txn;
  int64_t id = 0;  ///< 0 until the target answered the Create
};

/// What sessions need to turn a request into bytes. Written by the engine
/// only (ids after a Create), read by sessions on the same thread.
struct run_book {
  std::string run_id;
  std::vector<envelope_plan> envelopes;
  std::vector<std::string> users;  ///< user names by index
};

struct request {
  op_kind kind = op_kind::grab;
  uint32_t env = 0;   ///< index into run_book::envelopes
  uint32_t user = 0;  ///< index into run_book::users
  /// Randomness for targets that split the money outside the database
  /// (the row-lock client, the Lua script): seeded, so runs repeat.
  uint64_t random = 0;
};

struct reply {
  errc code = errc::none;  ///< none: the request succeeded
  std::string message;     ///< for errors, for people
  int64_t envelope_id = 0;                        ///< create
  grab_outcome outcome = grab_outcome::can_open;  ///< grab
  int64_t amount_fen = 0;  ///< open; grab when already_opened
  int32_t seq = 0;         ///< open
  bool first_time = true;  ///< open
  /// The target answered with the wrong kind of response (code internal).
  bool unexpected = false;
};

struct completion {
  uint64_t tag = 0;
  reply rep;
};

/// One connection to a target, used by one thread.
class session {
public:
  virtual ~session() = default;

  virtual int fd() const = 0;
  /// Requests this session may have in flight at once.
  virtual size_t window() const = 0;
  virtual size_t in_flight() const = 0;
  /// Queues `req`; the answer comes back from `read` with `tag`.
  /// Precondition: in_flight() < window().
  virtual void submit(uint64_t tag, const request& req) = 0;
  /// Whether bytes wait for the socket to take them.
  virtual bool wants_write() const = 0;
  /// Writes what the socket takes now. False: the connection is broken
  /// (`why` says how) and every request in flight has an unknown outcome.
  virtual bool flush(std::string& why) = 0;
  /// Reads what arrived; appends the requests it completes to `out`.
  virtual bool read(std::vector<completion>& out, std::string& why) = 0;
  /// The tags still in flight, forgotten by the session (after a break).
  virtual std::vector<uint64_t> abandon() = 0;
};

/// Settings of every target; each reads the ones it needs.
struct target_options {
  std::string name;  ///< hongbao, pg-lock, pg-update, redis-lua
  std::string server = "127.0.0.1:7700";  ///< hongbao
  std::string token;                      ///< hongbao
  std::string db_url;     ///< the database to audit (hongbao) or use (pg-*)
  std::string redis = "127.0.0.1:6379";  ///< redis-lua
  uint32_t window = 0;    ///< 0: the target's default
  int timeout_ms = 10000;
};

/// Target-wide checks beyond the per-envelope audit (a ledger, say).
struct global_checks {
  std::vector<std::string> problems;
  std::vector<std::string> notes;  ///< what was checked, for the report
};

class target {
public:
  virtual ~target() = default;

  /// For the report: "pg-lock (host=127.0.0.1 port=55442 dbname=...)".
  virtual std::string describe() const = 0;
  /// Connections and window when the command line names none.
  virtual uint32_t connections_default() const = 0;
  virtual uint32_t window_default() const = 0;
  /// Creates what the target needs (schema, functions, scripts). Idempotent.
  virtual outcome<done> prepare() = 0;
  /// Opens one session (blocking: connect, authenticate, prepare).
  virtual outcome<std::unique_ptr<session>> connect(const run_book& book,
                                                    uint32_t window) = 0;
  /// The stored records of every envelope of the run that has an id, in
  /// run_book order, read straight from the target's store (not through
  /// the service), opens in seq order. An envelope the store does not know
  /// comes back with id 0.
  virtual outcome<std::vector<envelope_detail>> load(const run_book& book) = 0;
  /// Checks that concern the whole store of this run.
  virtual global_checks check_globals(const run_book& book) { return {}; }
};

/// Hongbao itself over its client protocol. The baselines it is measured
/// against live in bench/ (bench/targets.hpp), above this folder.
outcome<std::unique_ptr<target>> make_hongbao_target(const target_options& opts);

/// Puts a file descriptor in non-blocking mode; false on failure.
bool set_nonblocking(int fd);

} // namespace hb::bench

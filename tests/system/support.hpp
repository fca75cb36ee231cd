#pragma once

// Helpers of hb_system_test: the environment that run_with_node.sh sets up,
// a raw TCP socket for protocol abuse, a well-behaved client probe, and
// libpq queries for database audits. Nothing here uses CAF's test macros, so
// that every helper is safe to call from worker threads; the tests check the
// results on the main thread.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <libpq-fe.h>

#include "client/client.hpp"
#include "domain/requests.hpp"

namespace hb::systest {

/// What run_with_node.sh exports: the node's address and token, and the
/// libpq string of the test's own database (dbname included).
struct environment {
  std::string host;
  uint16_t port = 0;
  std::string token;
  std::string db_url;
};

/// Reads HONGBAO_SERVER, HONGBAO_TOKEN and HONGBAO_DB_URL. Returns a message
/// in `error` when one is missing or bad.
std::optional<environment> read_environment(std::string& error);

/// Milliseconds on a monotonic clock.
int64_t now_ms();

/// A unique suffix for names (idempotency keys, users, txns) of this run.
std::string unique(const std::string& prefix);

// -- Raw socket ---------------------------------------------------------------

/// What a read from a raw socket found.
enum class read_status {
  ok,       ///< a whole frame
  closed,   ///< the peer closed the connection (orderly EOF or reset)
  timeout,  ///< nothing (or only part of a frame) within the time limit
  garbage,  ///< a frame that is not a hongbao Response
};

const char* to_string(read_status x);

/// A blocking TCP socket with no protocol logic, for sending arbitrary bytes
/// and watching how the node answers.
class raw_socket {
public:
  raw_socket() = default;
  raw_socket(raw_socket&& other) noexcept;
  raw_socket& operator=(raw_socket&& other) noexcept;
  raw_socket(const raw_socket&) = delete;
  raw_socket& operator=(const raw_socket&) = delete;
  ~raw_socket();

  /// Connects to host:port (IPv4 literal). Returns false with `error` set.
  bool connect(const std::string& host, uint16_t port, std::string& error);

  bool connected() const { return fd_ >= 0; }

  /// Writes all bytes. Returns false when the connection is broken.
  bool write_all(const std::string& bytes);

  /// Reads one response frame within `timeout_ms`.
  read_status read_frame(client_response& out, int timeout_ms);

  /// Waits up to `timeout_ms` for the peer to close; frames that arrive
  /// first are discarded and counted in `frames_skipped`. Returns
  /// read_status::closed when it did, else timeout.
  read_status wait_closed(int timeout_ms, int* frames_skipped = nullptr);

  /// Closes the socket now.
  void close();

  /// Sends Auth (request id `rid`) and reads the answer. Returns "" when
  /// the node answered AuthOk, else a description of what happened.
  std::string authenticate(const std::string& token, uint64_t rid,
                           int timeout_ms);

private:
  /// Reads until `buf_` holds at least `n` bytes.
  read_status fill(size_t n, int64_t deadline_ms);

  int fd_ = -1;
  std::string buf_;
};

/// The 4-byte big-endian length prefix alone.
std::string frame_header(uint32_t size);

/// A frame: the 4-byte big-endian length, then `payload`.
std::string frame(const std::string& payload);

/// Encodes a request as a whole frame.
std::string request_frame(uint64_t rid, request_body body);

/// Describes a response for messages: "error not_found: ...", "open 123 fen".
std::string describe(const client_response& resp);

/// The error code of a response, errc::none when it is not an error.
errc error_code(const client_response& resp);

// -- A well-behaved client --------------------------------------------------------

/// Creates, pays and opens a fresh envelope over a new connection, the way a
/// good client does. Returns "" when everything worked, else what failed.
/// Counts the fen the client was told in `told_fen` (0 on failure).
std::string probe_served(const environment& env, const std::string& why,
                         int64_t& told_fen);

/// Creates and pays a random envelope of `count` shares and `total_fen` over
/// `conn`; its id in `id`. "" when both answers were right, else what failed.
std::string create_paid(client::connection& conn, const std::string& sender,
                        int64_t total_fen, int32_t count, int64_t& id,
                        int timeout_ms = 20000);

/// Connects and authenticates a client::connection; "" or what failed.
std::string connect_client(const environment& env, client::connection& out,
                           int timeout_ms = 20000);

// -- libpq ------------------------------------------------------------------------

/// One connection to the test database.
class database {
public:
  database() = default;
  database(const database&) = delete;
  database& operator=(const database&) = delete;
  ~database();

  /// Connects; returns false with `error` set.
  bool connect(const std::string& url, std::string& error);

  /// Runs a query; rows of text values (NULL as ""). On an error returns
  /// false and sets `error`.
  bool query(const std::string& sql, std::vector<std::vector<std::string>>& rows,
             std::string& error);

  /// The first column of the first row, or "<error: ...>" / "<no rows>".
  std::string scalar(const std::string& sql);

  /// Polls scalar(sql) every 50 ms until it is `want` or `timeout_ms` has
  /// passed; returns the last value (`want` on success).
  std::string wait_scalar(const std::string& sql, const std::string& want,
                          int timeout_ms);

private:
  PGconn* conn_ = nullptr;
};

/// SQL for a derived table with one row per open `o` that matches `where`
/// (e.g. "o.envelope_id = 7"): `pending` (1 when relay_backlog holds it),
/// `credits` (its credit ledger entries) and `matching` (those with its
/// amount to its user's wallet). A committed open is queued for the relay
/// in its own transaction: it is owed (pending 1, no credit) or credited
/// exactly once (pending 0, credits = matching = 1).
std::string open_credits_sql(const std::string& where);

} // namespace hb::systest

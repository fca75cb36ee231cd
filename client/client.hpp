#pragma once

#include <cstdint>
#include <deque>
#include <string>

#include "domain/errc.hpp"
#include "domain/requests.hpp"

namespace hb::client {

/// The largest response frame the client accepts. Far above anything the
/// node sends (an envelope with 100 shares is a few KiB); a larger length
/// prefix means the stream is not a hongbao stream.
constexpr uint32_t frame_size_max = 16 * 1024 * 1024;

struct host_port {
  std::string host;
  uint16_t port = 0;
};

/// Parses "host:port" or "[ipv6-address]:port", e.g. "127.0.0.1:7700".
/// The port is required. Errors are errc::invalid_argument.
outcome<host_port> parse_host_port(const std::string& text);

/// One blocking TCP connection to a hongbao node (plain POSIX sockets, no
/// CAF). Not thread-safe: one thread uses a connection at a time.
///
/// Two ways to use it:
/// - `call`: one request at a time; assigns the request id and waits for the
///   response with that id.
/// - `send` many, then `receive` many (pipelining): the caller picks ids
///   (see `next_request_id`) and matches responses, which may come back in
///   any order.
///
/// Transport failures are errc::unavailable (connection refused, reset,
/// closed by the node, timeout); a response that is not a valid
/// hongbao.v1.Response is errc::malformed. After either, the connection
/// is broken and should be dropped. A service error (the node answered with
/// an Error) is not a failure here: it is the `error_reply` in the response.
class connection {
public:
  connection() = default;
  connection(connection&& other) noexcept;
  connection& operator=(connection&& other) noexcept;
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  ~connection();

  /// Connects within `timeout_ms`; `timeout_ms` also bounds every later
  /// write. Tries every address `host` resolves to.
  static outcome<connection> connect(const std::string& host, uint16_t port,
                                     int timeout_ms);

  bool connected() const { return fd_ >= 0; }

  /// Returns a fresh request id (1, 2, 3, ...) for pipelined `send`s.
  uint64_t next_request_id() { return ++last_request_id_; }

  /// Writes one request frame. Does not wait for the response.
  outcome<done> send(const client_request& req);

  /// Reads the next response frame, waiting at most `timeout_ms`. A timeout
  /// loses nothing: a partly read frame stays buffered for the next call.
  outcome<client_response> receive(int timeout_ms);

  /// Sends `body` with the next request id and waits up to `timeout_ms` for
  /// its response. Responses to other ids that arrive meanwhile are kept for
  /// `receive`. An Error with request id 0 (the node's answer to a frame it
  /// could not read) also ends the wait. `request_timeout_ms` goes out as the
  /// Request's timeout_ms (0: none): pass `timeout_ms` to have the node drop
  /// the request, unexecuted, if it is still waiting there when this call
  /// gives up on it.
  outcome<client_response> call(request_body body, int timeout_ms,
                                uint32_t request_timeout_ms = 0);

  /// Sends Auth and returns the node's AuthOk. A refused token comes back as
  /// a failure with the node's code (unauthenticated) and message.
  outcome<auth_ok> authenticate(const std::string& token, int timeout_ms);

  /// Closes the socket now (the destructor does it too).
  void close();

private:
  explicit connection(int fd, int io_timeout_ms)
    : fd_(fd), io_timeout_ms_(io_timeout_ms) {}

  /// Reads from the socket into `inbuf_` until it holds one whole frame.
  outcome<done> fill_frame(int64_t deadline_ms, int timeout_ms);

  /// Reads and decodes one response frame from the socket.
  outcome<client_response> read_response(int64_t deadline_ms, int timeout_ms);

  int fd_ = -1;
  int io_timeout_ms_ = 10000;
  uint64_t last_request_id_ = 0;
  std::string inbuf_;
  /// Responses that `call` read while waiting for another id.
  std::deque<client_response> pending_;
};

} // namespace hb::client

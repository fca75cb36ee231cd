#include "client/client.hpp"

#include <cerrno>
#include <chrono>
#include <cstring>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto/codec.hpp"

namespace hb::client {

namespace {

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch())
    .count();
}

int remaining_ms(int64_t deadline_ms) {
  int64_t left = deadline_ms - now_ms();
  return left <= 0 ? 0 : static_cast<int>(left);
}

/// strerror, starting with a lower-case letter to read well mid-sentence.
std::string error_text(int err) {
  std::string text = std::strerror(err);
  if (!text.empty() && text[0] >= 'A' && text[0] <= 'Z')
    text[0] = static_cast<char>(text[0] - 'A' + 'a');
  return text;
}

std::string endpoint_text(const std::string& host, uint16_t port) {
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

/// Waits until `fd` is ready for `events` or the deadline passes. Returns 1
/// when ready, 0 on timeout, -1 on error (errno set).
int wait_for(int fd, short events, int64_t deadline_ms) {
  for (;;) {
    pollfd pfd{fd, events, 0};
    int rc = ::poll(&pfd, 1, remaining_ms(deadline_ms));
    if (rc >= 0 || errno != EINTR)
      return rc;
  }
}

/// Connects one non-blocking socket to `addr`. Returns the fd, or -1 with
/// `err` set (ETIMEDOUT when the deadline passed).
int connect_one(const addrinfo& addr, int64_t deadline_ms, int& err) {
  int fd = ::socket(addr.ai_family,
                    addr.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    addr.ai_protocol);
  if (fd < 0) {
    err = errno;
    return -1;
  }
  if (::connect(fd, addr.ai_addr, addr.ai_addrlen) != 0) {
    if (errno != EINPROGRESS) {
      err = errno;
      ::close(fd);
      return -1;
    }
    int rc = wait_for(fd, POLLOUT, deadline_ms);
    socklen_t len = sizeof(err);
    if (rc == 0)
      err = ETIMEDOUT;
    else if (rc < 0)
      err = errno;
    else if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
      err = errno;
    if (rc <= 0 || err != 0) {
      ::close(fd);
      return -1;
    }
  }
  // Requests are small and latency matters more than packet count.
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

} // namespace

// -- host:port -----------------------------------------------------------------

outcome<host_port> parse_host_port(const std::string& text) {
  auto fail = [&text](const std::string& why) {
    return failure{errc::invalid_argument,
                   "bad server address '" + text + "': " + why
                     + " (expected HOST:PORT, e.g. 127.0.0.1:7700)"};
  };
  host_port result;
  std::string port;
  if (!text.empty() && text[0] == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size()
        || text[close + 1] != ':')
      return fail("missing ']:' after an IPv6 address");
    result.host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos)
      return fail("missing port");
    if (text.find(':') != colon)
      return fail("put an IPv6 address in brackets");
    result.host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (result.host.empty())
    return fail("missing host");
  if (port.empty() || port.size() > 5
      || port.find_first_not_of("0123456789") != std::string::npos)
    return fail("port must be a number");
  long value = std::stol(port);
  if (value < 1 || value > 65535)
    return fail("port must be in 1..65535");
  result.port = static_cast<uint16_t>(value);
  return result;
}

// -- connection: life cycle ----------------------------------------------------

connection::connection(connection&& other) noexcept
  : fd_(other.fd_),
    io_timeout_ms_(other.io_timeout_ms_),
    last_request_id_(other.last_request_id_),
    inbuf_(std::move(other.inbuf_)),
    pending_(std::move(other.pending_)) {
  other.fd_ = -1;
}

connection& connection::operator=(connection&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = other.fd_;
    io_timeout_ms_ = other.io_timeout_ms_;
    last_request_id_ = other.last_request_id_;
    inbuf_ = std::move(other.inbuf_);
    pending_ = std::move(other.pending_);
    other.fd_ = -1;
  }
  return *this;
}

connection::~connection() {
  close();
}

void connection::close() {
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = -1;
}

outcome<connection> connection::connect(const std::string& host,
                                        uint16_t port, int timeout_ms) {
  auto where = endpoint_text(host, port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* addrs = nullptr;
  auto port_text = std::to_string(port);
  int rc = ::getaddrinfo(host.c_str(), port_text.c_str(), &hints, &addrs);
  if (rc != 0)
    return failure{errc::unavailable, "cannot resolve " + where + ": "
                                        + ::gai_strerror(rc)};
  int64_t deadline_ms = now_ms() + timeout_ms;
  int err = 0;
  int fd = -1;
  for (auto* a = addrs; a != nullptr && fd < 0; a = a->ai_next)
    fd = connect_one(*a, deadline_ms, err);
  ::freeaddrinfo(addrs);
  if (fd >= 0)
    return connection{fd, timeout_ms};
  std::string message = "cannot connect to " + where + ": ";
  if (err == ETIMEDOUT)
    message += "timed out after " + std::to_string(timeout_ms) + " ms";
  else
    message += error_text(err);
  if (err == ECONNREFUSED || err == ETIMEDOUT)
    message += " — is hongbao-node running?";
  return failure{errc::unavailable, std::move(message)};
}

// -- connection: I/O -----------------------------------------------------------

outcome<done> connection::send(const client_request& req) {
  if (fd_ < 0)
    return failure{errc::unavailable, "not connected"};
  auto frame = codec::encode_request_frame(req);
  int64_t deadline_ms = now_ms() + io_timeout_ms_;
  size_t sent = 0;
  while (sent < frame.size()) {
    // MSG_NOSIGNAL: a closed peer must be an error here, not a SIGPIPE.
    ssize_t n = ::send(fd_, frame.data() + sent, frame.size() - sent,
                       MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      int err = errno;
      close();
      return failure{errc::unavailable,
                     "connection lost while sending: " + error_text(err)};
    }
    int rc = wait_for(fd_, POLLOUT, deadline_ms);
    if (rc <= 0) {
      // A half-written frame leaves the stream unusable.
      close();
      return failure{errc::unavailable,
                     rc == 0 ? "the node did not accept data within "
                                 + std::to_string(io_timeout_ms_) + " ms"
                             : "connection lost while sending: "
                                 + error_text(errno)};
    }
  }
  return done{};
}

outcome<done> connection::fill_frame(int64_t deadline_ms, int timeout_ms) {
  char chunk[65536];
  for (;;) {
    if (inbuf_.size() >= codec::frame_header_size) {
      uint32_t size = codec::get_frame_header(inbuf_.data());
      if (size > frame_size_max) {
        close();
        return failure{errc::malformed,
                       "response frame of " + std::to_string(size)
                         + " bytes is over the 16 MiB limit"
                           " — is this a hongbao node?"};
      }
      if (inbuf_.size() >= codec::frame_header_size + size)
        return done{};
    }
    ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n > 0) {
      inbuf_.append(chunk, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      close();
      return failure{errc::unavailable, "connection closed by the node"};
    }
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      int err = errno;
      close();
      return failure{errc::unavailable, "connection lost: " + error_text(err)};
    }
    int rc = wait_for(fd_, POLLIN, deadline_ms);
    if (rc == 0)
      return failure{errc::unavailable, "no response from the node within "
                                          + std::to_string(timeout_ms)
                                          + " ms"};
    if (rc < 0) {
      int err = errno;
      close();
      return failure{errc::unavailable, "connection lost: " + error_text(err)};
    }
  }
}

outcome<client_response> connection::read_response(int64_t deadline_ms,
                                                   int timeout_ms) {
  if (fd_ < 0)
    return failure{errc::unavailable, "not connected"};
  auto filled = fill_frame(deadline_ms, timeout_ms);
  if (!filled)
    return filled.error();
  uint32_t size = codec::get_frame_header(inbuf_.data());
  auto resp = codec::decode_response(inbuf_.data() + codec::frame_header_size,
                                     size);
  inbuf_.erase(0, codec::frame_header_size + size);
  if (!resp)
    close();
  return resp;
}

outcome<client_response> connection::receive(int timeout_ms) {
  if (!pending_.empty()) {
    auto resp = std::move(pending_.front());
    pending_.pop_front();
    return resp;
  }
  return read_response(now_ms() + timeout_ms, timeout_ms);
}

outcome<client_response> connection::call(request_body body, int timeout_ms,
                                          uint32_t request_timeout_ms) {
  client_request req{next_request_id(), std::move(body), request_timeout_ms};
  auto sent = send(req);
  if (!sent)
    return sent.error();
  int64_t deadline_ms = now_ms() + timeout_ms;
  for (;;) {
    // Read from the socket, not from `pending_`: the id is fresh, so no
    // response to it can be there.
    auto resp = read_response(deadline_ms, timeout_ms);
    if (!resp)
      return resp;
    bool connection_error = resp->request_id == 0
                            && std::holds_alternative<error_reply>(resp->body);
    if (resp->request_id == req.request_id || connection_error)
      return resp;
    pending_.push_back(std::move(*resp));
  }
}

outcome<auth_ok> connection::authenticate(const std::string& token,
                                          int timeout_ms) {
  auto resp = call(auth_request{token}, timeout_ms);
  if (!resp)
    return resp.error();
  if (auto* ok = std::get_if<auth_ok>(&resp->body))
    return *ok;
  if (auto* err = std::get_if<error_reply>(&resp->body))
    return failure{err->code, err->message};
  return failure{errc::malformed, "the node answered Auth with something "
                                  "other than AuthOk or Error"};
}

} // namespace hb::client

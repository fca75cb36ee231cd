#include "tests/system/support.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <thread>
#include <variant>

#include "proto/codec.hpp"

namespace hb::systest {

namespace {

std::string getenv_str(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

} // namespace

std::optional<environment> read_environment(std::string& error) {
  environment env;
  auto server = getenv_str("HONGBAO_SERVER");
  env.token = getenv_str("HONGBAO_TOKEN");
  env.db_url = getenv_str("HONGBAO_DB_URL");
  if (server.empty() || env.token.empty() || env.db_url.empty()) {
    error = "HONGBAO_SERVER, HONGBAO_TOKEN and HONGBAO_DB_URL must be set: "
            "run this binary through tests/system/run_with_node.sh SUITE, "
            "which starts a node on a fresh database";
    return std::nullopt;
  }
  auto where = client::parse_host_port(server);
  if (!where) {
    error = where.error().message;
    return std::nullopt;
  }
  env.host = where->host;
  env.port = where->port;
  return env;
}

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch())
    .count();
}

std::string unique(const std::string& prefix) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t run = std::random_device{}();
  return prefix + "-" + std::to_string(getpid()) + "-" + std::to_string(run)
         + "-" + std::to_string(++counter);
}

// -- raw_socket -------------------------------------------------------------------

const char* to_string(read_status x) {
  switch (x) {
    case read_status::ok:
      return "ok";
    case read_status::closed:
      return "closed";
    case read_status::timeout:
      return "timeout";
    case read_status::garbage:
      return "garbage";
  }
  return "?";
}

raw_socket::raw_socket(raw_socket&& other) noexcept
  : fd_(other.fd_), buf_(std::move(other.buf_)) {
  other.fd_ = -1;
}

raw_socket& raw_socket::operator=(raw_socket&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = other.fd_;
    buf_ = std::move(other.buf_);
    other.fd_ = -1;
  }
  return *this;
}

raw_socket::~raw_socket() {
  close();
}

void raw_socket::close() {
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = -1;
  buf_.clear();
}

bool raw_socket::connect(const std::string& host, uint16_t port,
                         std::string& error) {
  close();
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    error = "not an IPv4 address: " + host;
    return false;
  }
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::strerror(errno);
    return false;
  }
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    error = "connect to " + host + ":" + std::to_string(port) + ": "
            + std::strerror(errno);
    ::close(fd);
    return false;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  fd_ = fd;
  return true;
}

bool raw_socket::write_all(const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    auto n = ::send(fd_, bytes.data() + done, bytes.size() - done,
                    MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

read_status raw_socket::fill(size_t n, int64_t deadline_ms) {
  char chunk[65536];
  while (buf_.size() < n) {
    auto left = deadline_ms - now_ms();
    if (left <= 0)
      return read_status::timeout;
    pollfd pfd{fd_, POLLIN, 0};
    int rc = ::poll(&pfd, 1, static_cast<int>(left));
    if (rc < 0 && errno == EINTR)
      continue;
    if (rc < 0)
      return read_status::closed;
    if (rc == 0)
      return read_status::timeout;
    auto got = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (got == 0)
      return read_status::closed;
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN)
        continue;
      return read_status::closed;  // ECONNRESET and friends
    }
    buf_.append(chunk, static_cast<size_t>(got));
  }
  return read_status::ok;
}

read_status raw_socket::read_frame(client_response& out, int timeout_ms) {
  auto deadline = now_ms() + timeout_ms;
  auto st = fill(codec::frame_header_size, deadline);
  if (st != read_status::ok)
    return st;
  auto size = codec::get_frame_header(buf_.data());
  if (size > client::frame_size_max)
    return read_status::garbage;
  st = fill(codec::frame_header_size + size, deadline);
  if (st != read_status::ok)
    return st;
  auto resp = codec::decode_response(buf_.data() + codec::frame_header_size,
                                     size);
  buf_.erase(0, codec::frame_header_size + size);
  if (!resp)
    return read_status::garbage;
  out = std::move(*resp);
  return read_status::ok;
}

read_status raw_socket::wait_closed(int timeout_ms, int* frames_skipped) {
  auto deadline = now_ms() + timeout_ms;
  for (;;) {
    client_response ignored;
    auto left = deadline - now_ms();
    if (left <= 0)
      return read_status::timeout;
    auto st = read_frame(ignored, static_cast<int>(left));
    if (st == read_status::closed || st == read_status::timeout)
      return st;
    if (frames_skipped != nullptr)
      ++*frames_skipped;
  }
}

std::string raw_socket::authenticate(const std::string& token, uint64_t rid,
                                     int timeout_ms) {
  if (!write_all(request_frame(rid, auth_request{token})))
    return "cannot write Auth";
  client_response resp;
  auto st = read_frame(resp, timeout_ms);
  if (st != read_status::ok)
    return std::string{"reading the Auth answer: "} + to_string(st);
  if (resp.request_id != rid || !std::holds_alternative<auth_ok>(resp.body))
    return "unexpected Auth answer: " + describe(resp);
  return "";
}

std::string frame_header(uint32_t size) {
  std::string out(codec::frame_header_size, '\0');
  codec::put_frame_header(size, out.data());
  return out;
}

std::string frame(const std::string& payload) {
  std::string out(codec::frame_header_size, '\0');
  codec::put_frame_header(static_cast<uint32_t>(payload.size()), out.data());
  return out + payload;
}

std::string request_frame(uint64_t rid, request_body body) {
  return codec::encode_request_frame(client_request{rid, std::move(body)});
}

errc error_code(const client_response& resp) {
  if (auto* err = std::get_if<error_reply>(&resp.body))
    return err->code;
  return errc::none;
}

std::string describe(const client_response& resp) {
  std::ostringstream os;
  os << "#" << resp.request_id << " ";
  std::visit(
    [&os](const auto& x) {
      using T = std::decay_t<decltype(x)>;
      if constexpr (std::is_same_v<T, error_reply>)
        os << "error " << to_string(x.code) << ": " << x.message;
      else if constexpr (std::is_same_v<T, auth_ok>)
        os << "auth_ok " << x.node_name;
      else if constexpr (std::is_same_v<T, envelope>)
        os << "envelope " << x.id << " " << to_string(x.status);
      else if constexpr (std::is_same_v<T, grab_result>)
        os << "grab " << to_string(x.outcome) << " " << x.amount_fen;
      else if constexpr (std::is_same_v<T, open_result>)
        os << "open " << x.amount_fen << " fen seq " << x.seq
           << (x.first_time ? " first" : " again");
      else if constexpr (std::is_same_v<T, envelope_detail>)
        os << "detail " << x.env.id << " with " << x.opens.size() << " opens";
    },
    resp.body);
  return os.str();
}

// -- A well-behaved client --------------------------------------------------------

std::string connect_client(const environment& env, client::connection& out,
                           int timeout_ms) {
  auto conn = client::connection::connect(env.host, env.port, timeout_ms);
  if (!conn)
    return "connect: " + conn.error().message;
  auto ok = conn->authenticate(env.token, timeout_ms);
  if (!ok)
    return "authenticate: " + ok.error().message;
  out = std::move(*conn);
  return "";
}

std::string create_paid(client::connection& conn, const std::string& sender,
                        int64_t total_fen, int32_t count, int64_t& id,
                        int timeout_ms) {
  create_request create;
  create.sender = sender;
  create.group = sender + "-group";
  create.total_fen = total_fen;
  create.count = count;
  create.kind = envelope_kind::random;
  create.idempotency_key = unique(sender);
  auto created = conn.call(create, timeout_ms);
  if (!created)
    return "create: transport: " + created.error().message;
  auto* env_created = std::get_if<envelope>(&created->body);
  if (env_created == nullptr || env_created->status != envelope_status::created)
    return "create answered " + describe(*created);
  id = env_created->id;
  auto paid = conn.call(pay_request{id, unique(sender + "-txn")}, timeout_ms);
  if (!paid)
    return "pay: transport: " + paid.error().message;
  auto* env_paid = std::get_if<envelope>(&paid->body);
  if (env_paid == nullptr || env_paid->status != envelope_status::paid)
    return "pay answered " + describe(*paid);
  return "";
}

std::string probe_served(const environment& env, const std::string& why,
                         int64_t& told_fen) {
  told_fen = 0;
  constexpr int timeout_ms = 20000;
  auto where = "(probe after " + why + ") ";
  client::connection conn;
  auto err = connect_client(env, conn, timeout_ms);
  if (!err.empty())
    return where + err;
  int64_t id = 0;
  if (auto e = create_paid(conn, "probe", 1000, 10, id, timeout_ms); !e.empty())
    return where + e;
  auto call = [&](request_body body, client_response& out) -> std::string {
    auto resp = conn.call(std::move(body), timeout_ms);
    if (!resp)
      return "transport: " + resp.error().message;
    out = std::move(*resp);
    if (error_code(out) != errc::none)
      return describe(out);
    return "";
  };
  client_response resp;
  if (auto e = call(grab_request{id, "probe-user"}, resp); !e.empty())
    return where + "grab: " + e;
  auto* grabbed = std::get_if<grab_result>(&resp.body);
  if (grabbed == nullptr || grabbed->outcome != grab_outcome::can_open)
    return where + "grab answered " + describe(resp);
  if (auto e = call(open_request{id, "probe-user"}, resp); !e.empty())
    return where + "open: " + e;
  auto* opened = std::get_if<open_result>(&resp.body);
  if (opened == nullptr || !opened->first_time || opened->amount_fen < 1
      || opened->seq != 1)
    return where + "open answered " + describe(resp);
  told_fen = opened->amount_fen;
  return "";
}

// -- libpq ------------------------------------------------------------------------

database::~database() {
  if (conn_ != nullptr)
    PQfinish(conn_);
}

bool database::connect(const std::string& url, std::string& error) {
  conn_ = PQconnectdb(url.c_str());
  if (PQstatus(conn_) != CONNECTION_OK) {
    error = "cannot connect to '" + url + "': " + PQerrorMessage(conn_);
    PQfinish(conn_);
    conn_ = nullptr;
    return false;
  }
  return true;
}

bool database::query(const std::string& sql,
                     std::vector<std::vector<std::string>>& rows,
                     std::string& error) {
  rows.clear();
  if (conn_ == nullptr) {
    error = "not connected";
    return false;
  }
  auto res = PQexec(conn_, sql.c_str());
  auto status = PQresultStatus(res);
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
    error = sql + ": " + PQresultErrorMessage(res);
    PQclear(res);
    return false;
  }
  for (int r = 0; r < PQntuples(res); ++r) {
    std::vector<std::string> row;
    for (int c = 0; c < PQnfields(res); ++c)
      row.emplace_back(PQgetvalue(res, r, c));
    rows.push_back(std::move(row));
  }
  PQclear(res);
  return true;
}

std::string database::scalar(const std::string& sql) {
  std::vector<std::vector<std::string>> rows;
  std::string error;
  if (!query(sql, rows, error))
    return "<error: " + error + ">";
  if (rows.empty() || rows[0].empty())
    return "<no rows>";
  return rows[0][0];
}

std::string database::wait_scalar(const std::string& sql,
                                  const std::string& want, int timeout_ms) {
  auto deadline = now_ms() + timeout_ms;
  for (;;) {
    auto got = scalar(sql);
    if (got == want || now_ms() >= deadline)
      return got;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

std::string open_credits_sql(const std::string& where) {
  return "(SELECT "
         "(SELECT COUNT(*) FROM relay_backlog b WHERE b.kind = 'open' "
         "AND b.envelope_id = o.envelope_id AND b.user_id = o.user_id) "
         "AS pending, COUNT(l.id) AS credits, "
         "COUNT(l.id) FILTER (WHERE l.amount_fen = o.amount_fen "
         "AND l.credit_account = 'user:' || o.user_id) AS matching "
         "FROM opens o LEFT JOIN ledger_entries l ON l.kind = 'credit' "
         "AND l.envelope_id = o.envelope_id AND l.user_id = o.user_id "
         "WHERE " + where + " GROUP BY o.envelope_id, o.user_id) c";
}

} // namespace hb::systest

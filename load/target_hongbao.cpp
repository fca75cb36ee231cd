// The hongbao target: the node's own client protocol (docs/protocol.md),
// pipelined, over non-blocking sockets; the audit reads the node's database.

#include <cerrno>
#include <chrono>
#include <cstring>
#include <unordered_map>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "load/pg_util.hpp"
#include "load/target.hpp"
#include "client/client.hpp"
#include "proto/codec.hpp"

namespace hb::bench {

namespace {

constexpr size_t read_chunk = 64 * 1024;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

/// Connects a TCP socket within `timeout_ms`; returns the fd or -1.
int connect_tcp(const std::string& host, uint16_t port, int timeout_ms,
                std::string& why) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  auto port_text = std::to_string(port);
  if (int rc = getaddrinfo(host.c_str(), port_text.c_str(), &hints, &found);
      rc != 0) {
    why = "cannot resolve " + host + ": " + gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (auto* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0)
      continue;
    set_nonblocking(fd);
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
      why = std::strerror(errno);
      ::close(fd);
      fd = -1;
      continue;
    }
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof(err);
    if (::poll(&p, 1, timeout_ms) != 1
        || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
      why = err != 0 ? std::strerror(err) : "connect timed out";
      ::close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd >= 0) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  } else if (why.empty()) {
    why = "no address to connect to";
  }
  return fd;
}

class hongbao_session final : public session {
public:
  hongbao_session(int fd, const run_book& book, uint32_t window)
    : fd_(fd), book_(book), window_(window) {
    inflight_.reserve(window * 2);
  }

  ~hongbao_session() override {
    if (fd_ >= 0)
      ::close(fd_);
  }

  /// Authenticates (blocking, before the session joins the poll loop).
  bool authenticate(const std::string& token, int timeout_ms, std::string& why) {
    // Request id 0 is reserved for connection errors; Auth uses id 1.
    out_ = codec::encode_request_frame(client_request{1, auth_request{token}});
    next_id_ = 1;
    auto deadline = now_ms() + timeout_ms;
    while (!out_.empty()) {
      if (!flush(why))
        return false;
      if (!out_.empty() && !wait(POLLOUT, deadline, why))
        return false;
    }
    for (;;) {
      client_response resp;
      int got = next_frame(resp, why);
      if (got < 0)
        return false;
      if (got > 0) {
        if (std::holds_alternative<auth_ok>(resp.body))
          return true;
        if (auto* err = std::get_if<error_reply>(&resp.body))
          why = std::string{"authentication refused: "} + to_string(err->code)
                + ": " + err->message;
        else
          why = "unexpected answer to Auth";
        return false;
      }
      if (!wait(POLLIN, deadline, why) || !fill(why))
        return false;
    }
  }

  int fd() const override { return fd_; }
  size_t window() const override { return window_; }
  size_t in_flight() const override { return inflight_.size(); }

  void submit(uint64_t tag, const request& req) override {
    auto id = ++next_id_;
    inflight_.emplace(id, sent{tag, req.kind});
    const auto& env = book_.envelopes[req.env];
    client_request out{id, auth_request{}};
    switch (req.kind) {
      case op_kind::create:
        out.body = env.create;
        break;
      case op_kind::pay:
        out.body = pay_request{env.id, env.payment_txn, false};
        break;
      case op_kind::grab:
        out.body = grab_request{env.id, book_.users[req.user]};
        break;
      case op_kind::open:
        out.body = open_request{env.id, book_.users[req.user]};
        break;
    }
    out_ += codec::encode_request_frame(out);
  }

  bool wants_write() const override { return out_pos_ < out_.size(); }

  bool flush(std::string& why) override {
    while (out_pos_ < out_.size()) {
      ssize_t n = ::send(fd_, out_.data() + out_pos_, out_.size() - out_pos_,
                         MSG_NOSIGNAL);
      if (n > 0) {
        out_pos_ += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        break;
      why = std::string{"send: "} + std::strerror(errno);
      return false;
    }
    if (out_pos_ == out_.size()) {
      out_.clear();
      out_pos_ = 0;
    }
    return true;
  }

  bool read(std::vector<completion>& out, std::string& why) override {
    if (!fill(why))
      return false;
    for (;;) {
      client_response resp;
      int got = next_frame(resp, why);
      if (got < 0)
        return false;
      if (got == 0)
        return true;
      if (resp.request_id == 0) {
        auto* err = std::get_if<error_reply>(&resp.body);
        why = std::string{"the node reported a connection error: "}
              + (err ? std::string{to_string(err->code)} + ": " + err->message
                     : "?");
        return false;
      }
      auto it = inflight_.find(resp.request_id);
      if (it == inflight_.end()) {
        why = "answer to unknown request id " + std::to_string(resp.request_id);
        return false;
      }
      completion c;
      c.tag = it->second.tag;
      c.rep = to_reply(it->second.kind, resp);
      inflight_.erase(it);
      out.push_back(std::move(c));
    }
  }

  std::vector<uint64_t> abandon() override {
    std::vector<uint64_t> tags;
    for (auto& [id, s] : inflight_)
      tags.push_back(s.tag);
    inflight_.clear();
    return tags;
  }

private:
  struct sent {
    uint64_t tag;
    op_kind kind;
  };

  static reply to_reply(op_kind kind, client_response& resp) {
    reply r;
    if (auto* err = std::get_if<error_reply>(&resp.body)) {
      r.code = err->code;
      r.message = std::move(err->message);
    } else if (auto* env = std::get_if<envelope>(&resp.body);
               env && (kind == op_kind::create || kind == op_kind::pay)) {
      r.envelope_id = env->id;
    } else if (auto* g = std::get_if<grab_result>(&resp.body);
               g && kind == op_kind::grab) {
      r.outcome = g->outcome;
      r.amount_fen = g->amount_fen;
    } else if (auto* o = std::get_if<open_result>(&resp.body);
               o && kind == op_kind::open) {
      r.amount_fen = o->amount_fen;
      r.seq = o->seq;
      r.first_time = o->first_time;
    } else {
      r.code = errc::internal;
      r.unexpected = true;
      r.message = std::string{"the node answered a "} + to_string(kind)
                  + " with the wrong kind of response";
    }
    return r;
  }

  bool wait(short events, int64_t deadline, std::string& why) {
    pollfd p{fd_, events, 0};
    auto left = deadline - now_ms();
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) != 1) {
      why = "the node did not answer in time";
      return false;
    }
    return true;
  }

  /// Reads everything the socket holds now.
  bool fill(std::string& why) {
    for (;;) {
      if (in_pos_ > 0 && in_pos_ == in_.size()) {
        in_.clear();
        in_pos_ = 0;
      }
      auto old = in_.size();
      in_.resize(old + read_chunk);
      ssize_t n = ::recv(fd_, in_.data() + old, read_chunk, 0);
      in_.resize(old + (n > 0 ? static_cast<size_t>(n) : 0));
      if (n > 0)
        continue;
      if (n == 0) {
        why = "the node closed the connection";
        return false;
      }
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return true;
      why = std::string{"recv: "} + std::strerror(errno);
      return false;
    }
  }

  /// 1: a frame was decoded into `out`; 0: no whole frame buffered; -1: broken.
  int next_frame(client_response& out, std::string& why) {
    auto avail = in_.size() - in_pos_;
    if (avail < codec::frame_header_size)
      return 0;
    auto size = codec::get_frame_header(in_.data() + in_pos_);
    if (size == 0 || size > client::frame_size_max) {
      why = "bad frame length " + std::to_string(size);
      return -1;
    }
    if (avail < codec::frame_header_size + size)
      return 0;
    auto resp = codec::decode_response(
      in_.data() + in_pos_ + codec::frame_header_size, size);
    in_pos_ += codec::frame_header_size + size;
    if (!resp) {
      why = "unreadable response: " + resp.error().message;
      return -1;
    }
    out = std::move(*resp);
    // Compact now and then so that the buffer does not creep.
    if (in_pos_ > (1u << 20)) {
      in_.erase(0, in_pos_);
      in_pos_ = 0;
    }
    return 1;
  }

  int fd_;
  const run_book& book_;
  uint32_t window_;
  uint64_t next_id_ = 0;
  std::unordered_map<uint64_t, sent> inflight_;
  std::string out_;
  size_t out_pos_ = 0;
  std::string in_;
  size_t in_pos_ = 0;
};

class hongbao_target final : public target {
public:
  hongbao_target(target_options opts, client::host_port where)
    : opts_(std::move(opts)), where_(std::move(where)) {}

  std::string describe() const override {
    return "hongbao node at " + opts_.server;
  }
  uint32_t connections_default() const override { return 16; }
  // The node's default connection_inflight_max.
  uint32_t window_default() const override { return 1024; }

  outcome<done> prepare() override {
    if (opts_.db_url.empty())
      return failure{errc::invalid_argument,
                     "the hongbao target needs --db-url (the node's database) "
                     "for the audit"};
    auto c = pg::connect(opts_.db_url);
    if (!c)
      return c.error();
    auto t = pg::exec(c->get(), "SELECT to_regclass('envelopes') IS NOT NULL");
    if (!t)
      return t.error();
    if (std::string{PQgetvalue(t->get(), 0, 0)} != "t")
      return failure{errc::invalid_argument,
                     "--db-url has no table envelopes: is it the node's "
                     "database?"};
    return done{};
  }

  outcome<std::unique_ptr<session>> connect(const run_book& book,
                                            uint32_t window) override {
    std::string why;
    int fd = connect_tcp(where_.host, where_.port, opts_.timeout_ms, why);
    if (fd < 0)
      return failure{errc::unavailable, "cannot connect to " + opts_.server + ": "
                                          + why + " — is hongbao-node running?"};
    auto s = std::make_unique<hongbao_session>(fd, book, window);
    if (!s->authenticate(opts_.token, opts_.timeout_ms, why))
      return failure{errc::unavailable, why};
    return std::unique_ptr<session>{std::move(s)};
  }

  outcome<std::vector<envelope_detail>> load(const run_book& book) override {
    auto c = pg::connect(opts_.db_url);
    if (!c)
      return c.error();
    std::vector<int64_t> ids;
    for (auto& e : book.envelopes)
      if (e.id != 0)
        ids.push_back(e.id);
    auto arr = pg::int_array(ids);
    auto envs = pg::exec(
      c->get(),
      "SELECT id, kind, status, total_fen, count, remaining_fen, "
      "remaining_count, refunded_fen, sender FROM envelopes "
      "WHERE id = ANY($1::bigint[])",
      {arr});
    if (!envs)
      return envs.error();
    auto opens = pg::exec(c->get(),
                          "SELECT envelope_id, user_id, amount_fen, seq FROM opens "
                          "WHERE envelope_id = ANY($1::bigint[]) "
                          "ORDER BY envelope_id, seq",
                          {arr});
    if (!opens)
      return opens.error();
    std::unordered_map<int64_t, envelope_detail> by_id;
    auto* r = envs->get();
    for (int i = 0; i < PQntuples(r); ++i) {
      envelope_detail d;
      auto& e = d.env;
      e.id = std::stoll(PQgetvalue(r, i, 0));
      e.kind = static_cast<envelope_kind>(std::stoi(PQgetvalue(r, i, 1)));
      e.status = static_cast<envelope_status>(std::stoi(PQgetvalue(r, i, 2)));
      e.total_fen = std::stoll(PQgetvalue(r, i, 3));
      e.count = std::stoi(PQgetvalue(r, i, 4));
      e.remaining_fen = std::stoll(PQgetvalue(r, i, 5));
      e.remaining_count = std::stoi(PQgetvalue(r, i, 6));
      e.refunded_fen = std::stoll(PQgetvalue(r, i, 7));
      e.sender = PQgetvalue(r, i, 8);
      by_id.emplace(e.id, std::move(d));
    }
    auto* o = opens->get();
    for (int i = 0; i < PQntuples(o); ++i) {
      auto it = by_id.find(std::stoll(PQgetvalue(o, i, 0)));
      if (it == by_id.end())
        continue;  // an open without its envelope: shows as a missing share
      open_record rec;
      rec.user = PQgetvalue(o, i, 1);
      rec.amount_fen = std::stoll(PQgetvalue(o, i, 2));
      rec.seq = std::stoi(PQgetvalue(o, i, 3));
      it->second.opens.push_back(std::move(rec));
    }
    std::vector<envelope_detail> out;
    for (auto& e : book.envelopes) {
      auto it = e.id != 0 ? by_id.find(e.id) : by_id.end();
      out.push_back(it != by_id.end() ? std::move(it->second) : envelope_detail{});
    }
    return out;
  }

  global_checks check_globals(const run_book& book) override {
    global_checks out;
    auto c = pg::connect(opts_.db_url);
    if (!c) {
      out.problems.push_back(c.error().message);
      return out;
    }
    auto has = [&](const char* table) {
      auto r = pg::exec(c->get(), "SELECT to_regclass($1) IS NOT NULL", {table});
      return r && std::string{PQgetvalue(r->get(), 0, 0)} == "t";
    };
    if (!has("accounts") || !has("ledger_entries")) {
      out.notes.push_back("no ledger tables: ledger checks skipped");
      return out;
    }
    // Double entry: all balances together are zero.
    check_zero(c->get(), out, "ledger balances sum to zero",
               "SELECT COALESCE(sum(balance_fen), 0) FROM accounts");
    // Escrow holds exactly what paid envelopes still owe: their remaining
    // money plus the committed shares the relay has not credited yet. One
    // statement, so one snapshot, while the relay may be running.
    check_zero(c->get(), out, "escrow = remaining + uncredited shares",
               "SELECT (SELECT COALESCE(sum(balance_fen), 0) FROM accounts "
               "        WHERE kind = 2)"
               " - (SELECT COALESCE(sum(remaining_fen), 0) FROM envelopes "
               "    WHERE status IN (2, 3, 4))"
               " - (SELECT COALESCE(sum(o.amount_fen), 0) FROM opens o "
               "    WHERE NOT EXISTS (SELECT 1 FROM ledger_entries l "
               "      WHERE l.idempotency_key = 'credit:' || o.envelope_id "
               "                                || ':' || o.user_id))");
    std::vector<int64_t> ids;
    for (auto& e : book.envelopes)
      if (e.id != 0)
        ids.push_back(e.id);
    auto arr = pg::int_array(ids);
    // Every paid envelope of the run was paid in exactly once, in full.
    check_zero(c->get(), out, "one pay entry of the total per paid envelope",
               "SELECT count(*) FROM (SELECT e.id FROM envelopes e "
               "  LEFT JOIN ledger_entries l ON l.kind = 'pay' "
               "   AND l.envelope_id = e.id "
               "  WHERE e.id = ANY($1::bigint[]) AND e.status <> 1 "
               "  GROUP BY e.id, e.total_fen "
               "  HAVING count(l.id) <> 1 OR sum(l.amount_fen) <> e.total_fen) x",
               {arr});
    // A credit is only ever for a committed share, of its amount.
    check_zero(c->get(), out, "every credit matches a committed share",
               "SELECT count(*) FROM ledger_entries l "
               "LEFT JOIN opens o ON o.envelope_id = l.envelope_id "
               " AND o.user_id = l.user_id "
               "WHERE l.kind = 'credit' AND l.envelope_id = ANY($1::bigint[]) "
               "  AND (o.user_id IS NULL OR o.amount_fen <> l.amount_fen)",
               {arr});
    return out;
  }

private:
  static void check_zero(PGconn* c, global_checks& out, const std::string& what,
                         const std::string& sql,
                         const std::vector<std::string>& params = {}) {
    auto r = pg::exec(c, sql, params);
    if (!r) {
      out.problems.push_back(what + ": the check failed: " + r.error().message);
      return;
    }
    std::string v = PQgetvalue(r->get(), 0, 0);
    if (v != "0")
      out.problems.push_back(what + ": off by " + v);
    else
      out.notes.push_back(what);
  }

  target_options opts_;
  client::host_port where_;
};

} // namespace

const char* to_string(op_kind x) {
  switch (x) {
    case op_kind::create:
      return "create";
    case op_kind::pay:
      return "pay";
    case op_kind::grab:
      return "grab";
    case op_kind::open:
      return "open";
  }
  return "?";
}

bool set_nonblocking(int fd) {
  int flags = fcntl(fd, F_GETFL, 0);
  return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

outcome<std::unique_ptr<target>> make_hongbao_target(const target_options& opts) {
  auto where = client::parse_host_port(opts.server);
  if (!where)
    return where.error();
  return std::unique_ptr<target>{std::make_unique<hongbao_target>(opts, *where)};
}

} // namespace hb::bench

// The gateway's own deadlines: a request the node does not answer within
// the gateway's request timeout is answered UNAVAILABLE by the connection's
// sweep; the late answer is dropped; the connection stays usable. Real TCP
// on 127.0.0.1, a real actor system; the router is a stand-in that answers
// envelope 1 at once and holds envelope 2's grabs until told; envelopes 3
// and 4 belong to another node (NOT_OWNER, with and without a hint); Stats
// is answered at once with about 2 KiB.
//
// The connection limits (issue 23): caps on connections, the auth deadline,
// the idle timeout, the small frame limit before Auth, request id 0, and
// output backpressure, each seen by a raw socket that behaves badly.

#define CAF_SUITE gateway.gateway_actor

#include "caf/test/unit_test.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <thread>
#include <variant>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "caf/all.hpp"
#include "caf/io/all.hpp"

#include "gateway/gateway_actor.hpp"
#include "runtime/errors.hpp"
#include "runtime/messages.hpp"
#include "client/client.hpp"
#include "gateway/log_throttle.hpp"
#include "proto/codec.hpp"
#include "runtime/log.hpp"

namespace hb {
namespace {

using release_held_atom = caf::atom_constant<caf::atom("relheld")>;

struct stand_in_state {
  std::vector<caf::response_promise> held;  // grabs of envelope 2
};

// Answers like a router (and, once learned, like the envelope actor).
caf::behavior stand_in_router(caf::stateful_actor<stand_in_state>* self) {
  auto grab = [=](int64_t id) -> caf::result<grab_result> {
    if (id == 2) {
      self->state.held.push_back(self->make_response_promise());
      return caf::delegated<grab_result>{};
    }
    if (id == 3)
      return make_error(errc::not_owner, "segment 3 is owned by b1",
                        "10.0.0.2:7711");
    if (id == 4)
      return make_error(errc::not_owner, "segment 4 has no live owner");
    return grab_result{grab_outcome::can_open, 0, 7};
  };
  return {
    [=](grab_atom, int64_t id, const std::string&) { return grab(id); },
    [=](grab_atom, int64_t id, const std::string&, direct_atom) {
      return grab(id);
    },
    [=](stats_atom) {
      node_stats st;
      st.node_name = "stand-in";
      for (int i = 0; i < 64; ++i)
        st.metrics.push_back(
          metric{"stand_in.metric_with_a_longish_name_" + std::to_string(i), i});
      return st;
    },
    [=](release_held_atom) {
      for (auto& rp : self->state.held)
        rp.deliver(grab_result{grab_outcome::can_open, 0, 3});
      auto n = self->state.held.size();
      self->state.held.clear();
      return n;
    },
  };
}

struct config : caf::actor_system_config {
  config() {
    add_hongbao_types(*this);
    load<caf::io::middleman>();
  }
};

struct fixture {
  config cfg;
  caf::actor_system sys{cfg};
  caf::actor router = sys.spawn(stand_in_router);
  std::shared_ptr<node_metrics> metrics = std::make_shared<node_metrics>();
  gateway_handle gw;

  fixture() {
    restart([](gateway_settings&) {});
  }

  // Starts a gateway with the test's settings changed by `change` (the one
  // running before is stopped).
  void restart(const std::function<void(gateway_settings&)>& change) {
    if (gw.acceptor)
      caf::anon_send(gw.acceptor, stop_atom::value);
    gateway_settings gs;
    gs.host = "127.0.0.1";
    gs.port = 0;
    gs.auth_token = "tok";
    gs.node_name = "gw-test";
    gs.request_timeout_ms = 300;
    gs.metrics = metrics;
    change(gs);
    auto h = spawn_gateway(sys, caf::actor_cast<router_actor>(router), gs);
    if (!h)
      CAF_FAIL("gateway did not start: " << sys.render(h.error()));
    gw = *h;
  }

  ~fixture() {
    caf::anon_send(gw.acceptor, stop_atom::value);
    caf::anon_send_exit(router, caf::exit_reason::user_shutdown);
  }

  client::connection connect() {
    auto c = client::connection::connect("127.0.0.1", gw.port, 2000);
    if (!c)
      CAF_FAIL("cannot connect: " << c.error().message);
    auto ok = c->authenticate("tok", 2000);
    if (!ok)
      CAF_FAIL("auth failed: " << ok.error().message);
    return std::move(*c);
  }

  size_t release_held() {
    caf::scoped_actor self{sys};
    size_t n = 0;
    self->request(router, std::chrono::seconds(5), release_held_atom::value)
      .receive([&](size_t x) { n = x; },
               [&](caf::error& err) { CAF_FAIL(sys.render(err)); });
    return n;
  }
};

// A plain blocking socket that can misbehave: send any bytes, never read.
struct raw_socket {
  int fd = -1;
  std::string inbuf;

  explicit raw_socket(uint16_t port, int rcvbuf = 0) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf > 0)
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      CAF_FAIL("connect failed: " << std::strerror(errno));
  }
  raw_socket(const raw_socket&) = delete;
  ~raw_socket() {
    if (fd >= 0)
      ::close(fd);
  }

  void send_bytes(const std::string& bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
      auto n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0)
        CAF_FAIL("send failed: " << std::strerror(errno));
      off += static_cast<size_t>(n);
    }
  }

  void send(uint64_t rid, request_body body) {
    send_bytes(codec::encode_request_frame(client_request{rid, std::move(body), 0}));
  }

  // The next response, or nullopt if none came within `timeout_ms` or the
  // node closed the connection (then `eof` is set).
  bool eof = false;
  std::optional<client_response> receive(int timeout_ms) {
    auto deadline = std::chrono::steady_clock::now()
                    + std::chrono::milliseconds{timeout_ms};
    for (;;) {
      if (inbuf.size() >= codec::frame_header_size) {
        auto size = codec::get_frame_header(inbuf.data());
        if (inbuf.size() >= codec::frame_header_size + size) {
          auto resp = codec::decode_response(
            inbuf.data() + codec::frame_header_size, size);
          inbuf.erase(0, codec::frame_header_size + size);
          if (!resp)
            CAF_FAIL("undecodable response: " << resp.error().message);
          return *resp;
        }
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
      if (left <= 0)
        return std::nullopt;
      pollfd pfd{fd, POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(left)) <= 0)
        return std::nullopt;
      char buf[65536];
      auto n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) {
        eof = true;
        return std::nullopt;
      }
      inbuf.append(buf, static_cast<size_t>(n));
    }
  }

  // Whether the node closes the connection within `timeout_ms` (responses
  // before the close are skipped).
  bool closed_within(int timeout_ms) {
    auto deadline = std::chrono::steady_clock::now()
                    + std::chrono::milliseconds{timeout_ms};
    while (!eof && std::chrono::steady_clock::now() < deadline)
      receive(50);
    return eof;
  }
};

// The error of a response, or a failed check.
error_reply error_of(const std::optional<client_response>& r) {
  if (!r)
    CAF_FAIL("no response");
  auto* e = std::get_if<error_reply>(&r->body);
  if (e == nullptr)
    CAF_FAIL("expected an Error response");
  return *e;
}

using clock = std::chrono::steady_clock;

int64_t ms_since(clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock::now()
                                                               - t0)
    .count();
}

} // namespace
} // namespace hb

using namespace hb;

CAF_TEST_FIXTURE_SCOPE(gateway_tests, fixture)

CAF_TEST(an answer in time reaches the client) {
  auto c = connect();
  for (int i = 0; i < 3; ++i) {  // the second and third go the direct way
    auto r = c.call(grab_request{1, "alice"}, 2000);
    CAF_REQUIRE(r.ok());
    auto* g = std::get_if<grab_result>(&r->body);
    CAF_REQUIRE(g != nullptr);
    CAF_CHECK_EQUAL(g->remaining_count, 7);
  }
  CAF_CHECK_EQUAL(metrics->gateway_timeouts.load(), 0u);
}

CAF_TEST(an overdue request is answered unavailable and its late answer dropped) {
  auto c = connect();
  auto t0 = clock::now();
  auto r = c.call(grab_request{2, "bob"}, 5000);
  auto waited = ms_since(t0);
  CAF_REQUIRE(r.ok());
  auto* e = std::get_if<error_reply>(&r->body);
  CAF_REQUIRE(e != nullptr);
  CAF_CHECK_EQUAL(e->code, errc::unavailable);
  CAF_CHECK(e->message.find("timed out inside the node") != std::string::npos);
  // Due after 300 ms, swept every 30 ms: not early, not much late.
  CAF_CHECK_GREATER_OR_EQUAL(waited, 290);
  CAF_CHECK_LESS(waited, 2000);
  CAF_CHECK_EQUAL(metrics->gateway_timeouts.load(), 1u);
  CAF_CHECK_EQUAL(gw.counters->inflight.load(), 0u);
  // The held request really was still open inside the node; its late
  // answer must not reach the client as a second response.
  CAF_CHECK_EQUAL(release_held(), 1u);
  auto stray = c.receive(300);
  CAF_CHECK(!stray.ok());
  // The connection still works.
  auto again = c.call(grab_request{1, "carol"}, 2000);
  CAF_REQUIRE(again.ok());
  CAF_CHECK(std::holds_alternative<grab_result>(again->body));
}

CAF_TEST(overdue and answered requests mix on one connection) {
  auto c = connect();
  std::vector<uint64_t> held_ids, quick_ids;
  for (int i = 0; i < 20; ++i) {
    auto id = c.next_request_id();
    bool held = i % 2 == 0;
    (held ? held_ids : quick_ids).push_back(id);
    auto sent = c.send(client_request{
      id, grab_request{held ? 2 : 1, "u" + std::to_string(i)}, 0});
    CAF_REQUIRE(sent.ok());
  }
  size_t errors = 0, answers = 0;
  for (int i = 0; i < 20; ++i) {
    auto r = c.receive(3000);
    CAF_REQUIRE(r.ok());
    bool is_held = std::find(held_ids.begin(), held_ids.end(), r->request_id)
                   != held_ids.end();
    if (auto* e = std::get_if<error_reply>(&r->body)) {
      CAF_CHECK(is_held);
      CAF_CHECK_EQUAL(e->code, errc::unavailable);
      ++errors;
    } else {
      CAF_CHECK(!is_held);
      ++answers;
    }
  }
  CAF_CHECK_EQUAL(errors, 10u);
  CAF_CHECK_EQUAL(answers, 10u);
  CAF_CHECK_EQUAL(metrics->gateway_timeouts.load(), 10u);
  CAF_CHECK_EQUAL(release_held(), 10u);
  CAF_CHECK(!c.receive(300).ok());
}

CAF_TEST(a not owner error reaches the client with the owner hint) {
  auto c = connect();
  auto r = c.call(grab_request{3, "alice"}, 2000);
  CAF_REQUIRE(r.ok());
  auto* e = std::get_if<error_reply>(&r->body);
  CAF_REQUIRE(e != nullptr);
  CAF_CHECK_EQUAL(e->code, errc::not_owner);
  CAF_CHECK_EQUAL(e->message, "segment 3 is owned by b1");
  CAF_CHECK_EQUAL(e->owner_hint, "10.0.0.2:7711");
  // Without a known owner the hint is empty; the error is the same.
  r = c.call(grab_request{4, "alice"}, 2000);
  CAF_REQUIRE(r.ok());
  e = std::get_if<error_reply>(&r->body);
  CAF_REQUIRE(e != nullptr);
  CAF_CHECK_EQUAL(e->code, errc::not_owner);
  CAF_CHECK_EQUAL(e->message, "segment 4 has no live owner");
  CAF_CHECK_EQUAL(e->owner_hint, "");
}

// -- Connection limits ---------------------------------------------------------

CAF_TEST(a connection over the per address cap is refused at once) {
  restart([](gateway_settings& gs) { gs.connections_per_address_max = 2; });
  auto a = connect();
  auto b = connect();
  raw_socket third{gw.port};
  auto e = error_of(third.receive(2000));
  CAF_CHECK_EQUAL(e.code, errc::busy);
  CAF_CHECK(e.message.find("connections_per_address_max 2") != std::string::npos);
  CAF_CHECK(third.closed_within(2000));
  CAF_CHECK_EQUAL(metrics->gateway_refused.load(), 1u);
  // The two admitted connections still work; a closed one frees its slot.
  CAF_CHECK(a.call(grab_request{1, "alice"}, 2000).ok());
  b.close();
  auto deadline = clock::now() + std::chrono::seconds(5);
  bool admitted = false;
  while (!admitted && clock::now() < deadline) {
    auto c = client::connection::connect("127.0.0.1", gw.port, 2000);
    admitted = c && c->authenticate("tok", 2000).ok();
    if (!admitted)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CAF_CHECK(admitted);
}

CAF_TEST(a connection over the node cap is refused at once) {
  restart([](gateway_settings& gs) {
    gs.connections_max = 3;
    gs.connections_per_address_max = 100;
  });
  auto a = connect();
  auto b = connect();
  raw_socket third{gw.port};  // admitted without Auth: it counts
  raw_socket fourth{gw.port};
  auto e = error_of(fourth.receive(2000));
  CAF_CHECK_EQUAL(e.code, errc::busy);
  CAF_CHECK(e.message.find("connections_max 3") != std::string::npos);
  CAF_CHECK(fourth.closed_within(2000));
  CAF_CHECK(!third.receive(200));  // not refused, just waiting
  CAF_CHECK(!third.eof);
  CAF_CHECK_EQUAL(metrics->gateway_refused.load(), 1u);
  CAF_CHECK_EQUAL(metrics->gateway_connections.load(), 3);
}

CAF_TEST(a connection that does not authenticate in time is closed) {
  restart([](gateway_settings& gs) { gs.auth_timeout_ms = 200; });
  auto t0 = clock::now();
  raw_socket silent{gw.port};
  auto e = error_of(silent.receive(3000));
  auto waited = ms_since(t0);
  CAF_CHECK_EQUAL(e.code, errc::unauthenticated);
  CAF_CHECK(e.message.find("not authenticated within 200 ms") != std::string::npos);
  CAF_CHECK(silent.closed_within(2000));
  CAF_CHECK_GREATER_OR_EQUAL(waited, 190);
  CAF_CHECK_LESS(waited, 2000);
  CAF_CHECK_EQUAL(metrics->gateway_auth_timeouts.load(), 1u);
  // One that did authenticate outlives the deadline.
  auto c = connect();
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  CAF_CHECK(c.call(grab_request{1, "alice"}, 2000).ok());
  CAF_CHECK_EQUAL(metrics->gateway_auth_timeouts.load(), 1u);
}

CAF_TEST(an idle connection is closed and a busy one is not) {
  restart([](gateway_settings& gs) { gs.idle_timeout_ms = 300; });
  raw_socket idle{gw.port};
  idle.send(1, auth_request{"tok"});
  CAF_REQUIRE(idle.receive(2000));
  auto c = connect();
  // The active one sends a request every 100 ms for 900 ms.
  for (int i = 0; i < 9; ++i) {
    auto r = c.call(grab_request{1, "alice"}, 2000);
    CAF_REQUIRE(r.ok());
    CAF_CHECK(std::holds_alternative<grab_result>(r->body));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  auto e = error_of(idle.receive(100));
  CAF_CHECK_EQUAL(e.code, errc::unavailable);
  CAF_CHECK(e.message.find("idle for 300 ms") != std::string::npos);
  CAF_CHECK(idle.closed_within(1000));
  CAF_CHECK_EQUAL(metrics->gateway_idle_closed.load(), 1u);
}

CAF_TEST(frames before auth are limited to the small size) {
  restart([](gateway_settings& gs) { gs.auth_frame_size_max = 1024; });
  raw_socket early{gw.port};
  // A header announcing 2000 bytes, and no payload yet: refused at once.
  early.send_bytes(std::string{"\x00\x00\x07\xd0", 4});
  auto e = error_of(early.receive(2000));
  CAF_CHECK_EQUAL(e.code, errc::frame_too_large);
  CAF_CHECK(e.message.find("limit of 1024 before Auth") != std::string::npos);
  CAF_CHECK(early.closed_within(2000));
  // After Auth the normal limit holds: a 2000-byte request is read (and
  // refused for its too long user id, the connection staying open).
  raw_socket late{gw.port};
  late.send(1, auth_request{"tok"});
  auto ok = late.receive(2000);
  CAF_REQUIRE(ok);
  CAF_CHECK(std::holds_alternative<auth_ok>(ok->body));
  late.send(2, grab_request{1, std::string(2000, 'u')});
  auto r = late.receive(2000);
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->request_id, 2u);
  CAF_CHECK_EQUAL(error_of(r).code, errc::invalid_argument);
  late.send(3, grab_request{1, "alice"});
  r = late.receive(2000);
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->request_id, 3u);
  CAF_CHECK(std::holds_alternative<grab_result>(r->body));
}

CAF_TEST(request id 0 is refused and not run) {
  raw_socket s{gw.port};
  s.send(1, auth_request{"tok"});
  CAF_REQUIRE(s.receive(2000));
  s.send(0, grab_request{2, "zero"});  // would be held by the stand-in
  auto e = error_of(s.receive(2000));
  CAF_CHECK_EQUAL(e.code, errc::invalid_argument);
  CAF_CHECK(e.message.find("request_id 0 is reserved") != std::string::npos);
  CAF_CHECK_EQUAL(release_held(), 0u);  // the grab never reached the router
  s.send(7, grab_request{1, "alice"});  // the connection goes on
  auto r = s.receive(2000);
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->request_id, 7u);
  CAF_CHECK(std::holds_alternative<grab_result>(r->body));
}

CAF_TEST(a client that does not read stops being read) {
  // In flight: at most the default 1024 answers still to come; the rest
  // are answered BUSY at once, which is output too.
  restart([](gateway_settings& gs) { gs.output_buffer_max = 64 * 1024; });
  raw_socket s{gw.port, 4096};
  s.send(1, auth_request{"tok"});
  CAF_REQUIRE(s.receive(2000));
  // Pipelines Stats requests (each answered with ~2 KiB) without reading,
  // until its sends block for half a second or 100 000 are out (they fit
  // in the kernel's socket buffers).
  ::fcntl(s.fd, F_SETFL, ::fcntl(s.fd, F_GETFL) | O_NONBLOCK);
  auto frame = codec::encode_request_frame(client_request{2, stats_request{}, 0});
  constexpr size_t total = 100000;
  size_t sent = 0;
  auto blocked_since = clock::now();
  bool blocked = false;
  std::string out;
  while (sent < total) {
    if (out.empty())
      out = frame;
    auto n = ::send(s.fd, out.data(), out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      out.erase(0, static_cast<size_t>(n));
      if (out.empty())
        ++sent;
      blocked = false;
      continue;
    }
    CAF_REQUIRE(errno == EAGAIN || errno == EWOULDBLOCK);
    if (!blocked) {
      blocked = true;
      blocked_since = clock::now();
    } else if (ms_since(blocked_since) > 500) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // The node stopped reading: most of what was sent is still unread in
  // the socket (a node that kept reading would have read and answered all
  // of it into its own memory by now).
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto read_by_node = gw.counters->requests.load() - 1;  // not the Auth
  CAF_MESSAGE("sent " << sent << " requests without reading; the node read "
                      << read_by_node << " of them and paused "
                      << metrics->gateway_read_pauses.load() << " times");
  CAF_CHECK_GREATER_OR_EQUAL(metrics->gateway_read_pauses.load(), 1u);
  CAF_CHECK_LESS(read_by_node, sent / 2);
  // Reading the answers lets the node read again: every request is
  // answered (a frame cut in half is finished first).
  ::fcntl(s.fd, F_SETFL, ::fcntl(s.fd, F_GETFL) & ~O_NONBLOCK);
  if (!out.empty() && out.size() < frame.size())
    ++sent;
  else
    out.clear();
  std::thread rest([&] { s.send_bytes(out); });
  size_t answered = 0;
  while (answered < sent) {
    auto r = s.receive(5000);
    if (!r)
      break;
    ++answered;
  }
  rest.join();
  CAF_CHECK_EQUAL(answered, sent);
  CAF_CHECK_EQUAL(gw.counters->requests.load() - 1, sent);
  CAF_CHECK(!s.eof);
}

CAF_TEST(log lines are throttled and client text is escaped) {
  log_throttle t{std::chrono::milliseconds{1000}};
  auto t0 = log_throttle::clock::now();
  uint64_t held = 99;
  CAF_CHECK(t.admit(t0, held));
  CAF_CHECK_EQUAL(held, 0u);
  for (int i = 1; i <= 5; ++i)
    CAF_CHECK(!t.admit(t0 + std::chrono::milliseconds{i * 100}, held));
  CAF_CHECK(t.admit(t0 + std::chrono::milliseconds{1000}, held));
  CAF_CHECK_EQUAL(held, 5u);
  CAF_CHECK(!t.admit(t0 + std::chrono::milliseconds{1500}, held));
  CAF_CHECK(t.admit(t0 + std::chrono::milliseconds{5000}, held));
  CAF_CHECK_EQUAL(held, 1u);
  CAF_CHECK_EQUAL(log_safe("bob\nFAKE line\r\t\x01\\ 红包"),
                  "bob\\nFAKE line\\r\\t\\x01\\\\ 红包");
  CAF_CHECK_EQUAL(log_safe(std::string(300, 'a'), 10), "aaaaaaaaaa...");
}

CAF_TEST_FIXTURE_SCOPE_END()

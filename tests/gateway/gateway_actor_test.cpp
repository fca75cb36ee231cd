// The gateway's own deadlines: a request the node does not answer within
// the gateway's request timeout is answered UNAVAILABLE by the connection's
// sweep; the late answer is dropped; the connection stays usable. Real TCP
// on 127.0.0.1, a real actor system; the router is a stand-in that answers
// envelope 1 at once and holds envelope 2's grabs until told; envelopes 3
// and 4 belong to another node (NOT_OWNER, with and without a hint).

#define CAF_SUITE gateway.gateway_actor

#include "caf/test/unit_test.hpp"

#include <algorithm>
#include <chrono>
#include <variant>
#include <vector>

#include "caf/all.hpp"
#include "caf/io/all.hpp"

#include "gateway/gateway_actor.hpp"
#include "runtime/errors.hpp"
#include "runtime/messages.hpp"
#include "client/client.hpp"

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
    gateway_settings gs;
    gs.host = "127.0.0.1";
    gs.port = 0;
    gs.auth_token = "tok";
    gs.node_name = "gw-test";
    gs.request_timeout_ms = 300;
    gs.metrics = metrics;
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

CAF_TEST_FIXTURE_SCOPE_END()

#define CAF_SUITE cluster.router_actor

#include "tests/support/actor_fixture.hpp"

#include <algorithm>

#include "cluster/router_actor.hpp"

using namespace hb;
using namespace hb::test;

namespace {

constexpr int64_t first_id = 2027011500000001101;  // segment 101
constexpr int64_t other_id = 2027011500000001102;  // segment 102

// The router with stand-ins for the registry, the id allocator, the
// reconciler and the relay that record what reaches them, and the fake
// store for creates, history and balances.
struct router_fixture : actor_fixture {
  std::vector<std::string> at_registry;  // what the registry was asked
  std::vector<int64_t> at_reconciler;    // since_ms of each reconcile
  int ids_given = 0;
  bool relay_fails = false;
  caf::actor registry_stub;
  caf::actor ids_stub;
  caf::actor reconciler_stub;
  caf::actor relay_stub;
  router_settings rcfg;
  router_actor router;

  router_fixture() {
    registry_stub = sys.spawn([this]() -> caf::behavior {
      return {
        [this](grab_atom, int64_t id, const std::string& user) {
          at_registry.push_back("grab " + std::to_string(id) + " " + user);
          return grab_result{grab_outcome::can_open, 0, 4};
        },
        [this](open_atom, int64_t id, const std::string& user,
               int64_t deadline_ms) {
          at_registry.push_back("open " + std::to_string(id) + " " + user
                                + " " + std::to_string(deadline_ms));
          return open_result{25, 1, true, 4};
        },
        [this](pay_atom, int64_t id, const std::string& txn, bool wallet) {
          at_registry.push_back("pay " + std::to_string(id) + " " + txn
                                + (wallet ? " wallet" : ""));
          envelope env;
          env.id = id;
          env.payment_txn = txn;
          return env;
        },
        [this](get_atom, int64_t id) {
          at_registry.push_back("get " + std::to_string(id));
          envelope_detail d;
          d.env.id = id;
          return d;
        },
        [this](refund_atom, int64_t id) {
          at_registry.push_back("refund " + std::to_string(id));
          return int64_t{77};
        },
        [](stats_atom) { return uint64_t{3}; },
      };
    });
    ids_stub = sys.spawn([this]() -> caf::behavior {
      return {
        [this](next_id_atom) { return first_id + 1000 * ids_given++; },
      };
    });
    reconciler_stub = sys.spawn([this]() -> caf::behavior {
      return {
        [this](reconcile_atom, int64_t since_ms) {
          at_reconciler.push_back(since_ms);
          reconcile_report r;
          r.since_ms = since_ms;
          r.envelopes_checked = 12;
          return r;
        },
      };
    });
    relay_stub = sys.spawn([this]() -> caf::behavior {
      return {
        [this](stats_atom) -> caf::result<relay_stats> {
          if (relay_fails)
            return make_error(errc::unavailable, "relay down");
          relay_stats r;
          r.pending = 5;
          r.oldest_age_ms = 900;
          return r;
        },
      };
    });
    rcfg.node_name = "n1";
    rcfg.now_ms = [this] { return now; };
    rcfg.relay = caf::actor_cast<relay_actor>(relay_stub);
    router = make_router(rcfg);
  }

  ~router_fixture() {
    for (auto& a : {registry_stub, ids_stub, reconciler_stub, relay_stub})
      anon_send_exit(a, caf::exit_reason::user_shutdown);
    anon_send_exit(router, caf::exit_reason::user_shutdown);
  }

  router_actor make_router(const router_settings& c) {
    auto r = spawn_router(sys, caf::actor_cast<registry_actor>(registry_stub),
                          caf::actor_cast<id_allocator_actor>(ids_stub), store,
                          caf::actor_cast<reconciler_actor>(reconciler_stub),
                          c);
    run();
    return r;
  }

  template <class T, class... Ts>
  outcome<T> call(Ts&&... xs) {
    auto h = self->request(router, caf::infinite, std::forward<Ts>(xs)...);
    run();
    return take<T>(h);
  }

  static create_request good_create() {
    create_request req;
    req.sender = "s";
    req.group = "g";
    req.idempotency_key = "k1";
    req.total_fen = 1000;
    req.count = 10;
    return req;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(router_tests, router_fixture)

CAF_TEST(a valid create gets an id from the allocator and is stored) {
  auto res = call<envelope>(create_atom::value, good_create());
  CAF_REQUIRE(res.ok());
  CAF_CHECK_EQUAL(res.value().id, first_id);
  CAF_CHECK_EQUAL(res.value().status, envelope_status::created);
  CAF_CHECK_EQUAL(res.value().remaining_fen, 1000);
  CAF_CHECK_EQUAL(res.value().remaining_count, 10);
  CAF_CHECK_EQUAL(res.value().created_at_ms, now);
  CAF_CHECK_EQUAL(ids_given, 1);
  CAF_REQUIRE_EQUAL(db->envelopes.count(first_id), 1u);
  CAF_CHECK_EQUAL(db->envelopes.at(first_id).sender, "s");
}

CAF_TEST(an invalid create is refused before it costs an id) {
  auto bad = good_create();
  bad.count = 0;
  auto res = call<envelope>(create_atom::value, bad);
  CAF_REQUIRE(!res.ok());
  CAF_CHECK_EQUAL(res.error().code, errc::invalid_argument);
  bad = good_create();
  bad.total_fen = 9;  // below 1 fen per share
  res = call<envelope>(create_atom::value, bad);
  CAF_REQUIRE(!res.ok());
  CAF_CHECK_EQUAL(res.error().code, errc::limit_exceeded);
  bad = good_create();
  bad.sender.clear();
  res = call<envelope>(create_atom::value, bad);
  CAF_REQUIRE(!res.ok());
  CAF_CHECK_EQUAL(res.error().code, errc::invalid_argument);
  CAF_CHECK_EQUAL(ids_given, 0);
  CAF_CHECK(db->envelopes.empty());
}

CAF_TEST(creates beyond the in-flight limit are told busy) {
  anon_send_exit(router, caf::exit_reason::user_shutdown);
  auto c = rcfg;
  c.creates_inflight_max = 0;
  router = make_router(c);
  auto res = call<envelope>(create_atom::value, good_create());
  CAF_REQUIRE(!res.ok());
  CAF_CHECK_EQUAL(res.error().code, errc::busy);
  CAF_CHECK_EQUAL(ids_given, 0);
}

CAF_TEST(a create whose store fails is retried with fresh ids then fails) {
  db->fail_everything = true;
  auto res = call<envelope>(create_atom::value, good_create());
  CAF_REQUIRE(!res.ok());
  CAF_CHECK_EQUAL(res.error().code, errc::unavailable);
  CAF_CHECK_EQUAL(ids_given, 3);  // create_attempts_max
  // The retries are counted, and the in-flight count came back down: the
  // next create goes through.
  db->fail_everything = false;
  auto ok = call<envelope>(create_atom::value, good_create());
  CAF_REQUIRE(ok.ok());
  CAF_CHECK_EQUAL(ok.value().id, first_id + 3000);
  auto stats = call<node_stats>(stats_atom::value);
  CAF_REQUIRE(stats.ok());
  auto& m = stats.value().metrics;
  auto retries = std::find_if(m.begin(), m.end(), [](const metric& x) {
    return x.name == "router.create_retries";
  });
  CAF_REQUIRE(retries != m.end());
  CAF_CHECK_EQUAL(retries->value, 2);
}

CAF_TEST(envelope requests go to the registry unchanged) {
  auto g = call<grab_result>(grab_atom::value, first_id, std::string{"u1"});
  CAF_REQUIRE(g.ok());
  CAF_CHECK_EQUAL(g.value().remaining_count, 4);
  auto o = call<open_result>(open_atom::value, first_id, std::string{"u1"},
                             int64_t{1234});
  CAF_REQUIRE(o.ok());
  CAF_CHECK_EQUAL(o.value().amount_fen, 25);
  auto p = call<envelope>(pay_atom::value, first_id, std::string{"t1"}, true);
  CAF_REQUIRE(p.ok());
  CAF_CHECK_EQUAL(p.value().payment_txn, "t1");
  auto d = call<envelope_detail>(get_atom::value, other_id);
  CAF_REQUIRE(d.ok());
  CAF_CHECK_EQUAL(d.value().env.id, other_id);
  auto r = call<int64_t>(refund_atom::value, first_id);
  CAF_REQUIRE(r.ok());
  CAF_CHECK_EQUAL(r.value(), 77);
  CAF_CHECK_EQUAL(at_registry,
                  (std::vector<std::string>{
                    "grab " + std::to_string(first_id) + " u1",
                    "open " + std::to_string(first_id) + " u1 1234",
                    "pay " + std::to_string(first_id) + " t1 wallet",
                    "get " + std::to_string(other_id),
                    "refund " + std::to_string(first_id)}));
}

CAF_TEST(bad user ids and payment txns never reach the registry) {
  auto g = call<grab_result>(grab_atom::value, first_id, std::string{});
  CAF_REQUIRE(!g.ok());
  CAF_CHECK_EQUAL(g.error().code, errc::invalid_argument);
  auto o = call<open_result>(open_atom::value, first_id,
                             std::string(10000, 'x'), int64_t{0});
  CAF_REQUIRE(!o.ok());
  CAF_CHECK_EQUAL(o.error().code, errc::invalid_argument);
  auto p = call<envelope>(pay_atom::value, first_id, std::string{}, false);
  CAF_REQUIRE(!p.ok());
  CAF_CHECK_EQUAL(p.error().code, errc::invalid_argument);
  CAF_CHECK(at_registry.empty());
}

CAF_TEST(requests for a blocked segment fail fast until it is unblocked) {
  self->send(router, blocked_atom::value, std::vector<int32_t>{101});
  run();
  for (int i = 0; i < 2; ++i) {
    auto o = call<open_result>(open_atom::value, first_id, std::string{"u"},
                               int64_t{0});
    CAF_REQUIRE(!o.ok());
    CAF_CHECK_EQUAL(o.error().code, errc::segment_unavailable);
    auto g = call<envelope_detail>(get_atom::value, first_id);
    CAF_REQUIRE(!g.ok());
    CAF_CHECK_EQUAL(g.error().code, errc::segment_unavailable);
  }
  CAF_CHECK(at_registry.empty());
  // Another segment is served meanwhile.
  auto other = call<grab_result>(grab_atom::value, other_id,
                                 std::string{"u"});
  CAF_CHECK(other.ok());
  CAF_CHECK_EQUAL(at_registry.size(), 1u);
  // The next list replaces the last: 101 is served again.
  self->send(router, blocked_atom::value, std::vector<int32_t>{});
  run();
  auto o = call<open_result>(open_atom::value, first_id, std::string{"u"},
                             int64_t{0});
  CAF_CHECK(o.ok());
  CAF_CHECK_EQUAL(at_registry.size(), 2u);
}

CAF_TEST(reconciliation goes to the reconciler) {
  auto r = call<reconcile_report>(reconcile_atom::value, int64_t{4242});
  CAF_REQUIRE(r.ok());
  CAF_CHECK_EQUAL(r.value().since_ms, 4242);
  CAF_CHECK_EQUAL(r.value().envelopes_checked, 12);
  CAF_CHECK_EQUAL(at_reconciler, (std::vector<int64_t>{4242}));
  CAF_CHECK(at_registry.empty());
}

CAF_TEST(history and balance go to the store after validation) {
  auto b = call<balance_info>(balance_atom::value, std::string{"alice"});
  CAF_REQUIRE(b.ok());
  CAF_CHECK_EQUAL(b.value().user, "alice");
  history_query q;
  q.user = "alice";
  auto h = call<history_page>(history_atom::value, q);
  CAF_CHECK(h.ok());
  q.limit = 0;
  h = call<history_page>(history_atom::value, q);
  CAF_REQUIRE(!h.ok());
  CAF_CHECK_EQUAL(h.error().code, errc::invalid_argument);
  q.limit = 101;
  h = call<history_page>(history_atom::value, q);
  CAF_REQUIRE(!h.ok());
  CAF_CHECK_EQUAL(h.error().code, errc::invalid_argument);
  auto nobody = call<balance_info>(balance_atom::value, std::string{});
  CAF_REQUIRE(!nobody.ok());
  CAF_CHECK_EQUAL(nobody.error().code, errc::invalid_argument);
}

CAF_TEST(stats combine the registry and the relay and say what is missing) {
  auto s = call<node_stats>(stats_atom::value);
  CAF_REQUIRE(s.ok());
  CAF_CHECK_EQUAL(s.value().node_name, "n1");
  auto value_of = [](const node_stats& st, const std::string& name) {
    for (auto& m : st.metrics)
      if (m.name == name)
        return m.value;
    return int64_t{-1};
  };
  CAF_CHECK_EQUAL(value_of(s.value(), "envelopes.live"), 3);
  CAF_CHECK_EQUAL(value_of(s.value(), "relay.pending"), 5);
  CAF_CHECK_EQUAL(value_of(s.value(), "relay.oldest_age_ms"), 900);
  CAF_CHECK_EQUAL(value_of(s.value(), "unavailable.relay"), -1);
  auto& m = s.value().metrics;
  CAF_CHECK(std::is_sorted(m.begin(), m.end(),
                           [](const metric& a, const metric& b) {
                             return a.name < b.name;
                           }));
  relay_fails = true;
  s = call<node_stats>(stats_atom::value);
  CAF_REQUIRE(s.ok());
  CAF_CHECK_EQUAL(value_of(s.value(), "unavailable.relay"), 1);
  CAF_CHECK_EQUAL(value_of(s.value(), "relay.pending"), -1);
}

CAF_TEST(segments cannot be blocked by hand without segment health) {
  auto r = call<segment_state>(segment_atom::value,
                               segment_request{101, true, "maintenance"});
  CAF_REQUIRE(!r.ok());
  CAF_CHECK_EQUAL(r.error().code, errc::unavailable);
}

CAF_TEST_FIXTURE_SCOPE_END()

// -- In a cluster ---------------------------------------------------------------

namespace {

// A router in a cluster: a membership stand-in that records the segments
// whose route the router found stale, and a stand-in for another node's
// router that answers opens (or, if `silent`, never answers).
struct cluster_fixture : router_fixture {
  std::vector<int32_t> refreshed;
  bool silent = false;
  int remote_opens = 0;
  int remote_creates = 0;
  caf::actor membership_stub;
  caf::actor remote_router;
  router_actor crouter;

  cluster_fixture() {
    membership_stub = sys.spawn([this]() -> caf::behavior {
      return {
        [this](refresh_atom, int32_t segment) { refreshed.push_back(segment); },
        [](stats_atom) {
          cluster_info info;
          info.enabled = true;
          info.set = "set-1";
          return info;
        },
      };
    });
    remote_router = sys.spawn([this](caf::event_based_actor* me)
                                -> caf::behavior {
      return {
        [this, me](open_atom, int64_t, const std::string&, int64_t) {
          auto rp = me->make_response_promise();
          if (!silent) {  // silent: never answered
            ++remote_opens;
            rp.deliver(open_result{99, 2, true, 4});
          }
          return rp;
        },
        [this](create_atom, const create_request&) {
          ++remote_creates;
          envelope env;
          env.id = other_id;
          return env;
        },
      };
    });
    auto c = rcfg;
    c.membership = caf::actor_cast<membership_actor>(membership_stub);
    c.forward_timeout_ms = 500;
    crouter = make_router(c);
  }

  ~cluster_fixture() {
    for (auto& a : {membership_stub, remote_router})
      anon_send_exit(a, caf::exit_reason::user_shutdown);
    anon_send_exit(crouter, caf::exit_reason::user_shutdown);
  }

  // Segment 101 here, 102 at node n2 (linked), the rest unknown.
  route_table table(bool fenced = false, bool link_n2 = true) {
    route_table t;
    t.fenced = fenced;
    t.segments.resize(static_cast<size_t>(segment_count));
    t.segments[101] = segment_route{"n1", 3, !fenced, caf::actor{}, ""};
    t.segments[102] = segment_route{"n2", 5, false,
                                    link_n2 ? remote_router : caf::actor{},
                                    "127.0.0.1:7702"};
    if (link_n2)
      t.creators.push_back(remote_router);
    return t;
  }

  void set_routes(route_table t) {
    self->send(crouter, route_atom::value, std::move(t));
    run();
  }

  template <class T, class... Ts>
  outcome<T> ccall(Ts&&... xs) {
    auto h = self->request(crouter, caf::infinite, std::forward<Ts>(xs)...);
    run();
    return take<T>(h);
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(router_cluster_tests, cluster_fixture)

CAF_TEST(before the first route table every envelope request is unavailable) {
  auto res = ccall<open_result>(open_atom::value, first_id, "u1", int64_t{0});
  CAF_REQUIRE(!res.ok());
  CAF_CHECK_EQUAL(res.error().code, errc::unavailable);
  CAF_CHECK(at_registry.empty());
}

CAF_TEST(a local segment goes to the registry and a segment of another node is forwarded) {
  set_routes(table());
  auto local = ccall<open_result>(open_atom::value, first_id, "u1", int64_t{0});
  CAF_REQUIRE(local.ok());
  CAF_CHECK_EQUAL(local.value().amount_fen, 25);
  CAF_CHECK_EQUAL(at_registry.size(), 1u);
  auto remote = ccall<open_result>(open_atom::value, other_id, "u1",
                                   int64_t{0});
  CAF_REQUIRE(remote.ok());
  CAF_CHECK_EQUAL(remote.value().amount_fen, 99);
  CAF_CHECK_EQUAL(remote_opens, 1);
  CAF_CHECK_EQUAL(at_registry.size(), 1u);  // not asked for the remote one
  CAF_CHECK(refreshed.empty());
}

CAF_TEST(a forwarded request that gets no answer is unavailable at its deadline) {
  set_routes(table());
  silent = true;
  auto h = self->request(crouter, caf::infinite, open_atom::value, other_id,
                         std::string{"u1"}, int64_t{0});
  run();
  CAF_CHECK(refreshed.empty());
  sched.trigger_timeouts();
  run();
  auto res = take<open_result>(h);
  CAF_REQUIRE(!res.ok());
  CAF_CHECK_EQUAL(res.error().code, errc::unavailable);
  CAF_CHECK(res.error().message.find("n2") != std::string::npos);
  CAF_CHECK_EQUAL(refreshed, (std::vector<int32_t>{102}));
}

CAF_TEST(an owner that is not linked gives unavailable with a hint and a refresh) {
  set_routes(table(false, false));
  auto res = ccall<open_result>(open_atom::value, other_id, "u1", int64_t{0});
  CAF_REQUIRE(!res.ok());
  CAF_CHECK_EQUAL(res.error().code, errc::unavailable);
  CAF_CHECK_EQUAL(res.error().hint, "127.0.0.1:7702");
  CAF_CHECK_EQUAL(refreshed, (std::vector<int32_t>{102}));
  CAF_CHECK_EQUAL(remote_opens, 0);
}

CAF_TEST(a fenced node serves nothing) {
  set_routes(table(true));
  auto res = ccall<open_result>(open_atom::value, first_id, "u1", int64_t{0});
  CAF_REQUIRE(!res.ok());
  CAF_CHECK_EQUAL(res.error().code, errc::unavailable);
  CAF_CHECK(res.error().message.find("fenced") != std::string::npos);
  CAF_CHECK(at_registry.empty());
}

CAF_TEST(a node that owns no segment forwards creates to one that does) {
  auto t = table();
  t.segments[101].local = false;
  set_routes(t);
  auto res = ccall<envelope>(create_atom::value, good_create());
  CAF_REQUIRE(res.ok());
  CAF_CHECK_EQUAL(res.value().id, other_id);
  CAF_CHECK_EQUAL(remote_creates, 1);
  CAF_CHECK_EQUAL(ids_given, 0);
  CAF_CHECK(db->envelopes.empty());
  // Owning a segment again, it creates here.
  set_routes(table());
  res = ccall<envelope>(create_atom::value, good_create());
  CAF_REQUIRE(res.ok());
  CAF_CHECK_EQUAL(ids_given, 1);
}

CAF_TEST(stats carry the view of the cluster from the membership) {
  set_routes(table());
  auto res = ccall<node_stats>(stats_atom::value);
  CAF_REQUIRE(res.ok());
  CAF_CHECK(res.value().cluster.enabled);
  CAF_CHECK_EQUAL(res.value().cluster.set, "set-1");
}

CAF_TEST(requests for a segment moving away wait and then go where it went) {
  auto t = table();
  t.segments[101].moving = true;
  set_routes(t);
  auto h1 = self->request(crouter, caf::infinite, open_atom::value, first_id,
                          std::string{"u1"}, int64_t{0});
  auto h2 = self->request(crouter, caf::infinite, open_atom::value, first_id,
                          std::string{"u2"}, int64_t{0});
  run();
  // Held: neither the registry nor the peer saw them, nobody answered.
  CAF_CHECK(at_registry.empty());
  CAF_CHECK_EQUAL(remote_opens, 0);
  CAF_CHECK(self->mailbox().empty());
  auto stats = ccall<node_stats>(stats_atom::value);
  CAF_REQUIRE(stats.ok());
  bool counted = false;
  for (auto& m : stats.value().metrics)
    if (m.name == "cluster.held_requests") {
      CAF_CHECK_EQUAL(m.value, 2);
      counted = true;
    }
  CAF_CHECK(counted);
  // The move ends: segment 101 now belongs to n2, and both go there in order.
  t = table();
  t.segments[101] = segment_route{"n2", 4, false, remote_router, "127.0.0.1:7702"};
  set_routes(t);
  auto r1 = take<open_result>(h1);
  auto r2 = take<open_result>(h2);
  CAF_REQUIRE(r1.ok());
  CAF_REQUIRE(r2.ok());
  CAF_CHECK_EQUAL(r1.value().amount_fen, 99);
  CAF_CHECK_EQUAL(remote_opens, 2);
  CAF_CHECK(at_registry.empty());
}

CAF_TEST(a move that ends here again sends the held requests to the registry) {
  auto t = table();
  t.segments[101].moving = true;
  set_routes(t);
  auto h = self->request(crouter, caf::infinite, open_atom::value, first_id,
                         std::string{"u1"}, int64_t{0});
  run();
  CAF_CHECK(at_registry.empty());
  set_routes(table());  // the compare-and-set lost: still local
  auto r = take<open_result>(h);
  CAF_REQUIRE(r.ok());
  CAF_CHECK_EQUAL(r.value().amount_fen, 25);
  CAF_CHECK_EQUAL(at_registry.size(), 1u);
}

CAF_TEST(a request held past its time is answered unavailable) {
  auto t = table();
  t.segments[101].moving = true;
  set_routes(t);
  auto h = self->request(crouter, caf::infinite, open_atom::value, first_id,
                         std::string{"u1"}, int64_t{0});
  run();
  // Timers fire (hold_ms passes on the test clock), the move never ends.
  for (int i = 0; i < 60 && self->mailbox().empty(); ++i) {
    sched.clock().advance_time(std::chrono::milliseconds(100));
    run();
  }
  auto r = take<open_result>(h);
  CAF_REQUIRE(!r.ok());
  CAF_CHECK_EQUAL(r.error().code, errc::unavailable);
  CAF_CHECK(at_registry.empty());
}

CAF_TEST(drain and rebalance need a cluster) {
  control_request req;
  req.action = control_action::drain;
  req.node = "n2";
  auto alone = call<control_result>(drain_atom::value, req);
  CAF_REQUIRE(!alone.ok());
  CAF_CHECK_EQUAL(alone.error().code, errc::invalid_argument);
}

CAF_TEST_FIXTURE_SCOPE_END()

#define CAF_SUITE node.node

// start_node boots the one node that hongbao-node and hongbao-sim share. Here
// it runs on CAF's test coordinator with a fake environment: the fake store
// stands for both stores (as the simulation's stores do), the fixture's
// clock and a fixed seed. The tests check what the environment decides --
// how the stores are made and whether they outlive the node, the health
// hook, the gateway -- and that the node starts its children in order,
// shares their handles and stops them all.

#include "tests/support/actor_fixture.hpp"

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "node/node.hpp"

using namespace hb;
using namespace hb::test;

namespace {

using strings = std::vector<std::string>;

// The children of a node without a gateway, in start order.
const strings children_in_order{
  "background_store", "segment_health", "store", "commit_batcher",
  "activation_batcher", "pay_batcher", "create_batcher", "id_allocator",
  "registry", "relay", "reconciler", "partition_keeper", "router",
  "expiry_sweeper"};

struct node_fixture : actor_fixture {
  node_config cfg;
  std::vector<store_role> roles;             // stores made, in order
  std::vector<store_settings> store_settings_seen;
  std::vector<segment_health_actor> healths;  // health hook calls
  std::vector<caf::actor_addr> downs;         // of watched actors, in order
  caf::actor watcher;
  std::vector<supervisor_actor> supervisors;  // of every node booted

  node_fixture() {
    cfg.database.store.database_url = "fake";
    cfg.database.store.pool_size = 6;
    cfg.database.background_pool_size = 1;
    cfg.ids.segments = {3, 5};
    cfg.ids.lease_block = 4;
    cfg.node.name = "test-node";
    watcher = sys.spawn([this](caf::event_based_actor* self) -> caf::behavior {
      self->set_down_handler(
        [this](caf::down_msg& msg) { downs.push_back(msg.source); });
      return {
        [self](caf::actor& whom) { self->monitor(whom); },
      };
    });
    run();
  }

  ~node_fixture() override {
    // Stop the node while only messages run: the base fixture's teardown
    // fires every timer, and the periodic ones of a running node (relay,
    // sweeper, reconciler) would re-arm forever.
    for (auto& sup : supervisors)
      anon_send(sup, stop_atom::value);
    run();
    anon_send_exit(watcher, caf::exit_reason::user_shutdown);
    run();
  }

  node_env environment(bool stores_outlive_node) {
    node_env env;
    env.make_store = [this](caf::actor_system&, store_role role,
                            const store_settings& sc)
      -> caf::expected<store_actor> {
      roles.push_back(role);
      store_settings_seen.push_back(sc);
      return store;
    };
    env.stores_outlive_node = stores_outlive_node;
    env.now_ms = [this] { return now; };
    env.envelope_seed = 7;
    env.health_started = [this](const segment_health_actor& h) {
      healths.push_back(h);
    };
    env.gateway = false;
    return env;
  }

  node_handle boot(bool stores_outlive_node) {
    auto node = start_node(sys, cfg, environment(stores_outlive_node));
    CAF_REQUIRE(node);
    supervisors.push_back(node->supervisor);
    run();
    return *node;
  }

  // The supervisor's current handle of a child.
  caf::actor child(const node_handle& node, const std::string& name) {
    auto h = self->request(node.supervisor, caf::infinite, get_atom::value,
                           name);
    run();
    caf::actor out;
    h.receive([&](caf::actor& a) { out = std::move(a); },
              [&](caf::error& err) {
                CAF_FAIL("no child " << name << ": " << sys.render(err));
              });
    return out;
  }

  void watch(const caf::actor& whom) {
    self->send(watcher, whom);
    run();
  }

  bool down(const caf::actor& whom) {
    return std::find(downs.begin(), downs.end(), whom.address()) != downs.end();
  }
};

template <class Handle>
caf::actor as_actor(const Handle& h) {
  return caf::actor_cast<caf::actor>(h);
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(node_tests, node_fixture)

CAF_TEST(the environment makes both stores from the node config) {
  auto node = boot(true);
  // The background store first (segment health needs it), then the hot one.
  CAF_REQUIRE_EQUAL(roles.size(), 2u);
  CAF_CHECK(roles[0] == store_role::background);
  CAF_CHECK(roles[1] == store_role::hot);
  auto& background = store_settings_seen[0];
  auto& hot = store_settings_seen[1];
  CAF_CHECK_EQUAL(background.database_url, "fake");
  CAF_CHECK_EQUAL(background.pool_size, 1u);
  CAF_CHECK(!background.health);
  CAF_CHECK_EQUAL(hot.pool_size, 6u);
  // The hot store reports segment results to the node's segment health and
  // counts into the node's metrics.
  CAF_CHECK(hot.health == caf::actor_cast<segment_report_sink>(node.ctx->health));
  CAF_CHECK(hot.metrics == node.ctx->metrics);
  CAF_CHECK(node.ctx->store == store);
  CAF_CHECK(node.ctx->background == store);
}

CAF_TEST(every child starts and the context holds its current handle) {
  auto node = boot(true);
  auto& ctx = *node.ctx;
  std::map<std::string, caf::actor> expected{
    {"segment_health", as_actor(ctx.health)},
    {"commit_batcher", as_actor(ctx.committer)},
    {"activation_batcher", as_actor(ctx.activator)},
    {"pay_batcher", as_actor(ctx.payer)},
    {"create_batcher", as_actor(ctx.creator)},
    {"id_allocator", as_actor(ctx.ids)},
    {"registry", as_actor(ctx.registry)},
    {"relay", as_actor(ctx.relay)},
    {"reconciler", as_actor(ctx.reconciler)},
    {"partition_keeper", as_actor(ctx.keeper)},
    {"router", as_actor(ctx.router)},
    {"expiry_sweeper", as_actor(ctx.sweeper)},
  };
  for (auto& kv : expected) {
    CAF_CHECK(kv.second != nullptr);
    CAF_CHECK_EQUAL(child(node, kv.first), kv.second);
  }
  // The health hook saw the segment health the node runs.
  CAF_REQUIRE_EQUAL(healths.size(), 1u);
  CAF_CHECK(healths[0] == ctx.health);
  // No gateway in this environment.
  CAF_CHECK(!ctx.gateway.acceptor);
}

CAF_TEST(the children start in a fixed order and a gateway only if asked) {
  auto env = std::make_shared<node_env>(environment(true));
  auto names = [&] {
    strings out;
    for (auto& spec : node_children(sys, cfg, env, std::make_shared<node_context>()))
      out.push_back(spec.name);
    return out;
  };
  CAF_CHECK_EQUAL(names(), children_in_order);
  env->gateway = true;
  auto with_gateway = children_in_order;
  with_gateway.push_back("gateway");
  CAF_CHECK_EQUAL(names(), with_gateway);
}

CAF_TEST(a restarted segment health is handed to the health hook again) {
  auto node = boot(true);
  auto first = node.ctx->health;
  anon_send_exit(first, caf::exit_reason::kill);
  run();
  CAF_REQUIRE_EQUAL(healths.size(), 2u);
  CAF_CHECK(healths[1] == node.ctx->health);
  CAF_CHECK(healths[1] != first);
}

CAF_TEST(stopping the node stops every child but stores that outlive it) {
  auto node = boot(true);
  std::vector<caf::actor> kids;
  for (auto& name : children_in_order)
    if (name != "store" && name != "background_store")
      kids.push_back(child(node, name));
  for (auto& k : kids)
    watch(k);
  watch(as_actor(node.supervisor));
  watch(as_actor(store));
  anon_send(node.supervisor, stop_atom::value);
  run();
  for (auto& k : kids)
    CAF_CHECK(down(k));
  CAF_CHECK(down(as_actor(node.supervisor)));
  // The stores stand for the database: the node's stop leaves them running.
  CAF_CHECK(!down(as_actor(store)));
}

CAF_TEST(stores that belong to the node stop with it) {
  auto node = boot(false);
  watch(as_actor(node.supervisor));
  watch(as_actor(store));
  anon_send(node.supervisor, stop_atom::value);
  run();
  CAF_CHECK(down(as_actor(node.supervisor)));
  CAF_CHECK(down(as_actor(store)));
}

CAF_TEST_FIXTURE_SCOPE_END()

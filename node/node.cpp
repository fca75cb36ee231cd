#include "node/node.hpp"

#include <algorithm>

#include "caf/all.hpp"
#include "caf/io/all.hpp"

namespace hb {

namespace {

template <class Handle>
caf::expected<caf::actor> started(Handle& slot, Handle handle) {
  slot = std::move(handle);
  return caf::actor_cast<caf::actor>(slot);
}

template <class Handle>
caf::expected<caf::actor> started(Handle& slot, caf::expected<Handle> handle) {
  if (!handle)
    return std::move(handle.error());
  return started(slot, std::move(*handle));
}

// An actor's settings: its service's config struct, to which the caller
// adds the runtime handles.
template <class Settings, class Config>
Settings settings_of(const Config& cfg) {
  Settings out;
  static_cast<Config&>(out) = cfg;
  return out;
}

void stop_with(const caf::actor& whom) {
  caf::anon_send(whom, stop_atom::value);
}

// Stores that stand for the database outlive the node: never stopped.
void keep_running(const caf::actor&) {
}

// Transactions at once of each batcher besides the commit batcher: never
// more than half of the connections, so that commits always find some.
batcher_config batches_of(const database_config& db) {
  auto out = db.batches;
  out.inflight_max = std::max<uint32_t>(
    1, std::min<uint32_t>(db.batches.inflight_max, db.store.pool_size / 2));
  return out;
}

void add_gateway(std::vector<child_spec>& out, caf::actor_system* sysp,
                 const node_config& cfg, std::shared_ptr<node_context> ctx);
void add_operator_side(std::vector<child_spec>& out, caf::actor_system* sysp,
                       const node_config& cfg,
                       std::shared_ptr<const node_env> env,
                       std::shared_ptr<node_context> ctx);

} // namespace

node_env production_env() {
  node_env env;
  env.make_store = [](caf::actor_system& sys, store_role,
                      const store_settings& sc) -> caf::expected<store_actor> {
    return spawn_pg_store(sys, sc);
  };
  env.peers.publish = [](const caf::actor& whom, const std::string& host,
                         uint16_t port) -> caf::expected<uint16_t> {
    return whom.home_system().middleman().publish(whom, port, host.c_str(),
                                                  true);
  };
  return env;
}

std::vector<child_spec> node_children(caf::actor_system& sys,
                                      const node_config& cfg,
                                      std::shared_ptr<const node_env> env,
                                      std::shared_ptr<node_context> ctx) {
  auto* sysp = &sys;
  using stop_fn = std::function<void(const caf::actor&)>;
  auto store_stop = env->stores_outlive_node ? stop_fn{keep_running}
                                             : stop_fn{};
  std::vector<child_spec> out;

  out.push_back({"background_store", [=] {
    // Background work gets its own connections so that a long relay batch
    // or reconciliation never holds up an open.
    auto sc = settings_of<store_settings>(cfg.database.store);
    sc.pool_size = cfg.database.background_pool_size;
    sc.call_timeout_ms = cfg.database.background_call_timeout_ms;
    sc.statement_timeout_ms = cfg.database.background_statement_timeout_ms;
    return started(ctx->background,
                   env->make_store(*sysp, store_role::background, sc));
  }, store_stop, {}});

  out.push_back({"segment_health", [=] {
    auto hc = settings_of<segment_health_settings>(cfg.segments);
    hc.now_ms = env->now_ms;
    auto res = started(ctx->health,
                       spawn_segment_health(*sysp, ctx->background, hc));
    if (env->health_started)
      env->health_started(ctx->health);
    return res;
  }, nullptr, {"background_store"}});

  out.push_back({"store", [=] {
    auto sc = settings_of<store_settings>(cfg.database.store);
    sc.health = caf::actor_cast<segment_report_sink>(ctx->health);
    sc.metrics = ctx->metrics;
    sc.identity = ctx->identity;
    return started(ctx->store, env->make_store(*sysp, store_role::hot, sc));
  }, store_stop, {"segment_health"}});

  out.push_back({"commit_batcher", [=] {
    auto bc = settings_of<commit_batcher_settings>(cfg.database.commits);
    // Few transactions, each carrying the batches of many envelopes: on a
    // small machine 16 concurrent commits only compete for the cores.
    bc.inflight_max = std::min(bc.inflight_max, cfg.database.store.pool_size);
    bc.metrics = ctx->metrics;
    return started(ctx->committer,
                   spawn_commit_batcher(*sysp, ctx->store, bc));
  }, nullptr, {"store"}});

  // A burst of activations (after a restart or a failover), payments or
  // creates goes out as a few transactions of many envelopes, leaving
  // connections to commits.
  out.push_back({"activation_batcher", [=] {
    auto ac = settings_of<activation_batcher_settings>(batches_of(cfg.database));
    return started(ctx->activator,
                   spawn_activation_batcher(*sysp, ctx->store, ac));
  }, nullptr, {"store"}});

  out.push_back({"pay_batcher", [=] {
    auto pc = settings_of<pay_batcher_settings>(batches_of(cfg.database));
    return started(ctx->payer, spawn_pay_batcher(*sysp, ctx->store, pc));
  }, nullptr, {"store"}});

  out.push_back({"create_batcher", [=] {
    auto cc = settings_of<create_batcher_settings>(batches_of(cfg.database));
    return started(ctx->creator, spawn_create_batcher(*sysp, ctx->store, cc));
  }, nullptr, {"store"}});

  out.push_back({"id_allocator", [=] {
    auto ic = settings_of<id_allocator_settings>(cfg.ids);
    ic.now_ms = env->now_ms;
    auto res = started(ctx->ids, spawn_id_allocator(*sysp, ctx->store, ic));
    caf::anon_send(ctx->health, subscribe_atom::value,
                   caf::actor_cast<blocked_sink>(ctx->ids));
    return res;
  }, nullptr, {"store", "segment_health"}});

  out.push_back({"registry", [=] {
    auto rc = settings_of<registry_settings>(cfg.registry);
    rc.envelope = settings_of<envelope_settings>(cfg.envelope);
    rc.envelope.share_max_fen = cfg.limits.share_max_fen;
    rc.envelope.expiry_ms = cfg.limits.expiry_ms;
    rc.envelope.now_ms = env->now_ms;
    rc.envelope.rng_seed = env->envelope_seed;
    rc.envelope.metrics = ctx->metrics;
    rc.envelope.committer = ctx->committer;
    rc.envelope.activator = ctx->activator;
    rc.envelope.payer = ctx->payer;
    return started(ctx->registry, spawn_registry(*sysp, ctx->store, rc));
  }, stop_with,
     {"store", "commit_batcher", "activation_batcher", "pay_batcher"}});

  if (cfg.cluster.enabled) {
    // The lease has a connection of its own: a renewal never waits behind
    // opens or background work.
    out.push_back({"membership_store", [=] {
      auto sc = settings_of<store_settings>(cfg.database.store);
      sc.pool_size = 1;
      return started(ctx->members_store,
                     env->make_store(*sysp, store_role::membership, sc));
    }, store_stop, {}});

    out.push_back({"membership", [=]() -> caf::expected<caf::actor> {
      auto mc = settings_of<membership_settings>(cfg.cluster);
      mc.node = cfg.node.name;
      mc.zone = cfg.node.zone;
      if (cfg.gateway.port != 0)
        mc.gateway = cfg.gateway.host + ":" + std::to_string(cfg.gateway.port);
      mc.identity = ctx->identity;
      mc.registry = ctx->registry;
      mc.ids = ctx->ids;
      mc.health = caf::actor_cast<segment_sync_sink>(ctx->health);
      mc.metrics = ctx->metrics;
      auto m = spawn_membership(*sysp, ctx->members_store, mc);
      if (env->peers.publish) {
        auto port = env->peers.publish(caf::actor_cast<caf::actor>(m),
                                       cfg.cluster.peer_host,
                                       cfg.cluster.peer_port);
        if (!port) {
          caf::anon_send_exit(m, caf::exit_reason::user_shutdown);
          return std::move(port.error());
        }
      }
      return started(ctx->membership, std::move(m));
    }, nullptr, {"membership_store", "registry", "id_allocator",
                 "segment_health"}});
  }

  out.push_back({"relay", [=] {
    auto rc = settings_of<relay_settings>(cfg.relay);
    rc.metrics = ctx->metrics;
    return started(ctx->relay, spawn_relay(*sysp, ctx->background, rc));
  }, nullptr, {"background_store"}});

  out.push_back({"reconciler", [=] {
    auto rc = settings_of<reconciler_settings>(cfg.reconcile);
    rc.now_ms = env->now_ms;
    return started(ctx->reconciler,
                   spawn_reconciler(*sysp, ctx->background, rc));
  }, nullptr, {"background_store"}});

  out.push_back({"partition_keeper", [=] {
    auto pc = settings_of<partition_keeper_settings>(cfg.partitions);
    pc.now_ms = env->now_ms;
    return started(ctx->keeper,
                   spawn_partition_keeper(*sysp, ctx->background, pc));
  }, nullptr, {"background_store"}});

  out.push_back({"router", [=] {
    auto rc = settings_of<router_settings>(cfg.router);
    rc.limits = cfg.limits;
    rc.node_name = cfg.node.name;
    rc.metrics = ctx->metrics;
    rc.relay = ctx->relay;
    rc.health = caf::actor_cast<segment_admin>(ctx->health);
    rc.now_ms = env->now_ms;
    rc.creator = ctx->creator;
    if (cfg.cluster.enabled) {
      rc.membership = ctx->membership;
      rc.forward_timeout_ms = cfg.cluster.forward_timeout_ms;
      rc.forward_inflight_max = cfg.cluster.forward_inflight_max;
    }
    auto res = started(ctx->router,
                       spawn_router(*sysp, ctx->registry, ctx->ids, ctx->store,
                                    ctx->reconciler, rc));
    caf::anon_send(ctx->health, subscribe_atom::value,
                   caf::actor_cast<blocked_sink>(ctx->router));
    if (ctx->membership)
      caf::anon_send(ctx->membership, subscribe_atom::value,
                     caf::actor_cast<caf::actor>(ctx->router));
    return res;
  }, nullptr, cfg.cluster.enabled
                ? std::vector<std::string>{"registry", "id_allocator", "store",
                                           "reconciler", "segment_health",
                                           "relay", "create_batcher",
                                           "membership"}
                : std::vector<std::string>{"registry", "id_allocator", "store",
                                           "reconciler", "segment_health",
                                           "relay", "create_batcher"}});

  out.push_back({"expiry_sweeper", [=] {
    auto sc = settings_of<expiry_sweeper_settings>(cfg.expiry);
    sc.now_ms = env->now_ms;
    sc.metrics = ctx->metrics;
    return started(ctx->sweeper,
                   spawn_expiry_sweeper(
                     *sysp, ctx->background,
                     caf::actor_cast<envelope_requests>(ctx->router), sc));
  }, nullptr, {"background_store", "router"}});

  if (!env->gateway)
    return out;
  add_gateway(out, sysp, cfg, ctx);
  add_operator_side(out, sysp, cfg, env, ctx);
  return out;
}

namespace {

void add_gateway(std::vector<child_spec>& out, caf::actor_system* sysp,
                 const node_config& cfg, std::shared_ptr<node_context> ctx) {
  out.push_back({"gateway", [=]() -> caf::expected<caf::actor> {
    auto gc = settings_of<gateway_settings>(cfg.gateway);
    // A restarted gateway listens on the port it had, also when the file
    // asked for any free port.
    if (ctx->gateway.port != 0)
      gc.port = ctx->gateway.port;
    gc.node_name = cfg.node.name;
    gc.text_size_max = cfg.limits.text_size_max;
    gc.metrics = ctx->metrics;
    auto gw = spawn_gateway(*sysp, ctx->router, gc);
    if (!gw)
      return std::move(gw.error());
    ctx->gateway = std::move(*gw);
    return ctx->gateway.acceptor;
  }, stop_with, {"router"}});
}

// The operator side starts last and stops first: the admin actor on its
// own port (docs/operations.md, "The console") and GET /metrics.
void add_operator_side(std::vector<child_spec>& out, caf::actor_system* sysp,
                       const node_config& cfg,
                       std::shared_ptr<const node_env> env,
                       std::shared_ptr<node_context> ctx) {
  if (cfg.admin.port != 0) {
    std::vector<std::string> deps{"router", "segment_health", "reconciler",
                                  "background_store"};
    if (cfg.cluster.enabled)
      deps.push_back("membership");
    out.push_back({"admin", [=]() -> caf::expected<caf::actor> {
      auto ac = settings_of<admin_settings>(cfg.admin);
      ac.node_name = cfg.node.name;
      ac.zone = cfg.node.zone;
      ac.cluster = cfg.cluster;
      ac.segments = cfg.ids.segments;
      ac.router = ctx->router;
      ac.health = caf::actor_cast<segment_admin>(ctx->health);
      ac.reconciler = ctx->reconciler;
      ac.store = ctx->background;
      ac.membership = ctx->membership;
      ac.now_ms = env->now_ms;
      auto admin = spawn_admin(*sysp, ac);
      if (!admin)
        return std::move(admin.error());
      auto handle = caf::actor_cast<caf::actor>(*admin);
      if (env->peers.publish) {
        // A restarted admin takes the port of the one before.
        if (ctx->admin && ctx->admin_port != 0)
          sysp->middleman().unpublish(caf::actor_cast<caf::actor>(ctx->admin),
                                      ctx->admin_port);
        auto port = env->peers.publish(handle, cfg.admin.host, cfg.admin.port);
        if (!port) {
          caf::anon_send_exit(handle, caf::exit_reason::user_shutdown);
          return std::move(port.error());
        }
        ctx->admin_port = *port;
      }
      return started(ctx->admin, std::move(*admin));
    }, nullptr, deps});
  }
  if (cfg.admin.metrics_port != 0) {
    out.push_back({"metrics_http", [=]() -> caf::expected<caf::actor> {
      metrics_http_settings mc;
      mc.host = cfg.admin.host;
      mc.port = cfg.admin.metrics_port;
      mc.zone = cfg.node.zone;
      mc.router = ctx->router;
      mc.metrics = ctx->metrics;
      auto h = spawn_metrics_http(*sysp, mc);
      if (!h)
        return std::move(h.error());
      ctx->metrics_http = *h;
      return h->broker;
    }, stop_with, {"router"}});
  }
}

} // namespace

caf::expected<node_handle> start_node(caf::actor_system& sys,
                                      const node_config& cfg, node_env env) {
  node_handle node;
  node.ctx = std::make_shared<node_context>();
  if (cfg.cluster.enabled) {
    node.ctx->identity = std::make_shared<node_identity>();
    node.ctx->identity->node = cfg.node.name;
  }
  auto shared_env = std::make_shared<const node_env>(std::move(env));
  auto sc = settings_of<supervisor_settings>(cfg.supervisor);
  auto sup = spawn_supervisor(sys, node_children(sys, cfg, shared_env, node.ctx),
                              sc);
  if (!sup)
    return std::move(sup.error());
  node.supervisor = std::move(*sup);
  return node;
}

} // namespace hb

#include "node/wiring.hpp"

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

void stop_with(const caf::actor& whom) {
  caf::anon_send(whom, stop_atom::value);
}

// Transactions at once of each batcher besides the commit batcher: never
// more than half of the connections, so that commits always find some.
uint32_t batches_in_flight(const node_config& cfg) {
  return std::max<uint32_t>(
    1, std::min<uint32_t>(cfg.batches_in_flight, cfg.store_pool_size / 2));
}

} // namespace

std::vector<child_spec> node_children(caf::actor_system& sys,
                                      const node_config& cfg,
                                      std::shared_ptr<node_context> ctx) {
  auto* sysp = &sys;
  std::vector<child_spec> out;

  out.push_back({"background_store", [=] {
    // Background work gets its own connections so that a long relay batch
    // or reconciliation never holds up an open.
    store_settings sc;
    sc.database_url = cfg.database_url;
    sc.pool_size = 2;
    return started(ctx->background, spawn_pg_store(*sysp, sc));
  }, nullptr, {}});

  out.push_back({"segment_health", [=] {
    segment_health_settings hc;
    hc.window_ms = cfg.segment_window_ms;
    hc.fault_threshold = cfg.segment_fault_threshold;
    hc.probe_interval_ms = cfg.segment_probe_interval_ms;
    return started(ctx->health,
                   spawn_segment_health(*sysp, ctx->background, hc));
  }, nullptr, {"background_store"}});

  out.push_back({"store", [=] {
    store_settings sc;
    sc.database_url = cfg.database_url;
    sc.pool_size = cfg.store_pool_size;
    sc.health = caf::actor_cast<segment_report_sink>(ctx->health);
    sc.metrics = ctx->metrics;
    return started(ctx->store, spawn_pg_store(*sysp, sc));
  }, nullptr, {"segment_health"}});

  out.push_back({"commit_batcher", [=] {
    commit_batcher_settings bc;
    // Few transactions, each carrying the batches of many envelopes: on a
    // small machine 16 concurrent commits only compete for the cores.
    bc.inflight_max = std::min(cfg.commits_in_flight, cfg.store_pool_size);
    bc.metrics = ctx->metrics;
    return started(ctx->committer,
                   spawn_commit_batcher(*sysp, ctx->store, bc));
  }, nullptr, {"store"}});

  out.push_back({"activation_batcher", [=] {
    activation_batcher_settings ac;
    // A burst of activations (after a restart or a failover) goes out as a
    // few transactions of many envelopes, leaving connections to commits.
    ac.inflight_max = batches_in_flight(cfg);
    ac.batch_max = cfg.batch_max;
    return started(ctx->activator,
                   spawn_activation_batcher(*sysp, ctx->store, ac));
  }, nullptr, {"store"}});

  out.push_back({"pay_batcher", [=] {
    pay_batcher_settings pc;
    // A burst of payments goes out as a few transactions of many, each
    // moving the external account and every escrow row once.
    pc.inflight_max = batches_in_flight(cfg);
    pc.batch_max = cfg.batch_max;
    return started(ctx->payer, spawn_pay_batcher(*sysp, ctx->store, pc));
  }, nullptr, {"store"}});

  out.push_back({"create_batcher", [=] {
    create_batcher_settings cc;
    // A burst of creates goes out as a few transactions of many.
    cc.inflight_max = batches_in_flight(cfg);
    cc.batch_max = cfg.batch_max;
    return started(ctx->creator, spawn_create_batcher(*sysp, ctx->store, cc));
  }, nullptr, {"store"}});

  out.push_back({"id_allocator", [=] {
    id_allocator_settings ic;
    ic.segments = cfg.segments;
    ic.lease_block = cfg.id_lease_block;
    auto res = started(ctx->ids, spawn_id_allocator(*sysp, ctx->store, ic));
    caf::anon_send(ctx->health, subscribe_atom::value,
                   caf::actor_cast<blocked_sink>(ctx->ids));
    return res;
  }, nullptr, {"store", "segment_health"}});

  out.push_back({"registry", [=] {
    registry_settings rc;
    rc.live_max = cfg.live_envelopes_max;
    rc.keep_live = cfg.envelope_keep_live;
    rc.cap_quiet_ms = cfg.envelope_cap_quiet_ms;
    rc.cap_check_ms = cfg.envelope_cap_check_ms;
    rc.envelope.share_max_fen = cfg.limits.share_max_fen;
    rc.envelope.expiry_ms = cfg.limits.expiry_ms;
    rc.envelope.queue_max = cfg.envelope_queue_max;
    rc.envelope.batch_max = cfg.envelope_batch_max;
    rc.envelope.idle_ms = cfg.envelope_idle_ms;
    rc.envelope.metrics = ctx->metrics;
    rc.envelope.committer = ctx->committer;
    rc.envelope.activator = ctx->activator;
    rc.envelope.payer = ctx->payer;
    return started(ctx->registry, spawn_registry(*sysp, ctx->store, rc));
  }, stop_with,
     {"store", "commit_batcher", "activation_batcher", "pay_batcher"}});

  out.push_back({"relay", [=] {
    relay_settings rc;
    rc.batch_max = cfg.relay_batch_max;
    rc.poll_ms = cfg.relay_poll_ms;
    rc.yield_ms = cfg.relay_yield_ms;
    rc.defer_max_ms = cfg.relay_defer_max_ms;
    rc.metrics = ctx->metrics;
    return started(ctx->relay, spawn_relay(*sysp, ctx->background, rc));
  }, nullptr, {"background_store"}});

  out.push_back({"reconciler", [=] {
    reconciler_settings rc;
    rc.interval_s = cfg.reconcile_interval_s;
    rc.window_s = cfg.reconcile_window_s;
    return started(ctx->reconciler,
                   spawn_reconciler(*sysp, ctx->background, rc));
  }, nullptr, {"background_store"}});

  out.push_back({"partition_keeper", [=] {
    partition_keeper_settings pc;
    pc.interval_s = cfg.partitions_interval_s;
    pc.ahead_days = cfg.partitions_ahead_days;
    pc.hot_days = cfg.hot_days;
    return started(ctx->keeper,
                   spawn_partition_keeper(*sysp, ctx->background, pc));
  }, nullptr, {"background_store"}});

  out.push_back({"router", [=] {
    router_settings rc;
    rc.limits = cfg.limits;
    rc.node_name = cfg.node_name;
    rc.metrics = ctx->metrics;
    rc.relay = ctx->relay;
    rc.health = caf::actor_cast<segment_admin>(ctx->health);
    rc.creator = ctx->creator;
    auto res = started(ctx->router,
                       spawn_router(*sysp, ctx->registry, ctx->ids, ctx->store,
                                    ctx->reconciler, rc));
    caf::anon_send(ctx->health, subscribe_atom::value,
                   caf::actor_cast<blocked_sink>(ctx->router));
    return res;
  }, nullptr, {"registry", "id_allocator", "store", "reconciler",
               "segment_health", "relay", "create_batcher"}});

  out.push_back({"expiry_sweeper", [=] {
    expiry_sweeper_settings sc;
    sc.interval_ms = cfg.sweep_interval_ms;
    sc.batch_max = cfg.sweep_batch_max;
    return started(ctx->sweeper,
                   spawn_expiry_sweeper(
                     *sysp, ctx->background,
                     caf::actor_cast<envelope_requests>(ctx->router), sc));
  }, nullptr, {"background_store", "router"}});

  out.push_back({"gateway", [=]() -> caf::expected<caf::actor> {
    gateway_settings gc;
    gc.host = cfg.listen_host;
    gc.port = ctx->gateway.port != 0 ? ctx->gateway.port : cfg.listen_port;
    gc.auth_token = cfg.auth_token;
    gc.node_name = cfg.node_name;
    gc.frame_size_max = cfg.frame_size_max;
    gc.text_size_max = cfg.limits.text_size_max;
    gc.connection_inflight_max = cfg.connection_inflight_max;
    gc.node_inflight_max = cfg.node_inflight_max;
    gc.metrics = ctx->metrics;
    auto gw = spawn_gateway(*sysp, ctx->router, gc);
    if (!gw)
      return std::move(gw.error());
    ctx->gateway = std::move(*gw);
    return ctx->gateway.acceptor;
  }, stop_with, {"router"}});

  return out;
}

} // namespace hb

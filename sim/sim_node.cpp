#include "sim/sim_node.hpp"

#include "caf/all.hpp"

namespace hb::sim {

// Small limits everywhere, so that a short run reaches them: leases run
// out, queues fill, batches split, actors passivate and come back.
namespace {

constexpr int64_t share_max_fen = 20000;
constexpr int32_t count_max = 30;

template <class Handle>
caf::expected<caf::actor> started(Handle& slot, Handle handle) {
  slot = std::move(handle);
  return caf::actor_cast<caf::actor>(slot);
}

void stop_with(const caf::actor& whom) {
  caf::anon_send(whom, stop_atom::value);
}

// The stores stand for the database: a supervisor never stops them.
void keep_running(const caf::actor&) {
}

} // namespace

const std::vector<int32_t>& node_segments() {
  static const std::vector<int32_t> segments{17, 242, 901};
  return segments;
}

sim_node::sim_node(caf::actor_system& sys, world& w, store_actor store,
                   store_actor background)
  : sys_(sys),
    w_(w),
    store_(std::move(store)),
    background_(std::move(background)) {
  w_.segment_report = [this](int32_t segment, bool fault) {
    if (up() && ctx_->health)
      caf::anon_send(ctx_->health, seg_report_atom::value, segment, fault);
  };
}

envelope_limits sim_node::limits() const {
  envelope_limits lim;
  lim.share_max_fen = share_max_fen;
  lim.count_max = count_max;
  lim.expiry_ms = w_.opt.expiry_ms;
  return lim;
}

// The children of node/wiring.cpp, in the same order and with the same
// dependencies, with the simulation's clock and seeds and small limits.
std::vector<child_spec> sim_node::children() {
  auto* sysp = &sys_;
  auto* w = &w_;
  auto ctx = ctx_;
  auto store = store_;
  auto background = background_;
  auto now = [w] { return w->now_ms(); };
  auto envelope_seed = w_.next() | 1;
  std::vector<child_spec> out;

  out.push_back({"background_store",
                 [=]() -> caf::expected<caf::actor> {
                   return caf::actor_cast<caf::actor>(background);
                 },
                 keep_running, {}});

  out.push_back({"segment_health", [=] {
    segment_health_settings hc;
    hc.window_ms = 10000;
    hc.fault_threshold = 5;
    hc.probe_interval_ms = 1000;
    hc.now_ms = now;
    return started(ctx->health, spawn_segment_health(*sysp, background, hc));
  }, nullptr, {"background_store"}});

  out.push_back({"store",
                 [=]() -> caf::expected<caf::actor> {
                   return caf::actor_cast<caf::actor>(store);
                 },
                 keep_running, {"segment_health"}});

  out.push_back({"commit_batcher", [=] {
    commit_batcher_settings bc;
    bc.inflight_max = 2;
    bc.batch_max = 4;
    bc.metrics = ctx->metrics;
    return started(ctx->committer, spawn_commit_batcher(*sysp, store, bc));
  }, nullptr, {"store"}});

  out.push_back({"activation_batcher", [=] {
    activation_batcher_settings ac;
    ac.inflight_max = 1;
    ac.batch_max = 4;
    return started(ctx->activator, spawn_activation_batcher(*sysp, store, ac));
  }, nullptr, {"store"}});

  out.push_back({"pay_batcher", [=] {
    pay_batcher_settings pc;
    pc.inflight_max = 1;
    pc.batch_max = 4;
    return started(ctx->payer, spawn_pay_batcher(*sysp, store, pc));
  }, nullptr, {"store"}});

  out.push_back({"create_batcher", [=] {
    create_batcher_settings cc;
    cc.inflight_max = 1;
    cc.batch_max = 4;
    return started(ctx->creator, spawn_create_batcher(*sysp, store, cc));
  }, nullptr, {"store"}});

  out.push_back({"id_allocator", [=] {
    id_allocator_settings ic;
    ic.segments = node_segments();
    ic.lease_block = 4;
    ic.waiting_max = 50;
    ic.now_ms = now;
    auto res = started(ctx->ids, spawn_id_allocator(*sysp, store, ic));
    caf::anon_send(ctx->health, subscribe_atom::value,
                   caf::actor_cast<blocked_sink>(ctx->ids));
    return res;
  }, nullptr, {"store", "segment_health"}});

  out.push_back({"registry", [=] {
    registry_settings rc;
    rc.live_max = 6;
    rc.keep_live = 3;  // as the node: half of live_max stays when idle
    rc.envelope.share_max_fen = share_max_fen;
    rc.envelope.expiry_ms = w->opt.expiry_ms;
    rc.envelope.queue_max = 4;
    rc.envelope.batch_max = 3;
    rc.envelope.idle_ms = 5000;
    rc.envelope.now_ms = now;
    rc.envelope.rng_seed = envelope_seed;
    rc.envelope.metrics = ctx->metrics;
    rc.envelope.committer = ctx->committer;
    rc.envelope.activator = ctx->activator;
    rc.envelope.payer = ctx->payer;
    return started(ctx->registry, spawn_registry(*sysp, store, rc));
  }, stop_with,
     {"store", "commit_batcher", "activation_batcher", "pay_batcher"}});

  out.push_back({"relay", [=] {
    relay_settings rc;
    rc.batch_max = 3;
    rc.poll_ms = 200;
    rc.backoff_max_ms = 2000;
    // The relay logs its lag by the steady clock, which the simulation
    // does not control; 0 makes it ask at every full batch, determinately.
    rc.lag_log_ms = 0;
    rc.metrics = ctx->metrics;
    return started(ctx->relay, spawn_relay(*sysp, background, rc));
  }, nullptr, {"background_store"}});

  out.push_back({"reconciler", [=] {
    reconciler_settings rc;
    rc.interval_s = 20;
    rc.window_s = 2 * 24 * 3600;
    rc.now_ms = now;
    return started(ctx->reconciler, spawn_reconciler(*sysp, background, rc));
  }, nullptr, {"background_store"}});

  out.push_back({"partition_keeper", [=] {
    partition_keeper_settings pc;
    pc.interval_s = 3600;
    pc.now_ms = now;
    return started(ctx->keeper, spawn_partition_keeper(*sysp, background, pc));
  }, nullptr, {"background_store"}});

  out.push_back({"router", [=] {
    router_settings rc;
    rc.limits = limits();
    rc.creates_inflight_max = 8;
    rc.node_name = "sim";
    rc.metrics = ctx->metrics;
    rc.relay = ctx->relay;
    rc.health = caf::actor_cast<segment_admin>(ctx->health);
    rc.now_ms = now;
    rc.creator = ctx->creator;
    auto res = started(ctx->router,
                       spawn_router(*sysp, ctx->registry, ctx->ids, store,
                                    ctx->reconciler, rc));
    caf::anon_send(ctx->health, subscribe_atom::value,
                   caf::actor_cast<blocked_sink>(ctx->router));
    return res;
  }, nullptr, {"registry", "id_allocator", "store", "reconciler",
               "segment_health", "relay", "create_batcher"}});

  out.push_back({"expiry_sweeper", [=] {
    expiry_sweeper_settings sc;
    sc.interval_ms = 1000;
    sc.batch_max = 3;
    sc.now_ms = now;
    return started(ctx->sweeper,
                   spawn_expiry_sweeper(
                     *sysp, background,
                     caf::actor_cast<envelope_requests>(ctx->router), sc));
  }, nullptr, {"background_store", "router"}});

  return out;
}

void sim_node::start() {
  ++generation_;
  ctx_ = std::make_shared<sim_node_context>();
  supervisor_settings sc;  // the node's defaults: 5 restarts within 30 s
  auto sup = spawn_supervisor(sys_, children(), sc);
  if (!sup) {
    w_.violate("the node did not start: " + sys_.render(sup.error()));
    return;
  }
  supervisor_ = *sup;
  started_ = true;
}

bool sim_node::up() const {
  return started_
         && world::running(caf::actor_cast<caf::strong_actor_ptr>(supervisor_));
}

bool sim_node::escalated() {
  if (!started_ || up())
    return false;
  // The supervisor is gone although nobody crashed the node: it escalated.
  // Whoever supervises the node (systemd) starts it again.
  started_ = false;
  return true;
}

void sim_node::crash() {
  // Every actor that is not part of the simulation belongs to the node:
  // those that ran already, and those spawned but not yet run (queued).
  std::vector<caf::strong_actor_ptr> victims;
  if (supervisor_)
    victims.push_back(caf::actor_cast<caf::strong_actor_ptr>(supervisor_));
  for (auto& kv : w_.actors)
    if (!kv.second.sim)
      if (auto ptr = w_.alive(kv.first))
        victims.push_back(ptr);
  for (auto job : w_.sched.jobs) {
    auto actor = dynamic_cast<caf::scheduled_actor*>(job);
    if (actor == nullptr || w_.actors.count(actor->id()) > 0)
      continue;
    victims.push_back(caf::actor_cast<caf::strong_actor_ptr>(actor->ctrl()));
  }
  for (auto& v : victims)
    w_.kill(v);
  started_ = false;
}

bool sim_node::crash_relay() {
  if (!up() || !ctx_->relay)
    return false;
  auto ptr = caf::actor_cast<caf::strong_actor_ptr>(ctx_->relay);
  if (!world::running(ptr))
    return false;
  w_.kill(ptr);
  return true;
}

std::string sim_node::crash_child() {
  if (!up())
    return {};
  std::vector<std::pair<const char*, caf::strong_actor_ptr>> kids{
    {"segment_health", caf::actor_cast<caf::strong_actor_ptr>(ctx_->health)},
    {"commit_batcher", caf::actor_cast<caf::strong_actor_ptr>(ctx_->committer)},
    {"activation_batcher",
     caf::actor_cast<caf::strong_actor_ptr>(ctx_->activator)},
    {"pay_batcher", caf::actor_cast<caf::strong_actor_ptr>(ctx_->payer)},
    {"create_batcher", caf::actor_cast<caf::strong_actor_ptr>(ctx_->creator)},
    {"id_allocator", caf::actor_cast<caf::strong_actor_ptr>(ctx_->ids)},
    {"registry", caf::actor_cast<caf::strong_actor_ptr>(ctx_->registry)},
    {"reconciler", caf::actor_cast<caf::strong_actor_ptr>(ctx_->reconciler)},
    {"partition_keeper", caf::actor_cast<caf::strong_actor_ptr>(ctx_->keeper)},
    {"router", caf::actor_cast<caf::strong_actor_ptr>(ctx_->router)},
    {"expiry_sweeper", caf::actor_cast<caf::strong_actor_ptr>(ctx_->sweeper)},
  };
  auto& pick = kids[static_cast<size_t>(
    w_.between(0, static_cast<int64_t>(kids.size()) - 1))];
  if (!world::running(pick.second))
    return {};
  w_.kill(pick.second);
  return pick.first;
}

uint64_t sim_node::registry_id() const {
  return ctx_ && ctx_->registry ? ctx_->registry.id() : 0;
}

bool sim_node::crash_envelope() {
  std::vector<caf::strong_actor_ptr> live;
  for (auto& kv : w_.db.owner)
    if (auto ptr = w_.alive(kv.second))
      live.push_back(ptr);
  if (live.empty())
    return false;
  auto victim = live[static_cast<size_t>(
    w_.between(0, static_cast<int64_t>(live.size()) - 1))];
  w_.kill(victim);
  return true;
}

} // namespace hb::sim

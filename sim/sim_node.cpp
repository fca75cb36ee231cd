#include "sim/sim_node.hpp"

#include "caf/all.hpp"

namespace hb::sim {

namespace {

// The stores stand for the database and are made before the node; the
// environment hands them to it as they are.
std::function<caf::expected<store_actor>(caf::actor_system&, store_role,
                                         const store_settings&)>
existing_stores(store_actor hot, store_actor background) {
  return [=](caf::actor_system&, store_role role,
             const store_settings&) -> caf::expected<store_actor> {
    return role == store_role::hot ? hot : background;
  };
}

} // namespace

const std::vector<int32_t>& node_segments() {
  static const std::vector<int32_t> segments{17, 242, 901};
  return segments;
}

node_config sim_node_config(const world& w) {
  node_config cfg;
  cfg.node.name = "sim";
  // Two connections: two commits in flight, one transaction of each other
  // batcher (at most half of the pool).
  cfg.database.store.pool_size = 2;
  cfg.database.commits.inflight_max = 2;
  cfg.database.commits.batch_max = 4;
  cfg.database.batches.inflight_max = 1;
  cfg.database.batches.batch_max = 4;
  cfg.limits.share_max_fen = 20000;
  cfg.limits.count_max = 30;
  cfg.limits.expiry_ms = w.opt.expiry_ms;
  cfg.envelope.queue_max = 4;
  cfg.envelope.batch_max = 3;
  cfg.envelope.idle_ms = 5000;
  cfg.registry.live_max = 6;
  cfg.registry.keep_live = 3;  // as the node: half of live_max stays when idle
  cfg.router.creates_inflight_max = 8;
  cfg.relay.batch_max = 3;
  cfg.relay.backoff_max_ms = 2000;
  // The relay logs its lag by the steady clock, which the simulation does
  // not control; 0 makes it ask at every full batch, determinately.
  cfg.relay.lag_log_ms = 0;
  cfg.expiry.batch_max = 3;
  cfg.reconcile.interval_s = 20;
  cfg.ids.segments = node_segments();
  cfg.ids.lease_block = 4;
  cfg.ids.waiting_max = 50;
  return cfg;
}

sim_node::sim_node(caf::actor_system& sys, world& w, store_actor store,
                   store_actor background)
  : sys_(sys),
    w_(w),
    cfg_(sim_node_config(w)),
    store_(std::move(store)),
    background_(std::move(background)) {
  w_.segment_report = [this](int32_t segment, bool fault) {
    if (up() && health_)
      caf::anon_send(health_, seg_report_atom::value, segment, fault);
  };
}

envelope_limits sim_node::limits() const {
  return cfg_.limits;
}

node_env sim_node::environment() {
  node_env env;
  env.make_store = existing_stores(store_, background_);
  env.stores_outlive_node = true;
  auto* w = &w_;
  env.now_ms = [w] { return w->now_ms(); };
  env.envelope_seed = w_.next() | 1;
  env.health_started = [this](const segment_health_actor& health) {
    health_ = health;
  };
  env.gateway = false;
  return env;
}

void sim_node::start() {
  ++generation_;
  // The new generation's segment health gets the reports once it runs;
  // until then they go nowhere, as to a node without one.
  health_ = segment_health_actor{};
  auto node = start_node(sys_, cfg_, environment());
  if (!node) {
    w_.violate("the node did not start: " + sys_.render(node.error()));
    return;
  }
  node_ = std::move(*node);
  started_ = true;
}

bool sim_node::up() const {
  return started_
         && world::running(
           caf::actor_cast<caf::strong_actor_ptr>(node_.supervisor));
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
  if (node_.supervisor)
    victims.push_back(
      caf::actor_cast<caf::strong_actor_ptr>(node_.supervisor));
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
  if (!up() || !node_.ctx->relay)
    return false;
  auto ptr = caf::actor_cast<caf::strong_actor_ptr>(node_.ctx->relay);
  if (!world::running(ptr))
    return false;
  w_.kill(ptr);
  return true;
}

std::string sim_node::crash_child() {
  if (!up())
    return {};
  std::vector<std::pair<const char*, caf::strong_actor_ptr>> kids{
    {"segment_health", caf::actor_cast<caf::strong_actor_ptr>(node_.ctx->health)},
    {"commit_batcher", caf::actor_cast<caf::strong_actor_ptr>(node_.ctx->committer)},
    {"activation_batcher",
     caf::actor_cast<caf::strong_actor_ptr>(node_.ctx->activator)},
    {"pay_batcher", caf::actor_cast<caf::strong_actor_ptr>(node_.ctx->payer)},
    {"create_batcher", caf::actor_cast<caf::strong_actor_ptr>(node_.ctx->creator)},
    {"id_allocator", caf::actor_cast<caf::strong_actor_ptr>(node_.ctx->ids)},
    {"registry", caf::actor_cast<caf::strong_actor_ptr>(node_.ctx->registry)},
    {"reconciler", caf::actor_cast<caf::strong_actor_ptr>(node_.ctx->reconciler)},
    {"partition_keeper", caf::actor_cast<caf::strong_actor_ptr>(node_.ctx->keeper)},
    {"router", caf::actor_cast<caf::strong_actor_ptr>(node_.ctx->router)},
    {"expiry_sweeper", caf::actor_cast<caf::strong_actor_ptr>(node_.ctx->sweeper)},
  };
  auto& pick = kids[static_cast<size_t>(
    w_.between(0, static_cast<int64_t>(kids.size()) - 1))];
  if (!world::running(pick.second))
    return {};
  w_.kill(pick.second);
  return pick.first;
}

uint64_t sim_node::registry_id() const {
  return node_.ctx && node_.ctx->registry ? node_.ctx->registry.id() : 0;
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

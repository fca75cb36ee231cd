// hongbao-node: one node of the red-envelope service.
//
// Start-up order: config -> database migrations -> store -> id allocator ->
// registry -> router -> gateway. Shutdown (SIGINT/SIGTERM) runs in reverse.

#include <csignal>
#include <cstdio>
#include <thread>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "caf/all.hpp"
#include "caf/io/all.hpp"

#include "actors/errors.hpp"
#include "actors/expiry_sweeper_actor.hpp"
#include "actors/gateway.hpp"
#include "actors/log.hpp"
#include "actors/id_allocator_actor.hpp"
#include "actors/messages.hpp"
#include "actors/partition_keeper_actor.hpp"
#include "actors/reconciler_actor.hpp"
#include "actors/registry_actor.hpp"
#include "actors/relay_actor.hpp"
#include "actors/router_actor.hpp"
#include "actors/store_actor.hpp"
#include "config/node_config.hpp"
#include "persistence/pg_store.hpp"

namespace {

using namespace hb;

// Applies migrations before any actor starts, waiting for the database for
// up to `wait_s` seconds (a node may start before its database).
bool migrate(const node_config& cfg, int wait_s) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(wait_s);
  auto delay = std::chrono::milliseconds(100);
  for (;;) {
    auto db = persistence::pg_store::connect(cfg.database_url);
    if (db) {
      auto applied = (*db)->migrate();
      if (!applied) {
        std::fprintf(stderr, "hongbao-node: migrations failed: %s\n",
                     applied.error().message.c_str());
        return false;
      }
      // Today's partitions must exist before the first envelope is stored;
      // the partition keeper maintains them from here on.
      auto now = system_now_ms();
      auto parts = (*db)->ensure_partitions(
        day_offset(now, -1), day_offset(now, cfg.partitions_ahead_days));
      if (!parts) {
        std::fprintf(stderr, "hongbao-node: cannot create partitions: %s\n",
                     parts.error().message.c_str());
        return false;
      }
      auto version = (*db)->schema_version();
      named_logger("node").info("schema_ready applied_now={} version={}", *applied,
                   version ? *version : -1);
      return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      std::fprintf(stderr,
                   "hongbao-node: cannot reach the database (%s).\n"
                   "  Check database.url in the config and that PostgreSQL "
                   "is running.\n",
                   db.error().message.c_str());
      return false;
    }
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(2000));
  }
}

struct node {
  std::shared_ptr<node_metrics> metrics = std::make_shared<node_metrics>();
  store_actor store;         // the hot path: opens, creates, activations
  store_actor background;    // relay, sweeper, reconciler, partitions
  id_allocator_actor ids;
  registry_actor registry;
  relay_actor relay;
  reconciler_actor reconciler;
  partition_keeper_actor keeper;
  router_actor router;
  expiry_sweeper_actor sweeper;
  gateway_handle gateway;
};

caf::expected<node> start(caf::actor_system& sys, const node_config& cfg) {
  node n;
  store_settings store_cfg;
  store_cfg.database_url = cfg.database_url;
  store_cfg.pool_size = cfg.store_pool_size;
  n.store = spawn_pg_store(sys, store_cfg);
  // Background work gets its own connections so that a long relay batch or
  // reconciliation never holds up an open.
  store_settings background_cfg = store_cfg;
  background_cfg.pool_size = 2;
  n.background = spawn_pg_store(sys, background_cfg);

  id_allocator_settings id_cfg;
  id_cfg.segments = cfg.segments;
  id_cfg.lease_block = cfg.id_lease_block;
  n.ids = spawn_id_allocator(sys, n.store, id_cfg);

  registry_settings reg_cfg;
  reg_cfg.live_max = cfg.live_envelopes_max;
  reg_cfg.envelope.share_max_fen = cfg.limits.share_max_fen;
  reg_cfg.envelope.expiry_ms = cfg.limits.expiry_ms;
  reg_cfg.envelope.queue_max = cfg.envelope_queue_max;
  reg_cfg.envelope.batch_max = cfg.envelope_batch_max;
  reg_cfg.envelope.idle_ms = cfg.envelope_idle_ms;
  reg_cfg.envelope.metrics = n.metrics;
  n.registry = spawn_registry(sys, n.store, reg_cfg);

  relay_settings relay_cfg;
  relay_cfg.batch_max = cfg.relay_batch_max;
  relay_cfg.poll_ms = cfg.relay_poll_ms;
  relay_cfg.metrics = n.metrics;
  n.relay = spawn_relay(sys, n.background, relay_cfg);

  reconciler_settings rec_cfg;
  rec_cfg.interval_s = cfg.reconcile_interval_s;
  rec_cfg.window_s = cfg.reconcile_window_s;
  n.reconciler = spawn_reconciler(sys, n.background, rec_cfg);

  partition_keeper_settings part_cfg;
  part_cfg.interval_s = cfg.partitions_interval_s;
  part_cfg.ahead_days = cfg.partitions_ahead_days;
  part_cfg.hot_days = cfg.hot_days;
  n.keeper = spawn_partition_keeper(sys, n.background, part_cfg);

  router_settings router_cfg;
  router_cfg.limits = cfg.limits;
  n.router = spawn_router(sys, n.registry, n.ids, n.store, n.reconciler,
                          router_cfg);

  expiry_sweeper_settings sweep_cfg;
  sweep_cfg.interval_ms = cfg.sweep_interval_ms;
  sweep_cfg.batch_max = cfg.sweep_batch_max;
  n.sweeper = spawn_expiry_sweeper(sys, n.background,
                                   caf::actor_cast<envelope_requests>(n.router),
                                   sweep_cfg);

  gateway_settings gw;
  gw.host = cfg.listen_host;
  gw.port = cfg.listen_port;
  gw.auth_token = cfg.auth_token;
  gw.node_name = cfg.node_name;
  gw.frame_size_max = cfg.frame_size_max;
  gw.connection_inflight_max = cfg.connection_inflight_max;
  gw.node_inflight_max = cfg.node_inflight_max;
  auto gateway = spawn_gateway(sys, n.router, gw);
  if (!gateway)
    return std::move(gateway.error());
  n.gateway = std::move(*gateway);
  return n;
}

// Stops subsystems in reverse start order.
void stop(caf::actor_system& sys, node& n) {
  caf::anon_send(n.gateway.acceptor, stop_atom::value);
  // Let replies that are on their way reach their clients (bounded).
  for (int i = 0; i < 50 && n.gateway.counters->inflight > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto down = caf::exit_reason::user_shutdown;
  caf::anon_send_exit(n.sweeper, down);
  caf::anon_send_exit(n.router, down);
  caf::anon_send_exit(n.keeper, down);
  caf::anon_send_exit(n.reconciler, down);
  caf::anon_send_exit(n.relay, down);
  caf::anon_send(n.registry, stop_atom::value);
  caf::anon_send_exit(n.ids, down);
  caf::anon_send_exit(n.background, down);
  caf::anon_send_exit(n.store, down);
}

int wait_for_signal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"hongbao-node: one node of the hongbao red-envelope service"};
  std::string config_path;
  int db_wait_s = 30;
  bool check_only = false;
  app.add_option("--config,-c", config_path, "node config file (TOML)")
    ->required();
  app.add_option("--db-wait-s", db_wait_s,
                 "seconds to wait for the database at start-up")
    ->capture_default_str();
  app.add_flag("--check", check_only, "validate the config and exit");
  CLI11_PARSE(app, argc, argv);

  auto cfg = load_node_config(config_path);
  if (!cfg) {
    std::fprintf(stderr, "hongbao-node: %s\n", cfg.error().message.c_str());
    return 2;
  }
  if (check_only) {
    std::printf("config ok: node %s, %zu segments\n", cfg->node_name.c_str(),
                cfg->segments.size());
    return 0;
  }
  spdlog::set_level(spdlog::level::from_str(cfg->log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");

  // Block the shutdown signals before any thread starts, so that they all
  // inherit the mask and only sigwait() below sees them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  if (!migrate(*cfg, db_wait_s))
    return 1;

  caf::actor_system_config sys_cfg;
  add_hongbao_types(sys_cfg);
  sys_cfg.load<caf::io::middleman>();
  sys_cfg.set("logger.console", caf::atom("none"));
  caf::actor_system sys{sys_cfg};

  auto n = start(sys, *cfg);
  if (!n) {
    std::fprintf(stderr, "hongbao-node: cannot listen on %s:%u: %s\n",
                 cfg->listen_host.c_str(), cfg->listen_port,
                 sys.render(n.error()).c_str());
    return 1;
  }
  std::printf("hongbao-node %s (zone %s) listening on %s:%u\n",
              cfg->node_name.c_str(), cfg->zone.c_str(),
              cfg->listen_host.c_str(), n->gateway.port);
  std::fflush(stdout);
  named_logger("node").info("node_started name={} zone={} port={}", cfg->node_name,
               cfg->zone, n->gateway.port);

  auto sig = wait_for_signal();
  named_logger("node").info("node_stopping signal={}", sig);
  stop(sys, *n);
  auto& m = *n->metrics;
  auto batches = m.open_batches.load();
  auto opens = m.opens_committed.load();
  std::printf("hongbao-node %s stopped: %llu opens committed in %llu writes "
              "(%.1f opens per write, largest %llu), %llu activations, "
              "%llu failed writes\n",
              cfg->node_name.c_str(), static_cast<unsigned long long>(opens),
              static_cast<unsigned long long>(batches),
              batches > 0 ? static_cast<double>(opens) / batches : 0.0,
              static_cast<unsigned long long>(m.open_batch_max.load()),
              static_cast<unsigned long long>(m.activations.load()),
              static_cast<unsigned long long>(m.write_failures.load()));
  auto busy_ms = m.relay_busy_ms.load();
  std::printf("hongbao-node %s relay: %llu credits in %llu batches "
              "(%.0f credits/s while busy), %llu redeliveries found "
              "credited, %llu refunds\n",
              cfg->node_name.c_str(),
              static_cast<unsigned long long>(m.relay_credited.load()),
              static_cast<unsigned long long>(m.relay_batches.load()),
              busy_ms > 0 ? 1000.0 * m.relay_credited.load() / busy_ms : 0.0,
              static_cast<unsigned long long>(m.relay_duplicates.load()),
              static_cast<unsigned long long>(m.refunds.load()));
  return 0;
}

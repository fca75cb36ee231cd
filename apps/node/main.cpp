// hongbao-node: one node of the red-envelope service.
//
// Start-up order: config -> database migrations -> store -> id allocator ->
// registry -> router -> gateway. Shutdown (SIGINT/SIGTERM) runs in reverse.

#include <csignal>
#include <functional>
#include <cstdio>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "caf/all.hpp"
#include "caf/io/all.hpp"

#include "admin/admin_messages.hpp"
#include "config/node_config.hpp"
#include "domain/cluster_summary.hpp"
#include "node/node.hpp"
#include "persistence/pg_store.hpp"
#include "runtime/log.hpp"
#include "runtime/messages.hpp"

namespace {

using namespace hb;

// Applies migrations before any actor starts, waiting for the database for
// up to `wait_s` seconds (a node may start before its database).
bool migrate(const node_config& cfg, int wait_s) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(wait_s);
  auto delay = std::chrono::milliseconds(100);
  for (;;) {
    auto db = persistence::pg_store::connect(cfg.database.store.database_url);
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
        day_offset(now, -1), day_offset(now, cfg.partitions.ahead_days));
      if (!parts) {
        std::fprintf(stderr, "hongbao-node: cannot create partitions: %s\n",
                     parts.error().message.c_str());
        return false;
      }
      // A SET's database serves only that SET's nodes.
      auto owner_set = (*db)->cluster_set();
      if (!owner_set) {
        std::fprintf(stderr, "hongbao-node: cannot read the database's SET: %s\n",
                     owner_set.error().message.c_str());
        return false;
      }
      if (!cfg.cluster.enabled && !owner_set->empty()) {
        std::fprintf(stderr,
                     "hongbao-node: refused: the database belongs to SET '%s' "
                     "of a cluster, and this node has no [cluster] section\n",
                     owner_set->c_str());
        return false;
      }
      if (cfg.cluster.enabled && !owner_set->empty()
          && *owner_set != cfg.cluster.set) {
        std::fprintf(stderr,
                     "hongbao-node: refused: node %s is in SET '%s' but its "
                     "database belongs to SET '%s'; check database_url of "
                     "[[cluster.sets]] '%s'\n",
                     cfg.node.name.c_str(), cfg.cluster.set.c_str(),
                     owner_set->c_str(), cfg.cluster.set.c_str());
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

// Waits for SIGINT/SIGTERM on a thread of its own, runs `before_stop` (a
// cluster node hands its segments over) and asks the supervisor to stop
// the node; woken with SIGUSR1 when the node ends by itself.
class signal_waiter {
public:
  signal_waiter(supervisor_actor sup, std::function<void()> before_stop) {
    thread_ = std::thread([this, sup, before_stop] {
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, SIGINT);
      sigaddset(&set, SIGTERM);
      sigaddset(&set, SIGUSR1);
      int sig = 0;
      sigwait(&set, &sig);
      if (sig != SIGUSR1) {
        named_logger("node").info("node_stopping signal={}", sig);
        if (before_stop)
          before_stop();
        caf::anon_send(sup, stop_atom::value);
      }
    });
  }
  ~signal_waiter() {
    pthread_kill(thread_.native_handle(), SIGUSR1);
    thread_.join();
  }

private:
  std::thread thread_;
};

void print_summary(const node_config& cfg, const node_metrics& m) {
  auto batches = m.open_batches.load();
  auto opens = m.opens_committed.load();
  std::printf("hongbao-node %s stopped: %llu opens committed in %llu writes "
              "(%.1f opens per write, largest %llu), %llu activations, "
              "%llu failed writes\n",
              cfg.node.name.c_str(), static_cast<unsigned long long>(opens),
              static_cast<unsigned long long>(batches),
              batches > 0 ? static_cast<double>(opens) / batches : 0.0,
              static_cast<unsigned long long>(m.open_batch_max.load()),
              static_cast<unsigned long long>(m.activations.load()),
              static_cast<unsigned long long>(m.write_failures.load()));
  auto busy_ms = m.relay_busy_ms.load();
  std::printf("hongbao-node %s relay: %llu credits in %llu batches "
              "(%.0f credits/s while busy), %llu redeliveries found "
              "credited, %llu refunds\n",
              cfg.node.name.c_str(),
              static_cast<unsigned long long>(m.relay_credited.load()),
              static_cast<unsigned long long>(m.relay_batches.load()),
              busy_ms > 0 ? 1000.0 * m.relay_credited.load() / busy_ms : 0.0,
              static_cast<unsigned long long>(m.relay_duplicates.load()),
              static_cast<unsigned long long>(m.refunds.load()));
  std::fflush(stdout);
}

// A config's problems, one per line (every problem of the [cluster] part).
void print_problems(const std::string& message) {
  std::istringstream lines{message};
  for (std::string line; std::getline(lines, line);)
    std::fprintf(stderr, "hongbao-node: %s\n", line.c_str());
}

// `--check`: one line saying what the node would be.
void print_check_summary(const node_config& cfg) {
  if (!cfg.cluster.enabled) {
    std::printf("config ok: node %s, %zu segments\n", cfg.node.name.c_str(),
                cfg.ids.segments.size());
    return;
  }
  auto& c = cfg.cluster;
  std::vector<int32_t> segments;
  for (auto& set : c.sets)
    if (set.name == c.set)
      segments = segments_of(set);
  std::printf("config ok: cluster node %s, zone %s, SET %s (segments %s: "
              "%zu of 1000, %zu SETs in the map), database %s\n",
              cfg.node.name.c_str(), cfg.node.zone.c_str(), c.set.c_str(),
              segments_text(segments).c_str(), segments.size(), c.sets.size(),
              redacted_database_url(cfg.database.store.database_url).c_str());
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
    print_problems(cfg.error().message);
    return 2;
  }
  if (check_only) {
    print_check_summary(*cfg);
    return 0;
  }
  spdlog::set_level(spdlog::level::from_str(cfg->log.level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");

  // Block the shutdown signals before any thread starts, so that they all
  // inherit the mask and only sigwait() below sees them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  if (!migrate(*cfg, db_wait_s))
    return 1;

  caf::actor_system_config sys_cfg;
  // hongbao's types and the admin's (the console and other nodes' admins).
  add_admin_types(sys_cfg);
  sys_cfg.load<caf::io::middleman>();
  sys_cfg.set("logger.console", caf::atom("none"));
  // One scheduler thread per core: more only adds context switches (the
  // store's threads are separate and mostly wait on the database).
  sys_cfg.set("scheduler.max-threads",
              static_cast<size_t>(std::max(2u, std::thread::hardware_concurrency())));
  // An idle scheduler thread sleeps until work arrives instead of waking
  // every 50 µs to look (CAF's default, for 25 ms after its last job): on
  // two cores that polling cost an idle node ~12 % of a core and a lightly
  // loaded one about a quarter of its CPU (docs/performance.md).
  sys_cfg.set("work-stealing.moderate-poll-attempts",
              static_cast<size_t>(cfg->node.idle_poll_us / 50));
  if (cfg->cluster.enabled) {
    // Node links: heartbeats so that a silent peer is noticed, and a link
    // quiet past the timeout is closed (CAF's defaults are off).
    sys_cfg.set("middleman.heartbeat-interval",
                caf::timespan{std::chrono::milliseconds(cfg->cluster.heartbeat_ms)});
    sys_cfg.set("middleman.connection-timeout",
                caf::timespan{std::chrono::milliseconds(cfg->cluster.link_timeout_ms)});
  }
  caf::actor_system sys{sys_cfg};

  auto node = start_node(sys, *cfg, production_env());
  if (!node) {
    std::fprintf(stderr, "hongbao-node: cannot start: %s\n",
                 sys.render(node.error()).c_str());
    return 1;
  }
  auto& ctx = node->ctx;
  std::printf("hongbao-node %s (zone %s) listening on %s:%u\n",
              cfg->node.name.c_str(), cfg->node.zone.c_str(),
              cfg->gateway.host.c_str(), ctx->gateway.port);
  if (cfg->cluster.enabled)
    std::printf("hongbao-node %s: SET %s, node links on %s:%u\n",
                cfg->node.name.c_str(), cfg->cluster.set.c_str(),
                cfg->cluster.peer_host.c_str(), cfg->cluster.peer_port);
  if (ctx->admin_port != 0)
    std::printf("hongbao-node %s: admin for hongbao-console on %s:%u "
                "(audit log %s)\n",
                cfg->node.name.c_str(), cfg->admin.host.c_str(),
                ctx->admin_port, cfg->admin.audit_file.c_str());
  if (ctx->metrics_http.port != 0)
    std::printf("hongbao-node %s: metrics on http://%s:%u/metrics\n",
                cfg->node.name.c_str(), cfg->admin.host.c_str(),
                ctx->metrics_http.port);
  std::fflush(stdout);
  named_logger("node").info("node_started name={} zone={} port={}",
                            cfg->node.name, cfg->node.zone, ctx->gateway.port);

  // Runs until the supervisor ends: normally after a signal, with an error
  // when a subsystem failed beyond its restart intensity.
  caf::error reason;
  {
    // A cluster node drains before it stops: its segments move to the next
    // nodes in their zone order while it still answers, and its lease ends,
    // so that clients see no failover pause (docs/cluster.md).
    auto drain = [&sys, &ctx, &cfg] {
      auto membership = ctx->membership;
      if (!membership || cfg->cluster.drain_timeout_ms == 0)
        return;
      auto timeout = std::chrono::milliseconds(cfg->cluster.drain_timeout_ms);
      auto started = std::chrono::steady_clock::now();
      caf::scoped_actor self{sys};
      self->request(membership, timeout, stop_atom::value)
        .receive(
          [&](int32_t left) {
            auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - started)
                        .count();
            named_logger("node").info("node_drained segments_left={} ms={}",
                                      left, ms);
            std::printf("hongbao-node %s drained in %lld ms (%d segments left "
                        "to fail over)\n",
                        cfg->node.name.c_str(), static_cast<long long>(ms),
                        left);
            std::fflush(stdout);
          },
          [&](caf::error& err) {
            named_logger("node").warn("node_drain_incomplete error={}",
                                      sys.render(err));
          });
    };
    signal_waiter signals{node->supervisor,
                          cfg->cluster.enabled ? std::function<void()>{drain}
                                               : std::function<void()>{}};
    caf::scoped_actor self{sys};
    self->monitor(node->supervisor);
    self->receive([&](caf::down_msg& msg) { reason = msg.reason; });
  }
  print_summary(*cfg, *ctx->metrics);
  if (reason && reason != caf::exit_reason::normal) {
    std::fprintf(stderr, "hongbao-node: stopped after a failure: %s\n",
                 sys.render(reason).c_str());
    return 1;
  }
  return 0;
}

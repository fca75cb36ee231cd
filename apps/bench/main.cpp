// hongbao-bench: the load generator of issue 5 (bench/run.hpp). Parses the
// command line and runs one scenario against one target.

#include <cstdlib>
#include <string>

#include <CLI/CLI.hpp>

#include "bench/run.hpp"

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

} // namespace

using namespace hb::bench;

int main(int argc, char** argv) {
  bench_options opts;
  opts.target.server = env_or("HONGBAO_SERVER", "127.0.0.1:7700");
  opts.target.token = env_or("HONGBAO_TOKEN", "");
  CLI::App app{
    "hongbao-bench: drives a red-envelope workload against hongbao or a "
    "baseline (pg-lock, pg-update, redis-lua) and audits the store afterwards.\n"
    "Exit status: 0 ok, 1 the audit failed or the run could not complete, "
    "2 usage error, 3 cannot reach the target.",
    "hongbao-bench"};
  app.add_option("--target", opts.target.name,
                 "hongbao, pg-lock, pg-update or redis-lua")
    ->required()
    ->check(CLI::IsMember({"hongbao", "pg-lock", "pg-update", "redis-lua"}));
  app.add_option("--scenario", opts.scenario.name, "hot, spread or storm")
    ->check(CLI::IsMember({"hot", "spread", "storm"}))
    ->capture_default_str();
  app.add_option("--users", opts.users,
                 "closed loop: users active at once")
    ->check(CLI::Range(1u, 1000000u))
    ->capture_default_str();
  app.add_option("--rate", opts.rate,
                 "open loop: users starting per second (0: closed loop)")
    ->check(CLI::Range(0.0, 1e7));
  app.add_option("--duration", opts.duration_s,
                 "seconds after which no new user starts (0: run the whole "
                 "scenario); users already started finish")
    ->check(CLI::Range(0.0, 86400.0));
  app.add_option("--envelopes", opts.scenario.envelopes,
                 "envelopes (default: hot 1, spread 10000, storm 2000)");
  app.add_option("--shares", opts.scenario.shares,
                 "shares per envelope (default: hot 10000, spread 10, storm "
                 "5-20)");
  app.add_option("--grabbers", opts.scenario.grabbers,
                 "users per envelope (default: hot 10000, spread 10, storm "
                 "1.5 x shares)");
  app.add_option("--connections", opts.connections,
                 "sessions to the target (default: hongbao 16, pg-* 64, "
                 "redis-lua 8)")
    ->check(CLI::Range(1u, 1024u));
  app.add_option("--window", opts.target.window,
                 "requests in flight per connection (default: hongbao 1024, "
                 "redis-lua 256; pg-* always 1)")
    ->check(CLI::Range(1u, 65536u));
  app.add_option("--setup-users", opts.setup_users,
                 "concurrency while wrapping and paying before the clock starts")
    ->check(CLI::Range(1u, 100000u))
    ->capture_default_str();
  app.add_option("--seed", opts.scenario.seed, "seed of every random choice")
    ->capture_default_str();
  app.add_option("--retries", opts.retries,
                 "resends of a request after a retryable error")
    ->capture_default_str();
  app.add_option("--drain", opts.drain_s,
                 "seconds to wait for answers after the last user started")
    ->capture_default_str();
  app.add_option("--server", opts.target.server,
                 "hongbao: node address HOST:PORT (env HONGBAO_SERVER)");
  app.add_option("--token", opts.target.token,
                 "hongbao: auth token (env HONGBAO_TOKEN)");
  app.add_option("--db-url", opts.target.db_url,
                 "libpq string: hongbao: the node's database (for the audit); "
                 "pg-*: the baseline database (env HONGBAO_BENCH_DB_URL)");
  app.add_option("--redis", opts.target.redis, "redis-lua: HOST:PORT")
    ->capture_default_str();
  app.add_option("--timeout-ms", opts.target.timeout_ms,
                 "connect and set-up timeout")
    ->capture_default_str();
  app.add_option("--label", opts.label, "free text copied into the JSON");
  app.add_option("--cpu-of", opts.cpu_of,
                 "LABEL=PID: also report the CPU time this process and its "
                 "descendants spend during the run, per open (repeatable; "
                 "e.g. hongbao-node=PID, postgres=POSTMASTER_PID); the "
                 "generator's own is always reported");
  app.add_flag("--json", opts.json,
               "one JSON object on stdout instead of the report");
  app.add_flag("--quiet,-q", opts.quiet, "no progress lines on stderr");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return e.get_exit_code() == 0 ? exit_ok : exit_usage;
  }
  if (opts.target.db_url.empty())
    opts.target.db_url = env_or("HONGBAO_BENCH_DB_URL", "");
  return run_bench(std::move(opts));
}

// hongbao-demo: the quickstart's demo (load/demo.hpp). Parses the command
// line and runs the demo.

#include <cstdlib>
#include <string>

#include <CLI/CLI.hpp>

#include "load/demo.hpp"

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

} // namespace

using namespace hb::demo;

int main(int argc, char** argv) {
  demo_options opts;
  opts.server = env_or("HONGBAO_SERVER", opts.server);
  opts.token = env_or("HONGBAO_TOKEN", opts.token);

  CLI::App app{"hongbao-demo — wrap a few 红包, let thousands of users grab "
               "and open them at once over the client protocol, then check "
               "that every fen is accounted for.\n"
               "Exit status: 0 ok, 1 money not conserved (or the node "
               "refused a setup request), 2 usage error, 3 cannot reach the "
               "node (or the token is refused).",
               "hongbao-demo"};
  app.add_option("--server", opts.server,
                 "node address HOST:PORT (env HONGBAO_SERVER)")
    ->capture_default_str();
  app.add_option("--token", opts.token,
                 "auth token from the node's config (env HONGBAO_TOKEN)");
  app.add_option("--envelopes", opts.envelopes, "envelopes to wrap")
    ->capture_default_str()
    ->check(CLI::Range(1u, envelopes_max));
  app.add_option("--count", opts.count, "shares per envelope")
    ->capture_default_str()
    ->check(CLI::Range(1, 1000000));
  app.add_option("--users", opts.users,
                 "users; each grabs every envelope")
    ->capture_default_str()
    ->check(CLI::Range(1u, users_max));
  app.add_option("--connections", opts.connections, "TCP connections")
    ->capture_default_str()
    ->check(CLI::Range(1u, connections_max));
  app.add_option("--window", opts.window,
                 "requests in flight per connection (pipelining)")
    ->capture_default_str()
    ->check(CLI::Range(1u, window_max));
  app.add_option("--seed", opts.seed,
                 "seed for who grabs what in which order (default: random, "
                 "printed)");
  app.add_option("--retries", opts.retries,
                 "resends of a request after BUSY/UNAVAILABLE/STALE_EPOCH")
    ->capture_default_str()
    ->check(CLI::Range(0u, retries_max_max));
  app.add_option("--timeout-ms", opts.timeout_ms,
                 "connect timeout; a connection silent this long with "
                 "requests in flight counts as stalled")
    ->capture_default_str()
    ->check(CLI::Range(100, 3600 * 1000));
  app.add_flag("--json", opts.json,
               "print one JSON object on stdout instead of the report");
  app.add_flag("--quiet,-q", opts.quiet,
               "no progress lines on stderr while the storm runs");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help is a ParseError with exit code 0; every other is a usage error.
    bool json_wanted = false;
    for (int i = 1; i < argc; ++i)
      json_wanted = json_wanted || std::string{argv[i]} == "--json";
    if (e.get_exit_code() == 0)
      return app.exit(e);
    usage_error(json_wanted, e.what());
    app.exit(e);
    return exit_usage;
  }
  return run_demo(std::move(opts));
}

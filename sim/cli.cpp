// The command line of hongbao-sim: one seed (--seed N) or a sweep of seeds
// in parallel processes (--seeds A..B --jobs J), each child being this same
// program with --seed N --summary-line.

#include "sim/cli.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "runtime/bugs.hpp"
#include "sim/sim_runner.hpp"

namespace hb::sim {

namespace {

using steady = std::chrono::steady_clock;

std::string hex(uint64_t x) {
  char buf[20];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, x);
  return buf;
}

// -- one seed ------------------------------------------------------------------

// Printed by the SIGABRT handler: a production assertion aborted the run.
char abort_note[1024];

void on_abort(int) {
  auto n = std::strlen(abort_note);
  if (n > 0 && write(STDERR_FILENO, abort_note, n) < 0)
    abort_note[0] = '\0';
  signal(SIGABRT, SIG_DFL);
  raise(SIGABRT);
}

std::string faults_fired(const sim_result& r) {
  std::string out;
  for (size_t i = 0; i < fault_count; ++i) {
    if (r.fired[i] == 0)
      continue;
    if (!out.empty())
      out += ", ";
    out += to_string(static_cast<fault>(i));
    out += ' ';
    out += std::to_string(r.fired[i]);
  }
  return out.empty() ? "none" : out;
}

std::string faults_off(const sim_result& r) {
  std::string out;
  for (size_t i = 0; i < fault_count; ++i)
    if (!r.active[i]) {
      if (!out.empty())
        out += ", ";
      out += to_string(static_cast<fault>(i));
    }
  return out.empty() ? "none" : out;
}

int run_one(const sim_options& opt, bool summary_line,
            const std::string& replay) {
  std::snprintf(abort_note, sizeof(abort_note),
                "seed %" PRIu64 ": the run aborted (a broken invariant in the"
                " production code?)\n  replay: %s\n",
                opt.seed, replay.c_str());
  signal(SIGABRT, on_abort);
  auto r = run_simulation(opt);
  bool ok = r.violation.empty();
  if (summary_line) {
    std::printf("SIMRESULT seed=%" PRIu64 " ok=%d hash=%s messages=%" PRIu64
                " sim_ms=%" PRId64 " opens=%" PRIu64 " commits=%" PRIu64
                " credits=%" PRIu64 " refunds=%" PRIu64 " stale=%" PRIu64
                " starts=%d escalations=%d blocks=%" PRIu64
                " false_exhausted=%" PRIu64 " pending=%" PRIu64
                " expired_refused=%" PRIu64 " faults=",
                r.seed, ok ? 1 : 0, hex(r.hash).c_str(), r.messages, r.sim_ms,
                r.opens, r.commits, r.credits, r.refunds, r.stale_refused,
                r.generations, r.escalations, r.segment_blocks,
                r.false_exhausted, r.pending_answers, r.expired_refused);
    for (size_t i = 0; i < fault_count; ++i)
      std::printf("%s%" PRIu64, i == 0 ? "" : ",", r.fired[i]);
    std::printf("\n");
    if (!ok)
      std::printf("SIMVIOLATION %s\n", r.violation.c_str());
    std::fflush(stdout);
    return ok ? 0 : 1;
  }
  std::printf("seed %" PRIu64 ": %s, trace hash %s\n", r.seed,
              ok ? "ok" : "FAILED", hex(r.hash).c_str());
  std::printf("  %" PRIu64 " messages in %" PRIu64 " steps, %.1f s simulated,"
              " %d node start(s)\n",
              r.messages, r.steps, static_cast<double>(r.sim_ms) / 1000.0,
              r.generations);
  std::printf("  %" PRIu64 " envelopes, %" PRIu64 " opens in %" PRIu64
              " batches (%" PRIu64 " answers), %" PRIu64 " credits, %" PRIu64
              " refunds; %" PRIu64 " stale writes refused; %d escalations; %"
              PRIu64 " segments blocked\n",
              r.envelopes, r.opens, r.commits, r.opens_ok, r.credits,
              r.refunds, r.stale_refused, r.escalations, r.segment_blocks);
  std::printf("  faults fired: %s\n", faults_fired(r).c_str());
  std::printf("  switched off for this seed: %s\n", faults_off(r).c_str());
  if (r.false_exhausted > 0)
    std::printf("  %" PRIu64 " users told 手慢了 (exhausted) whose share later"
                " went back to the sender unopened\n",
                r.false_exhausted);
  std::printf("  %" PRIu64 " opens answered SHARES_PENDING (retried); %" PRIu64
              " batches refused by the database's clock (expired)\n",
              r.pending_answers, r.expired_refused);
  for (auto& n : r.notes)
    std::printf("  note: %s\n", n.c_str());
  if (!ok) {
    std::printf("  VIOLATION: %s\n", r.violation.c_str());
    std::printf("  replay: %s\n", replay.c_str());
  }
  return ok ? 0 : 1;
}

// -- a sweep -------------------------------------------------------------------

struct child {
  pid_t pid = -1;
  int fd = -1;
  uint64_t seed = 0;
  std::string out;
  steady::time_point started;
  bool timed_out = false;
};

struct seed_report {
  bool ok = false;
  std::string violation;
  std::vector<uint64_t> fired;
  uint64_t messages = 0;
  // What the run exercised: opens, commits, credits, refunds, stale
  // writes refused, node starts, escalations.
  std::map<std::string, uint64_t> counts;
};

seed_report parse_child(const child& c, int status) {
  seed_report rep;
  std::istringstream in(c.out);
  std::string line;
  bool have_result = false;
  while (std::getline(in, line)) {
    if (line.rfind("SIMRESULT ", 0) == 0) {
      have_result = true;
      std::istringstream fields(line.substr(10));
      std::string kv;
      while (fields >> kv) {
        auto eq = kv.find('=');
        auto key = kv.substr(0, eq);
        auto value = kv.substr(eq + 1);
        if (key == "ok")
          rep.ok = value == "1";
        else if (key == "messages")
          rep.messages = std::strtoull(value.c_str(), nullptr, 10);
        else if (key == "opens" || key == "commits" || key == "credits"
                 || key == "refunds" || key == "stale" || key == "starts"
                 || key == "escalations" || key == "blocks"
                 || key == "false_exhausted" || key == "pending"
                 || key == "expired_refused")
          rep.counts[key] = std::strtoull(value.c_str(), nullptr, 10);
        else if (key == "faults") {
          std::istringstream counts(value);
          std::string n;
          while (std::getline(counts, n, ','))
            rep.fired.push_back(std::strtoull(n.c_str(), nullptr, 10));
        }
      }
    } else if (line.rfind("SIMVIOLATION ", 0) == 0) {
      rep.violation = line.substr(13);
    }
  }
  if (c.timed_out) {
    rep.ok = false;
    rep.violation = "the run did not finish in time (killed)";
  } else if (!have_result) {
    rep.ok = false;
    if (WIFSIGNALED(status))
      rep.violation = "the run died with signal "
                      + std::to_string(WTERMSIG(status))
                      + " (a broken invariant in the production code aborts):"
                      + "\n" + c.out;
    else
      rep.violation = "the run printed no result (exit "
                      + std::to_string(WEXITSTATUS(status)) + "):\n" + c.out;
  } else if (WIFSIGNALED(status) || WEXITSTATUS(status) > 1) {
    rep.ok = false;
    if (rep.violation.empty())
      rep.violation = "the run exited abnormally";
  }
  return rep;
}

bool parse_range(const std::string& text, uint64_t& from, uint64_t& to) {
  auto dots = text.find("..");
  if (dots == std::string::npos)
    return false;
  char* end = nullptr;
  from = std::strtoull(text.c_str(), &end, 10);
  if (end != text.c_str() + dots)
    return false;
  to = std::strtoull(text.c_str() + dots + 2, &end, 10);
  return *end == '\0' && to >= from;
}

std::string self_path(const char* argv0) {
  char buf[4096];
  auto n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0)
    return argv0;
  buf[n] = '\0';
  return buf;
}

child spawn_child(const std::string& exe, const std::vector<std::string>& args,
                  uint64_t seed) {
  child c;
  c.seed = seed;
  int fds[2];
  if (pipe(fds) != 0) {
    std::perror("hongbao-sim: pipe");
    std::exit(2);
  }
  std::vector<std::string> argv{exe, "--seed", std::to_string(seed),
                                "--summary-line"};
  argv.insert(argv.end(), args.begin(), args.end());
  c.pid = fork();
  if (c.pid < 0) {
    std::perror("hongbao-sim: fork");
    std::exit(2);
  }
  if (c.pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    close(fds[0]);
    close(fds[1]);
    std::vector<char*> raw;
    for (auto& a : argv)
      raw.push_back(const_cast<char*>(a.c_str()));
    raw.push_back(nullptr);
    execv(exe.c_str(), raw.data());
    _exit(127);
  }
  close(fds[1]);
  c.fd = fds[0];
  c.started = steady::now();
  return c;
}

int sweep(const std::string& exe, const std::string& shown_exe,
          const std::vector<std::string>& args, uint64_t from, uint64_t to,
          unsigned jobs, bool stop_on_failure, bool expect_failure,
          unsigned seed_timeout_s, const std::string& bug_name) {
  auto begin = steady::now();
  std::string extra;
  for (auto& a : args)
    extra += " " + a;
  std::vector<child> running;
  uint64_t next = from;
  uint64_t done = 0;
  uint64_t failed = 0;
  uint64_t first_failed = 0;
  uint64_t messages = 0;
  std::vector<uint64_t> fired(fault_count, 0);
  std::vector<uint64_t> seeds_with(fault_count, 0);
  std::map<std::string, uint64_t> counts;
  bool stop = false;
  while ((next <= to && !stop) || !running.empty()) {
    while (!stop && next <= to && running.size() < jobs)
      running.push_back(spawn_child(exe, args, next++));
    std::vector<pollfd> fds;
    for (auto& c : running)
      fds.push_back(pollfd{c.fd, POLLIN, 0});
    poll(fds.data(), fds.size(), 200);
    for (size_t i = 0; i < running.size();) {
      auto& c = running[i];
      char buf[4096];
      bool eof = false;
      if (fds[i].revents != 0) {
        auto n = read(c.fd, buf, sizeof(buf));
        if (n > 0)
          c.out.append(buf, static_cast<size_t>(n));
        else
          eof = true;
      }
      if (!eof && steady::now() - c.started
                    > std::chrono::seconds(seed_timeout_s)) {
        kill(c.pid, SIGKILL);
        c.timed_out = true;
        eof = true;
      }
      if (!eof) {
        ++i;
        continue;
      }
      // Keep the parallel vectors aligned: drop this entry from both.
      close(c.fd);
      int status = 0;
      waitpid(c.pid, &status, 0);
      auto rep = parse_child(c, status);
      ++done;
      messages += rep.messages;
      for (auto& kv : rep.counts)
        counts[kv.first] += kv.second;
      for (size_t k = 0; k < fault_count && k < rep.fired.size(); ++k) {
        fired[k] += rep.fired[k];
        seeds_with[k] += rep.fired[k] > 0;
      }
      if (!rep.ok) {
        if (failed == 0 || c.seed < first_failed)
          first_failed = c.seed;
        ++failed;
        std::printf("seed %" PRIu64 " FAILED: %s\n  replay: %s --seed %" PRIu64
                    "%s\n",
                    c.seed, rep.violation.c_str(), shown_exe.c_str(), c.seed,
                    extra.c_str());
        std::fflush(stdout);
        if (stop_on_failure)
          stop = true;
      }
      running.erase(running.begin() + static_cast<long>(i));
      fds.erase(fds.begin() + static_cast<long>(i));
    }
  }
  auto secs = std::chrono::duration<double>(steady::now() - begin).count();
  std::printf("hongbao-sim%s%s: %" PRIu64 " seeds of %" PRIu64 "..%" PRIu64
              " in %.1f s (%.1f seeds/s, %u jobs): %" PRIu64 " passed, %" PRIu64
              " failed\n",
              bug_name.empty() ? "" : " with bug ", bug_name.c_str(), done,
              from, to,
              secs, secs > 0 ? static_cast<double>(done) / secs : 0.0, jobs,
              done - failed, failed);
  std::printf("  faults fired (total, in how many seeds):");
  for (size_t k = 0; k < fault_count; ++k)
    std::printf("%s %s %" PRIu64 " (%" PRIu64 ")", k == 0 ? "" : ",",
                to_string(static_cast<fault>(k)), fired[k], seeds_with[k]);
  std::printf("\n  %" PRIu64 " messages delivered (%.0f per seed); %" PRIu64
              " opens in %" PRIu64 " batches, %" PRIu64 " credits, %" PRIu64
              " refunds, %" PRIu64 " stale writes refused, %" PRIu64
              " node starts, %" PRIu64 " escalations, %" PRIu64
              " segments blocked\n  %" PRIu64 " users told 手慢了 whose share"
              " later went back to the sender unopened; %" PRIu64
              " opens answered SHARES_PENDING (retried); %" PRIu64
              " batches refused as expired by the database's clock\n",
              messages, done > 0 ? static_cast<double>(messages) / done : 0.0,
              counts["opens"], counts["commits"], counts["credits"],
              counts["refunds"], counts["stale"], counts["starts"],
              counts["escalations"], counts["blocks"],
              counts["false_exhausted"], counts["pending"],
              counts["expired_refused"]);
  if (expect_failure) {
    if (failed > 0) {
      std::printf("expected a failure and got one: seed %" PRIu64
                  " catches the bug\n",
                  first_failed);
      return 0;
    }
    std::printf("expected a failure, but every seed passed: the bug "
                "went unnoticed\n");
    return 1;
  }
  return failed > 0 ? 1 : 0;
}

// The arguments a child or a replay needs: everything but the sweep's own.
std::vector<std::string> passthrough(int argc, char** argv) {
  static const std::vector<std::string> with_value{
    "--seeds", "--jobs", "-j", "--seed", "--seed-timeout"};
  static const std::vector<std::string> flags{
    "--stop-on-failure", "--expect-failure", "--summary-line", "--trace"};
  std::vector<std::string> out;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto name = a.substr(0, a.find('='));
    bool valued = false;
    for (auto& v : with_value)
      valued = valued || name == v;
    if (valued) {
      if (a.find('=') == std::string::npos)
        ++i;
      continue;
    }
    bool flag = false;
    for (auto& f : flags)
      flag = flag || a == f;
    if (!flag)
      out.push_back(a);
  }
  return out;
}

} // namespace

int cli_main(int argc, char** argv) {
  CLI::App app{"hongbao-sim: deterministic simulation of a hongbao node -- the "
               "production actors on CAF's test coordinator with a simulated "
               "store, clock and clients, faults drawn from the seed "
               "(docs/simulation.md)"};
  sim_options opt;
  uint64_t seed = 0;
  std::string seeds;
  unsigned jobs = std::max(1u, std::thread::hardware_concurrency());
  bool stop_on_failure = false;
  bool expect_failure = false;
  bool summary_line = false;
  bool list = false;
  unsigned seed_timeout_s = 300;
  std::vector<std::string> off;
  std::string bug_name;
  bool list_bugs = false;
  app.add_option("--seed", seed, "run one seed and print its trace hash");
  app.add_option("--seeds", seeds, "sweep the seeds A..B (inclusive)");
  app.add_option("--jobs,-j", jobs, "parallel processes of a sweep")
    ->capture_default_str();
  app.add_flag("--stop-on-failure", stop_on_failure,
               "start no more seeds after the first failure");
  app.add_flag("--expect-failure", expect_failure,
               "succeed only if some seed fails (the tests of each bug)");
  app.add_option("--plant", bug_name,
                 "switch a known bug on, to prove the simulation catches it "
                 "(see --list-bugs)");
  app.add_flag("--list-bugs", list_bugs, "list the bugs --plant knows and exit");
  app.add_option("--seed-timeout", seed_timeout_s,
                 "kill a seed's process after this many seconds")
    ->capture_default_str();
  app.add_option("--scale", opt.scale,
                 "multiply the workload (envelopes, users, requests, load "
                 "time)")
    ->capture_default_str();
  app.add_option("--ops", opt.ops, "requests in the load phase")
    ->capture_default_str();
  app.add_option("--envelopes", opt.envelopes, "envelopes to create")
    ->capture_default_str();
  app.add_option("--users", opt.users, "users")->capture_default_str();
  app.add_option("--load-ms", opt.load_ms,
                 "simulated length of the load phase (faults only then)")
    ->capture_default_str();
  app.add_option("--expiry-ms", opt.expiry_ms, "envelope expiry")
    ->capture_default_str();
  app.add_option("--faults-off", off,
                 "switch fault kinds off (comma separated, or 'all')")
    ->delimiter(',');
  app.add_option("--fault-rate", opt.fault_rate,
                 "multiply every fault probability")
    ->capture_default_str();
  app.add_flag("--trace", opt.trace, "print every delivered message");
  app.add_option("--log-level", opt.log_level,
                 "log level of the production actors (off, warn, info, ...)")
    ->capture_default_str();
  app.add_flag("--list-faults", list, "list the fault kinds and exit");
  app.add_flag("--summary-line", summary_line,
               "one machine-readable result line (used by sweeps)");
  CLI11_PARSE(app, argc, argv);

  if (list_bugs) {
    for (size_t i = 0; i < bug_count; ++i)
      std::printf("%s\n", bugs::to_string(static_cast<bug>(i)));
    return 0;
  }
  if (!bug_name.empty()) {
    bug b;
    if (!bugs::parse(bug_name, b)) {
      std::fprintf(stderr, "hongbao-sim: unknown bug '%s' (see --list-bugs)\n",
                   bug_name.c_str());
      return 2;
    }
    // Before any actor exists: the switches are read, never written, by
    // the node's threads.
    bugs::plant(b);
  }
  if (list) {
    for (size_t i = 0; i < fault_count; ++i)
      std::printf("%s\n", to_string(static_cast<fault>(i)));
    return 0;
  }
  for (auto& name : off) {
    if (name == "all") {
      opt.fault_on.fill(false);
      continue;
    }
    fault f;
    if (!parse_fault(name, f)) {
      std::fprintf(stderr, "hongbao-sim: unknown fault kind '%s' (see "
                           "--list-faults)\n",
                   name.c_str());
      return 2;
    }
    opt.fault_on[static_cast<size_t>(f)] = false;
  }
  auto args = passthrough(argc, argv);
  std::string extra;
  for (auto& a : args)
    extra += " " + a;
  std::string shown = argv[0];
  if (!bug_name.empty() && !summary_line)
    std::printf("bug switched on: %s\n", bug_name.c_str());
  if (!seeds.empty()) {
    uint64_t from = 0;
    uint64_t to = 0;
    if (!parse_range(seeds, from, to)) {
      std::fprintf(stderr, "hongbao-sim: --seeds wants A..B, e.g. 1..500\n");
      return 2;
    }
    return sweep(self_path(argv[0]), shown, args, from, to,
                 std::max(1u, jobs), stop_on_failure, expect_failure,
                 seed_timeout_s, bug_name);
  }
  if (app.count("--seed") == 0) {
    std::fprintf(stderr, "hongbao-sim: give --seed N or --seeds A..B "
                         "(--help)\n");
    return 2;
  }
  opt.seed = seed;
  return run_one(opt, summary_line,
                 shown + " --seed " + std::to_string(seed) + extra);
}

} // namespace hb::sim

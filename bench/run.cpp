#include "bench/run.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/targets.hpp"
#include "load/audit.hpp"
#include "load/cpu_use.hpp"
#include "load/engine.hpp"
#include "load/scenario.hpp"
#include "load/stats.hpp"

namespace hb::bench {

namespace {

using json = nlohmann::ordered_json;

constexpr size_t problems_shown_max = 20;

std::string make_run_id() {
  std::random_device rd;
  auto now = std::chrono::system_clock::now().time_since_epoch();
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(now).count();
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%llx-%04x",
                static_cast<unsigned long long>(secs), rd() & 0xffff);
  return buf;
}

// -- The audit -----------------------------------------------------------------

struct run_audit {
  bool ok = true;
  uint64_t envelopes = 0;
  uint64_t shares = 0;
  int64_t wrapped_fen = 0;
  int64_t opened_fen = 0;
  int64_t remaining_fen = 0;
  int64_t refunded_fen = 0;
  uint64_t told_users = 0;
  uint64_t unknown_users = 0;
  std::vector<std::string> problems;
  std::vector<std::string> rule_problems;
  std::vector<std::string> checks;
};

void add_problem(std::vector<std::string>& list, std::string text) {
  if (list.size() < problems_shown_max)
    list.push_back(std::move(text));
}

run_audit audit_run(target& tgt, const run_book& book, const run_result& run) {
  run_audit out;
  auto loaded = tgt.load(book);
  if (!loaded) {
    out.ok = false;
    out.problems.push_back("cannot read the store: " + loaded.error().message);
    return out;
  }
  for (size_t i = 0; i < book.envelopes.size(); ++i) {
    const auto& plan = book.envelopes[i];
    if (plan.id == 0) {
      if (!run.told[i].empty())
        add_problem(out.problems, "envelope " + std::to_string(i + 1)
                                    + " has no id but shares were told");
      continue;
    }
    const auto& d = (*loaded)[i];
    out.envelopes++;
    if (d.env.id == 0) {
      out.ok = false;
      add_problem(out.problems, "envelope " + std::to_string(plan.id)
                                  + " was created but the store does not know it");
      continue;
    }
    if (d.env.total_fen != plan.create.total_fen
        || d.env.count != plan.create.count)
      add_problem(out.problems,
                  "envelope " + std::to_string(plan.id) + " holds "
                    + std::to_string(d.env.total_fen) + " fen in "
                    + std::to_string(d.env.count) + " shares, wrapped "
                    + std::to_string(plan.create.total_fen) + " in "
                    + std::to_string(plan.create.count));
    auto a = load::audit_envelope(d, run.told[i], run.unknown[i], book.users);
    out.shares += d.opens.size();
    out.wrapped_fen += d.env.total_fen;
    out.opened_fen += a.opened_fen;
    out.remaining_fen += d.env.remaining_fen;
    out.refunded_fen += d.env.refunded_fen;
    out.told_users += a.told_users;
    out.unknown_users += a.unknown_users;
    for (auto& p : a.problems)
      add_problem(out.problems, "envelope " + std::to_string(plan.id) + ": " + p);
    for (auto& p : a.rule_problems)
      add_problem(out.rule_problems,
                  "envelope " + std::to_string(plan.id) + ": " + p);
  }
  if (out.opened_fen + out.remaining_fen + out.refunded_fen != out.wrapped_fen)
    add_problem(out.problems, "money not conserved: opened + remaining + refunded"
                              " != wrapped");
  auto globals = tgt.check_globals(book);
  for (auto& p : globals.problems)
    add_problem(out.problems, p);
  out.checks = std::move(globals.notes);
  out.ok = out.ok && out.problems.empty() && out.rule_problems.empty();
  return out;
}

// -- Reports -------------------------------------------------------------------

double per_s(uint64_t n, double wall_s) {
  return wall_s > 0 ? static_cast<double>(n) / wall_s : 0.0;
}

std::string error_name(size_t slot) {
  return slot < error_slots - 1 ? to_string(static_cast<errc>(slot)) : "unknown";
}

json ops_json(run_result& r) {
  json ops = json::object();
  for (size_t k = 0; k < op_kinds; ++k) {
    auto& o = r.ops[k];
    auto lat = load::summarize(o.latency_us);
    json errors = json::object();
    for (size_t e = 0; e < error_slots; ++e)
      if (o.errors[e] > 0)
        errors[error_name(e)] = o.errors[e];
    ops[to_string(static_cast<op_kind>(k))] = json{
      {"sent", o.sent},
      {"answered", o.answered},
      {"ok", o.ok},
      {"per_s", per_s(o.answered, r.wall_s)},
      {"ok_per_s", per_s(o.ok, r.wall_s)},
      {"latency_ms", json{{"p50", lat.p50_ms}, {"p90", lat.p90_ms},
                          {"p99", lat.p99_ms}, {"p99_9", lat.p999_ms},
                          {"max", lat.max_ms}, {"mean", lat.mean_ms}}},
      {"errors", errors},
      {"retries", o.retries},
      {"gave_up", o.gave_up}};
  }
  return ops;
}

json phase_json(run_result& r) {
  json grabs = json::object();
  const char* names[] = {"?", "can_open", "already_opened", "exhausted",
                         "expired", "not_paid", "?", "?"};
  for (size_t i = 1; i < 6; ++i)
    if (r.grab_outcomes[i] > 0)
      grabs[names[i]] = r.grab_outcomes[i];
  auto opens_ok = r.opens_first + r.opens_repeat;
  return json{{"wall_s", r.wall_s},
              {"stopped_starting_s", r.stop_s},
              {"flows", json{{"total", r.flows_total},
                             {"started", r.flows_started},
                             {"done", r.flows_done},
                             {"started_per_s", per_s(r.flows_started, r.wall_s)}}},
              {"opens_per_s", per_s(opens_ok, r.wall_s)},
              {"shares_per_s", per_s(r.opens_first, r.wall_s)},
              {"opens_first", r.opens_first},
              {"opens_repeat", r.opens_repeat},
              {"start_lag_max_ms", r.start_lag_max_ms},
              {"reconnects", r.reconnects},
              {"grab_outcomes", grabs},
              {"ops", ops_json(r)},
              {"events", r.events}};
}

void print_phase(const char* title, json& p) {
  std::printf("%s: %llu flows in %.3f s (%.0f opens/s)\n", title,
              static_cast<unsigned long long>(p["flows"]["done"].get<uint64_t>()),
              p["wall_s"].get<double>(), p["opens_per_s"].get<double>());
  std::printf("  %-7s %9s %10s %8s %8s %8s %8s %8s   (latency ms)\n", "request",
              "answers", "per s", "p50", "p90", "p99", "p99.9", "max");
  for (auto& [name, o] : p["ops"].items()) {
    if (o["sent"].get<uint64_t>() == 0)
      continue;
    auto& l = o["latency_ms"];
    std::printf("  %-7s %9llu %10.1f %8.2f %8.2f %8.2f %8.2f %8.2f\n",
                name.c_str(),
                static_cast<unsigned long long>(o["answered"].get<uint64_t>()),
                o["per_s"].get<double>(), l["p50"].get<double>(),
                l["p90"].get<double>(), l["p99"].get<double>(),
                l["p99_9"].get<double>(), l["max"].get<double>());
  }
  std::string errors;
  for (auto& [name, o] : p["ops"].items()) {
    for (auto& [code, n] : o["errors"].items())
      errors += "  " + name + " " + code + " " + std::to_string(n.get<uint64_t>());
    if (o["retries"].get<uint64_t>() > 0)
      errors += "  (" + name + " retries "
                + std::to_string(o["retries"].get<uint64_t>()) + ")";
    if (o["gave_up"].get<uint64_t>() > 0)
      errors += "  (" + name + " gave up "
                + std::to_string(o["gave_up"].get<uint64_t>()) + ")";
  }
  std::printf("  errors:%s\n", errors.empty() ? " none" : errors.c_str());
  if (!p["grab_outcomes"].empty()) {
    std::string g;
    for (auto& [name, n] : p["grab_outcomes"].items())
      g += " " + name + " " + std::to_string(n.get<uint64_t>());
    std::printf("  grab outcomes:%s\n", g.c_str());
  }
  if (p["opens_first"].get<uint64_t>() + p["opens_repeat"].get<uint64_t>() > 0)
    std::printf("  opens: %llu new shares, %llu repeats answered with the same "
                "share\n",
                static_cast<unsigned long long>(p["opens_first"].get<uint64_t>()),
                static_cast<unsigned long long>(p["opens_repeat"].get<uint64_t>()));
  for (auto& e : p["events"])
    std::printf("  note: %s\n", e.get<std::string>().c_str());
}

json audit_json(const run_audit& a) {
  return json{{"ok", a.ok},
              {"envelopes", a.envelopes},
              {"shares", a.shares},
              {"wrapped_fen", a.wrapped_fen},
              {"opened_fen", a.opened_fen},
              {"remaining_fen", a.remaining_fen},
              {"refunded_fen", a.refunded_fen},
              {"told_users", a.told_users},
              {"unknown_users", a.unknown_users},
              {"checks", a.checks},
              {"problems", a.problems},
              {"rule_problems", a.rule_problems}};
}

void print_audit(const run_audit& a) {
  std::printf("audit: %s — %llu envelopes, %llu shares; %lld fen wrapped = %lld "
              "opened + %lld remaining%s\n",
              a.ok ? "OK" : "FAILED", static_cast<unsigned long long>(a.envelopes),
              static_cast<unsigned long long>(a.shares),
              static_cast<long long>(a.wrapped_fen),
              static_cast<long long>(a.opened_fen),
              static_cast<long long>(a.remaining_fen),
              a.refunded_fen > 0
                ? (" + " + std::to_string(a.refunded_fen) + " refunded").c_str()
                : "");
  if (a.ok) {
    std::printf("  nobody twice, at most count shares, every share >= 1 fen, "
                "every answer matches the records, split rule holds\n");
  }
  if (a.unknown_users > 0)
    std::printf("  %llu opens with an unknown outcome (lost answers)\n",
                static_cast<unsigned long long>(a.unknown_users));
  for (auto& c : a.checks)
    std::printf("  checked: %s\n", c.c_str());
  for (auto& p : a.problems)
    std::printf("  PROBLEM: %s\n", p.c_str());
  for (auto& p : a.rule_problems)
    std::printf("  SPLIT RULE: %s\n", p.c_str());
}

// -- CPU per open ----------------------------------------------------------------

std::string fixed(double x, int digits) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, x);
  return buf;
}

json cpu_json(const cpu_use& u, uint64_t opens) {
  json procs = json::array();
  for (auto& e : u.processes)
    procs.push_back(json{{"label", e.label},
                         {"seconds", e.seconds},
                         {"us_per_open", opens > 0 ? e.seconds * 1e6 / opens : 0.0}});
  return json{{"wall_s", u.wall_s}, {"cores", u.cores}, {"busy", u.busy()},
              {"processes", procs}};
}

void print_cpu(const json& c) {
  std::string line;
  for (auto& p : c["processes"])
    line += (line.empty() ? "" : ", ") + p["label"].get<std::string>() + " "
            + fixed(p["seconds"].get<double>(), 2) + " s ("
            + fixed(p["us_per_open"].get<double>(), 1) + " µs an open)";
  std::printf("  cpu: %s; %.0f %% of %u cores\n", line.c_str(),
              c["busy"].get<double>() * 100, c["cores"].get<unsigned>());
}

// -- The run -------------------------------------------------------------------

int fail(const bench_options& opts, int code, const std::string& message) {
  if (opts.json)
    std::cout << json{{"ok", false}, {"error", message}, {"exit_code", code}}.dump()
              << std::endl;
  std::fprintf(stderr, "hongbao-bench: %s\n", message.c_str());
  return code;
}

} // namespace

int run_bench(bench_options opts) {
  // Bad options change nothing: checked before the target is prepared.
  std::vector<watched_process> watched;
  for (auto& text : opts.cpu_of) {
    auto w = parse_watched(text);
    if (!w)
      return fail(opts, exit_usage, w.error().message);
    watched.push_back(*w);
  }
  auto tgt = make_target(opts.target);
  if (!tgt)
    return fail(opts, exit_usage, tgt.error().message);
  auto prepared = (*tgt)->prepare();
  if (!prepared)
    return fail(opts, prepared.error().code == errc::invalid_argument
                        ? exit_usage
                        : exit_transport,
                prepared.error().message);
  auto sc = make_scenario(opts.scenario, make_run_id());
  if (!sc)
    return fail(opts, exit_usage, sc.error().message);
  auto& book = sc->book;

  engine_options eng;
  eng.connections = opts.connections != 0 ? opts.connections
                                          : (*tgt)->connections_default();
  eng.window = opts.target.window != 0 ? opts.target.window
                                       : (*tgt)->window_default();
  eng.users = opts.users;
  eng.retries_max = opts.retries;
  eng.seed = opts.scenario.seed;
  eng.progress = !opts.quiet;
  eng.drain_s = opts.drain_s;

  int64_t shares_total = 0;
  for (auto& e : book.envelopes)
    shares_total += e.create.count;
  std::string mode
    = opts.rate > 0
        ? "open loop at " + std::to_string(static_cast<int64_t>(opts.rate))
            + " users/s"
        : "closed loop, " + std::to_string(opts.users) + " users at once";
  if (!opts.json)
    std::printf("hongbao-bench: scenario %s on %s\n  %zu envelopes, %lld "
                "shares, %zu users; %s; %u connections x %u in flight; "
                "duration %s; seed %llu\n",
                sc->name.c_str(), (*tgt)->describe().c_str(),
                book.envelopes.size(), static_cast<long long>(shares_total),
                book.users.size(), mode.c_str(), eng.connections, eng.window,
                opts.duration_s > 0
                  ? (std::to_string(opts.duration_s) + " s").c_str()
                  : "until done",
                static_cast<unsigned long long>(opts.scenario.seed));
  std::fflush(stdout);

  json setup_j = nullptr;
  if (!sc->setup.empty()) {
    auto setup_opts = eng;
    setup_opts.users = opts.setup_users;
    setup_opts.phase = "setup";
    auto setup = run_flows(**tgt, book, sc->setup, setup_opts);
    if (!setup.failure.empty())
      return fail(opts, exit_transport, setup.failure);
    setup_j = phase_json(setup);
    auto paid = setup.ops[static_cast<size_t>(op_kind::pay)].ok;
    if (paid != book.envelopes.size()) {
      std::string why = "setup: only " + std::to_string(paid) + " of "
                        + std::to_string(book.envelopes.size())
                        + " envelopes were created and paid";
      for (auto& e : setup.events)
        why += "; " + e;
      // What the creates and payments were answered, so that a failed
      // setup says why (retryable errors leave no event).
      for (auto kind : {op_kind::create, op_kind::pay}) {
        auto& o = setup.ops[static_cast<size_t>(kind)];
        std::string codes;
        for (size_t e = 0; e < error_slots; ++e)
          if (o.errors[e] > 0)
            codes += (codes.empty() ? "" : ", ") + error_name(e) + " "
                     + std::to_string(o.errors[e]);
        if (!codes.empty() || o.gave_up > 0)
          why += "; " + std::string{to_string(kind)} + ": " + std::to_string(o.ok)
                 + " ok, errors " + (codes.empty() ? "none" : codes)
                 + ", gave up after retries " + std::to_string(o.gave_up);
      }
      if (opts.target.name == "hongbao" && sc->name == "hot")
        why += " (the hot scenario needs the node's [limits] count_max >= "
               + std::to_string(shares_total) + ")";
      return fail(opts, exit_failed, why);
    }
    if (!opts.json)
      print_phase("setup", setup_j);
  }

  eng.rate = opts.rate;
  eng.duration_s = opts.duration_s;
  eng.phase = "run";
  auto cpu_before = take_cpu_sample(watched);
  auto result = run_flows(**tgt, book, sc->flows, eng);
  auto cpu_after = take_cpu_sample(watched);
  if (!result.failure.empty())
    return fail(opts, exit_transport, result.failure);
  auto run_j = phase_json(result);
  run_j["cpu"] = cpu_json(cpu_between(watched, cpu_before, cpu_after),
                          result.opens_first + result.opens_repeat);
  if (!opts.json) {
    print_phase("run", run_j);
    print_cpu(run_j["cpu"]);
    std::fflush(stdout);
  }
  auto audit = audit_run(**tgt, book, result);

  if (opts.json) {
    json out{{"ok", audit.ok},
             {"target", opts.target.name},
             {"target_description", (*tgt)->describe()},
             {"scenario", sc->name},
             {"label", opts.label},
             {"mode", opts.rate > 0 ? "open" : "closed"},
             {"users", opts.users},
             {"rate_target", opts.rate},
             {"duration_s", opts.duration_s},
             {"connections", eng.connections},
             {"window", eng.window},
             {"seed", opts.scenario.seed},
             {"envelopes", book.envelopes.size()},
             {"shares", shares_total},
             {"setup", setup_j},
             {"run", run_j},
             {"audit", audit_json(audit)}};
    std::cout << out.dump() << std::endl;
  } else {
    print_audit(audit);
  }
  return audit.ok ? exit_ok : exit_failed;
}

} // namespace hb::bench

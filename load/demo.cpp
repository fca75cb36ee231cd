#include "load/demo.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "client/client.hpp"
#include "domain/envelope.hpp"
#include "domain/money.hpp"
#include "domain/requests.hpp"
#include "load/audit.hpp"
#include "load/engine.hpp"
#include "load/scenario.hpp"
#include "load/stats.hpp"
#include "load/target.hpp"

namespace hb::demo {

namespace {

using json = nlohmann::ordered_json;
using namespace hb::bench;
using namespace hb::load;

/// The node's documented default limits: every share in [1, 20000] fen.
/// The demo keeps its totals inside them; a node configured tighter says
/// LIMIT_EXCEEDED and the demo reports it.
constexpr int64_t share_max_fen_default = 20000;

/// One envelope the demo wraps.
struct plan {
  create_request create;
  std::string payment_txn;
  envelope env;  ///< as the node answered ConfirmPayment
};

/// The outcome of the final GetEnvelope and its audit, per envelope.
struct checked {
  envelope_detail detail;
  envelope_audit audit;
};

// -- Small helpers -------------------------------------------------------------

std::string yuan(int64_t fen) {
  return to_yuan_string(fen);
}

std::string random_hex(int digits) {
  std::random_device rd;
  std::mt19937_64 gen((static_cast<uint64_t>(rd()) << 32) ^ rd());
  uint64_t value = gen();
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%016llx",
                static_cast<unsigned long long>(value));
  return std::string{buf}.substr(0, static_cast<size_t>(digits));
}

/// The story of the run (what was wrapped, what happens next) is part of the
/// text report on stdout; with --json the JSON object holds it instead.
void say(const demo_options& opts, const std::string& text) {
  if (!opts.json)
    std::cout << text << std::flush;
}

// -- The envelopes -------------------------------------------------------------

/// Totals that read like real 红包: lucky numbers in fen.
const int64_t totals_fen[] = {8888, 20000, 6666, 52000, 13140,
                              9999, 16888, 1888, 30000, 12345};
const char* senders[] = {"张伟", "王芳", "李娜", "刘洋", "陈静",
                         "杨帆", "赵磊", "黄丽", "周杰", "吴敏"};
const char* groups[] = {"相亲相爱一家人", "大学同学群", "公司年会", "篮球队",
                        "小区邻居", "春节值班群", "羽毛球俱乐部", "老乡会",
                        "读书会", "家长群"};
const char* greetings[] = {"恭喜发财，大吉大利", "新年快乐", "万事如意",
                           "年年有余", "身体健康", "心想事成", "步步高升",
                           "龙马精神", "五福临门", "岁岁平安"};

template <size_t N>
std::string pick(const char* const (&names)[N], uint32_t i,
                 const char* fallback) {
  if (i < N)
    return names[i];
  return std::string{fallback} + "-" + std::to_string(i + 1);
}

/// Envelope i: most are 拼手气 (random); the second is 普通 (equal). Totals
/// stay inside count ≤ total ≤ 20000 · count.
std::vector<plan> make_plans(const demo_options& opts, const std::string& run_id) {
  std::vector<plan> plans;
  constexpr size_t totals_n = sizeof(totals_fen) / sizeof(totals_fen[0]);
  for (uint32_t i = 0; i < opts.envelopes; ++i) {
    plan p;
    auto& c = p.create;
    c.sender = pick(senders, i, "sender");
    c.group = pick(groups, i, "group");
    c.greeting = pick(greetings, i, "greeting");
    c.count = opts.count;
    c.kind = i == 1 ? envelope_kind::equal : envelope_kind::random;
    int64_t base = totals_fen[i % totals_n] + 100 * static_cast<int64_t>(i / totals_n);
    c.total_fen = std::clamp<int64_t>(base, opts.count,
                                      share_max_fen_default * opts.count);
    c.idempotency_key = "demo-" + run_id + "-" + std::to_string(i + 1);
    p.payment_txn = "demo-txn-" + run_id + "-" + std::to_string(i + 1);
    plans.push_back(std::move(p));
  }
  return plans;
}

// -- Talking to the node (setup and audit, one request at a time) --------------

/// Sends `body` and returns the answer; retries retryable errors and
/// reconnects after a lost connection (every request here is idempotent).
/// Returns nullopt with `why` and `exit_code` set on failure.
class caller {
public:
  caller(const demo_options& opts, client::host_port where)
    : opts_(opts), where_(std::move(where)) {}

  bool connect(std::string& why) {
    auto conn = client::connection::connect(where_.host, where_.port,
                                            opts_.timeout_ms);
    if (!conn) {
      why = conn.error().message;
      if (why.find("hongbao-node running") == std::string::npos)
        why += " — is hongbao-node running?";
      return false;
    }
    auto ok = conn->authenticate(opts_.token, opts_.timeout_ms);
    if (!ok) {
      why = ok.error().code == errc::unauthenticated
              ? "authentication failed: " + ok.error().message
                  + " — check --token or HONGBAO_TOKEN"
              : ok.error().message;
      return false;
    }
    node_name_ = ok->node_name;
    conn_ = std::move(*conn);
    return true;
  }

  const std::string& node_name() const { return node_name_; }

  std::optional<response_body> call(const request_body& body, std::string& why,
                                    int& exit_code) {
    int delay_ms = 50;
    for (uint32_t attempt = 0;; ++attempt) {
      if (!conn_.connected() && !connect(why)) {
        // A node that restarts is back within moments: retry the connect
        // like any other retryable failure, within the same budget.
        if (attempt >= opts_.retries) {
          exit_code = exit_transport;
          return std::nullopt;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
        delay_ms = std::min(delay_ms * 2, 2000);
        continue;
      }
      auto resp = conn_.call(body, opts_.timeout_ms);
      bool again = false;
      if (!resp) {
        why = resp.error().message;
        conn_.close();
        again = true;
      } else if (auto* err = std::get_if<error_reply>(&resp->body)) {
        why = std::string{to_string(err->code)} + ": " + err->message;
        if (!retryable(err->code)) {
          exit_code = exit_failed;
          return std::nullopt;
        }
        again = true;
      } else {
        return std::move(resp->body);
      }
      if (!again || attempt >= opts_.retries) {
        exit_code = resp ? exit_failed : exit_transport;
        return std::nullopt;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      delay_ms = std::min(delay_ms * 2, 2000);
    }
  }

private:
  const demo_options& opts_;
  client::host_port where_;
  client::connection conn_;
  std::string node_name_;
};

/// Wraps and pays every planned envelope. Returns false with a message.
bool wrap_and_pay(const demo_options& opts, caller& node, std::vector<plan>& plans,
                  std::string& why, int& exit_code) {
  for (size_t i = 0; i < plans.size(); ++i) {
    auto& p = plans[i];
    auto created = node.call(p.create, why, exit_code);
    if (!created) {
      why = "cannot wrap envelope " + std::to_string(i + 1) + " ("
            + yuan(p.create.total_fen) + " yuan in "
            + std::to_string(p.create.count) + " shares): " + why;
      return false;
    }
    auto* env = std::get_if<envelope>(&*created);
    if (env == nullptr) {
      why = "the node answered CreateEnvelope with something else";
      exit_code = exit_failed;
      return false;
    }
    auto paid = node.call(pay_request{env->id, p.payment_txn}, why, exit_code);
    if (!paid) {
      why = "cannot pay envelope " + std::to_string(env->id) + ": " + why;
      return false;
    }
    env = std::get_if<envelope>(&*paid);
    if (env == nullptr || env->status != envelope_status::paid) {
      why = "the node did not answer ConfirmPayment with a paid envelope";
      exit_code = exit_failed;
      return false;
    }
    p.env = *env;
    say(opts, "  " + std::to_string(i + 1) + ". " + std::to_string(env->id)
                + "  " + yuan(env->total_fen) + " yuan in "
                + std::to_string(env->count) + " shares, "
                + (env->kind == envelope_kind::equal ? "普通 equal"
                                                     : "拼手气 random")
                + ", " + env->sender + " → " + env->group + " \""
                + env->greeting + "\"\n");
  }
  return true;
}

/// Fetches every envelope and audits it against what the Open replies said.
bool fetch_and_audit(caller& node, const std::vector<plan>& plans,
                     const run_result& storm,
                     const std::vector<std::string>& names,
                     std::vector<checked>& out, std::string& why,
                     int& exit_code) {
  for (size_t i = 0; i < plans.size(); ++i) {
    auto body = node.call(get_request{plans[i].env.id}, why, exit_code);
    if (!body) {
      why = "cannot fetch envelope " + std::to_string(plans[i].env.id) + ": "
            + why;
      return false;
    }
    auto* detail = std::get_if<envelope_detail>(&*body);
    if (detail == nullptr) {
      why = "the node answered GetEnvelope with something else";
      exit_code = exit_failed;
      return false;
    }
    checked c;
    c.detail = std::move(*detail);
    c.audit = audit_envelope(c.detail, storm.told[i], storm.unknown[i], names);
    if (c.detail.env.total_fen != plans[i].create.total_fen
        || c.detail.env.count != plans[i].create.count)
      c.audit.problems.push_back("the envelope is not the one wrapped: total "
                                 + yuan(c.detail.env.total_fen) + " in "
                                 + std::to_string(c.detail.env.count)
                                 + " shares");
    out.push_back(std::move(c));
  }
  return true;
}

// -- The report ----------------------------------------------------------------

struct totals {
  int64_t wrapped_fen = 0;
  int64_t opened_fen = 0;
  int64_t remaining_fen = 0;
  int64_t told_fen = 0;
  size_t unknown_users = 0;
  bool conserved = true;
  bool rules_ok = true;
  bool all_exhausted = true;
};

totals sum_up(const std::vector<checked>& envs) {
  totals t;
  for (auto& c : envs) {
    t.wrapped_fen += c.detail.env.total_fen;
    t.opened_fen += c.audit.opened_fen;
    t.remaining_fen += c.detail.env.remaining_fen;
    t.told_fen += c.audit.told_fen;
    t.unknown_users += c.audit.unknown_users;
    t.conserved = t.conserved && c.audit.conserved();
    t.rules_ok = t.rules_ok && c.audit.rules_ok();
    t.all_exhausted = t.all_exhausted
                      && c.detail.env.status == envelope_status::exhausted;
  }
  return t;
}

const char* grab_names[] = {"?", "can_open", "already_opened", "exhausted",
                            "expired", "not_paid"};

std::string error_name(size_t slot) {
  return slot < error_slots - 1 ? to_string(static_cast<errc>(slot))
                                : "unknown_code";
}

/// The grab outcomes or the committed opens, then errors by code.
json answers_json(const run_result& r, op_kind kind) {
  const auto& c = r.ops[static_cast<size_t>(kind)];
  json out = json::object();
  if (kind == op_kind::open) {
    out["committed"] = c.ok;
    out["repeats"] = r.opens_repeat;
  } else {
    for (size_t i = 1; i < 6; ++i)
      out[grab_names[i]] = r.grab_outcomes[i];
  }
  json errors = json::object();
  for (size_t i = 0; i < c.errors.size(); ++i)
    if (c.errors[i] > 0)
      errors[error_name(i)] = c.errors[i];
  out["errors"] = errors;
  out["sent"] = c.sent;
  out["retries"] = c.retries;
  out["gave_up"] = c.gave_up;
  return out;
}

/// "can_open 612, exhausted 14388, error busy 3  (15003 sent, ...)"
std::string answers_text(const run_result& r, op_kind kind) {
  const auto& c = r.ops[static_cast<size_t>(kind)];
  std::string text;
  auto add = [&text](const std::string& name, uint64_t n) {
    if (n == 0)
      return;
    text += (text.empty() ? "" : ", ") + name + " " + std::to_string(n);
  };
  if (kind == op_kind::open) {
    add("committed", c.ok);
    add("of them repeats (first_time=false)", r.opens_repeat);
  } else {
    for (size_t i = 1; i < 6; ++i)
      add(grab_names[i], r.grab_outcomes[i]);
  }
  for (size_t i = 0; i < c.errors.size(); ++i)
    add("error " + error_name(i), c.errors[i]);
  text += "  (" + std::to_string(c.sent) + " sent, " + std::to_string(c.retries)
          + " retries, " + std::to_string(c.gave_up) + " given up)";
  return text;
}

uint64_t final_grabs(const run_result& s) {
  uint64_t n = 0;
  for (size_t i = 1; i < 6; ++i)
    n += s.grab_outcomes[i];
  return n;
}

uint64_t opens_committed(const run_result& s) {
  return s.ops[static_cast<size_t>(op_kind::open)].ok;
}

/// Latency of the storm's requests, issued → final answer.
struct latency {
  latency_summary open;
  latency_summary grab;
};

json latency_json(const latency_summary& l) {
  return json{{"n", l.count}, {"p50", l.p50_ms}, {"p99", l.p99_ms},
              {"max", l.max_ms}};
}

json best_json(const envelope_detail& d) {
  auto* best = best_luck(d.opens);
  if (best == nullptr)
    return nullptr;
  return json{{"user", best->user},
              {"amount_fen", best->amount_fen},
              {"seq", best->seq}};
}

void print_json(const demo_options& opts, const std::string& node_name,
                const std::string& run_id, const std::vector<plan>& plans,
                const run_result& storm, const latency& lat,
                const std::vector<checked>& envs, const totals& t, bool ok) {
  json list = json::array();
  for (size_t i = 0; i < envs.size(); ++i) {
    const auto& env = envs[i].detail.env;
    const auto& a = envs[i].audit;
    list.push_back(json{
      {"envelope_id", env.id},
      {"kind", to_string(env.kind)},
      {"status", to_string(env.status)},
      {"sender", env.sender},
      {"group", env.group},
      {"greeting", env.greeting},
      {"total_fen", env.total_fen},
      {"count", env.count},
      {"opened_count", envs[i].detail.opens.size()},
      {"opened_fen", a.opened_fen},
      {"remaining_fen", env.remaining_fen},
      {"remaining_count", env.remaining_count},
      {"best_luck", best_json(envs[i].detail)},
      {"told_fen", a.told_fen},
      {"unknown_outcome_opens", a.unknown_users},
      {"conserved", a.conserved()},
      {"problems", a.problems},
      {"split_rule_ok", a.rules_ok()},
      {"split_rule_problems", a.rule_problems},
    });
  }
  uint64_t opens = opens_committed(storm);
  uint64_t grabs = final_grabs(storm);
  json out{
    {"ok", ok},
    {"node", node_name},
    {"server", opts.server},
    {"seed", opts.seed},
    {"run", run_id},
    {"settings", json{{"envelopes", opts.envelopes},
                      {"count", opts.count},
                      {"users", opts.users},
                      {"connections", opts.connections},
                      {"window", opts.window},
                      {"retries", opts.retries}}},
    {"envelopes", list},
    {"totals", json{{"wrapped_fen", t.wrapped_fen},
                    {"opened_fen", t.opened_fen},
                    {"remaining_fen", t.remaining_fen},
                    {"told_fen", t.told_fen},
                    {"unknown_outcome_opens", t.unknown_users},
                    {"conserved", t.conserved},
                    {"split_rule_ok", t.rules_ok},
                    {"all_exhausted", t.all_exhausted}}},
    {"storm", json{
      {"grab_attempts", uint64_t{opts.users} * plans.size()},
      {"wall_ms", storm.wall_s * 1000.0},
      {"grabs_answered", grabs},
      {"opens_committed", opens},
      {"grabs_per_s", storm.wall_s > 0 ? grabs / storm.wall_s : 0.0},
      {"opens_per_s", storm.wall_s > 0 ? opens / storm.wall_s : 0.0},
      {"first_open_ms", storm.first_open_s * 1000.0},
      {"last_commit_ms", storm.last_open_s * 1000.0},
      {"latency_ms", json{{"open", latency_json(lat.open)},
                          {"grab", latency_json(lat.grab)}}},
      {"grab", answers_json(storm, op_kind::grab)},
      {"open", answers_json(storm, op_kind::open)},
      {"reconnects", storm.reconnects},
      {"stalls", storm.stalls},
      {"unexpected_responses", storm.unexpected_responses},
      {"events", storm.events},
      {"failure", storm.failure},
    }},
  };
  std::cout << out.dump() << std::endl;
}

void print_text(const demo_options& opts, const std::vector<plan>& plans,
                const run_result& storm, const latency& lat,
                const std::vector<checked>& envs, const totals& t) {
  std::printf("\nEnvelopes\n");
  // "手气最佳" is 12 bytes but 8 columns wide: 26 bytes pad to 22 columns.
  std::printf("  %-2s %-19s  %-6s  %9s  %9s  %-26s  %9s\n", "#", "id", "kind",
              "total", "opened", "best luck 手气最佳", "remaining");
  for (size_t i = 0; i < envs.size(); ++i) {
    const auto& d = envs[i].detail;
    std::string best = "-";
    if (auto* b = best_luck(d.opens))
      best = b->user + " " + yuan(b->amount_fen) + " (#" + std::to_string(b->seq)
             + ")";
    std::string opened = std::to_string(d.opens.size()) + "/"
                         + std::to_string(d.env.count);
    std::printf("  %-2zu %-19lld  %-6s  %9s  %9s  %-22s  %9s%s\n", i + 1,
                static_cast<long long>(d.env.id), to_string(d.env.kind),
                yuan(d.env.total_fen).c_str(), opened.c_str(), best.c_str(),
                yuan(d.env.remaining_fen).c_str(),
                envs[i].audit.conserved() && envs[i].audit.rules_ok()
                  ? ""
                  : "  ✗");
    for (auto& p : envs[i].audit.problems)
      std::printf("       ✗ %s\n", p.c_str());
    for (auto& p : envs[i].audit.rule_problems)
      std::printf("       ✗ split rule: %s\n", p.c_str());
  }

  std::printf("\nMoney (yuan)\n");
  std::printf("  wrapped %s, opened %s, remaining %s\n",
              yuan(t.wrapped_fen).c_str(), yuan(t.opened_fen).c_str(),
              yuan(t.remaining_fen).c_str());
  std::printf("  Open replies told users %s in all%s\n",
              yuan(t.told_fen).c_str(),
              t.unknown_users == 0
                ? (t.told_fen == t.opened_fen ? " = Σ shares recorded" : " ≠ Σ shares recorded")
                : (" (" + std::to_string(t.unknown_users)
                   + " opens with unknown outcome)").c_str());
  std::printf("  conserved: %s  (per envelope: Σ shares + remaining = total, "
              "every share ≥ 0.01, nobody twice, at most count shares, every "
              "\"you got X\" recorded)\n",
              t.conserved ? "yes" : "NO");
  std::printf("  split rule: %s  (拼手气 double-mean, 普通 total / count)\n",
              t.rules_ok ? "ok" : "VIOLATED");
  if (!t.all_exhausted && opts.users >= static_cast<uint32_t>(opts.count))
    std::printf("  note: not every envelope is exhausted although %u users "
                "≥ %d shares each\n",
                opts.users, opts.count);

  uint64_t grabs = final_grabs(storm);
  uint64_t opens = opens_committed(storm);
  std::printf("\nStorm: %u users × %zu envelopes = %llu grabs (抢), an open "
              "(拆) after each can_open\n",
              opts.users, plans.size(),
              static_cast<unsigned long long>(uint64_t{opts.users} * plans.size()));
  std::printf("  over %u connection%s, up to %u requests in flight each; "
              "seed %llu\n",
              opts.connections, opts.connections == 1 ? "" : "s", opts.window,
              static_cast<unsigned long long>(opts.seed));
  std::printf("  wall time %.3f s: %.0f grabs/s, %.0f opens/s (%llu opens "
              "committed)\n",
              storm.wall_s, storm.wall_s > 0 ? grabs / storm.wall_s : 0.0,
              storm.wall_s > 0 ? opens / storm.wall_s : 0.0,
              static_cast<unsigned long long>(opens));
  if (storm.first_open_s >= 0 && storm.last_open_s >= 0)
    std::printf("  first open sent at %.3f s, last share committed at %.3f s\n",
                storm.first_open_s, storm.last_open_s);
  std::printf("  latency open p50 %.1f ms, p99 %.1f ms, max %.1f ms; grab p50 "
              "%.1f ms, p99 %.1f ms\n",
              lat.open.p50_ms, lat.open.p99_ms, lat.open.max_ms,
              lat.grab.p50_ms, lat.grab.p99_ms);
  std::printf("  grabs: %s\n", answers_text(storm, op_kind::grab).c_str());
  std::printf("  opens: %s\n", answers_text(storm, op_kind::open).c_str());
  if (storm.reconnects > 0 || storm.stalls > 0 || storm.unexpected_responses > 0)
    std::printf("  connections: %llu reconnects, %llu stalls, %llu unexpected "
                "responses\n",
                static_cast<unsigned long long>(storm.reconnects),
                static_cast<unsigned long long>(storm.stalls),
                static_cast<unsigned long long>(storm.unexpected_responses));
  for (auto& e : storm.events)
    std::printf("  event: %s\n", e.c_str());
}

// -- The storm -----------------------------------------------------------------

/// The paid envelopes and the users' names, as the engine's sessions need
/// them to write requests.
run_book storm_book(const demo_options& opts, const std::string& run_id,
                    const std::vector<plan>& plans) {
  run_book book;
  book.run_id = run_id;
  for (auto& p : plans) {
    envelope_plan e;
    e.create = p.create;
    e.payment_txn = p.payment_txn;
    e.id = p.env.id;
    book.envelopes.push_back(std::move(e));
  }
  book.users.reserve(opts.users);
  for (uint32_t u = 0; u < opts.users; ++u)
    book.users.push_back(user_name(u, opts.users));
  return book;
}

/// "  [  3.0 s] grabs 5012/15000 answered, opens 480 committed, retries 0"
void print_storm_progress(const progress_view& v, uint64_t grabs_total) {
  const auto& r = *v.result;
  uint64_t retries = 0;
  for (auto& o : r.ops)
    retries += o.retries;
  std::fprintf(stderr,
               "  [%5.1f s] grabs %llu/%llu answered, opens %llu committed, "
               "retries %llu\n",
               v.t_s,
               static_cast<unsigned long long>(
                 r.ops[static_cast<size_t>(op_kind::grab)].answered),
               static_cast<unsigned long long>(grabs_total),
               static_cast<unsigned long long>(opens_committed(r)),
               static_cast<unsigned long long>(retries));
}

/// Every user grabs every envelope (users × envelopes grabs, in a seeded
/// random order) and opens each envelope whose grab answers can_open, with
/// every request of every connection's window in flight at once.
run_result run_storm(const demo_options& opts, run_book& book) {
  target_options where;
  where.name = "hongbao";
  where.server = opts.server;
  where.token = opts.token;
  where.timeout_ms = opts.timeout_ms;
  auto tgt = make_hongbao_target(where);
  if (!tgt) {
    run_result r;
    r.failure = tgt.error().message;
    return r;
  }
  engine_options eng;
  eng.connections = opts.connections;
  eng.window = opts.window;
  eng.users = opts.connections * opts.window;
  eng.retries_max = opts.retries;
  eng.backoff_first_ms = 50;
  eng.backoff_max_ms = 2000;
  // Enough to ride out a node restart: an attempt at once, then six more
  // 0.25 s, 0.5 s, 1 s, then 2 s apart (7.75 s in all) per connection.
  eng.reconnects_max = 7;
  eng.reconnects_per_session = true;
  eng.reconnect_pause_first_ms = 250;
  eng.reconnect_pause_max_ms = eng.backoff_max_ms;
  eng.stall_ms = opts.timeout_ms;
  eng.latency_ok_only = true;
  eng.seed = opts.seed;
  eng.progress = !opts.quiet;
  eng.phase = "storm";
  uint64_t grabs_total = uint64_t{opts.users} * book.envelopes.size();
  eng.on_progress = [grabs_total](const progress_view& v) {
    print_storm_progress(v, grabs_total);
  };
  auto flows = grab_every_envelope(
    opts.users, static_cast<uint32_t>(book.envelopes.size()), opts.seed);
  return run_flows(**tgt, book, flows, eng);
}

int fail(const demo_options& opts, const std::string& message, int exit_code) {
  if (opts.json) {
    json out{{"ok", false},
             {"error", json{{"message", message}, {"exit_code", exit_code}}}};
    std::cout << out.dump() << std::endl;
  }
  std::cerr << "hongbao-demo: " << message << "\n";
  return exit_code;
}

} // namespace

int run_demo(demo_options opts) {
  auto where = client::parse_host_port(opts.server);
  if (!where)
    return fail(opts, where.error().message, exit_usage);
  if (uint64_t{opts.users} * opts.envelopes > attempts_max)
    return fail(opts, "--users × --envelopes must stay ≤ "
                        + std::to_string(attempts_max),
                exit_usage);
  if (opts.seed == 0)
    opts.seed = std::random_device{}() | 1u;
  auto run_id = random_hex(8);

  caller node{opts, *where};
  std::string why;
  if (!node.connect(why))
    return fail(opts, why, exit_transport);
  say(opts, "hongbao-demo: node " + node.node_name() + " at " + opts.server
              + ", seed " + std::to_string(opts.seed) + ", run " + run_id
              + "\nwrapping (包) and paying (发) "
              + std::to_string(opts.envelopes)
              + (opts.envelopes == 1 ? " envelope:\n" : " envelopes:\n"));
  auto plans = make_plans(opts, run_id);
  int exit_code = exit_ok;
  if (!wrap_and_pay(opts, node, plans, why, exit_code))
    return fail(opts, why, exit_code);

  say(opts, std::to_string(opts.users) + " users grab (抢) every envelope and "
              "open (拆) when told can_open, over "
              + std::to_string(opts.connections) + " connections...\n");
  auto book = storm_book(opts, run_id, plans);
  auto storm = run_storm(opts, book);
  if (!storm.failure.empty() && storm.flows_started == 0)
    return fail(opts, storm.failure, exit_transport);

  std::vector<checked> envs;
  if (!fetch_and_audit(node, plans, storm, book.users, envs, why, exit_code))
    return fail(opts, why, exit_code);

  latency lat;
  lat.open = summarize(storm.ops[static_cast<size_t>(op_kind::open)].latency_us);
  lat.grab = summarize(storm.ops[static_cast<size_t>(op_kind::grab)].latency_us);
  auto t = sum_up(envs);
  bool ok = t.conserved && t.rules_ok && storm.failure.empty();
  if (opts.json)
    print_json(opts, node.node_name(), run_id, plans, storm, lat, envs, t, ok);
  else
    print_text(opts, plans, storm, lat, envs, t);
  if (!storm.failure.empty()) {
    std::cerr << "hongbao-demo: the storm did not finish: " << storm.failure
              << "\n";
    return exit_transport;
  }
  if (!t.conserved)
    std::cerr << "hongbao-demo: MONEY NOT CONSERVED — see the ✗ lines; this "
                 "is a bug in the node\n";
  else if (!t.rules_ok)
    std::cerr << "hongbao-demo: shares break the split rule — see the ✗ "
                 "lines; this is a bug in the node\n";
  return ok ? exit_ok : exit_failed;
}

int usage_error(bool json_wanted, const std::string& message) {
  if (json_wanted)
    std::cout << json{{"ok", false},
                      {"error", json{{"message", message},
                                     {"exit_code", exit_usage}}}}
                   .dump()
              << std::endl;
  return exit_usage;
}

} // namespace hb::demo

#include "load/audit.hpp"

#include <algorithm>

#include <unordered_map>
#include <unordered_set>

#include "domain/money.hpp"

namespace hb::load {

namespace {

/// Problems per envelope beyond this many are summarised: one is enough to
/// fail, a thousand would drown the report.
constexpr size_t problems_max = 8;

void add(std::vector<std::string>& list, std::string text) {
  if (list.size() < problems_max)
    list.push_back(std::move(text));
  else if (list.size() == problems_max)
    list.push_back("... more problems not shown");
}

std::string yuan(int64_t fen) {
  return to_yuan_string(fen);
}

/// The money invariants of the envelope on its own.
void check_money(const envelope_detail& d, envelope_audit& out) {
  const auto& env = d.env;
  auto n = static_cast<int64_t>(d.opens.size());
  if (n > env.count)
    add(out.problems, std::to_string(n) + " shares recorded but count is "
                        + std::to_string(env.count));
  if (env.remaining_count != env.count - n)
    add(out.problems, "remaining_count " + std::to_string(env.remaining_count)
                        + " but " + std::to_string(n) + " of "
                        + std::to_string(env.count) + " shares opened");
  if (env.remaining_fen < 0)
    add(out.problems, "negative remaining " + yuan(env.remaining_fen));
  std::unordered_set<std::string> users;
  int64_t sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const auto& rec = d.opens[static_cast<size_t>(i)];
    if (rec.amount_fen < 1)
      add(out.problems, "share " + std::to_string(rec.seq) + " of " + rec.user
                          + " is below 1 fen: " + std::to_string(rec.amount_fen));
    if (!users.insert(rec.user).second)
      add(out.problems, "user " + rec.user + " holds two shares");
    if (rec.seq != i + 1)
      add(out.problems, "share at position " + std::to_string(i + 1)
                          + " has seq " + std::to_string(rec.seq));
    sum += rec.amount_fen;
  }
  out.opened_fen = sum;
  if (sum + env.remaining_fen != env.total_fen)
    add(out.problems, "shares " + yuan(sum) + " + remaining "
                        + yuan(env.remaining_fen) + " != total "
                        + yuan(env.total_fen));
  bool all_opened = env.remaining_count == 0;
  if (all_opened && env.status != envelope_status::exhausted)
    add(out.problems, std::string{"every share is opened but the status is "}
                        + to_string(env.status));
  if (!all_opened && env.status == envelope_status::exhausted)
    add(out.problems, "status exhausted with "
                        + std::to_string(env.remaining_count)
                        + " shares left");
  if (all_opened && env.remaining_fen != 0)
    add(out.problems, "every share is opened but " + yuan(env.remaining_fen)
                        + " yuan remain");
}

/// Every Open reply must match the recorded share of that user, and every
/// recorded share must have been told to its user (or be one whose reply was
/// lost with an unknown outcome): "you got X" is real, and nobody's money
/// vanished behind an error reply.
void check_told(const envelope_detail& d, const std::vector<told_share>& told,
                const std::vector<uint32_t>& unknown,
                const std::vector<std::string>& names, envelope_audit& out) {
  std::unordered_map<std::string, const open_record*> by_user;
  for (auto& rec : d.opens)
    by_user.emplace(rec.user, &rec);
  std::unordered_set<std::string> told_users;
  for (auto& t : told) {
    const auto& user = names[t.user];
    auto it = by_user.find(user);
    if (it == by_user.end()) {
      add(out.problems, user + " was told " + yuan(t.amount_fen) + " (share "
                          + std::to_string(t.seq)
                          + ") but the envelope records no share for them");
      continue;
    }
    const auto& rec = *it->second;
    if (rec.amount_fen != t.amount_fen || rec.seq != t.seq)
      add(out.problems, user + " was told " + yuan(t.amount_fen) + " (share "
                          + std::to_string(t.seq) + ") but the envelope records "
                          + yuan(rec.amount_fen) + " (share "
                          + std::to_string(rec.seq) + ")");
    if (told_users.insert(user).second)
      out.told_fen += t.amount_fen;
  }
  out.told_users = told_users.size();
  std::unordered_set<std::string> unknown_users;
  for (auto u : unknown)
    if (told_users.count(names[u]) == 0)
      unknown_users.insert(names[u]);
  out.unknown_users = unknown_users.size();
  for (auto& rec : d.opens)
    if (told_users.count(rec.user) == 0 && unknown_users.count(rec.user) == 0)
      add(out.problems, "share " + std::to_string(rec.seq) + " ("
                          + yuan(rec.amount_fen) + ") of " + rec.user
                          + " is recorded but no Open reply told them");
  if (unknown_users.empty() && out.told_fen != out.opened_fen)
    add(out.problems, "Open replies told " + yuan(out.told_fen)
                        + " yuan but the shares sum to "
                        + yuan(out.opened_fen));
}

/// Random shares follow the double-mean rule: every share but the last is in
/// [1, 2 · remaining / remaining_count − 1]. (The per-share cap only ever
/// lowers that bound, and the floor it imposes, remaining − later · cap,
/// never exceeds remaining / remaining_count, so the check holds whatever
/// the node's cap.) The last share takes the rest. Equal shares are
/// total / count with the first total % count shares one fen more.
void check_rules(const envelope_detail& d, envelope_audit& out) {
  const auto& env = d.env;
  int64_t remaining = env.total_fen;
  int64_t remaining_count = env.count;
  for (auto& rec : d.opens) {
    if (remaining_count <= 0)
      break;  // already reported as too many shares
    auto where = "share " + std::to_string(rec.seq) + " (" + rec.user + ") ";
    if (env.kind == envelope_kind::equal) {
      int64_t expect = env.total_fen / env.count
                       + (rec.seq - 1 < env.total_fen % env.count ? 1 : 0);
      if (rec.amount_fen != expect)
        add(out.rule_problems, where + yuan(rec.amount_fen)
                                 + " but an equal share is " + yuan(expect));
    } else if (remaining_count == 1) {
      if (rec.amount_fen != remaining)
        add(out.rule_problems, where + yuan(rec.amount_fen)
                                 + " but the last share must take the rest, "
                                 + yuan(remaining));
    } else {
      int64_t hi = std::max<int64_t>(1, 2 * remaining / remaining_count - 1);
      if (rec.amount_fen < 1 || rec.amount_fen > hi)
        add(out.rule_problems, where + yuan(rec.amount_fen)
                                 + " is outside the double-mean range [0.01, "
                                 + yuan(hi) + "]");
    }
    remaining -= rec.amount_fen;
    remaining_count -= 1;
  }
}

} // namespace

envelope_audit audit_envelope(const envelope_detail& detail,
                              const std::vector<told_share>& told,
                              const std::vector<uint32_t>& unknown,
                              const std::vector<std::string>& names) {
  envelope_audit out;
  check_money(detail, out);
  check_told(detail, told, unknown, names, out);
  check_rules(detail, out);
  return out;
}

} // namespace hb::load

#include "load/scenario.hpp"

#include <algorithm>
#include <random>

namespace hb::bench {

namespace {

struct shape {
  uint32_t envelopes;
  int32_t shares_lo, shares_hi;
  uint32_t grabbers;  ///< 0: shares + shares / 2
  int64_t mean_lo_fen, mean_hi_fen;  ///< mean share of an envelope
  double equal_share;   ///< fraction of equal (普通) envelopes
  double repeat_share;  ///< fraction of users who open twice
  bool senders_measured;
};

outcome<shape> shape_of(const std::string& name) {
  if (name == "hot")
    return shape{1, 10000, 10000, 10000, 100, 100, 0.0, 0.0, false};
  if (name == "spread")
    return shape{10000, 10, 10, 10, 100, 2000, 0.0, 0.0, false};
  if (name == "storm")
    return shape{2000, 5, 20, 0, 20, 800, 0.1, 0.1, true};
  return failure{errc::invalid_argument,
                 "unknown scenario '" + name + "' (hot, spread or storm)"};
}

std::string numbered(const char* prefix, uint64_t i, int digits) {
  auto n = std::to_string(i);
  if (static_cast<int>(n.size()) < digits)
    n.insert(0, static_cast<size_t>(digits) - n.size(), '0');
  return prefix + n;
}

int digits_of(uint64_t n) {
  int d = 1;
  for (; n >= 10; n /= 10)
    ++d;
  return d;
}

} // namespace

std::string user_name(uint64_t index, uint64_t users) {
  return numbered("user-", index + 1, digits_of(users));
}

std::vector<flow> grab_every_envelope(uint32_t users, uint32_t envelopes,
                                      uint64_t seed) {
  std::vector<flow> out;
  out.reserve(uint64_t{users} * envelopes);
  for (uint32_t u = 0; u < users; ++u)
    for (uint32_t e = 0; e < envelopes; ++e)
      out.push_back(flow{e, u, false, false, false});
  std::mt19937_64 rng{seed * 0x9e3779b97f4a7c15ULL + 29};
  std::shuffle(out.begin(), out.end(), rng);
  return out;
}

outcome<scenario> make_scenario(const scenario_options& opts,
                                const std::string& run_id) {
  auto s = shape_of(opts.name);
  if (!s)
    return s.error();
  if (opts.envelopes != 0)
    s->envelopes = opts.envelopes;
  if (opts.shares != 0)
    s->shares_lo = s->shares_hi = opts.shares;
  if (opts.grabbers != 0)
    s->grabbers = opts.grabbers;
  if (s->envelopes > envelopes_max || s->shares_hi > shares_max)
    return failure{errc::invalid_argument, "at most "
                                             + std::to_string(envelopes_max)
                                             + " envelopes and "
                                             + std::to_string(shares_max)
                                             + " shares each"};
  std::mt19937_64 rng{opts.seed * 0x9e3779b97f4a7c15ULL + 17};
  scenario out;
  out.name = opts.name;
  out.book.run_id = run_id;
  auto& book = out.book;
  std::uniform_int_distribution<int32_t> shares(s->shares_lo, s->shares_hi);
  std::uniform_int_distribution<int64_t> mean(s->mean_lo_fen, s->mean_hi_fen);
  std::uniform_real_distribution<double> unit(0, 1);
  // Envelopes first, so that the number of users is known for their names.
  std::vector<uint32_t> group_size;
  uint64_t users = 0;
  int env_digits = digits_of(s->envelopes);
  for (uint32_t e = 0; e < s->envelopes; ++e) {
    envelope_plan p;
    auto& c = p.create;
    c.count = shares(rng);
    c.total_fen = c.count * mean(rng);
    c.kind = unit(rng) < s->equal_share ? envelope_kind::equal
                                        : envelope_kind::random;
    c.sender = numbered("sender-", e + 1, env_digits);
    c.group = numbered("group-", e + 1, env_digits);
    c.greeting = "恭喜发财，大吉大利";
    c.idempotency_key = "bench-" + run_id + "-" + std::to_string(e + 1);
    p.payment_txn = "bench-txn-" + run_id + "-" + std::to_string(e + 1);
    auto g = s->grabbers != 0 ? s->grabbers
                              : static_cast<uint32_t>(c.count + c.count / 2);
    group_size.push_back(g);
    users += g;
    book.envelopes.push_back(std::move(p));
  }
  if (users + s->envelopes > flows_max)
    return failure{errc::invalid_argument,
                   "the scenario would have " + std::to_string(users)
                     + " users; at most " + std::to_string(flows_max)};
  book.users.reserve(users);
  for (uint64_t u = 0; u < users; ++u)
    book.users.push_back(user_name(u, users));
  // Flows: one sender per envelope, then its group members.
  auto& senders = s->senders_measured ? out.flows : out.setup;
  uint32_t next_user = 0;
  std::vector<flow> members;
  for (uint32_t e = 0; e < s->envelopes; ++e) {
    senders.push_back(flow{e, 0, true, false, false});
    for (uint32_t k = 0; k < group_size[e]; ++k)
      members.push_back(flow{e, next_user++, false, unit(rng) < s->repeat_share,
                             s->senders_measured});
  }
  // Users do not queue up politely: members start in a random order (held
  // ones start when their envelope is paid, in this order).
  std::shuffle(members.begin(), members.end(), rng);
  out.flows.insert(out.flows.end(), members.begin(), members.end());
  return out;
}

} // namespace hb::bench

#include "domain/open_plan.hpp"

#include <string_view>
#include <unordered_set>

#include "domain/assert.hpp"
#include "domain/split.hpp"

namespace hb {

open_plan plan_open_batch(const envelope& env, std::vector<std::string> users,
                          const has_share_fn& has_share, money share_max,
                          int64_t now_ms, std::mt19937_64& rng) {
  // An envelope without shares left serves nobody, whatever its status.
  HB_ASSERT(env.status == envelope_status::paid || env.remaining_count == 0,
            "envelope {}: planning opens of a {} envelope", env.id,
            to_string(env.status));
  open_plan plan;
  auto& b = plan.batch;
  b.envelope_id = env.id;
  b.epoch = env.epoch;
  // No reallocation: `seen` points into the users' strings in b.opens.
  b.opens.reserve(users.size());
  std::unordered_set<std::string_view> seen;
  seen.reserve(users.size());
  envelope next = env;
  for (auto& user : users) {
    if (seen.count(user) > 0 || (has_share && has_share(user))) {
      plan.repeats.push_back(std::move(user));
      continue;
    }
    if (next.remaining_count == 0) {
      plan.unserved.push_back(std::move(user));
      continue;
    }
    open_record rec;
    rec.user = std::move(user);
    rec.amount_fen = next_share(next, share_max.fen(), rng);
    rec.seq = next.count - next.remaining_count + 1;
    rec.opened_at_ms = now_ms;
    next.remaining_fen -= rec.amount_fen;
    next.remaining_count -= 1;
    b.opens.push_back(std::move(rec));
    seen.insert(b.opens.back().user);
  }
  b.remaining_fen = next.remaining_fen;
  b.remaining_count = next.remaining_count;
  b.status = next.remaining_count == 0 ? envelope_status::exhausted
                                       : envelope_status::paid;
  return plan;
}

std::string batch_change_problem(const envelope& before, const open_batch& b) {
  money sum;
  for (size_t i = 0; i < b.opens.size(); ++i) {
    auto& o = b.opens[i];
    if (o.amount_fen < 1)
      return "share below 1 fen for user " + o.user;
    if (o.seq != before.count - before.remaining_count + 1
                   + static_cast<int32_t>(i))
      return "seq out of order for user " + o.user;
    sum += money{o.amount_fen};
  }
  if (money{before.remaining_fen} - sum != money{b.remaining_fen}
      || before.remaining_count - static_cast<int32_t>(b.opens.size())
           != b.remaining_count)
    return "the batch does not add up to the new remainder";
  if (b.remaining_fen < 0 || b.remaining_count < 0)
    return "negative remaining amount or count";
  if (b.remaining_count == 0 && b.remaining_fen != 0)
    return "no shares left but money remains";
  if (b.remaining_count > 0 && b.remaining_fen < b.remaining_count)
    return "remaining money cannot give every share 1 fen";
  if (b.status
      != (b.remaining_count == 0 ? envelope_status::exhausted
                                 : envelope_status::paid))
    return "the batch's status does not match its remaining count";
  return {};
}

} // namespace hb

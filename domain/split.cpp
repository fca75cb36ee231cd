#include "domain/split.hpp"

#include <algorithm>

#include "domain/assert.hpp"

namespace hb {

int64_t random_share(int64_t remaining_fen, int32_t remaining_count,
                     int64_t share_max_fen, std::mt19937_64& rng) {
  HB_ASSERT(remaining_count >= 1, "random_share needs a share left");
  HB_ASSERT(remaining_fen >= remaining_count,
            "remaining {} fen below 1 fen for each of {} shares", remaining_fen,
            remaining_count);
  HB_ASSERT(remaining_fen <= remaining_count * share_max_fen,
            "remaining {} fen above {} shares of at most {} fen",
            remaining_fen, remaining_count, share_max_fen);
  if (remaining_count == 1)
    return remaining_fen;
  int64_t hi = (2 * remaining_fen) / remaining_count - 1;
  // Keep what stays behind within [1, share_max] per later share.
  int64_t later = remaining_count - 1;
  hi = std::min({hi, share_max_fen, remaining_fen - later});
  int64_t lo = std::max<int64_t>(1, remaining_fen - later * share_max_fen);
  if (hi < lo)
    hi = lo;
  std::uniform_int_distribution<int64_t> dist(lo, hi);
  int64_t share = dist(rng);
  HB_ASSERT(share >= 1 && share <= remaining_fen - later,
            "share {} fen outside [1, {}]", share, remaining_fen - later);
  return share;
}

int64_t equal_share(int64_t total_fen, int32_t count, int32_t position) {
  HB_ASSERT(count >= 1 && position >= 0 && position < count,
            "equal_share position {} of {} shares", position, count);
  int64_t base = total_fen / count;
  int64_t extra = total_fen % count;
  return base + (position < extra ? 1 : 0);
}

int64_t next_share(const envelope& env, int64_t share_max_fen,
                   std::mt19937_64& rng) {
  HB_ASSERT(env.remaining_count >= 1,
            "envelope {}: next_share without a share left", env.id);
  if (env.kind == envelope_kind::equal)
    return equal_share(env.total_fen, env.count,
                       env.count - env.remaining_count);
  // The per-share limit may have been lowered in config after this envelope
  // was wrapped; never let that make its remaining money unsplittable.
  int64_t per_share = (env.remaining_fen + env.remaining_count - 1)
                      / env.remaining_count;
  return random_share(env.remaining_fen, env.remaining_count,
                      std::max(share_max_fen, per_share), rng);
}

} // namespace hb

#pragma once

#include <cstdint>
#include <random>

#include "domain/envelope.hpp"

namespace hb {

/// Picks the next random share by the double-mean rule (二倍均值法): uniform
/// in [1, floor(2 · remaining / remaining_count) − 1] fen, and the last share
/// takes the rest. The result additionally respects `share_max_fen` while
/// leaving every later share at least 1 fen and at most `share_max_fen`.
/// Preconditions (asserted): remaining_count >= 1,
/// remaining_count <= remaining_fen <= remaining_count * share_max_fen.
int64_t random_share(int64_t remaining_fen, int32_t remaining_count,
                     int64_t share_max_fen, std::mt19937_64& rng);

/// The share at 0-based `position` of an equal envelope: total / count, and
/// the first (total % count) shares get one fen more.
int64_t equal_share(int64_t total_fen, int32_t count, int32_t position);

/// The next share of `env` (any kind) given its current remaining amount and
/// count. Asserts the envelope still has shares.
int64_t next_share(const envelope& env, int64_t share_max_fen,
                   std::mt19937_64& rng);

} // namespace hb

#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "domain/envelope.hpp"
#include "domain/money.hpp"

namespace hb {

/// The decision of one group commit: which queued user gets which share.
struct open_plan {
  /// One share per served user in queue order, with consecutive seqs after
  /// the envelope's last, and the remainder and status the envelope has
  /// once the batch is written.
  open_batch batch;
  /// Users given no new share because they hold one already (committed, or
  /// earlier in the same list): an open is idempotent per user, and their
  /// answer is the share they have.
  std::vector<std::string> repeats;
  /// Users without a share who came after the last one (手慢了), in queue
  /// order.
  std::vector<std::string> unserved;
};

/// Whether a user already holds a committed share of the envelope.
using has_share_fn = std::function<bool(const std::string&)>;

/// Plans the next batch of a PAID envelope (asserted, unless it has no
/// shares left and so serves nobody): each user in `users`
/// in order gets the next share by the envelope's kind (double-mean random
/// or equal split, see split.hpp), until the shares run out; the last share
/// takes the rest. Draws from `rng` only as split.hpp does for each share,
/// in queue order, so a seeded simulation stays reproducible.
/// `has_share` may be empty (nobody holds a share).
open_plan plan_open_batch(const envelope& env, std::vector<std::string> users,
                          const has_share_fn& has_share, money share_max,
                          int64_t now_ms, std::mt19937_64& rng);

/// The money rules of one batch applied to `before` (the envelope as the
/// batch found it), checked in O(batch) before it is written and again when
/// it is committed: shares >= 1 fen, seqs following the envelope's last,
/// the shares and the new remainder add up to the old remainder, and every
/// remaining share can still get 1 fen. Given that the envelope's
/// invariants held before, they hold after exactly when this returns an
/// empty string; otherwise it says what is wrong.
std::string batch_change_problem(const envelope& before, const open_batch& b);

} // namespace hb

#pragma once

// The baselines hongbao is measured against, as targets of the load engine
// (load/target.hpp): a PostgreSQL row lock per open or a single conditional
// UPDATE (pg-lock, pg-update), and a Redis Lua script (redis-lua). They live
// here, above load/, because only hongbao-bench needs them; the engine knows
// targets only through the interface.

#include <cstdint>
#include <memory>

#include "domain/envelope.hpp"
#include "load/target.hpp"

namespace hb::bench {

outcome<std::unique_ptr<target>> make_pg_target(const target_options& opts);
outcome<std::unique_ptr<target>> make_redis_target(const target_options& opts);

/// Hongbao (load/) or one of the baselines above, by `opts.name`.
outcome<std::unique_ptr<target>> make_target(const target_options& opts);

/// The double-mean share (二倍均值法) for targets that split outside the
/// database: uniform in [1, floor(2 · remaining / remaining_count) − 1],
/// the last share takes the rest; equal envelopes: total / count with the
/// remainder spread over the first shares. `random` is any 64-bit value.
int64_t split_share(envelope_kind kind, int64_t total_fen, int32_t count,
                    int64_t remaining_fen, int32_t remaining_count,
                    uint64_t random);

} // namespace hb::bench

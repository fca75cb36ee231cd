// pg_store: the id segments: sequence leases, the durable record of
// blocked segments and the probe that exercises a segment's storage.
#include "persistence/pg_store.hpp"

#include <string>
#include <vector>

#include "persistence/pg_detail.hpp"

namespace hb::persistence {

using namespace detail;

// -- Sequence leases -------------------------------------------------------------

outcome<int64_t> pg_store::lease_sequence(int32_t segment, int32_t day,
                                          int64_t block) {
  if (block < 1)
    return failure{errc::internal, "lease_sequence: block must be >= 1"};
  if (!ensure_connected())
    return unreachable(conn_);
  // The upsert takes the row lock, so concurrent leases queue up and each
  // gets its own range.
  static constexpr const char* sql =
    "INSERT INTO segment_leases AS l (segment, day, next_seq)"
    " VALUES ($1, $2, 1 + $3::bigint)"
    " ON CONFLICT (segment, day) DO UPDATE SET next_seq = l.next_seq + $3::bigint"
    " RETURNING l.next_seq - $3::bigint";
  auto r = run(conn_, "lease_sequence", sql,
               params{}.add(int64_t{segment}).add(int64_t{day}).add(block));
  if (!r.ok())
    return r.error;
  return r.i64(0, 0);
}

// -- Segment health --------------------------------------------------------------

outcome<std::vector<segment_state>> pg_store::blocked_segments() {
  if (!ensure_connected())
    return unreachable(conn_);
  auto r = run(conn_, "blocked_segments",
               "SELECT segment, mode = 'manual', reason FROM segment_states "
               "WHERE blocked ORDER BY segment",
               params{});
  if (!r.ok())
    return r.error;
  std::vector<segment_state> out;
  for (int row = 0; row < r.rows(); ++row)
    out.push_back(segment_state{static_cast<int32_t>(r.i64(row, 0)), true,
                                r.text(row, 1) == "t", r.text(row, 2)});
  return out;
}

outcome<done> pg_store::set_segment_state(const segment_state& s) {
  if (!ensure_connected())
    return unreachable(conn_);
  auto r = run(conn_, "set_segment_state",
               "INSERT INTO segment_states (segment, blocked, mode, reason) "
               "VALUES ($1, $2::boolean, $3, $4) "
               "ON CONFLICT (segment) DO UPDATE SET blocked = EXCLUDED.blocked, "
               "mode = EXCLUDED.mode, reason = EXCLUDED.reason, "
               "changed_at = now()",
               params{}
                 .add(int64_t{s.segment})
                 .add(std::string{s.blocked ? "true" : "false"})
                 .add(std::string{s.manual ? "manual" : "auto"})
                 .add(s.reason));
  if (!r.ok())
    return r.error;
  return done{};
}

outcome<done> pg_store::probe_segment(int32_t segment, int32_t day) {
  if (!ensure_connected())
    return unreachable(conn_);
  transaction tx{conn_, "probe_segment"};
  auto begin = tx.begin();
  if (!begin.ok())
    return begin.error;
  // Sequence 0 is never handed out, so the probe row cannot collide with a
  // real envelope; the transaction is rolled back either way.
  int64_t probe_id = int64_t{day} * 100000000000 + segment;
  auto ins = run(conn_, "probe_segment",
                 "INSERT INTO envelopes (id, segment, sender, group_id, "
                 "idempotency_key, kind, status, total_fen, count, "
                 "remaining_fen, remaining_count, created_at) "
                 "VALUES ($1, $2, 'probe', 'probe', 'probe', 1, 1, 1, 1, 1, 1, "
                 "now())",
                 params{}.add(probe_id).add(int64_t{segment}));
  if (!ins.ok())
    return ins.error;
  auto upd = run(conn_, "probe_segment",
                 "UPDATE envelopes SET epoch = epoch WHERE id = (SELECT id "
                 "FROM envelopes WHERE segment = $1 AND id <> $2 LIMIT 1)",
                 params{}.add(int64_t{segment}).add(probe_id));
  if (!upd.ok())
    return upd.error;
  return done{};  // the transaction's destructor rolls back
}

} // namespace hb::persistence

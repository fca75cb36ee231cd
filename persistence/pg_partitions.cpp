// pg_store: hot and cold day partitions of envelopes, opens and user_records.
// The DDL itself lives in the SQL functions hb_ensure_partitions and
// hb_detach_day (migrations.cpp); this file validates and drives them.
#include "persistence/pg_store.hpp"

#include <ctime>
#include <string>

#include "persistence/pg_detail.hpp"

namespace hb::persistence {

using namespace detail;

namespace {

/// Whether `day` (yyyymmdd) is a real calendar day from 2000 on.
bool calendar_day(int32_t day, std::time_t& out) {
  std::tm tm{};
  tm.tm_year = day / 10000 - 1900;
  tm.tm_mon = (day / 100) % 100 - 1;
  tm.tm_mday = day % 100;
  if (tm.tm_year < 100 || tm.tm_year > 9999 - 1900 || tm.tm_mon < 0
      || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31)
    return false;
  auto copy = tm;
  out = timegm(&copy);
  // timegm normalises Feb 30 into March: a real day survives unchanged.
  return copy.tm_mday == tm.tm_mday && copy.tm_mon == tm.tm_mon;
}

/// Guards against a typo creating thousands of tables.
constexpr int64_t ensure_days_max = 1000;

} // namespace

outcome<int> pg_store::ensure_partitions(int32_t from_day, int32_t to_day) {
  std::time_t from = 0;
  std::time_t to = 0;
  if (!calendar_day(from_day, from) || !calendar_day(to_day, to))
    return failure{errc::invalid_argument,
                   "ensure_partitions: days must be yyyymmdd calendar days"};
  if (from > to || (to - from) / 86400 >= ensure_days_max)
    return failure{errc::invalid_argument,
                   "ensure_partitions: from_day must not be after to_day, and "
                   "the range at most "
                     + std::to_string(ensure_days_max) + " days"};
  if (!ensure_connected())
    return unreachable(conn_);
  auto r = run(conn_, "ensure_partitions", "SELECT hb_ensure_partitions($1, $2)",
               params{}.add(from_day).add(to_day));
  if (!r.ok())
    return r.error;
  return static_cast<int>(r.i64(0, 0));
}

outcome<int> pg_store::detach_cold(int32_t cutoff_day) {
  std::time_t cutoff = 0;
  if (!calendar_day(cutoff_day, cutoff))
    return failure{errc::invalid_argument,
                   "detach_cold: cutoff_day must be a yyyymmdd calendar day"};
  if (!ensure_connected())
    return unreachable(conn_);
  // The hot days before the cutoff, oldest first; each moves in a
  // transaction of its own, so the hot tables are locked only briefly.
  static constexpr const char* days_sql =
    "SELECT substr(c.relname, 12)::int AS day"
    " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
    " WHERE i.inhparent = 'public.envelopes'::regclass"
    " AND c.relname ~ '^envelopes_p[0-9]{8}$'"
    " AND substr(c.relname, 12)::int < $1 ORDER BY 1";
  auto days = run(conn_, "detach_cold", days_sql, params{}.add(cutoff_day));
  if (!days.ok())
    return days.error;
  int moved = 0;
  for (int row = 0; row < days.rows(); ++row) {
    auto r = run(conn_, "detach_cold", "SELECT hb_detach_day($1)",
                 params{}.add(days.i64(row, 0)));
    if (!r.ok())
      return r.error;
    if (r.boolean(0, 0))
      ++moved;
  }
  return moved;
}

} // namespace hb::persistence

// -- Segment health --------------------------------------------------------------

namespace hb::persistence {

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

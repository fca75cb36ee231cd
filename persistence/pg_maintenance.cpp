// pg_store: housekeeping of the storage: hot and cold day partitions of
// envelopes, opens and user_records (the DDL itself lives in the SQL
// functions hb_ensure_partitions and hb_detach_day in migrations.cpp; this
// file validates and drives them), and the scan for expired envelopes.
#include "persistence/pg_store.hpp"

#include <ctime>
#include <string>
#include <vector>

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

outcome<std::vector<int64_t>> pg_store::expired_envelopes(int64_t now_ms,
                                                          int32_t limit,
                                                          int64_t after_id) {
  if (limit < 1)
    return failure{errc::invalid_argument,
                   "expired_envelopes: limit must be >= 1"};
  if (!ensure_connected())
    return unreachable(conn_);
  // PAID envelopes are always hot; the partial index holds only them. The
  // page starts after the cursor envelope, in the order of the list.
  auto r = run(conn_, "expired_envelopes",
               "WITH c AS (SELECT expires_at, id FROM envelopes WHERE id = $3)"
               " SELECT e.id FROM envelopes e WHERE e.status = 2"
               " AND e.expires_at <= to_timestamp($1::bigint / 1000.0)"
               " AND (NOT EXISTS (SELECT 1 FROM c)"
               "  OR (e.expires_at, e.id) > (SELECT c.expires_at, c.id FROM c))"
               " ORDER BY e.expires_at, e.id LIMIT $2",
               params{}.add(now_ms).add(limit).add(after_id));
  if (!r.ok())
    return r.error;
  std::vector<int64_t> out;
  for (int row = 0; row < r.rows(); ++row)
    out.push_back(r.i64(row, 0));
  return out;
}

outcome<int64_t> pg_store::db_now_ms() {
  if (!ensure_connected())
    return unreachable(conn_);
  auto r = run(conn_, "db_now_ms", "SELECT hb_ms(clock_timestamp())", params{});
  if (!r.ok())
    return r.error;
  return r.i64(0, 0);
}

} // namespace hb::persistence

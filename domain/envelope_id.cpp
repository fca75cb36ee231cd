#include "domain/envelope_id.hpp"

#include <ctime>

namespace hb {

namespace {

constexpr int64_t day_factor = 100000000000LL;  // 10^11
constexpr int64_t seq_factor = 1000;

bool valid_day(int32_t day) {
  int32_t y = day / 10000;
  int32_t m = (day / 100) % 100;
  int32_t d = day % 100;
  // Up to the year 9222: a day of 9223 times 10^11 overflows int64_t.
  return y >= 2000 && y <= 9222 && m >= 1 && m <= 12 && d >= 1 && d <= 31;
}

} // namespace

int64_t make_envelope_id(int32_t day, int64_t sequence, int32_t segment) {
  if (!valid_day(day) || sequence < 1 || sequence >= sequence_max
      || segment < 0 || segment >= segment_count)
    return 0;
  return day * day_factor + sequence * seq_factor + segment;
}

bool parse_envelope_id(int64_t id, envelope_id_parts& out) {
  if (id <= 0)
    return false;
  envelope_id_parts p;
  p.day = static_cast<int32_t>(id / day_factor);
  p.sequence = (id % day_factor) / seq_factor;
  p.segment = static_cast<int32_t>(id % seq_factor);
  if (!valid_day(p.day) || p.sequence < 1)
    return false;
  out = p;
  return true;
}

int32_t utc_day_of(int64_t unix_ms) {
  std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return (tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;
}

} // namespace hb

#pragma once

#include <cstdint>
#include <string>

namespace hb {

/// Envelope ids are order numbers of the form
///   yyyymmdd · 10^11 + sequence · 10^3 + segment
/// e.g. 2026112600000042217 is sequence 42 of segment 217 on 2026-11-26.
/// The last three decimal digits name the segment (a database and table
/// group); the leading date makes ids range-partitionable by day.
constexpr int32_t segment_count = 1000;
constexpr int64_t sequence_max = 100000000;  // exclusive: 8 digits per day

struct envelope_id_parts {
  int32_t day = 0;        ///< yyyymmdd
  int64_t sequence = 0;   ///< [1, sequence_max)
  int32_t segment = 0;    ///< [0, segment_count)
};

/// Builds an id; returns 0 when a part is out of range.
int64_t make_envelope_id(int32_t day, int64_t sequence, int32_t segment);

/// Splits an id; returns false for anything that is not a well-formed id.
bool parse_envelope_id(int64_t id, envelope_id_parts& out);

inline int32_t segment_of(int64_t id) {
  return static_cast<int32_t>(id % segment_count);
}

/// The UTC day (yyyymmdd) of a Unix time in milliseconds.
int32_t utc_day_of(int64_t unix_ms);

} // namespace hb

#define CAF_SUITE domain.envelope_id

#include "caf/test/unit_test.hpp"

#include "domain/envelope_id.hpp"

using namespace hb;

CAF_TEST(an id carries its day sequence and segment) {
  auto id = make_envelope_id(20261126, 42, 217);
  CAF_CHECK_EQUAL(id, 2026112600000042217);
  envelope_id_parts p;
  CAF_REQUIRE(parse_envelope_id(id, p));
  CAF_CHECK_EQUAL(p.day, 20261126);
  CAF_CHECK_EQUAL(p.sequence, 42);
  CAF_CHECK_EQUAL(p.segment, 217);
}

CAF_TEST(the segment is the last three digits) {
  CAF_CHECK_EQUAL(segment_of(make_envelope_id(20261126, 42, 217)), 217);
  CAF_CHECK_EQUAL(segment_of(make_envelope_id(20261126, 42, 0)), 0);
  CAF_CHECK_EQUAL(segment_of(make_envelope_id(20261126, 42, 7)), 7);
  CAF_CHECK_EQUAL(segment_of(make_envelope_id(20261126, 99999999, 999)), 999);
  CAF_CHECK_EQUAL(segment_of(2027011500000001101), 101);
}

CAF_TEST(ids of one day sort by sequence and days sort before sequences) {
  auto a = make_envelope_id(20261126, 1, 999);
  auto b = make_envelope_id(20261126, 2, 0);
  auto c = make_envelope_id(20261127, 1, 0);
  auto last_of_day = make_envelope_id(20261126, sequence_max - 1, 999);
  CAF_CHECK_LESS(a, b);
  CAF_CHECK_LESS(b, c);
  CAF_CHECK_LESS(last_of_day, c);
}

CAF_TEST(formatting and parsing round-trip at the edges of each part) {
  for (int32_t day : {20000101, 20261126, 92221231})
    for (int64_t seq : {int64_t{1}, int64_t{4711}, sequence_max - 1})
      for (int32_t seg : {0, 217, segment_count - 1}) {
        auto id = make_envelope_id(day, seq, seg);
        CAF_REQUIRE_NOT_EQUAL(id, 0);
        envelope_id_parts p;
        CAF_REQUIRE(parse_envelope_id(id, p));
        CAF_CHECK_EQUAL(p.day, day);
        CAF_CHECK_EQUAL(p.sequence, seq);
        CAF_CHECK_EQUAL(p.segment, seg);
      }
}

CAF_TEST(a part out of range makes no id) {
  CAF_CHECK_EQUAL(make_envelope_id(20261126, 0, 1), 0);
  CAF_CHECK_EQUAL(make_envelope_id(20261126, -5, 1), 0);
  CAF_CHECK_EQUAL(make_envelope_id(20261126, sequence_max, 1), 0);
  CAF_CHECK_EQUAL(make_envelope_id(20261126, 1, segment_count), 0);
  CAF_CHECK_EQUAL(make_envelope_id(20261126, 1, -1), 0);
  CAF_CHECK_EQUAL(make_envelope_id(19991231, 1, 1), 0);  // before 2000
  CAF_CHECK_EQUAL(make_envelope_id(20261326, 1, 1), 0);  // month 13
  CAF_CHECK_EQUAL(make_envelope_id(20261100, 1, 1), 0);  // day 0
  CAF_CHECK_EQUAL(make_envelope_id(20261132, 1, 1), 0);  // day 32
  // A year whose id would not fit in 63 bits.
  CAF_CHECK_EQUAL(make_envelope_id(99991231, 1, 1), 0);
  CAF_CHECK_NOT_EQUAL(make_envelope_id(92221231, sequence_max - 1, 999), 0);
}

CAF_TEST(parsing refuses what is not a well formed id and keeps the output) {
  envelope_id_parts p;
  p.day = 1;
  p.sequence = 2;
  p.segment = 3;
  CAF_CHECK(!parse_envelope_id(0, p));
  CAF_CHECK(!parse_envelope_id(-1, p));
  CAF_CHECK(!parse_envelope_id(12345, p));  // no day
  // A valid day with sequence 0 (only a segment).
  CAF_CHECK(!parse_envelope_id(2026112600000000217, p));
  // Month 13.
  CAF_CHECK(!parse_envelope_id(2026132600000042217, p));
  CAF_CHECK_EQUAL(p.day, 1);
  CAF_CHECK_EQUAL(p.sequence, 2);
  CAF_CHECK_EQUAL(p.segment, 3);
}

CAF_TEST(the day of a time is its UTC calendar day) {
  CAF_CHECK_EQUAL(utc_day_of(1764115200000), 20251126);  // 2025-11-26T00:00Z
  CAF_CHECK_EQUAL(utc_day_of(1764115199999), 20251125);  // a ms before
  CAF_CHECK_EQUAL(utc_day_of(1800000000000), 20270115);
  CAF_CHECK_EQUAL(utc_day_of(951782400000), 20000229);   // a leap day
}

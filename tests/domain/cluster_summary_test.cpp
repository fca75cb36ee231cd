#define CAF_SUITE domain.cluster_summary

#include "caf/test/unit_test.hpp"

#include <string>
#include <vector>

#include "domain/cluster_summary.hpp"

using namespace hb;

namespace {

std::string text_of(std::vector<int32_t> segments) {
  return segments_text(segments);
}

segment_owner row(int32_t segment, std::string owner, int64_t incarnation,
                  int64_t epoch) {
  return segment_owner{segment, std::move(owner), incarnation, epoch};
}

} // namespace

CAF_TEST(segments are written as compact ascending ranges) {
  CAF_CHECK_EQUAL(text_of({}), "");
  CAF_CHECK_EQUAL(text_of({7}), "7");
  CAF_CHECK_EQUAL(text_of({5, 0, 2, 1}), "0-2,5");
  CAF_CHECK_EQUAL(text_of({3, 3, 4, 4}), "3-4");
  CAF_CHECK_EQUAL(text_of({0, 2, 4}), "0,2,4");
  std::vector<int32_t> all;
  for (int32_t s = 0; s < 1000; ++s)
    all.push_back(s);
  CAF_CHECK_EQUAL(text_of(all), "0-999");
  auto ranges = compact_ranges({9, 8, 1});
  CAF_REQUIRE_EQUAL(ranges.size(), 2u);
  CAF_CHECK_EQUAL(ranges[0].first, 1);
  CAF_CHECK_EQUAL(ranges[0].last, 1);
  CAF_CHECK_EQUAL(ranges[1].first, 8);
  CAF_CHECK_EQUAL(ranges[1].last, 9);
}

CAF_TEST(a single range is a-b or n within 0 to 999) {
  auto r = parse_segment_range("0-499");
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->first, 0);
  CAF_CHECK_EQUAL(r->last, 499);
  r = parse_segment_range("999");
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->first, 999);
  CAF_CHECK_EQUAL(r->last, 999);
  for (auto bad : {"", "-", "1-", "-1", "5-3", "1000", "0-1000", "a", "1-2x",
                   " 1", "1 - 2", "+1", "1-2-3", "0001"})
    if (parse_segment_range(bad))
      CAF_FAIL("accepted '" << bad << "'");
}

CAF_TEST(range text reads back what it wrote) {
  for (auto segs : std::vector<std::vector<int32_t>>{
         {}, {0}, {999}, {0, 1, 2, 5}, {10, 12, 14, 15, 16, 998, 999}}) {
    auto text = text_of(segs);
    auto back = parse_ranges_text(text);
    CAF_REQUIRE(back);
    std::vector<int32_t> again;
    for (auto& r : *back)
      for (auto s = r.first; s <= r.last; ++s)
        again.push_back(s);
    CAF_CHECK_EQUAL(again, segs);
  }
  CAF_CHECK(!parse_ranges_text("0-2,"));
  CAF_CHECK(!parse_ranges_text(",5"));
  CAF_CHECK(!parse_ranges_text("0-2;5"));
}

CAF_TEST(owners are grouped per node and incarnation with the highest epoch) {
  set_view view;
  view.owners = {row(4, "b1", 2, 7), row(0, "a1", 1, 3), row(1, "a1", 1, 9),
                 row(2, "", 0, 0),   row(3, "a1", 1, 4), row(5, "b1", 1, 2),
                 row(6, "", 0, 1)};
  auto groups = owner_groups(view);
  CAF_REQUIRE_EQUAL(groups.size(), 4u);
  CAF_CHECK_EQUAL(groups[0].owner, "a1");
  CAF_CHECK_EQUAL(groups[0].owner_incarnation, 1);
  CAF_CHECK_EQUAL(groups[0].segments, (std::vector<int32_t>{0, 1, 3}));
  CAF_CHECK_EQUAL(groups[0].owner_epoch_max, 9);
  // An older incarnation of b1 is a different owner: its rows are stale.
  CAF_CHECK_EQUAL(groups[1].owner, "b1");
  CAF_CHECK_EQUAL(groups[1].owner_incarnation, 1);
  CAF_CHECK_EQUAL(groups[1].segments, (std::vector<int32_t>{5}));
  CAF_CHECK_EQUAL(groups[2].owner, "b1");
  CAF_CHECK_EQUAL(groups[2].owner_incarnation, 2);
  CAF_CHECK_EQUAL(groups[2].owner_epoch_max, 7);
  // Nobody took these yet: listed last.
  CAF_CHECK_EQUAL(groups[3].owner, "");
  CAF_CHECK_EQUAL(groups[3].segments, (std::vector<int32_t>{2, 6}));
  CAF_CHECK_EQUAL(groups[3].owner_epoch_max, 1);
  CAF_CHECK(owner_groups(set_view{}).empty());
}

#define CAF_SUITE background.partition_keeper_actor

#include "tests/support/actor_fixture.hpp"

#include <utility>
#include <vector>

#include "background/partition_keeper_actor.hpp"

using namespace hb;
using namespace hb::test;

namespace {

using day_range = std::pair<int32_t, int32_t>;

struct keeper_fixture : actor_fixture {
  partition_keeper_actor keeper;

  ~keeper_fixture() {
    // The keeper re-arms its timer on every tick; it has to be gone before
    // the base fixture drains all timers.
    anon_send_exit(keeper, caf::exit_reason::user_shutdown);
  }

  void start(uint32_t interval_s, int32_t ahead_days, int32_t hot_days) {
    partition_keeper_settings pc;
    pc.interval_s = interval_s;
    pc.ahead_days = ahead_days;
    pc.hot_days = hot_days;
    pc.now_ms = [this] { return now; };
    keeper = spawn_partition_keeper(sys, caf::actor_cast<maintenance_store>(fake),
                                    pc);
    run();
  }

  void after_s(int s) {
    sched.advance_time(std::chrono::seconds(s));
    run();
  }
};

} // namespace

CAF_TEST(day_offset names the UTC day a number of days away) {
  // 1800000000000 ms is 2027-01-15 08:00 UTC.
  CAF_CHECK_EQUAL(day_offset(1800000000000, 0), 20270115);
  CAF_CHECK_EQUAL(day_offset(1800000000000, -1), 20270114);
  CAF_CHECK_EQUAL(day_offset(1800000000000, 17), 20270201);
  CAF_CHECK_EQUAL(day_offset(1800000000000, -15), 20261231);
  // 2028-03-01 00:00 UTC: the day before is the leap day.
  CAF_CHECK_EQUAL(day_offset(1835481600000, -1), 20280229);
  // One millisecond before midnight is still the old day.
  CAF_CHECK_EQUAL(day_offset(1798761599000, 0), 20261231);
  CAF_CHECK_EQUAL(day_offset(1798761599000, 1), 20270101);
}

CAF_TEST_FIXTURE_SCOPE(partition_keeper_tests, keeper_fixture)

CAF_TEST(on start it creates yesterday to ahead_days and detaches hot_days) {
  start(3600, 3, 31);
  // 2027-01-15: from yesterday through today + 3 days.
  CAF_REQUIRE_EQUAL(db->partition_requests.size(), 1u);
  CAF_CHECK_EQUAL(db->partition_requests[0], day_range(20270114, 20270118));
  // Days before 2027-01-15 - 31 days move to cold storage.
  CAF_REQUIRE_EQUAL(db->detach_cutoffs.size(), 1u);
  CAF_CHECK_EQUAL(db->detach_cutoffs[0], 20261215);
}

CAF_TEST(the ranges follow the settings across month and year ends) {
  now = 1798761599000; // 2026-12-31 23:59:59.000 UTC
  start(3600, 5, 1);
  CAF_REQUIRE_EQUAL(db->partition_requests.size(), 1u);
  CAF_CHECK_EQUAL(db->partition_requests[0], day_range(20261230, 20270105));
  CAF_REQUIRE_EQUAL(db->detach_cutoffs.size(), 1u);
  CAF_CHECK_EQUAL(db->detach_cutoffs[0], 20261230);
}

CAF_TEST(with a leap day the cutoff counts calendar days) {
  now = 1835481600000; // 2028-03-01 00:00 UTC
  start(3600, 0, 31);
  CAF_REQUIRE_EQUAL(db->partition_requests.size(), 1u);
  CAF_CHECK_EQUAL(db->partition_requests[0], day_range(20280229, 20280301));
  CAF_REQUIRE_EQUAL(db->detach_cutoffs.size(), 1u);
  CAF_CHECK_EQUAL(db->detach_cutoffs[0], 20280130);
}

CAF_TEST(it runs again every interval_s and reads the clock each time) {
  start(60, 3, 31);
  CAF_REQUIRE_EQUAL(db->partition_requests.size(), 1u);
  after_s(59);
  CAF_CHECK_EQUAL(db->partition_requests.size(), 1u);
  CAF_CHECK_EQUAL(db->detach_cutoffs.size(), 1u);
  // A day later by the wall clock, the next run covers the next days.
  now += 24LL * 3600 * 1000;
  after_s(1);
  CAF_REQUIRE_EQUAL(db->partition_requests.size(), 2u);
  CAF_CHECK_EQUAL(db->partition_requests[1], day_range(20270115, 20270119));
  CAF_REQUIRE_EQUAL(db->detach_cutoffs.size(), 2u);
  CAF_CHECK_EQUAL(db->detach_cutoffs[1], 20261216);
  after_s(60);
  CAF_CHECK_EQUAL(db->partition_requests.size(), 3u);
  CAF_CHECK_EQUAL(db->detach_cutoffs.size(), 3u);
}

CAF_TEST(nothing moves cold when creating the partitions failed) {
  db->fail_next_partitions = true;
  start(60, 3, 31);
  CAF_CHECK_EQUAL(db->partition_requests.size(), 1u);
  CAF_CHECK_EQUAL(db->detach_cutoffs.size(), 0u);
  // The failure is logged, not fatal: the next run does both again.
  after_s(60);
  CAF_CHECK_EQUAL(db->partition_requests.size(), 2u);
  CAF_CHECK_EQUAL(db->detach_cutoffs.size(), 1u);
}

CAF_TEST(a failed detach leaves the keeper running) {
  db->fail_next_detach = true;
  db->partitions_created = 4;
  db->days_detached = 2;
  start(60, 3, 31);
  CAF_CHECK_EQUAL(db->partition_requests.size(), 1u);
  CAF_CHECK_EQUAL(db->detach_cutoffs.size(), 1u);
  CAF_CHECK(!db->fail_next_detach); // the fault did happen
  after_s(60);
  CAF_CHECK_EQUAL(db->partition_requests.size(), 2u);
  CAF_CHECK_EQUAL(db->detach_cutoffs.size(), 2u);
}

CAF_TEST(during a database outage it keeps trying every interval) {
  db->fail_everything = true;
  start(60, 3, 31);
  after_s(60);
  after_s(60);
  CAF_CHECK_EQUAL(db->partition_requests.size(), 3u);
  CAF_CHECK_EQUAL(db->detach_cutoffs.size(), 0u);
  db->fail_everything = false;
  after_s(60);
  CAF_CHECK_EQUAL(db->partition_requests.size(), 4u);
  CAF_CHECK_EQUAL(db->detach_cutoffs.size(), 1u);
  CAF_CHECK_EQUAL(db->detach_cutoffs[0], 20261215);
}

CAF_TEST_FIXTURE_SCOPE_END()

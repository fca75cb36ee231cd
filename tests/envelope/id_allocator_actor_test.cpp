#define CAF_SUITE envelope.id_allocator_actor

#include "tests/support/actor_fixture.hpp"

#include <set>

#include "envelope/id_allocator_actor.hpp"
#include "domain/envelope_id.hpp"

using namespace hb;
using namespace hb::test;

CAF_TEST_FIXTURE_SCOPE(id_allocator_tests, actor_fixture)

CAF_TEST(ids are unique and spread round robin over the segments) {
  id_allocator_settings ic;
  ic.segments = {3, 5, 7};
  ic.lease_block = 4;
  ic.now_ms = [this] { return now; };
  auto ids = spawn_id_allocator(sys, store, ic);
  run();
  std::set<int64_t> seen;
  std::map<int32_t, int> per_segment;
  for (int i = 0; i < 60; ++i) {
    auto h = self->request(ids, caf::infinite, next_id_atom::value);
    run();
    int64_t id = 0;
    h.receive([&](int64_t x) { id = x; },
              [&](caf::error& e) { CAF_FAIL("no id: " << to_string(e)); });
    envelope_id_parts parts;
    CAF_REQUIRE(parse_envelope_id(id, parts));
    CAF_CHECK_EQUAL(parts.day, utc_day_of(now));
    CAF_CHECK(seen.insert(id).second);
    ++per_segment[parts.segment];
  }
  CAF_CHECK_EQUAL(per_segment.size(), 3u);
  for (auto& kv : per_segment) {
    CAF_CHECK(kv.first == 3 || kv.first == 5 || kv.first == 7);
    CAF_CHECK_GREATER_OR_EQUAL(kv.second, 15);
  }
  // Sequence numbers came from leases of 4: at least 60 / 4 of them.
  int64_t leased = 0;
  for (auto& kv : db->leases)
    leased += kv.second - 1;
  CAF_CHECK_GREATER_OR_EQUAL(leased, 60);
}

CAF_TEST(a store outage fails waiting requests with a retryable error) {
  id_allocator_settings ic;
  ic.segments = {1};
  ic.now_ms = [this] { return now; };
  db->fail_everything = true;
  auto ids = spawn_id_allocator(sys, store, ic);
  run();
  auto h = self->request(ids, caf::infinite, next_id_atom::value);
  run();
  bool failed = false;
  h.receive([&](int64_t) {},
            [&](caf::error& e) {
              failed = true;
              CAF_CHECK_EQUAL(to_failure(e).code, errc::unavailable);
            });
  CAF_CHECK(failed);
}

CAF_TEST_FIXTURE_SCOPE_END()

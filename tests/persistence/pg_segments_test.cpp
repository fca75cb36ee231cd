// Integration tests of the id segments' rows in pg_store (sequence leases)
// against a real PostgreSQL (see pg_connection_test.cpp for the setup).
#define CAF_SUITE persistence.pg_segments
#include "caf/test/unit_test.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "tests/persistence/pg_store_fixture.hpp"

using namespace hb;
using namespace hb::persistence;
using namespace hb::persistence::test_support;

CAF_TEST_FIXTURE_SCOPE(pg_segments_tests, store_fixture)

CAF_TEST(lease_sequence hands out disjoint blocks) {
  constexpr int32_t segment = 417;
  auto a = store->lease_sequence(segment, test_day, 10);
  CAF_REQUIRE_EQUAL(code_of(a), "ok");
  CAF_CHECK_EQUAL(*a, 1);
  CAF_CHECK_EQUAL(value_of(store->lease_sequence(segment, test_day, 5)), 11);
  CAF_CHECK_EQUAL(value_of(store->lease_sequence(segment, test_day + 1, 5)), 1);
  CAF_CHECK_EQUAL(value_of(store->lease_sequence(segment + 1, test_day, 5)), 1);
  CAF_CHECK_EQUAL(code_of(store->lease_sequence(segment, test_day, 0)),
                  "internal");
  // Four nodes with a connection each lease concurrently.
  constexpr int threads_n = 4;
  constexpr int leases_per_thread = 50;
  constexpr int64_t block = 7;
  std::vector<std::vector<int64_t>> firsts(threads_n);
  std::vector<std::thread> threads;
  auto url = db.url();
  for (int i = 0; i < threads_n; ++i)
    threads.emplace_back([&, i] {
      auto own = pg_store::connect(url);
      if (!own)
        return;
      for (int k = 0; k < leases_per_thread; ++k) {
        auto first = (*own)->lease_sequence(segment, test_day + 2, block);
        firsts[i].push_back(first ? *first : -1);
      }
    });
  for (auto& t : threads)
    t.join();
  std::vector<int64_t> all;
  for (auto& xs : firsts) {
    CAF_CHECK_EQUAL(xs.size(), static_cast<size_t>(leases_per_thread));
    all.insert(all.end(), xs.begin(), xs.end());
  }
  std::sort(all.begin(), all.end());
  // Sorted block starts are exactly 1, 1 + block, 1 + 2 block, ...: no
  // overlap and no gap.
  CAF_REQUIRE_EQUAL(all.size(), static_cast<size_t>(threads_n * leases_per_thread));
  bool contiguous = true;
  for (size_t i = 0; i < all.size(); ++i)
    contiguous = contiguous && all[i] == 1 + static_cast<int64_t>(i) * block;
  CAF_CHECK(contiguous);
}

CAF_TEST_FIXTURE_SCOPE_END()

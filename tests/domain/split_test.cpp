#define CAF_SUITE domain.split

#include "caf/test/unit_test.hpp"

#include <random>
#include <vector>

#include "domain/split.hpp"

using namespace hb;

namespace {

// Splits a whole envelope the way the envelope actor does.
std::vector<int64_t> split_all(envelope env, int64_t share_max,
                               std::mt19937_64& rng) {
  std::vector<int64_t> shares;
  while (env.remaining_count > 0) {
    auto s = next_share(env, share_max, rng);
    shares.push_back(s);
    env.remaining_fen -= s;
    env.remaining_count -= 1;
  }
  return shares;
}

envelope make_env(int64_t total, int32_t count, envelope_kind kind) {
  envelope env;
  env.kind = kind;
  env.total_fen = total;
  env.count = count;
  env.remaining_fen = total;
  env.remaining_count = count;
  return env;
}

} // namespace

CAF_TEST(random splits of 100k random envelopes keep every rule) {
  std::mt19937_64 rng{20261126};
  const int64_t share_max = 20000;
  int failures = 0;
  for (int i = 0; i < 100000; ++i) {
    std::uniform_int_distribution<int32_t> count_dist(1, 100);
    auto count = count_dist(rng);
    std::uniform_int_distribution<int64_t> total_dist(count, count * share_max);
    auto total = total_dist(rng);
    auto kind = i % 5 == 0 ? envelope_kind::equal : envelope_kind::random;
    auto shares = split_all(make_env(total, count, kind), share_max, rng);
    int64_t sum = 0;
    bool ok = static_cast<int32_t>(shares.size()) == count;
    for (auto s : shares) {
      ok = ok && s >= 1 && s <= share_max;
      sum += s;
    }
    ok = ok && sum == total;
    if (!ok && ++failures < 5)
      CAF_ERROR("envelope total=" << total << " count=" << count
                                  << " broke a rule, sum=" << sum);
  }
  CAF_CHECK_EQUAL(failures, 0);
}

CAF_TEST(the mean share per grab position is within 2 percent of the mean) {
  std::mt19937_64 rng{42};
  struct shape {
    int64_t total;
    int32_t count;
  };
  // Shapes where 2 x mean stays under the 200-yuan share cap: the cap clips
  // the top of the range and would (correctly) shift early means downwards.
  for (auto sh : {shape{10000, 10}, shape{20000, 100}, shape{44444, 8}}) {
    const int n = 100000;
    std::vector<double> sums(sh.count, 0.0);
    for (int i = 0; i < n; ++i) {
      auto shares = split_all(make_env(sh.total, sh.count,
                                       envelope_kind::random),
                              20000, rng);
      for (int32_t k = 0; k < sh.count; ++k)
        sums[k] += static_cast<double>(shares[k]);
    }
    double expected = static_cast<double>(sh.total) / sh.count;
    for (int32_t k = 0; k < sh.count; ++k) {
      double mean = sums[k] / n;
      double dev = (mean - expected) / expected;
      if (dev > 0.02 || dev < -0.02)
        CAF_ERROR("total=" << sh.total << " count=" << sh.count << " position "
                           << k << " mean " << mean << " vs " << expected);
    }
  }
}

CAF_TEST(equal splits spread the remainder one fen each) {
  std::vector<int64_t> got;
  for (int32_t k = 0; k < 3; ++k)
    got.push_back(equal_share(100, 3, k));
  CAF_CHECK_EQUAL(got, (std::vector<int64_t>{34, 33, 33}));
  CAF_CHECK_EQUAL(equal_share(500, 5, 4), 100);
}

CAF_TEST(the share range respects the per share maximum) {
  std::mt19937_64 rng{1};
  // 3 shares of at most 100 fen for 300 fen: every share must be exactly 100.
  auto shares = split_all(make_env(300, 3, envelope_kind::random), 100, rng);
  CAF_CHECK_EQUAL(shares, (std::vector<int64_t>{100, 100, 100}));
  // One fen per share: every share is 1.
  shares = split_all(make_env(50, 50, envelope_kind::random), 20000, rng);
  for (auto s : shares)
    CAF_CHECK_EQUAL(s, 1);
}

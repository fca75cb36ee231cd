#define CAF_SUITE domain.open_plan

#include "caf/test/unit_test.hpp"

#include <random>
#include <set>
#include <string>
#include <vector>

#include "domain/open_plan.hpp"
#include "domain/split.hpp"

using namespace hb;

namespace {

envelope paid_env(int64_t total, int32_t count,
                  envelope_kind kind = envelope_kind::random) {
  envelope env;
  env.id = 2027011500000001101;
  env.epoch = 3;
  env.kind = kind;
  env.status = envelope_status::paid;
  env.total_fen = total;
  env.count = count;
  env.remaining_fen = total;
  env.remaining_count = count;
  return env;
}

std::vector<std::string> users(int from, int n) {
  std::vector<std::string> out;
  for (int i = from; i < from + n; ++i)
    out.push_back("u" + std::to_string(i));
  return out;
}

// Applies a planned batch the way the envelope actor does on commit.
void apply(envelope& env, const open_batch& b) {
  env.remaining_fen = b.remaining_fen;
  env.remaining_count = b.remaining_count;
  env.status = b.status;
}

const money share_max{20000};

} // namespace

CAF_TEST(a plan gives each user one share in queue order) {
  std::mt19937_64 rng{7};
  auto env = paid_env(1000, 10);
  auto plan = plan_open_batch(env, users(0, 3), {}, share_max, 55, rng);
  auto& b = plan.batch;
  CAF_REQUIRE_EQUAL(b.opens.size(), 3u);
  int64_t sum = 0;
  for (size_t i = 0; i < 3; ++i) {
    CAF_CHECK_EQUAL(b.opens[i].user, "u" + std::to_string(i));
    CAF_CHECK_EQUAL(b.opens[i].seq, static_cast<int32_t>(i) + 1);
    CAF_CHECK_EQUAL(b.opens[i].opened_at_ms, 55);
    CAF_CHECK_GREATER_OR_EQUAL(b.opens[i].amount_fen, 1);
    sum += b.opens[i].amount_fen;
  }
  CAF_CHECK_EQUAL(b.envelope_id, env.id);
  CAF_CHECK_EQUAL(b.epoch, 3);
  CAF_CHECK_EQUAL(b.remaining_fen, 1000 - sum);
  CAF_CHECK_EQUAL(b.remaining_count, 7);
  CAF_CHECK_EQUAL(b.status, envelope_status::paid);
  CAF_CHECK(plan.repeats.empty());
  CAF_CHECK(plan.unserved.empty());
  CAF_CHECK_EQUAL(batch_change_problem(env, b), "");
}

CAF_TEST(the plan draws the same shares as splitting one by one) {
  // The simulation's determinism rests on this: the same draws in the same
  // order as the share generator alone.
  std::mt19937_64 a{99};
  std::mt19937_64 b{99};
  auto env = paid_env(88888, 17);
  auto plan = plan_open_batch(env, users(0, 17), {}, share_max, 0, a);
  auto next = env;
  for (auto& o : plan.batch.opens) {
    auto share = next_share(next, share_max.fen(), b);
    CAF_CHECK_EQUAL(o.amount_fen, share);
    next.remaining_fen -= share;
    next.remaining_count -= 1;
  }
  CAF_CHECK_EQUAL(a(), b());
}

CAF_TEST(repeat users get no second share) {
  std::mt19937_64 rng{1};
  auto env = paid_env(1000, 10);
  std::vector<std::string> queue{"a", "b", "a", "old", "c", "b"};
  auto plan = plan_open_batch(
    env, queue, [](const std::string& u) { return u == "old"; }, share_max,
    0, rng);
  std::vector<std::string> served;
  for (auto& o : plan.batch.opens)
    served.push_back(o.user);
  CAF_CHECK_EQUAL(served, (std::vector<std::string>{"a", "b", "c"}));
  CAF_CHECK_EQUAL(plan.repeats,
                  (std::vector<std::string>{"a", "old", "b"}));
  CAF_CHECK_EQUAL(plan.batch.remaining_count, 7);
  CAF_CHECK_EQUAL(batch_change_problem(env, plan.batch), "");
}

CAF_TEST(no more than count shares and the last one takes the rest) {
  std::mt19937_64 rng{5};
  auto env = paid_env(1001, 4);
  auto plan = plan_open_batch(env, users(0, 6), {}, share_max, 0, rng);
  auto& b = plan.batch;
  CAF_REQUIRE_EQUAL(b.opens.size(), 4u);
  CAF_CHECK_EQUAL(plan.unserved, (std::vector<std::string>{"u4", "u5"}));
  CAF_CHECK_EQUAL(b.remaining_fen, 0);
  CAF_CHECK_EQUAL(b.remaining_count, 0);
  CAF_CHECK_EQUAL(b.status, envelope_status::exhausted);
  int64_t before_last = 0;
  for (size_t i = 0; i < 3; ++i)
    before_last += b.opens[i].amount_fen;
  CAF_CHECK_EQUAL(b.opens[3].amount_fen, 1001 - before_last);
  // An exhausted envelope serves nobody and does not draw.
  apply(env, b);
  std::mt19937_64 copy = rng;
  auto again = plan_open_batch(env, users(9, 2), {}, share_max, 0, rng);
  CAF_CHECK(again.batch.opens.empty());
  CAF_CHECK_EQUAL(again.unserved.size(), 2u);
  CAF_CHECK(copy == rng);
}

CAF_TEST(equal envelopes spread the remainder over the first shares) {
  std::mt19937_64 rng{3};
  std::mt19937_64 untouched = rng;
  auto env = paid_env(100, 3, envelope_kind::equal);
  auto first = plan_open_batch(env, {"a"}, {}, share_max, 0, rng);
  apply(env, first.batch);
  auto rest = plan_open_batch(env, {"b", "c"}, {}, share_max, 0, rng);
  CAF_REQUIRE_EQUAL(first.batch.opens.size(), 1u);
  CAF_REQUIRE_EQUAL(rest.batch.opens.size(), 2u);
  CAF_CHECK_EQUAL(first.batch.opens[0].amount_fen, 34);
  CAF_CHECK_EQUAL(rest.batch.opens[0].amount_fen, 33);
  CAF_CHECK_EQUAL(rest.batch.opens[0].seq, 2);
  CAF_CHECK_EQUAL(rest.batch.opens[1].amount_fen, 33);
  CAF_CHECK_EQUAL(rest.batch.status, envelope_status::exhausted);
  CAF_CHECK(untouched == rng);  // equal splits draw nothing
}

CAF_TEST(batches of random envelopes conserve money and keep every rule) {
  std::mt19937_64 rng{20261207};
  int broken = 0;
  for (int round = 0; round < 2000; ++round) {
    std::uniform_int_distribution<int32_t> count_dist(1, 100);
    auto count = count_dist(rng);
    std::uniform_int_distribution<int64_t> total_dist(count,
                                                      count * share_max.fen());
    auto kind = round % 4 == 0 ? envelope_kind::equal : envelope_kind::random;
    auto env = paid_env(total_dist(rng), count, kind);
    std::uniform_int_distribution<int> batch_dist(1, 30);
    std::set<std::string> served;
    int64_t sum = 0;
    int32_t shares = 0;
    int next_user = 0;
    while (env.status == envelope_status::paid) {
      auto n = batch_dist(rng);
      auto plan = plan_open_batch(
        env, users(next_user, n),
        [&](const std::string& u) { return served.count(u) > 0; }, share_max,
        0, rng);
      // Every third batch repeats the previous batch's last user.
      next_user += n - (round % 3 == 0 ? 1 : 0);
      if (!batch_change_problem(env, plan.batch).empty())
        ++broken;
      for (auto& o : plan.batch.opens) {
        if (o.amount_fen < 1 || o.amount_fen > share_max.fen()
            || !served.insert(o.user).second)
          ++broken;
        sum += o.amount_fen;
        ++shares;
      }
      apply(env, plan.batch);
    }
    if (sum != env.total_fen || shares != count || env.remaining_fen != 0
        || env.status != envelope_status::exhausted)
      ++broken;
    if (broken > 0) {
      CAF_ERROR("round " << round << " total=" << env.total_fen
                         << " count=" << count << " sum=" << sum
                         << " shares=" << shares);
      break;
    }
  }
  CAF_CHECK_EQUAL(broken, 0);
}

CAF_TEST(the batch check finds a batch that breaks the money rules) {
  std::mt19937_64 rng{11};
  auto env = paid_env(500, 5);
  auto plan = plan_open_batch(env, users(0, 2), {}, share_max, 0, rng);
  CAF_REQUIRE_EQUAL(batch_change_problem(env, plan.batch), "");
  auto b = plan.batch;
  b.remaining_fen += 1;  // a fen created from nothing
  CAF_CHECK_NOT_EQUAL(batch_change_problem(env, b), "");
  b = plan.batch;
  b.opens[1].seq = 5;  // a gap after the envelope's last seq
  CAF_CHECK_NOT_EQUAL(batch_change_problem(env, b), "");
  b = plan.batch;
  b.opens[0].amount_fen += b.opens[1].amount_fen;
  b.opens[1].amount_fen = 0;  // a share of 0 fen
  CAF_CHECK_NOT_EQUAL(batch_change_problem(env, b), "");
  b = plan.batch;
  b.status = envelope_status::exhausted;  // shares are left
  CAF_CHECK_NOT_EQUAL(batch_change_problem(env, b), "");
  b = plan.batch;
  b.remaining_fen = 2;  // 3 shares left with 2 fen (and money lost)
  CAF_CHECK_NOT_EQUAL(batch_change_problem(env, b), "");
}

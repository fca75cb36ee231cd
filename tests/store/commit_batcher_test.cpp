#define CAF_SUITE store.commit_batcher

#include "tests/support/actor_fixture.hpp"

#include "store/commit_batcher.hpp"

using namespace hb;
using namespace hb::test;

namespace {

struct batcher_fixture : actor_fixture {
  commit_sink batcher;

  void start(uint32_t inflight_max, uint32_t batch_max,
             uint32_t queue_max = 100) {
    commit_batcher_settings s;
    s.inflight_max = inflight_max;
    s.batch_max = batch_max;
    s.queue_max = queue_max;
    batcher = spawn_commit_batcher(sys, store, s);
    run();
  }

  /// A PAID envelope of 1000 fen in 10 shares, epoch 0.
  void add_paid(int k) {
    db->add(nth_envelope_id(k), 1000, 10);
  }

  /// The first open of envelope k (100 fen to one user), under `epoch`.
  auto commit(int k, int64_t epoch = 0) {
    open_batch b;
    b.envelope_id = nth_envelope_id(k);
    b.epoch = epoch;
    b.opens.push_back(open_record{"user-" + std::to_string(k), 100, 1, 1000});
    b.remaining_fen = 900;
    b.remaining_count = 9;
    return self->request(batcher, caf::infinite, db_commit_atom::value, b);
  }

  size_t opens_of(int k) {
    auto it = db->opens.find(nth_envelope_id(k));
    return it == db->opens.end() ? 0 : it->second.size();
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(commit_batcher_tests, batcher_fixture)

CAF_TEST(batches of many envelopes waiting behind a transaction go out as one) {
  start(1, 3);
  for (int k = 1; k <= 5; ++k)
    add_paid(k);
  db->hold_commits = true;
  std::vector<decltype(commit(0))> asked;
  for (int k = 1; k <= 5; ++k)
    asked.push_back(commit(k));
  run();
  // The first goes at once; the other four wait: one transaction in flight.
  CAF_CHECK_EQUAL(db->commit_groups, std::vector<size_t>{1});
  CAF_CHECK_EQUAL(db->commits_applied, 0);
  db->hold_commits = false;
  release_commits();
  // Behind it: three (batch_max) in one transaction, then the last one.
  CAF_CHECK_EQUAL(db->commit_groups, (std::vector<size_t>{1, 3, 1}));
  CAF_CHECK_EQUAL(db->commits_applied, 5);
  for (int k = 1; k <= 5; ++k) {
    CAF_CHECK(take<caf::ok_atom>(asked[k - 1]).ok());
    CAF_CHECK_EQUAL(opens_of(k), 1u);
  }
}

CAF_TEST(no more transactions are in flight than inflight_max) {
  start(2, 2);
  for (int k = 1; k <= 6; ++k)
    add_paid(k);
  db->hold_commits = true;
  std::vector<decltype(commit(0))> asked;
  for (int k = 1; k <= 6; ++k)
    asked.push_back(commit(k));
  run();
  // Two transactions out, four batches waiting in the batcher.
  CAF_CHECK_EQUAL(db->commit_groups, (std::vector<size_t>{1, 1}));
  db->hold_commits = false;
  release_commits();
  // Each freed slot takes the next two waiting batches.
  CAF_CHECK_EQUAL(db->commit_groups, (std::vector<size_t>{1, 1, 2, 2}));
  CAF_CHECK_EQUAL(db->commits_applied, 6);
  for (auto& h : asked)
    CAF_CHECK(take<caf::ok_atom>(h).ok());
}

CAF_TEST(each batch of a transaction gets its own answer) {
  start(1, 8);
  for (int k = 1; k <= 3; ++k)
    add_paid(k);
  db->hold_commits = true;
  auto first = commit(1);
  auto stale = commit(2, 5);  // an old owner's epoch
  auto good = commit(3);
  run();
  db->hold_commits = false;
  release_commits();
  CAF_CHECK_EQUAL(db->commit_groups, (std::vector<size_t>{1, 2}));
  CAF_CHECK(take<caf::ok_atom>(first).ok());
  auto refused = take<caf::ok_atom>(stale);
  CAF_REQUIRE(!refused.ok());
  CAF_CHECK(refused.error().code == errc::stale_epoch);
  CAF_CHECK(take<caf::ok_atom>(good).ok());
  // The stale batch changed nothing; its neighbour in the statement did.
  CAF_CHECK_EQUAL(opens_of(2), 0u);
  CAF_CHECK_EQUAL(opens_of(3), 1u);
}

CAF_TEST(a failed statement fails every batch of it) {
  start(1, 8);
  for (int k = 1; k <= 3; ++k)
    add_paid(k);
  db->hold_commits = true;
  auto first = commit(1);
  auto a = commit(2);
  auto b = commit(3);
  run();
  db->hold_commits = false;
  db->fail_next_commit_many = true;
  release_commits();
  CAF_CHECK(!db->fail_next_commit_many);  // the failure really happened
  CAF_CHECK_EQUAL(db->commit_groups, (std::vector<size_t>{1, 2}));
  CAF_CHECK(take<caf::ok_atom>(first).ok());
  for (auto* h : {&a, &b}) {
    auto res = take<caf::ok_atom>(*h);
    CAF_REQUIRE(!res.ok());
    CAF_CHECK(res.error().code == errc::unavailable);
  }
  CAF_CHECK_EQUAL(db->commits_applied, 1);
  CAF_CHECK_EQUAL(opens_of(2) + opens_of(3), 0u);
  // The batcher is not stuck: the next commit goes out and succeeds.
  auto again = commit(2);
  run();
  CAF_CHECK(take<caf::ok_atom>(again).ok());
  CAF_CHECK_EQUAL(opens_of(2), 1u);
}

CAF_TEST(a full waiting room answers busy) {
  start(1, 8, 2);
  for (int k = 1; k <= 4; ++k)
    add_paid(k);
  db->hold_commits = true;
  auto first = commit(1);
  auto a = commit(2);
  auto b = commit(3);
  auto c = commit(4);
  run();
  // One in flight, two waiting (queue_max): the fourth is refused at once.
  auto refused = take<caf::ok_atom>(c);
  CAF_REQUIRE(!refused.ok());
  CAF_CHECK(refused.error().code == errc::busy);
  db->hold_commits = false;
  release_commits();
  for (auto* h : {&first, &a, &b})
    CAF_CHECK(take<caf::ok_atom>(*h).ok());
  CAF_CHECK_EQUAL(opens_of(4), 0u);
  CAF_CHECK_EQUAL(db->commits_applied, 3);
}

CAF_TEST_FIXTURE_SCOPE_END()

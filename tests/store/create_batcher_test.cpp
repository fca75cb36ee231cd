#define CAF_SUITE store.create_batcher

#include "tests/support/actor_fixture.hpp"

#include "store/create_batcher.hpp"

using namespace hb;
using namespace hb::test;

namespace {

struct batcher_fixture : actor_fixture {
  create_sink batcher;

  void start(uint32_t inflight_max, uint32_t batch_max) {
    create_batcher_settings s;
    s.inflight_max = inflight_max;
    s.batch_max = batch_max;
    batcher = spawn_create_batcher(sys, store, s);
    run();
  }

  /// A create of envelope k with key `key` (default: "key-k").
  auto create(int k, const std::string& key = "") {
    envelope env;
    env.id = nth_envelope_id(k);
    env.sender = "alice";
    env.group = "g";
    env.idempotency_key = key.empty() ? "key-" + std::to_string(k) : key;
    env.total_fen = 1000;
    env.count = 10;
    env.remaining_fen = 1000;
    env.remaining_count = 10;
    return self->request(batcher, caf::infinite, db_create_atom::value, env);
  }

  /// The stored envelope's id and whether this call created it.
  template <class Handle>
  std::pair<int64_t, bool> answer(Handle& h) {
    std::pair<int64_t, bool> out{0, false};
    h.receive([&](envelope& e, bool created) { out = {e.id, created}; },
              [&](caf::error& e) { CAF_FAIL("create failed: " << to_failure(e).message); });
    return out;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(create_batcher_tests, batcher_fixture)

CAF_TEST(creates waiting behind one in flight go out as one batch) {
  start(1, 3);
  std::vector<decltype(create(0))> asked;
  for (int k = 1; k <= 5; ++k)
    asked.push_back(create(k));
  run();
  // The first goes alone at once; the next three wait for it and go as one
  // transaction; the last waits for that one and goes alone.
  CAF_CHECK_EQUAL(db->create_batches, std::vector<size_t>{3});
  CAF_CHECK_EQUAL(db->creates_alone, 2);
  for (int k = 1; k <= 5; ++k)
    CAF_CHECK_EQUAL(answer(asked[k - 1]),
                    std::make_pair(nth_envelope_id(k), true));
  CAF_CHECK_EQUAL(db->envelopes.size(), 5u);
}

CAF_TEST(a key seen before or twice is answered alone with the stored envelope) {
  start(1, 8);
  auto first = create(1);
  auto a = create(2);
  auto retry = create(3, "key-1");  // a retry of the first, with a fresh id
  auto twin = create(4, "key-2");   // the key of `a`, in the same wait
  auto b = create(5);
  run();
  // Behind `first`: {a, retry, b} (twin waits: its key is in the batch);
  // the batch leaves out `retry` (key-1 is stored), which goes alone; then
  // twin alone.
  CAF_CHECK_EQUAL(db->create_batches, std::vector<size_t>{3});
  CAF_CHECK_EQUAL(db->creates_alone, 3);
  CAF_CHECK_EQUAL(answer(first), std::make_pair(nth_envelope_id(1), true));
  CAF_CHECK_EQUAL(answer(a), std::make_pair(nth_envelope_id(2), true));
  CAF_CHECK_EQUAL(answer(b), std::make_pair(nth_envelope_id(5), true));
  CAF_CHECK_EQUAL(answer(retry), std::make_pair(nth_envelope_id(1), false));
  CAF_CHECK_EQUAL(answer(twin), std::make_pair(nth_envelope_id(2), false));
  CAF_CHECK_EQUAL(db->envelopes.count(nth_envelope_id(3)), 0u);
  CAF_CHECK_EQUAL(db->envelopes.count(nth_envelope_id(4)), 0u);
}

CAF_TEST(every create of a failed batch is stored alone with its own answer) {
  start(1, 8);
  db->fail_next_create_many = true;
  auto hold = create(1);
  auto p = create(2);
  auto q = create(3);
  run();
  CAF_CHECK_EQUAL(db->create_batches, std::vector<size_t>{2});
  CAF_CHECK(!db->fail_next_create_many);  // the failure really happened
  CAF_CHECK_EQUAL(db->creates_alone, 3);
  CAF_CHECK_EQUAL(answer(hold), std::make_pair(nth_envelope_id(1), true));
  CAF_CHECK_EQUAL(answer(p), std::make_pair(nth_envelope_id(2), true));
  CAF_CHECK_EQUAL(answer(q), std::make_pair(nth_envelope_id(3), true));
}

CAF_TEST_FIXTURE_SCOPE_END()

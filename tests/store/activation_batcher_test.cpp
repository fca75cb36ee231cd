#define CAF_SUITE store.activation_batcher

#include "tests/support/actor_fixture.hpp"

#include "store/activation_batcher.hpp"

using namespace hb;
using namespace hb::test;

namespace {

struct batcher_fixture : actor_fixture {
  activation_sink batcher;

  void start(uint32_t inflight_max, uint32_t batch_max) {
    activation_batcher_settings s;
    s.inflight_max = inflight_max;
    s.batch_max = batch_max;
    batcher = spawn_activation_batcher(sys, store, s);
    run();
  }

  auto activate(int64_t id) {
    return self->request(batcher, caf::infinite, db_activate_atom::value, id);
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(activation_batcher_tests, batcher_fixture)

CAF_TEST(activations waiting behind one in flight go out as one batch) {
  start(1, 3);
  for (int k = 1; k <= 5; ++k)
    db->add(nth_envelope_id(k), 1000, 10);
  std::vector<decltype(activate(0))> asked;
  for (int k = 1; k <= 5; ++k)
    asked.push_back(activate(nth_envelope_id(k)));
  run();
  // The first goes alone at once; the next three wait for it and go as one
  // transaction; the last waits for that one and goes alone.
  CAF_CHECK_EQUAL(db->activation_batches, std::vector<size_t>{3});
  CAF_CHECK_EQUAL(db->activations, 5);
  for (int k = 1; k <= 5; ++k) {
    auto snap = take<envelope_snapshot>(asked[k - 1]);
    CAF_REQUIRE(snap.ok());
    CAF_CHECK_EQUAL(snap->env.id, nth_envelope_id(k));
    CAF_CHECK_EQUAL(snap->env.epoch, 1);
  }
}

CAF_TEST(an id twice waits for the next batch so that each gets its own bump) {
  start(1, 4);
  for (int k = 1; k <= 3; ++k)
    db->add(nth_envelope_id(k), 1000, 10);
  auto first = activate(nth_envelope_id(1));
  auto a1 = activate(nth_envelope_id(2));
  auto b = activate(nth_envelope_id(3));
  auto a2 = activate(nth_envelope_id(2));
  run();
  CAF_CHECK_EQUAL(db->activation_batches, std::vector<size_t>{2});
  CAF_CHECK(take<envelope_snapshot>(first).ok());
  CAF_CHECK(take<envelope_snapshot>(b).ok());
  auto x = take<envelope_snapshot>(a1);
  auto y = take<envelope_snapshot>(a2);
  CAF_REQUIRE(x.ok() && y.ok());
  CAF_CHECK_EQUAL(x->env.epoch, 1);
  CAF_CHECK_EQUAL(y->env.epoch, 2);
  CAF_CHECK_EQUAL(db->envelopes.at(nth_envelope_id(2)).epoch, 2);
}

CAF_TEST(what a batch left out or lost is activated alone with its own answer) {
  start(1, 8);
  for (int k = 1; k <= 4; ++k)
    db->add(nth_envelope_id(k), 1000, 10);
  // E.g. archived: the batch leaves it out.
  db->not_hot.insert(nth_envelope_id(3));
  auto first = activate(nth_envelope_id(1));
  auto two = activate(nth_envelope_id(2));
  auto three = activate(nth_envelope_id(3));
  auto missing = activate(nth_envelope_id(9));  // nobody created it
  run();
  CAF_CHECK_EQUAL(db->activation_batches, std::vector<size_t>{3});
  CAF_CHECK(take<envelope_snapshot>(first).ok());
  CAF_CHECK(take<envelope_snapshot>(two).ok());
  auto alone = take<envelope_snapshot>(three);
  CAF_REQUIRE(alone.ok());
  CAF_CHECK_EQUAL(alone->env.id, nth_envelope_id(3));
  CAF_CHECK_EQUAL(alone->env.epoch, 1);
  auto none = take<envelope_snapshot>(missing);
  CAF_REQUIRE(!none.ok());
  CAF_CHECK(none.error().code == errc::not_found);
  // A batch that fails: every envelope of it is activated alone.
  db->fail_next_activate_many = true;
  auto hold = activate(nth_envelope_id(4));
  auto p = activate(nth_envelope_id(1));
  auto q = activate(nth_envelope_id(2));
  run();
  CAF_CHECK_EQUAL(db->activation_batches, (std::vector<size_t>{3, 2}));
  CAF_CHECK(!db->fail_next_activate_many);  // the failure really happened
  CAF_CHECK(take<envelope_snapshot>(hold).ok());
  auto pp = take<envelope_snapshot>(p);
  auto qq = take<envelope_snapshot>(q);
  CAF_REQUIRE(pp.ok() && qq.ok());
  CAF_CHECK_EQUAL(pp->env.epoch, 2);
  CAF_CHECK_EQUAL(qq->env.epoch, 2);
}

CAF_TEST_FIXTURE_SCOPE_END()

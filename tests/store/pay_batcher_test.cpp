#define CAF_SUITE store.pay_batcher

#include "tests/support/actor_fixture.hpp"

#include "store/pay_batcher.hpp"

using namespace hb;
using namespace hb::test;

namespace {

struct batcher_fixture : actor_fixture {
  payment_sink batcher;

  void start(uint32_t inflight_max, uint32_t batch_max) {
    pay_batcher_settings s;
    s.inflight_max = inflight_max;
    s.batch_max = batch_max;
    batcher = spawn_pay_batcher(sys, store, s);
    run();
  }

  void add_created(int k) {
    db->add(nth_envelope_id(k), 1000, 10, envelope_kind::random,
            envelope_status::created);
  }

  auto pay(int k, const std::string& txn = "", bool from_wallet = false,
           int64_t epoch = 0) {
    payment p{nth_envelope_id(k), epoch,
              txn.empty() ? "txn-" + std::to_string(k) : txn, 1000, 2000,
              from_wallet};
    return self->request(batcher, caf::infinite, db_pay_atom::value, p);
  }

  bool paid(int k) {
    return db->envelopes.at(nth_envelope_id(k)).status == envelope_status::paid;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(pay_batcher_tests, batcher_fixture)

CAF_TEST(payments waiting behind one in flight go out as one batch) {
  start(1, 3);
  for (int k = 1; k <= 5; ++k)
    add_created(k);
  std::vector<decltype(pay(0))> asked;
  for (int k = 1; k <= 5; ++k)
    asked.push_back(pay(k));
  run();
  // The first goes alone at once; the next three wait for it and go as one
  // transaction; the last waits for that one and goes alone.
  CAF_CHECK_EQUAL(db->pay_batches, std::vector<size_t>{3});
  CAF_CHECK_EQUAL(db->payments_alone, 2);
  for (int k = 1; k <= 5; ++k) {
    CAF_CHECK(take<caf::ok_atom>(asked[k - 1]).ok());
    CAF_CHECK(paid(k));
    CAF_CHECK_EQUAL(db->envelopes.at(nth_envelope_id(k)).payment_txn,
                    "txn-" + std::to_string(k));
  }
}

CAF_TEST(a wallet payment goes alone and an envelope twice waits its turn) {
  start(1, 8);
  for (int k = 1; k <= 3; ++k)
    add_created(k);
  auto first = pay(1);
  auto a = pay(2);
  auto wallet = pay(3, "", true);
  auto b = pay(1, "txn-again");  // paid by `first` by then: another txn
  auto a2 = pay(2);              // the same payment again
  run();
  // Behind `first`: a batch of `a` alone would be one, so the batch is
  // {a, b} (distinct envelopes, no wallet); then the wallet payment alone,
  // then a2 alone.
  CAF_CHECK_EQUAL(db->pay_batches, std::vector<size_t>{2});
  CAF_CHECK_EQUAL(db->payments_alone, 4);  // first, b (left out), wallet, a2
  CAF_CHECK(take<caf::ok_atom>(first).ok());
  CAF_CHECK(take<caf::ok_atom>(a).ok());
  CAF_CHECK(take<caf::ok_atom>(wallet).ok());
  CAF_CHECK(take<caf::ok_atom>(a2).ok());  // idempotent
  auto refused = take<caf::ok_atom>(b);
  CAF_REQUIRE(!refused.ok());
  CAF_CHECK(refused.error().code == errc::payment_mismatch);
  CAF_CHECK_EQUAL(db->envelopes.at(nth_envelope_id(1)).payment_txn, "txn-1");
}

CAF_TEST(what a batch left out or lost is paid alone with its own answer) {
  start(1, 8);
  for (int k = 1; k <= 6; ++k)
    add_created(k);
  auto first = pay(1);
  auto two = pay(2);
  auto stale = pay(3, "", false, 7);  // an old owner's epoch
  run();
  CAF_CHECK_EQUAL(db->pay_batches, std::vector<size_t>{2});
  CAF_CHECK(take<caf::ok_atom>(first).ok());
  CAF_CHECK(take<caf::ok_atom>(two).ok());
  auto refused = take<caf::ok_atom>(stale);
  CAF_REQUIRE(!refused.ok());
  CAF_CHECK(refused.error().code == errc::stale_epoch);
  CAF_CHECK(!paid(3));
  // A batch that fails: every payment of it is confirmed alone.
  db->fail_next_pay_many = true;
  auto hold = pay(4);
  auto p = pay(5);
  auto q = pay(6);
  run();
  CAF_CHECK_EQUAL(db->pay_batches, (std::vector<size_t>{2, 2}));
  CAF_CHECK(!db->fail_next_pay_many);  // the failure really happened
  for (auto* h : {&hold, &p, &q})
    CAF_CHECK(take<caf::ok_atom>(*h).ok());
  CAF_CHECK(paid(4) && paid(5) && paid(6));
}

CAF_TEST_FIXTURE_SCOPE_END()

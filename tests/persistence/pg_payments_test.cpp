// Integration tests of payments into escrow and refunds out of it in
// pg_store against a real PostgreSQL (see pg_connection_test.cpp for the
// setup). The ledger tests work in a freshly migrated database each, so that
// they can audit the whole ledger.
#define CAF_SUITE persistence.pg_payments
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

#include "tests/persistence/pg_ledger_fixture.hpp"
#include "tests/persistence/pg_store_fixture.hpp"

using namespace hb;
using namespace hb::persistence;
using namespace hb::persistence::test_support;

CAF_TEST_FIXTURE_SCOPE(pg_payment_fencing_tests, store_fixture)

CAF_TEST(confirm_payment is idempotent and fenced) {
  auto created = store->create_envelope(make_envelope(1000, 10));
  CAF_REQUIRE_EQUAL(code_of(created), "ok");
  auto id = created->env.id;
  auto e1 = store->activate(id);
  CAF_REQUIRE_EQUAL(code_of(e1), "ok");
  auto e2 = store->activate(id);
  CAF_REQUIRE_EQUAL(code_of(e2), "ok");
  payment stale{id, e1->env.epoch, "txn-A-" + std::to_string(id),
                1764158401234, 1764244801234};
  CAF_CHECK_EQUAL(code_of(store->confirm_payment(stale)), "stale_epoch");
  CAF_CHECK(store->load(id)->env.status == envelope_status::created);
  CAF_CHECK_EQUAL(count_rows("outbox", id), 0);
  payment p = stale;
  p.epoch = e2->env.epoch;
  CAF_REQUIRE_EQUAL(code_of(store->confirm_payment(p)), "ok");
  auto paid = store->load(id);
  CAF_REQUIRE_EQUAL(code_of(paid), "ok");
  CAF_CHECK(paid->env.status == envelope_status::paid);
  CAF_CHECK_EQUAL(paid->env.payment_txn, p.payment_txn);
  CAF_CHECK_EQUAL(paid->env.paid_at_ms, 1764158401234);
  CAF_CHECK_EQUAL(paid->env.expires_at_ms, 1764244801234);
  CAF_CHECK_EQUAL(query(db.verify(),
                        "SELECT kind FROM outbox WHERE idempotency_key = $1",
                        {"paid:" + std::to_string(id)}),
                  "paid");
  // The same confirmation again: success, nothing written twice.
  CAF_CHECK_EQUAL(code_of(store->confirm_payment(p)), "ok");
  CAF_CHECK_EQUAL(count_rows("outbox", id), 1);
  auto other_txn = p;
  other_txn.payment_txn = "txn-B";
  CAF_CHECK_EQUAL(code_of(store->confirm_payment(other_txn)),
                  "payment_mismatch");
  // A stale epoch is refused even when the payment itself matches.
  CAF_CHECK_EQUAL(code_of(store->confirm_payment(stale)), "stale_epoch");
  // One payment txn cannot pay for two envelopes.
  auto second = store->create_envelope(make_envelope(500, 5));
  CAF_REQUIRE_EQUAL(code_of(second), "ok");
  auto s1 = store->activate(second->env.id);
  CAF_REQUIRE_EQUAL(code_of(s1), "ok");
  payment reuse{second->env.id, s1->env.epoch, p.payment_txn, 1, 2};
  auto mismatch = store->confirm_payment(reuse);
  CAF_CHECK_EQUAL(code_of(mismatch), "payment_mismatch");
  CAF_MESSAGE("reuse refused with: " << message_of(mismatch));
  CAF_CHECK(store->load(second->env.id)->env.status == envelope_status::created);
  CAF_CHECK_EQUAL(count_rows("outbox", second->env.id), 0);
  payment missing{id + 1000, 1, "txn-C", 1, 2};
  CAF_CHECK_EQUAL(code_of(store->confirm_payment(missing)), "not_found");
  payment empty_txn = p;
  empty_txn.payment_txn.clear();
  CAF_CHECK_EQUAL(code_of(store->confirm_payment(empty_txn)),
                  "invalid_argument");
}

CAF_TEST_FIXTURE_SCOPE_END()

CAF_TEST_FIXTURE_SCOPE(pg_payments_tests, ledger_fixture)

CAF_TEST(a payment moves the total from outside into escrow exactly once) {
  auto created = store->create_envelope(make_envelope(1000, 5, "payer"));
  CAF_REQUIRE_EQUAL(code_of(created), "ok");
  auto id = created->env.id;
  auto snap = value_of(store->activate(id));
  payment p{id, snap.env.epoch, "txn-ext", t0 + 1000, t0 + day_ms, false};
  CAF_REQUIRE_EQUAL(code_of(store->confirm_payment(p)), "ok");
  auto escrow = escrow_account(segment_of(id));
  CAF_CHECK_EQUAL(account(escrow), 1000);
  CAF_CHECK_EQUAL(account(external_account), -1000);
  CAF_CHECK_EQUAL(ledger_sum(), 0);
  CAF_CHECK_EQUAL(query(verify(),
                        "SELECT kind || '|' || debit_account || '|' ||"
                        " credit_account || '|' || amount_fen || '|' || user_id"
                        " FROM ledger_entries WHERE idempotency_key = $1",
                        {"pay:" + str(id)}),
                  "pay|external:payments|" + escrow + "|1000|payer");
  CAF_CHECK_EQUAL(query(verify(),
                        "SELECT payment_txn || '|' || source FROM payments"
                        " WHERE envelope_id = $1",
                        {str(id)}),
                  "txn-ext|external");
  CAF_CHECK_EQUAL(query(verify(),
                        "SELECT amount_fen || '|' || at_ms || '|' || group_id"
                        " || '|' || counterpart FROM user_records"
                        " WHERE envelope_id = $1 AND user_id = 'payer'"
                        " AND kind = 1",
                        {str(id)}),
                  "1000|" + str(t0 + 1000) + "|group-1|");
  // The same confirmation again: success, and no money moves twice.
  CAF_CHECK_EQUAL(code_of(store->confirm_payment(p)), "ok");
  CAF_CHECK_EQUAL(count("SELECT count(*) FROM ledger_entries"
                        " WHERE envelope_id = $1",
                        {str(id)}),
                  1);
  CAF_CHECK_EQUAL(count("SELECT count(*) FROM user_records"
                        " WHERE envelope_id = $1",
                        {str(id)}),
                  1);
  CAF_CHECK_EQUAL(account(escrow), 1000);
  CAF_CHECK_EQUAL(account(external_account), -1000);
  CAF_CHECK(found(reconcile()).empty());
}

CAF_TEST(a batch of payments confirms each as confirm_payment would) {
  // Five CREATED envelopes: two share a segment (one escrow row, moved
  // once), one is asked with a stale epoch, one is from a wallet.
  std::vector<envelope_snapshot> snaps;
  for (int i = 0; i < 5; ++i) {
    auto env = make_envelope(1000 + i, 5, "payer-" + str(i));
    if (i == 1)
      env.id = make_envelope_id(test_day, 900, segment_of(snaps[0].env.id));
    auto created = store->create_envelope(env);
    CAF_REQUIRE_EQUAL(code_of(created), "ok");
    snaps.push_back(value_of(store->activate(created->env.id)));
  }
  CAF_REQUIRE_EQUAL(segment_of(snaps[0].env.id), segment_of(snaps[1].env.id));
  auto pay_of = [&](int i) {
    auto& e = snaps[static_cast<size_t>(i)].env;
    return payment{e.id, e.epoch, "txn-b" + str(i), t0 + 1000 + i,
                   t0 + day_ms + i, false};
  };
  std::vector<payment> batch{pay_of(2), pay_of(0), pay_of(1), pay_of(3),
                             pay_of(4), pay_of(0)};
  batch[3].epoch -= 1;           // stale
  batch[4].from_wallet = true;   // goes alone
  batch[5].payment_txn = "txn-other";  // the same envelope again
  auto applied = store->confirm_payments(batch);
  CAF_REQUIRE_EQUAL(code_of(applied), "ok");
  std::vector<int64_t> want{snaps[0].env.id, snaps[1].env.id, snaps[2].env.id};
  std::sort(want.begin(), want.end());
  CAF_CHECK_EQUAL(*applied, want);
  // Each confirmed one reads exactly as a payment alone would have left it.
  for (int i = 0; i < 3; ++i) {
    auto id = snaps[static_cast<size_t>(i)].env.id;
    auto env = value_of(store->load(id)).env;
    CAF_CHECK(env.status == envelope_status::paid);
    CAF_CHECK_EQUAL(env.payment_txn, "txn-b" + str(i));
    CAF_CHECK_EQUAL(env.paid_at_ms, t0 + 1000 + i);
    CAF_CHECK_EQUAL(env.expires_at_ms, t0 + day_ms + i);
    CAF_CHECK_EQUAL(query(verify(),
                          "SELECT kind || '|' || debit_account || '|' ||"
                          " credit_account || '|' || amount_fen || '|' ||"
                          " user_id FROM ledger_entries"
                          " WHERE idempotency_key = $1",
                          {"pay:" + str(id)}),
                    "pay|external:payments|" + escrow_account(segment_of(id))
                      + "|" + str(1000 + i) + "|payer-" + str(i));
    CAF_CHECK_EQUAL(query(verify(),
                          "SELECT payment_txn || '|' || source FROM payments"
                          " WHERE envelope_id = $1",
                          {str(id)}),
                    "txn-b" + str(i) + "|external");
    CAF_CHECK_EQUAL(query(verify(),
                          "SELECT amount_fen || '|' || at_ms || '|' ||"
                          " group_id || '|' || counterpart FROM user_records"
                          " WHERE envelope_id = $1 AND kind = 1",
                          {str(id)}),
                    str(1000 + i) + "|" + str(t0 + 1000 + i) + "|group-1|");
    CAF_CHECK_EQUAL(count("SELECT count(*) FROM outbox WHERE kind = 'paid'"
                          " AND envelope_id = $1",
                          {str(id)}),
                    1);
  }
  CAF_CHECK_EQUAL(escrow_of(snaps[0].env.id), 1000 + 1001);
  CAF_CHECK_EQUAL(escrow_of(snaps[2].env.id), 1002);
  CAF_CHECK_EQUAL(account(external_account), -(1000 + 1001 + 1002));
  CAF_CHECK_EQUAL(ledger_sum(), 0);
  // The ones left out changed nothing; alone, each gets its own answer.
  for (int i = 3; i < 5; ++i) {
    auto id = snaps[static_cast<size_t>(i)].env.id;
    CAF_CHECK(value_of(store->load(id)).env.status == envelope_status::created);
    CAF_CHECK_EQUAL(count("SELECT count(*) FROM ledger_entries"
                          " WHERE envelope_id = $1",
                          {str(id)}),
                    0);
  }
  CAF_CHECK_EQUAL(code_of(store->confirm_payment(batch[3])), "stale_epoch");
  CAF_CHECK_EQUAL(code_of(store->confirm_payment(batch[4])),
                  "insufficient_funds");
  CAF_CHECK_EQUAL(code_of(store->confirm_payment(batch[5])),
                  "payment_mismatch");
  CAF_CHECK_EQUAL(code_of(store->confirm_payment(batch[1])), "ok");
  // A batch again: what is paid already is left out, not paid twice.
  applied = store->confirm_payments({batch[1], batch[2]});
  CAF_REQUIRE_EQUAL(code_of(applied), "ok");
  CAF_CHECK(applied->empty());
  CAF_CHECK_EQUAL(account(external_account), -(1000 + 1001 + 1002));
  // A txn used for another envelope fails the whole batch: nothing changes.
  auto p3 = pay_of(3);
  auto reused = p3;
  reused.envelope_id = snaps[4].env.id;
  reused.epoch = snaps[4].env.epoch;
  reused.payment_txn = "txn-b0";
  auto failed = store->confirm_payments({p3, reused});
  CAF_CHECK_NOT_EQUAL(code_of(failed), "ok");
  CAF_CHECK(value_of(store->load(p3.envelope_id)).env.status
            == envelope_status::created);
  CAF_CHECK_EQUAL(account(external_account), -(1000 + 1001 + 1002));
  CAF_CHECK_EQUAL(code_of(store->confirm_payment(reused)), "payment_mismatch");
  CAF_CHECK_EQUAL(code_of(store->confirm_payments({p3})), "ok");
  CAF_CHECK(value_of(store->load(p3.envelope_id)).env.status
            == envelope_status::paid);
  CAF_CHECK_EQUAL(ledger_sum(), 0);
  CAF_CHECK(found(reconcile()).empty());
}

CAF_TEST(a payment from the wallet needs the money in the wallet) {
  CAF_REQUIRE_EQUAL(code_of(store->deposit("payer", 500, "top-up-1")), "ok");
  CAF_CHECK_EQUAL(code_of(store->deposit("payer", 500, "top-up-1")), "ok");
  CAF_CHECK_EQUAL(code_of(store->deposit("payer", 600, "top-up-1")), "conflict");
  CAF_CHECK_EQUAL(code_of(store->deposit("other", 500, "top-up-1")), "conflict");
  CAF_CHECK_EQUAL(code_of(store->deposit("payer", 0, "top-up-2")),
                  "invalid_argument");
  CAF_CHECK_EQUAL(code_of(store->deposit("payer", 5, "")), "invalid_argument");
  CAF_CHECK_EQUAL(wallet("payer"), 500);
  CAF_CHECK_EQUAL(account(external_account), -500);
  // Enough money: wallet -> escrow.
  auto first = paid(300, 3, "payer", t0 + day_ms, t0 + 1000, true);
  CAF_CHECK(first.env.status == envelope_status::paid);
  CAF_CHECK_EQUAL(wallet("payer"), 200);
  CAF_CHECK_EQUAL(escrow_of(first.env.id), 300);
  CAF_CHECK_EQUAL(account(external_account), -500);
  CAF_CHECK_EQUAL(query(verify(),
                        "SELECT debit_account || '|' || source"
                        " FROM ledger_entries l JOIN payments p"
                        " ON p.envelope_id = l.envelope_id"
                        " WHERE l.idempotency_key = $1",
                        {"pay:" + str(first.env.id)}),
                  "user:payer|wallet");
  // Too little: nothing at all changes.
  auto created = store->create_envelope(make_envelope(500, 5, "payer"));
  CAF_REQUIRE_EQUAL(code_of(created), "ok");
  auto id = created->env.id;
  auto snap = value_of(store->activate(id));
  payment p{id, snap.env.epoch, "txn-wallet-2", t0 + 1000, t0 + day_ms, true};
  auto refused = store->confirm_payment(p);
  CAF_CHECK_EQUAL(code_of(refused), "insufficient_funds");
  CAF_CHECK_EQUAL(message_of(refused), "wallet of payer holds 200 fen, needs 500");
  CAF_CHECK(value_of(store->load(id)).env.status == envelope_status::created);
  for (auto table : {"payments", "ledger_entries", "user_records", "outbox"})
    CAF_CHECK_EQUAL(count(std::string("SELECT count(*) FROM ") + table
                            + " WHERE envelope_id = $1",
                          {str(id)}),
                    0);
  CAF_CHECK_EQUAL(wallet("payer"), 200);
  CAF_CHECK_EQUAL(escrow_of(id), 0);
  CAF_CHECK_EQUAL(account(external_account), -500);
  // A sender without any wallet is refused the same way, and gets none.
  auto broke = store->create_envelope(make_envelope(100, 1, "broke"));
  CAF_REQUIRE_EQUAL(code_of(broke), "ok");
  auto broke_snap = value_of(store->activate(broke->env.id));
  payment q{broke->env.id, broke_snap.env.epoch, "txn-broke", 0, 0, true};
  CAF_CHECK_EQUAL(message_of(store->confirm_payment(q)),
                  "wallet of broke holds 0 fen, needs 100");
  CAF_CHECK_EQUAL(count("SELECT count(*) FROM accounts WHERE id = $1",
                        {"user:broke"}),
                  0);
  // The refused envelope can still be paid from outside.
  p.from_wallet = false;
  CAF_CHECK_EQUAL(code_of(store->confirm_payment(p)), "ok");
  CAF_CHECK_EQUAL(escrow_of(id), 500);
  CAF_CHECK_EQUAL(ledger_sum(), 0);
  CAF_CHECK(found(reconcile()).empty());
}

CAF_TEST(a refund waits for the database clock whatever the node clock says) {
  // A node whose clock stepped forward by days asks for the refund of an
  // envelope that expires in an hour by the database's clock.
  auto db_now = count("SELECT hb_ms(now())", {});
  auto snap = paid(1000, 5, "s-early", db_now + 3600000, db_now - 1000);
  auto id = snap.env.id;
  open(snap, {{"alice", 100}}, db_now);
  relay_all();
  auto before = count("SELECT count(*) FROM ledger_entries", {});
  auto early = store->refund(id, snap.env.epoch);
  CAF_CHECK_EQUAL(code_of(early), "not_expired");
  CAF_MESSAGE("refused with: " << message_of(early));
  CAF_CHECK(message_of(early).find("by the database's clock")
            != std::string::npos);
  // Nothing changed: still paid, the money in escrow, no entry posted.
  auto after = value_of(store->load(id));
  CAF_CHECK(after.env.status == envelope_status::paid);
  CAF_CHECK_EQUAL(after.env.remaining_fen, 900);
  CAF_CHECK_EQUAL(after.env.refunded_fen, 0);
  CAF_CHECK_EQUAL(wallet("s-early"), 0);
  CAF_CHECK_EQUAL(escrow_of(id), 900);
  CAF_CHECK_EQUAL(count("SELECT count(*) FROM ledger_entries", {}), before);
  // Opens go on: the envelope is live by the clock that decides.
  open(snap, {{"bob", 100}}, db_now);
  CAF_CHECK_EQUAL(value_of(store->load(id)).env.remaining_fen, 800);
  // An envelope without an expiry is never refunded.
  auto never = paid(500, 2, "s-never", 0, db_now - 1000);
  CAF_CHECK_EQUAL(code_of(store->refund(never.env.id, never.env.epoch)),
                  "not_expired");
  CAF_CHECK_EQUAL(message_of(store->refund(never.env.id, never.env.epoch)),
                  "envelope " + str(never.env.id)
                    + " has no expiry; nothing was refunded");
  // A stale epoch is still named first.
  CAF_CHECK_EQUAL(code_of(store->refund(id, snap.env.epoch - 1)),
                  "stale_epoch");
  // Once the database's clock has passed the expiry, the refund goes
  // through, once.
  expire(snap);
  CAF_CHECK_EQUAL(value_of(store->refund(id, snap.env.epoch)), 800);
  CAF_CHECK_EQUAL(wallet("s-early"), 800);
  CAF_CHECK_EQUAL(value_of(store->refund(id, snap.env.epoch)), 800);
  relay_all();
  CAF_CHECK_EQUAL(ledger_sum(), 0);
  CAF_CHECK(found(reconcile()).empty());
}

CAF_TEST(a refund returns the remainder to the sender exactly once) {
  auto snap = paid(1000, 5, "s-refund");
  auto id = snap.env.id;
  open(snap, {{"alice", 100}, {"bob", 150}});
  relay_all();
  expire(snap);
  auto refunded = store->refund(id, snap.env.epoch);
  CAF_REQUIRE_EQUAL(code_of(refunded), "ok");
  CAF_CHECK_EQUAL(*refunded, 750);
  CAF_CHECK_EQUAL(wallet("s-refund"), 750);
  CAF_CHECK_EQUAL(escrow_of(id), 0);
  auto after = value_of(store->load(id));
  CAF_CHECK(after.env.status == envelope_status::refunded);
  CAF_CHECK_EQUAL(after.env.remaining_fen, 0);
  CAF_CHECK_EQUAL(after.env.refunded_fen, 750);
  CAF_CHECK_EQUAL(after.env.remaining_count, 3);
  CAF_CHECK_EQUAL(check_invariants(after.env, after.opens), "");
  CAF_CHECK_EQUAL(query(verify(),
                        "SELECT debit_account || '|' || credit_account || '|'"
                        " || amount_fen FROM ledger_entries"
                        " WHERE idempotency_key = $1",
                        {"refund:" + str(id)}),
                  escrow_account(segment_of(id)) + "|user:s-refund|750");
  // A retry after a lost reply returns the same amount and posts nothing.
  CAF_CHECK_EQUAL(value_of(store->refund(id, snap.env.epoch)), 750);
  CAF_CHECK_EQUAL(count("SELECT count(*) FROM ledger_entries"
                        " WHERE envelope_id = $1 AND kind = 'refund'",
                        {str(id)}),
                  1);
  CAF_CHECK_EQUAL(wallet("s-refund"), 750);
  // Nothing opens after a refund.
  open_batch late;
  late.envelope_id = id;
  late.epoch = snap.env.epoch;
  late.opens = {{"carol", 100, 3, t0 + 3000}};
  late.remaining_fen = 650;
  late.remaining_count = 2;
  CAF_CHECK_EQUAL(code_of(store->commit_opens(late)), "stale_epoch");
  CAF_CHECK_EQUAL(count("SELECT count(*) FROM opens WHERE envelope_id = $1",
                        {str(id)}),
                  2);
  // A stale epoch is refused first.
  auto newer = value_of(store->activate(id));
  CAF_CHECK_EQUAL(code_of(store->refund(id, snap.env.epoch)), "stale_epoch");
  CAF_CHECK_EQUAL(value_of(store->refund(id, newer.env.epoch)), 750);
  // Only PAID envelopes can be refunded.
  auto created = store->create_envelope(make_envelope(100, 1));
  CAF_REQUIRE_EQUAL(code_of(created), "ok");
  CAF_CHECK_EQUAL(code_of(store->refund(created->env.id, 0)), "stale_epoch");
  auto exhausted = paid(100, 1);
  open(exhausted, {{"alice", 100}});
  CAF_CHECK_EQUAL(code_of(store->refund(exhausted.env.id, exhausted.env.epoch)),
                  "stale_epoch");
  CAF_CHECK_EQUAL(code_of(store->refund(id + 1000, 1)), "not_found");
  // A stale owner's refund of a live envelope changes nothing.
  auto live = paid(500, 5, "s-live");
  auto taken_over = value_of(store->activate(live.env.id));
  CAF_CHECK_EQUAL(code_of(store->refund(live.env.id, live.env.epoch)),
                  "stale_epoch");
  CAF_CHECK(value_of(store->load(live.env.id)).env.status
            == envelope_status::paid);
  CAF_CHECK_EQUAL(wallet("s-live"), 0);
  // Not expired by the database's clock: refused, nothing changes.
  CAF_CHECK_EQUAL(code_of(store->refund(live.env.id, taken_over.env.epoch)),
                  "not_expired");
  CAF_CHECK_EQUAL(wallet("s-live"), 0);
  expire(live);
  CAF_CHECK_EQUAL(value_of(store->refund(live.env.id, taken_over.env.epoch)),
                  500);
  relay_all();
  CAF_CHECK_EQUAL(ledger_sum(), 0);
  auto report = reconcile();
  CAF_CHECK(found(report).empty());
  CAF_MESSAGE("report:" << dump(report));
}

CAF_TEST_FIXTURE_SCOPE_END()

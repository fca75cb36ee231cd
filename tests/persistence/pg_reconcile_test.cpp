// Integration tests of the reconciliation (对账) in pg_store against a real
// PostgreSQL (see pg_connection_test.cpp for the setup): planted faults are
// found, and only lost credits are repaired.
#define CAF_SUITE persistence.pg_reconcile
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

using namespace hb;
using namespace hb::persistence;
using namespace hb::persistence::test_support;

CAF_TEST_FIXTURE_SCOPE(pg_reconcile_tests, ledger_fixture)

CAF_TEST(reconcile finds planted faults and repairs only lost credits) {
  // A little of everything: exhausted, refunded, paid, unpaid, wallet-paid.
  auto e1 = paid(1000, 3, "s1");
  open(e1, {{"alice", 300}, {"bob", 200}, {"carol", 500}});
  auto e2 = paid(800, 4, "s2");
  open(e2, {{"alice", 100}, {"dave", 200}});
  expire(e2);
  CAF_REQUIRE_EQUAL(value_of(store->refund(e2.env.id, e2.env.epoch)), 500);
  auto e3 = paid(500, 5, "s3", t0 + day_ms);
  auto e4 = store->create_envelope(make_envelope(1000, 2, "s4"));
  CAF_REQUIRE_EQUAL(code_of(e4), "ok");
  CAF_REQUIRE_EQUAL(code_of(store->deposit("s5", 1000, "s5-top-up")), "ok");
  auto e5 = paid(600, 2, "s5", live_expiry_ms, t0 + 1000, true);
  open(e5, {{"erin", 100}});
  relay_all();
  auto id1 = str(e1.env.id);
  auto escrow1 = escrow_account(segment_of(e1.env.id));

  auto clean = reconcile();
  CAF_CHECK_EQUAL(found(clean), std::vector<std::string>{});
  CAF_MESSAGE("clean report:" << dump(clean));
  CAF_CHECK_EQUAL(clean.envelopes_checked, 5);
  CAF_CHECK_EQUAL(clean.opens_checked, 6);
  CAF_CHECK_EQUAL(clean.relay_pending, 0);
  CAF_CHECK_EQUAL(clean.accounts_checked, 7 + 4 + 1);
  CAF_CHECK_EQUAL(clean.wallets_fen, 2300);
  CAF_CHECK_EQUAL(clean.escrow_fen, 1000);
  CAF_CHECK_EQUAL(clean.external_fen, -3300);
  CAF_CHECK_EQUAL(reconcile(t0 + 3600000, false, t0 + day_ms).envelopes_checked,
                  0);

  // 1. A credit lost with its money (the open left the queue, but neither
  // the entry nor the balances moved): reported, repaired by re-enqueueing,
  // and paid by the next relay.
  script(verify(),
        "BEGIN;"
        " DELETE FROM ledger_entries WHERE idempotency_key = 'credit:" + id1
          + ":bob';"
          " UPDATE accounts SET balance_fen = balance_fen - 200"
          "  WHERE id = 'user:bob';"
          " UPDATE accounts SET balance_fen = balance_fen + 200"
          "  WHERE id = '" + escrow1 + "';"
          " COMMIT");
  auto lost = reconcile();
  CAF_CHECK_EQUAL(found(lost), std::vector<std::string>{"missing_credit " + id1
                                                        + " bob"});
  CAF_MESSAGE("lost credit:" << dump(lost));
  CAF_CHECK(!lost.discrepancies.empty() && !lost.discrepancies[0].repaired);
  auto repaired = reconcile(t0 + 3600000, true);
  CAF_REQUIRE_EQUAL(repaired.discrepancies.size(), 1u);
  CAF_CHECK(repaired.discrepancies[0].repaired);
  // A hot open goes back into the relay's queue itself (no outbox row).
  CAF_CHECK_EQUAL(count("SELECT count(*) FROM relay_backlog"
                        " WHERE envelope_id = $1 AND user_id = 'bob'",
                        {id1}),
                  1);
  CAF_CHECK_EQUAL(count("SELECT count(*) FROM outbox WHERE kind = 'open'", {}), 0);
  CAF_CHECK_EQUAL(count("SELECT count(*) FROM credits_owed"
                        " WHERE $1 = ANY(envelope_ids) AND 'bob' = ANY(user_ids)",
                        {id1}),
                  1);
  auto pending = reconcile();
  CAF_CHECK_EQUAL(found(pending), std::vector<std::string>{});
  CAF_CHECK_EQUAL(pending.relay_pending, 1);
  CAF_CHECK_EQUAL(relay_all(), 1);
  CAF_CHECK_EQUAL(wallet("bob"), 200);
  CAF_CHECK_EQUAL(found(reconcile()), std::vector<std::string>{});

  // 2. An entry deleted while its money stays moved: re-crediting would pay
  // twice, so the reconciler reports and does not repair.
  query(verify(), "DELETE FROM ledger_entries WHERE idempotency_key = 'credit:"
                    + id1 + ":carol'");
  auto unrepairable = reconcile(t0 + 3600000, true);
  CAF_CHECK_EQUAL(found(unrepairable),
                  (std::vector<std::string>{"balance_mismatch 0 " + escrow1,
                                            "balance_mismatch 0 user:carol",
                                            "escrow_mismatch 0 " + escrow1,
                                            "missing_credit " + id1 + " carol"}));
  CAF_MESSAGE("deleted entry:" << dump(unrepairable));
  for (auto& d : unrepairable.discrepancies)
    CAF_CHECK(!d.repaired);
  CAF_CHECK_EQUAL(count("SELECT count(*) FROM relay_backlog"
                        " WHERE envelope_id = $1 AND user_id = 'carol'",
                        {id1}),
                  0);
  query(verify(), "INSERT INTO ledger_entries (idempotency_key, kind,"
                  " debit_account, credit_account, amount_fen, envelope_id,"
                  " user_id) VALUES ('credit:" + id1 + ":carol', 'credit', '"
                    + escrow1 + "', 'user:carol', 500, " + id1 + ", 'carol')");
  CAF_CHECK_EQUAL(found(reconcile()), std::vector<std::string>{});

  // 3. A second credit for the same share under another key, money moved.
  query(verify(), "SELECT hb_post('credit-again:" + id1 + ":alice', 'credit', '"
                    + escrow1 + "', 'user:alice', 300, " + id1 + ", 'alice')");
  auto doubled = reconcile();
  CAF_CHECK_EQUAL(found(doubled), std::vector<std::string>{"double_credit " + id1
                                                           + " alice"});
  CAF_MESSAGE("double credit:" << dump(doubled));
  script(verify(), "BEGIN;"
                  " DELETE FROM ledger_entries WHERE idempotency_key ="
                  "  'credit-again:" + id1 + ":alice';"
                  " UPDATE accounts SET balance_fen = balance_fen - 300"
                  "  WHERE id = 'user:alice';"
                  " UPDATE accounts SET balance_fen = balance_fen + 300"
                  "  WHERE id = '" + escrow1 + "';"
                  " COMMIT");
  CAF_CHECK_EQUAL(found(reconcile()), std::vector<std::string>{});

  // 4. An open's amount changed after the fact.
  auto id5 = str(e5.env.id);
  query(verify(), "UPDATE opens SET amount_fen = amount_fen + 5"
                  " WHERE envelope_id = " + id5 + " AND user_id = 'erin'");
  auto changed = reconcile();
  CAF_CHECK_EQUAL(found(changed),
                  (std::vector<std::string>{"credit_amount_mismatch " + id5
                                              + " erin",
                                            "sum_mismatch " + id5 + " "}));
  CAF_MESSAGE("changed amount:" << dump(changed));
  query(verify(), "UPDATE opens SET amount_fen = amount_fen - 5"
                  " WHERE envelope_id = " + id5 + " AND user_id = 'erin'");
  CAF_CHECK_EQUAL(found(reconcile()), std::vector<std::string>{});

  // 5. A refund that lost its money movement.
  auto id2 = str(e2.env.id);
  auto escrow2 = escrow_account(segment_of(e2.env.id));
  script(verify(), "BEGIN;"
                  " DELETE FROM ledger_entries WHERE idempotency_key = 'refund:"
                    + id2 + "';"
                  " UPDATE accounts SET balance_fen = balance_fen - 500"
                  "  WHERE id = 'user:s2';"
                  " UPDATE accounts SET balance_fen = balance_fen + 500"
                  "  WHERE id = '" + escrow2 + "';"
                  " COMMIT");
  auto unrefunded = reconcile(t0 + 3600000, true);
  CAF_CHECK_EQUAL(found(unrefunded),
                  (std::vector<std::string>{"escrow_mismatch 0 " + escrow2,
                                            "refund_missing " + id2 + " "}));
  CAF_MESSAGE("lost refund:" << dump(unrefunded));
  query(verify(), "SELECT hb_post('refund:" + id2 + "', 'refund', '" + escrow2
                    + "', 'user:s2', 500, " + id2 + ", 's2')");
  CAF_CHECK_EQUAL(found(reconcile()), std::vector<std::string>{});

  // 6. A payment that lost its money movement.
  auto id3 = str(e3.env.id);
  auto escrow3 = escrow_account(segment_of(e3.env.id));
  script(verify(), "BEGIN;"
                  " DELETE FROM ledger_entries WHERE idempotency_key = 'pay:"
                    + id3 + "';"
                  " UPDATE accounts SET balance_fen = balance_fen + 500"
                  "  WHERE id = 'external:payments';"
                  " UPDATE accounts SET balance_fen = balance_fen - 500"
                  "  WHERE id = '" + escrow3 + "';"
                  " COMMIT");
  auto unpaid = reconcile();
  CAF_CHECK_EQUAL(found(unpaid),
                  (std::vector<std::string>{"escrow_mismatch 0 " + escrow3,
                                            "payment_missing " + id3 + " "}));
  CAF_MESSAGE("lost payment:" << dump(unpaid));
  query(verify(), "SELECT hb_post('pay:" + id3 + "', 'pay', 'external:payments', '"
                    + escrow3 + "', 500, " + id3 + ", 's3')");
  CAF_CHECK_EQUAL(found(reconcile()), std::vector<std::string>{});

  // 7. A paid envelope the sweeper forgot (more than 60 s past expiry).
  auto expiry = e3.env.expires_at_ms;
  CAF_CHECK_EQUAL(found(reconcile(expiry + 59000)), std::vector<std::string>{});
  CAF_CHECK_EQUAL(found(reconcile(expiry + 61000)),
                  std::vector<std::string>{"refund_overdue " + id3 + " "});

  // 8. Money out of nowhere.
  query(verify(), "UPDATE accounts SET balance_fen = balance_fen + 1"
                  " WHERE id = 'external:payments'");
  auto invented = reconcile();
  CAF_CHECK_EQUAL(found(invented),
                  (std::vector<std::string>{"balance_mismatch 0 external:payments",
                                            "ledger_unbalanced 0 "}));
  CAF_MESSAGE("invented money:" << dump(invented));
  query(verify(), "UPDATE accounts SET balance_fen = balance_fen - 1"
                  " WHERE id = 'external:payments'");
  auto final_report = reconcile();
  CAF_CHECK_EQUAL(found(final_report), std::vector<std::string>{});
  CAF_CHECK_EQUAL(final_report.wallets_fen + final_report.escrow_fen
                    + final_report.external_fen,
                  0);
}

CAF_TEST_FIXTURE_SCOPE_END()

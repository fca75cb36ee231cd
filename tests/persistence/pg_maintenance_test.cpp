// Integration tests of pg_store's housekeeping against a real PostgreSQL (see
// pg_connection_test.cpp for the setup): day partitions, cold storage, and
// the scan for expired envelopes.
#define CAF_SUITE persistence.pg_maintenance
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
#include "tests/persistence/pg_partition_fixture.hpp"

using namespace hb;
using namespace hb::persistence;
using namespace hb::persistence::test_support;

CAF_TEST_FIXTURE_SCOPE(pg_partitions_tests, partition_fixture)

CAF_TEST(ensure_partitions creates the days ahead once) {
  auto today = day_from_today(0);
  auto ahead = day_from_today(2);
  CAF_CHECK_EQUAL(value_of(store->ensure_partitions(today, ahead)), 9);
  CAF_CHECK_EQUAL(value_of(store->ensure_partitions(today, ahead)), 0);
  for (int i = 0; i <= 2; ++i)
    CAF_CHECK_EQUAL(where(day_from_today(i)), "hot");
  CAF_CHECK_EQUAL(where(day_from_today(3)), "none");
  auto lo = static_cast<int64_t>(today) * 100000000000;
  auto hi = static_cast<int64_t>(today + 1) * 100000000000;
  CAF_CHECK_EQUAL(query(verify(),
                        "SELECT pg_get_expr(relpartbound, oid) FROM pg_class"
                        " WHERE relname = $1",
                        {"opens_p" + str(today)}),
                  "FOR VALUES FROM ('" + str(lo) + "') TO ('" + str(hi) + "')");
  // Month and year ends step by calendar days.
  CAF_CHECK_EQUAL(value_of(store->ensure_partitions(20280227, 20280301)), 12);
  CAF_CHECK_EQUAL(where(20280229), "hot");
  CAF_CHECK_EQUAL(value_of(store->ensure_partitions(20271231, 20280101)), 6);
  // No default partition anywhere: a row of an unknown day is refused.
  CAF_CHECK_EQUAL(query_int(verify(),
                            "SELECT count(*) FROM pg_class"
                            " WHERE pg_get_expr(relpartbound, oid) = 'DEFAULT'"),
                  0);
  CAF_CHECK_EQUAL(code_of(store->ensure_partitions(20261131, 20261201)),
                  "invalid_argument");
  CAF_CHECK_EQUAL(code_of(store->ensure_partitions(20270229, 20270301)),
                  "invalid_argument");
  CAF_CHECK_EQUAL(code_of(store->ensure_partitions(ahead, today)),
                  "invalid_argument");
  CAF_CHECK_EQUAL(code_of(store->ensure_partitions(20260101, 20300101)),
                  "invalid_argument");
  CAF_CHECK_EQUAL(code_of(store->detach_cold(20261300)), "invalid_argument");
}

CAF_TEST(create_envelope creates a missing day on the fly) {
  auto day = day_from_today(10);
  CAF_REQUIRE_EQUAL(where(day), "none");
  auto created = store->create_envelope(make_envelope(day, 1000, 10));
  CAF_REQUIRE_EQUAL(code_of(created), "ok");
  CAF_CHECK(created->created);
  CAF_CHECK_EQUAL(where(day), "hot");
  CAF_CHECK_EQUAL(value_of(store->ensure_partitions(day, day)), 0);
  // Nodes racing for the first envelope of a new day all succeed.
  auto next_day = day_from_today(11);
  std::vector<envelope> envs;
  for (int i = 0; i < 20; ++i)
    envs.push_back(make_envelope(next_day, 100, 1));
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      auto own = connect_or_fail(db.url());
      for (int i = t; i < 20; i += 4) {
        auto r = own->create_envelope(envs[i]);
        if (r && r->created)
          ++ok;
        else
          CAF_MESSAGE("create failed: " << message_of(r));
      }
    });
  for (auto& t : threads)
    t.join();
  CAF_CHECK_EQUAL(ok.load(), 20);
  CAF_CHECK_EQUAL(query_int(verify(),
                            "SELECT count(*) FROM envelopes_p" + str(next_day)),
                  20);
}

CAF_TEST(old days move to cold storage and stay readable) {
  auto old_day = day_from_today(-40);
  auto held_day = day_from_today(-35);
  auto cutoff = day_from_today(-31);
  CAF_CHECK_EQUAL(value_of(store->ensure_partitions(old_day, old_day)), 3);
  // Exhausted and credited; partly opened and refunded; never paid.
  auto a = paid(old_day, 1000, 2, "old-sender");
  open(a, {{"alice", 300}, {"bob", 700}});
  auto b = paid(old_day, 1000, 4, "old-sender");
  open(b, {{"carol", 100}});
  relay_all();
  expire(b);
  CAF_REQUIRE_EQUAL(value_of(store->refund(b.env.id, b.env.epoch)), 900);
  auto c = store->create_envelope(make_envelope(old_day, 500, 5, "lazy"));
  CAF_REQUIRE_EQUAL(code_of(c), "ok");
  // Money still in escrow keeps its day hot.
  auto h = paid(held_day, 500, 5, "holder");
  CAF_CHECK_EQUAL(where(held_day), "hot");
  auto wallets_before = value_of(store->balance("alice")).balance_fen;
  CAF_CHECK_EQUAL(value_of(store->detach_cold(cutoff)), 1);
  CAF_CHECK_EQUAL(where(old_day), "cold");
  CAF_CHECK_EQUAL(where(held_day), "hot");
  CAF_CHECK_EQUAL(query_int(verify(),
                            "SELECT count(*) FROM cold.envelopes_p"
                              + str(old_day)),
                  3);
  CAF_CHECK_EQUAL(query_int(verify(), "SELECT count(*) FROM envelopes"
                                      " WHERE id = $1",
                            {str(a.env.id)}),
                  0);
  // Reads find the archived envelope, opens and records.
  auto loaded = value_of(store->load(a.env.id));
  CAF_CHECK(loaded.archived);
  CAF_CHECK(loaded.env.status == envelope_status::exhausted);
  CAF_CHECK_EQUAL(loaded.opens.size(), 2u);
  CAF_CHECK_EQUAL(check_invariants(loaded.env, loaded.opens), "");
  auto activated = value_of(store->activate(a.env.id));
  CAF_CHECK(activated.archived);
  CAF_CHECK_EQUAL(activated.env.epoch, a.env.epoch);  // not bumped
  CAF_CHECK_EQUAL(activated.opens.size(), 2u);
  CAF_CHECK_EQUAL(value_of(store->activate(a.env.id)).env.epoch, a.env.epoch);
  auto refunded = value_of(store->load(b.env.id));
  CAF_CHECK(refunded.archived);
  CAF_CHECK_EQUAL(refunded.env.refunded_fen, 900);
  auto unpaid = value_of(store->activate(c->env.id));
  CAF_CHECK(unpaid.archived);
  CAF_CHECK(unpaid.env.status == envelope_status::created);
  CAF_CHECK(!value_of(store->load(h.env.id)).archived);
  CAF_CHECK(contains(history_ids("alice", history_kind::received), a.env.id));
  CAF_CHECK(contains(history_ids("carol", history_kind::received), b.env.id));
  auto sent = history_ids("old-sender", history_kind::sent);
  CAF_CHECK(contains(sent, a.env.id) && contains(sent, b.env.id));
  CAF_CHECK_EQUAL(value_of(store->balance("alice")).balance_fen, wallets_before);
  CAF_CHECK_EQUAL(discrepancies(), std::vector<std::string>{});
  // Archived envelopes are read-only: no payment, refund or new envelope.
  payment late{c->env.id, unpaid.env.epoch, "txn-late", 0, 0};
  CAF_CHECK_EQUAL(code_of(store->confirm_payment(late)), "expired");
  CAF_CHECK_EQUAL(code_of(store->refund(a.env.id, a.env.epoch)), "stale_epoch");
  CAF_CHECK_EQUAL(value_of(store->refund(b.env.id, b.env.epoch)), 900);
  auto fresh_in_old = store->create_envelope(make_envelope(old_day, 100, 1));
  CAF_CHECK_EQUAL(code_of(fresh_in_old), "internal");
  CAF_MESSAGE("new envelope on a cold day: " << message_of(fresh_in_old));
  // A retried Create of an archived envelope still finds it.
  auto retry = make_envelope(old_day, 1000, 2, "old-sender");
  retry.idempotency_key = a.env.idempotency_key;
  auto again = store->create_envelope(retry);
  CAF_REQUIRE_EQUAL(code_of(again), "ok");
  CAF_CHECK(!again->created);
  CAF_CHECK_EQUAL(again->env.id, a.env.id);
  // A credit lost on a cold day is repaired and relayed into the cold tables.
  auto id = str(a.env.id);
  auto escrow = escrow_account(segment_of(a.env.id));
  script(verify(), "BEGIN;"
                   " DELETE FROM ledger_entries WHERE idempotency_key = 'credit:"
                     + id + ":alice';"
                   " UPDATE accounts SET balance_fen = balance_fen - 300"
                   "  WHERE id = 'user:alice';"
                   " UPDATE accounts SET balance_fen = balance_fen + 300"
                   "  WHERE id = '" + escrow + "';"
                   " COMMIT");
  auto repaired = value_of(store->reconcile(0, now_ms(), true));
  CAF_REQUIRE_EQUAL(repaired.discrepancies.size(), 1u);
  CAF_CHECK_EQUAL(repaired.discrepancies[0].kind, "missing_credit");
  CAF_CHECK(repaired.discrepancies[0].repaired);
  // Re-enqueued through an outbox 'open' row (credits_owed is for hot
  // opens), which the relay delivers.
  CAF_CHECK_EQUAL(query_int(verify(), "SELECT count(*) FROM relay_backlog"
                                      " WHERE envelope_id = $1"
                                      " AND user_id = 'alice'"
                                      " AND kind = 'open'",
                            {id}),
                  1);
  CAF_CHECK_EQUAL(query_int(verify(), "SELECT count(*) FROM credits_owed", {}),
                  0);
  CAF_CHECK_EQUAL(relay_all(), 1);
  CAF_CHECK_EQUAL(query_int(verify(), "SELECT count(*) FROM relay_backlog"
                                      " WHERE envelope_id = $1",
                            {id}),
                  0);
  CAF_CHECK_EQUAL(value_of(store->balance("alice")).balance_fen, wallets_before);
  CAF_CHECK_EQUAL(discrepancies(), std::vector<std::string>{});
  // Once the held day's money is gone, it moves too.
  expire(h);
  CAF_CHECK_EQUAL(value_of(store->refund(h.env.id, h.env.epoch)), 500);
  CAF_CHECK_EQUAL(value_of(store->detach_cold(cutoff)), 1);
  CAF_CHECK_EQUAL(where(held_day), "cold");
  CAF_CHECK_EQUAL(value_of(store->detach_cold(cutoff)), 0);
  CAF_CHECK(value_of(store->load(h.env.id)).archived);
  CAF_CHECK_EQUAL(discrepancies(), std::vector<std::string>{});
}

CAF_TEST(a day with opens not yet credited stays hot) {
  auto day = day_from_today(-45);
  auto e = paid(day, 300, 2);
  open(e, {{"alice", 100}, {"bob", 200}});
  CAF_CHECK(e.env.status == envelope_status::exhausted);
  CAF_CHECK_EQUAL(value_of(store->detach_cold(day_from_today(-31))), 0);
  CAF_CHECK_EQUAL(where(day), "hot");
  CAF_CHECK_EQUAL(relay_all(), 2);
  CAF_CHECK_EQUAL(value_of(store->detach_cold(day_from_today(-31))), 1);
  CAF_CHECK_EQUAL(where(day), "cold");
  CAF_CHECK_EQUAL(value_of(store->balance("bob")).balance_fen, 200);
  CAF_CHECK_EQUAL(discrepancies(), std::vector<std::string>{});
}

CAF_TEST_FIXTURE_SCOPE_END()

CAF_TEST_FIXTURE_SCOPE(pg_expiry_tests, ledger_fixture)

CAF_TEST(expired_envelopes lists only paid envelopes that are due) {
  auto a = paid(100, 1, "", t0 + 10000);
  auto b = paid(100, 1, "", t0 + 20000);
  auto c = paid(100, 1, "", t0 + 30000);
  paid(100, 1, "", 0);  // never expires
  auto refunded = paid(100, 1, "", t0 + 5000);
  CAF_REQUIRE_EQUAL(code_of(store->refund(refunded.env.id, refunded.env.epoch)),
                    "ok");
  auto exhausted = paid(100, 1, "");
  open(exhausted, {{"alice", 100}});
  store->create_envelope(make_envelope(100, 1));  // unpaid
  using ids = std::vector<int64_t>;
  CAF_CHECK_EQUAL(value_of(store->expired_envelopes(t0 + 20000, 10)),
                  (ids{a.env.id, b.env.id}));
  CAF_CHECK_EQUAL(value_of(store->expired_envelopes(t0 + 20000, 1)),
                  (ids{a.env.id}));
  CAF_CHECK_EQUAL(value_of(store->expired_envelopes(t0 + 100000, 10)),
                  (ids{a.env.id, b.env.id, c.env.id}));
  CAF_CHECK(value_of(store->expired_envelopes(t0 + 9999, 10)).empty());
  CAF_CHECK_EQUAL(code_of(store->expired_envelopes(t0, 0)), "invalid_argument");
  // Pages: after an envelope in (expiry, id) order, whether it is still due
  // or was refunded meanwhile; an unknown cursor starts at the oldest.
  auto now = t0 + 100000;
  CAF_CHECK_EQUAL(value_of(store->expired_envelopes(now, 1, a.env.id)),
                  (ids{b.env.id}));
  CAF_CHECK_EQUAL(value_of(store->expired_envelopes(now, 10, b.env.id)),
                  (ids{c.env.id}));
  CAF_CHECK(value_of(store->expired_envelopes(now, 10, c.env.id)).empty());
  CAF_CHECK_EQUAL(value_of(store->expired_envelopes(now, 10, refunded.env.id)),
                  (ids{a.env.id, b.env.id, c.env.id}));
  CAF_REQUIRE_EQUAL(code_of(store->refund(b.env.id, b.env.epoch)), "ok");
  CAF_CHECK_EQUAL(value_of(store->expired_envelopes(now, 10, b.env.id)),
                  (ids{c.env.id}));
  CAF_CHECK_EQUAL(value_of(store->expired_envelopes(now, 10, 1)),
                  (ids{a.env.id, c.env.id}));
}

CAF_TEST_FIXTURE_SCOPE_END()

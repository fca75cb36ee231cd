// The fixture of the tests of the money after the open (payments, relay,
// refunds, history, reconciliation): a freshly migrated database per test, so
// that a test can count rows and audit the whole ledger.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "domain/envelope_id.hpp"
#include "domain/ledger.hpp"
#include "persistence/pg_store.hpp"

#include "tests/persistence/pg_test_support.hpp"

namespace hb::persistence::test_support {

constexpr int64_t t0 = 1764158400000;  // 2025-11-26 12:00:00 UTC

/// "kind envelope user" of every discrepancy, sorted: easy to compare whole.
inline std::vector<std::string> found(const reconcile_report& r) {
  std::vector<std::string> out;
  for (auto& d : r.discrepancies)
    out.push_back(d.kind + " " + str(d.envelope_id) + " " + d.user);
  std::sort(out.begin(), out.end());
  return out;
}

inline std::string dump(const reconcile_report& r) {
  std::string out;
  for (auto& d : r.discrepancies)
    out += "\n  " + d.kind + " " + str(d.envelope_id) + " '" + d.user
           + "': " + d.detail + (d.repaired ? " [repaired]" : "");
  return out;
}

struct ledger_fixture {
  ledger_fixture() : store(connect_or_fail(db.url())) {
  }

  PGconn* verify() {
    return db.verify();
  }

  envelope make_envelope(int64_t total_fen, int32_t count,
                         const std::string& sender = "") {
    auto n = ++next;
    envelope env;
    env.id = make_envelope_id(test_day, n, static_cast<int32_t>(n * 7 % 1000));
    env.sender = sender.empty() ? "sender-" + str(n) : sender;
    env.group = "group-1";
    env.greeting = "恭喜发财";
    env.idempotency_key = "key-" + str(n);
    env.kind = envelope_kind::random;
    env.total_fen = total_fen;
    env.count = count;
    env.created_at_ms = t0;
    return env;
  }

  /// Creates, activates and pays an envelope; returns its snapshot as PAID.
  envelope_snapshot paid(int64_t total_fen, int32_t count,
                         const std::string& sender = "",
                         int64_t expires_at_ms = live_expiry_ms,
                         int64_t paid_at_ms = t0 + 1000,
                         bool from_wallet = false) {
    auto created = store->create_envelope(make_envelope(total_fen, count, sender));
    CAF_REQUIRE_EQUAL(code_of(created), "ok");
    auto snap = store->activate(created->env.id);
    CAF_REQUIRE_EQUAL(code_of(snap), "ok");
    payment p{snap->env.id, snap->env.epoch, "txn-" + str(snap->env.id),
              paid_at_ms, expires_at_ms, from_wallet};
    auto confirmed = store->confirm_payment(p);
    if (!confirmed)
      CAF_FAIL("confirm_payment: " << confirmed.error().message);
    return value_of(store->load(snap->env.id));
  }

  /// Lets the database's clock pass the envelope's expiry (moves the expiry
  /// to just before its now()), as time would: a refund is due only then.
  void expire(envelope_snapshot& snap) {
    query(verify(), "UPDATE envelopes SET expires_at = now() - interval '1 ms'"
                    " WHERE id = $1",
          {std::to_string(snap.env.id)});
    snap = value_of(store->load(snap.env.id));
  }

  /// Commits one group-commit batch; the last share of an envelope takes
  /// whatever the caller gives it (the caller keeps the sums right).
  void open(envelope_snapshot& snap, const shares& xs, int64_t at_ms = t0 + 2000) {
    open_batch b;
    b.envelope_id = snap.env.id;
    b.epoch = snap.env.epoch;
    auto seq = static_cast<int32_t>(snap.opens.size());
    int64_t sum = 0;
    for (auto& [user, amount] : xs) {
      b.opens.push_back(open_record{user, amount, ++seq, at_ms});
      sum += amount;
    }
    b.remaining_fen = snap.env.remaining_fen - sum;
    b.remaining_count = snap.env.remaining_count
                        - static_cast<int32_t>(xs.size());
    b.status = b.remaining_count == 0 ? envelope_status::exhausted
                                      : envelope_status::paid;
    auto r = store->commit_opens(b);
    if (!r)
      CAF_FAIL("commit_opens: " << r.error().message);
    snap = value_of(store->load(snap.env.id));
  }

  /// Runs relay batches until the backlog is drained; returns credits made.
  int64_t relay_all(int32_t limit = 500) {
    int64_t credited = 0;
    for (;;) {
      auto r = value_of(store->relay_batch(limit));
      credited += r.credited;
      if (r.rows == 0)
        return credited;
    }
  }

  int64_t wallet(const std::string& user) {
    return value_of(store->balance(user)).balance_fen;
  }

  int64_t account(const std::string& id) {
    return query_int(verify(),
                     "SELECT COALESCE((SELECT balance_fen FROM accounts"
                     " WHERE id = $1), 0)",
                     {id});
  }

  int64_t escrow_of(int64_t envelope_id) {
    return account(escrow_account(segment_of(envelope_id)));
  }

  int64_t ledger_sum() {
    return query_int(verify(),
                     "SELECT COALESCE(sum(balance_fen), 0) FROM accounts");
  }

  int64_t count(const std::string& sql, const std::vector<std::string>& args) {
    return query_int(verify(), sql, args);
  }

  reconcile_report reconcile(int64_t now_ms = t0 + 3600000, bool repair = false,
                             int64_t since_ms = 0) {
    return value_of(store->reconcile(since_ms, now_ms, repair));
  }

  fresh_db db;
  std::unique_ptr<pg_store> store;
  int64_t next = 0;
};

} // namespace hb::persistence::test_support

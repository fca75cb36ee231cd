// The fixture of the tests of day partitions and cold storage: a freshly
// migrated database per test, days counted from today.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "domain/envelope_id.hpp"
#include "domain/ledger.hpp"
#include "persistence/pg_store.hpp"

#include "tests/persistence/pg_test_support.hpp"

namespace hb::persistence::test_support {

inline int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch())
    .count();
}

/// The UTC day `days` from today (negative: in the past).
inline int32_t day_from_today(int days) {
  return utc_day_of(now_ms() + days * day_ms);
}

struct partition_fixture {
  partition_fixture() : store(connect_or_fail(db.url())) {
  }

  PGconn* verify() {
    return db.verify();
  }

  envelope make_envelope(int32_t day, int64_t total_fen, int32_t count,
                         const std::string& sender = "") {
    auto n = ++next;
    envelope env;
    env.id = make_envelope_id(day, n, static_cast<int32_t>(n * 7 % 1000));
    env.sender = sender.empty() ? "sender-" + str(n) : sender;
    env.group = "group-1";
    env.idempotency_key = "key-" + str(n);
    env.total_fen = total_fen;
    env.count = count;
    return env;
  }

  envelope_snapshot paid(int32_t day, int64_t total_fen, int32_t count,
                         const std::string& sender = "") {
    auto created = store->create_envelope(make_envelope(day, total_fen, count,
                                                        sender));
    CAF_REQUIRE_EQUAL(code_of(created), "ok");
    auto snap = value_of(store->activate(created->env.id));
    payment p{snap.env.id, snap.env.epoch, "txn-" + str(snap.env.id), 0,
              now_ms() + day_ms};
    CAF_REQUIRE_EQUAL(code_of(store->confirm_payment(p)), "ok");
    return value_of(store->load(snap.env.id));
  }

  /// Lets the database's clock pass the envelope's expiry, as time would.
  void expire(envelope_snapshot& snap) {
    query(verify(), "UPDATE envelopes SET expires_at = now() - interval '1 ms'"
                    " WHERE id = $1",
          {str(snap.env.id)});
    snap = value_of(store->load(snap.env.id));
  }

  void open(envelope_snapshot& snap, const shares& xs) {
    open_batch b;
    b.envelope_id = snap.env.id;
    b.epoch = snap.env.epoch;
    auto seq = static_cast<int32_t>(snap.opens.size());
    int64_t sum = 0;
    for (auto& [user, amount] : xs) {
      b.opens.push_back(open_record{user, amount, ++seq, now_ms()});
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

  int64_t relay_all() {
    int64_t credited = 0;
    for (;;) {
      auto r = value_of(store->relay_batch(500));
      credited += r.credited;
      if (r.rows == 0)
        return credited;
    }
  }

  bool exists(const std::string& qualified) {
    return query(verify(), "SELECT to_regclass($1) IS NOT NULL", {qualified})
           == "t";
  }

  /// Where the day's three tables are: "hot", "cold", "none" or "mixed".
  std::string where(int32_t day) {
    int hot = 0;
    int cold = 0;
    for (auto t : {"envelopes", "opens", "user_records"}) {
      auto name = std::string(t) + "_p" + str(day);
      hot += exists("public." + name) ? 1 : 0;
      cold += exists("cold." + name) ? 1 : 0;
    }
    if (hot == 3 && cold == 0)
      return "hot";
    if (cold == 3 && hot == 0)
      return "cold";
    if (hot == 0 && cold == 0)
      return "none";
    return "mixed";
  }

  std::vector<int64_t> history_ids(const std::string& user, history_kind kind) {
    std::vector<int64_t> out;
    for (auto& item : value_of(store->history({user, kind, 100, ""})).items)
      out.push_back(item.envelope_id);
    return out;
  }

  std::vector<std::string> discrepancies() {
    std::vector<std::string> out;
    auto report = value_of(store->reconcile(0, now_ms(), false));
    for (auto& d : report.discrepancies)
      out.push_back(d.kind + " " + str(d.envelope_id) + " " + d.user + ": "
                    + d.detail);
    return out;
  }

  fresh_db db;
  std::unique_ptr<pg_store> store;
  int64_t next = 0;
};

inline bool contains(const std::vector<int64_t>& xs, int64_t x) {
  return std::find(xs.begin(), xs.end(), x) != xs.end();
}

} // namespace hb::persistence::test_support

// The fixture of the tests of one envelope's rows (create, activate, commit,
// lease): a database shared by the suite's tests, fresh envelopes that never
// repeat, and a second connection to hold a row lock.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "domain/envelope_id.hpp"
#include "persistence/pg_store.hpp"

#include "tests/persistence/pg_test_support.hpp"

namespace hb::persistence::test_support {

/// A port nothing listens on: bound once by the kernel's choice, then freed.
inline uint16_t unused_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

struct store_fixture {
  store_fixture() : db(shared_db()), store(connect_or_fail(db.url())) {
  }

  /// A fresh envelope description; ids, senders and keys never repeat.
  envelope make_envelope(int64_t total_fen, int32_t count,
                         int32_t day = test_day) {
    static std::atomic<int64_t> next{1};
    auto n = next++;
    envelope env;
    env.id = make_envelope_id(day, n, static_cast<int32_t>(n * 7 % 1000));
    env.sender = "sender-" + std::to_string(n);
    env.group = "group-1";
    env.greeting = "恭喜发财";
    env.idempotency_key = "key-" + std::to_string(n);
    env.kind = envelope_kind::random;
    env.total_fen = total_fen;
    env.count = count;
    env.created_at_ms = 1764158400123;
    return env;
  }

  /// Creates, activates and pays an envelope; returns its snapshot.
  envelope_snapshot paid_envelope(int64_t total_fen, int32_t count,
                                  int32_t day = test_day) {
    auto created = store->create_envelope(make_envelope(total_fen, count, day));
    CAF_REQUIRE(created.ok());
    auto snap = store->activate(created->env.id);
    CAF_REQUIRE(snap.ok());
    payment p{snap->env.id, snap->env.epoch,
              "txn-" + std::to_string(snap->env.id), 1764158401000,
              live_expiry_ms};
    CAF_REQUIRE_EQUAL(code_of(store->confirm_payment(p)), "ok");
    snap->env.status = envelope_status::paid;
    return std::move(*snap);
  }

  static open_batch batch_of(const envelope& env, int64_t remaining_fen,
                             std::vector<open_record> opens) {
    open_batch b;
    b.envelope_id = env.id;
    b.epoch = env.epoch;
    b.opens = std::move(opens);
    b.remaining_fen = remaining_fen;
    b.remaining_count = env.remaining_count
                        - static_cast<int32_t>(b.opens.size());
    b.status = b.remaining_count == 0 ? envelope_status::exhausted
                                      : envelope_status::paid;
    return b;
  }

  int64_t count_rows(const char* table, int64_t envelope_id) {
    return query_int(db.verify(),
                     std::string("SELECT count(*) FROM ") + table
                       + " WHERE envelope_id = $1",
                     {std::to_string(envelope_id)});
  }

  /// Whether the store's own session has a statement prepared that contains
  /// every one of `pieces` and has been planned (executed) at least `plans`
  /// times.
  bool prepared_in_session(const std::vector<std::string>& pieces,
                           int plans = 0) {
    std::string cond;
    for (auto& p : pieces)
      cond += " AND strpos(statement, '" + p + "') > 0";
    auto r = store->exec(
      "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_prepared_statements"
      " WHERE generic_plans + custom_plans >= " + std::to_string(plans) + cond
      + ") THEN RAISE EXCEPTION 'not prepared'; END IF; END $$");
    return r.ok();
  }

  /// An old owner's write of one open ('in-flight', 100 fen), left
  /// uncommitted on the verify connection, which it returns: it holds the
  /// envelope's row lock until the caller commits it.
  PGconn* begin_old_owner_write(const envelope& env) {
    auto id = std::to_string(env.id);
    auto old_owner = db.verify();
    query(old_owner, "BEGIN");
    query(old_owner, "UPDATE envelopes SET remaining_fen = remaining_fen - 100,"
                     " remaining_count = remaining_count - 1 WHERE id = $1",
          {id});
    query(old_owner, "INSERT INTO opens (envelope_id, user_id, amount_fen,"
                     " seq, opened_at) VALUES ($1, 'in-flight', 100, 1, now())",
          {id});
    return old_owner;
  }

  /// Runs `activate` (a call to the store) on a thread while the old
  /// owner's write from begin_old_owner_write is uncommitted, checks that it
  /// waits for it, commits the write and returns what `activate` returned.
  template <class F>
  auto activate_behind(PGconn* old_owner, F activate) {
    std::atomic<bool> finished{false};
    decltype(activate()) out{errc::internal, "not run"};
    std::thread activator{[&] {
      out = activate();
      finished = true;
    }};
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    CAF_CHECK(!finished);  // blocked behind the row lock
    query(old_owner, "COMMIT");
    activator.join();
    return out;
  }

  int64_t remaining_fen(int64_t envelope_id) {
    return query_int(db.verify(),
                     "SELECT remaining_fen FROM envelopes WHERE id = $1",
                     {std::to_string(envelope_id)});
  }

  scratch_db& db;
  std::unique_ptr<pg_store> store;
};

} // namespace hb::persistence::test_support

// Integration tests of pg_store's connection and schema against a real
// PostgreSQL (scripts/pg): migrations, prepared statements across sessions,
// and an unreachable server.
//
//   eval "$(scripts/pg start >/dev/null; echo export HONGBAO_TEST_DB_URL=\"$(
//     scripts/pg url | sed 's/ dbname=[^ ]*//')\")"
//   build/bin/hb_persistence_test -s persistence.pg_connection
//
// Every run works in a database of its own (hb_test_<pid>_<time>), created
// through the `postgres` database and dropped at exit; the helpers are in
// pg_test_support.hpp, the fixtures in pg_*_fixture.hpp.
#define CAF_SUITE persistence.pg_connection
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

#include <signal.h>

#include "persistence/migrations.hpp"
#include "tests/persistence/pg_store_fixture.hpp"

using namespace hb;
using namespace hb::persistence;
using namespace hb::persistence::test_support;

namespace {

/// A scratch database at schema version `version`, migrated the way
/// migrate() does it.
void migrate_to(PGconn* conn, int version) {
  script(conn, "CREATE TABLE schema_migrations (version INT PRIMARY KEY,"
               " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL"
               " DEFAULT now())");
  for (auto& m : all_migrations()) {
    if (m.version > version)
      continue;
    script(conn, std::string{"BEGIN;"} + m.sql + ";COMMIT");
    query(conn, "INSERT INTO schema_migrations VALUES ($1, $2)",
          {std::to_string(m.version), m.name});
  }
}

/// A backend process stopped with SIGSTOP (a database that stops
/// answering without closing anything: no server setting can fire), and
/// continued when the guard goes out of scope, also on a failed check.
class stopped_backend {
public:
  explicit stopped_backend(long pid) : pid_(pid) {
    CAF_REQUIRE_EQUAL(::kill(static_cast<pid_t>(pid_), SIGSTOP), 0);
  }
  ~stopped_backend() { resume(); }
  void resume() {
    if (pid_ != 0)
      ::kill(static_cast<pid_t>(pid_), SIGCONT);
    pid_ = 0;
  }

private:
  long pid_;
};

/// The pid of the session with this application_name.
long backend_of(PGconn* verify, const std::string& app) {
  return static_cast<long>(query_int(verify,
                                     "SELECT pid FROM pg_stat_activity"
                                     " WHERE application_name = $1",
                                     {app}));
}

int64_t ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::steady_clock::now() - t0)
    .count();
}

/// How many migrations come after `version`.
int migrations_after(int version) {
  return static_cast<int>(std::count_if(
    all_migrations().begin(), all_migrations().end(),
    [version](const migration& m) { return m.version > version; }));
}

} // namespace

CAF_TEST(migrations apply from an empty database exactly once) {
  scratch_db empty{"_m"};
  auto store = connect_or_fail(empty.url());
  CAF_CHECK_EQUAL(value_of(store->schema_version()), 0);
  auto expected = static_cast<int>(all_migrations().size());
  CAF_REQUIRE_GREATER(expected, 0);
  auto applied = store->migrate();
  CAF_REQUIRE_EQUAL(code_of(applied), "ok");
  CAF_CHECK_EQUAL(*applied, expected);
  CAF_CHECK_EQUAL(value_of(store->schema_version()),
                  all_migrations().back().version);
  auto again = store->migrate();
  CAF_REQUIRE_EQUAL(code_of(again), "ok");
  CAF_CHECK_EQUAL(*again, 0);
  for (auto table :
       {"envelopes", "opens", "user_records", "cold.envelopes", "cold.opens",
        "cold.user_records", "envelopes_all", "opens_all", "user_records_all",
        "envelope_keys", "payments", "outbox", "relay_backlog", "accounts",
        "ledger_entries",
        "segment_leases", "schema_migrations", "cluster_identity",
        "node_leases", "segment_owners"})
    CAF_CHECK_EQUAL(query(empty.verify(),
                          "SELECT to_regclass($1) IS NOT NULL", {table}),
                    "t");
}

// Migration 5 moves what the relay owes from a status per open to the
// credits_owed queue: a database at version 4 with opens owed (status 1)
// and opens already credited (status 2) comes out with exactly the owed
// ones queued, no status column, and a relay that credits those and no
// other.
CAF_TEST(migration 5 queues the opens owed under version 4) {
  scratch_db old{"_v5"};
  auto conn = old.verify();
  migrate_to(conn, 4);
  auto day = utc_day_of(std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count());
  auto id = std::to_string(make_envelope_id(day, 1, 7));
  query(conn, "SELECT hb_ensure_partitions($1, $1)", {std::to_string(day)});
  query(conn,
        "INSERT INTO envelopes (id, segment, sender, group_id,"
        " idempotency_key, kind, status, total_fen, count, remaining_fen,"
        " remaining_count, created_at, paid_at)"
        " VALUES ($1, 7, 'sam', 'g', 'k', 1, 2, 1000, 4, 400, 1, now(), now())",
        {id});
  query(conn,
        "INSERT INTO opens (envelope_id, user_id, amount_fen, seq, opened_at,"
        " status) VALUES ($1, 'ann', 100, 1, now(), 2),"
        " ($1, 'ben', 200, 2, now(), 1), ($1, 'cat', 300, 3, now(), 1)",
        {id});
  auto store = connect_or_fail(old.url());
  CAF_CHECK_EQUAL(value_of(store->schema_version()), 4);
  CAF_REQUIRE_EQUAL(value_of(store->migrate()), migrations_after(4));
  CAF_CHECK_EQUAL(value_of(store->schema_version()),
                  all_migrations().back().version);
  CAF_CHECK_EQUAL(query(conn, "SELECT string_agg(user_id, ',' ORDER BY user_id)"
                              " FROM relay_backlog WHERE envelope_id = $1",
                        {id}),
                  "ben,cat");
  CAF_CHECK_EQUAL(query_int(conn, "SELECT count(*) FROM credits_owed"), 1);
  CAF_CHECK_EQUAL(query_int(conn, "SELECT count(*) FROM information_schema"
                                  ".columns WHERE column_name = 'status'"
                                  " AND table_name = 'opens'"),
                  0);
  auto r = value_of(store->relay_batch(100));
  CAF_CHECK_EQUAL(r.rows, 2);
  CAF_CHECK_EQUAL(r.credited, 2);
  CAF_CHECK_EQUAL(r.credited_fen, 500);
  CAF_CHECK_EQUAL(query(conn, "SELECT string_agg(user_id || '=' || amount_fen,"
                              " ',' ORDER BY user_id) FROM ledger_entries"
                              " WHERE kind = 'credit'"),
                  "ben=200,cat=300");
  CAF_CHECK_EQUAL(query_int(conn, "SELECT count(*) FROM relay_backlog"), 0);
}

// Migration 6 adds envelopes.owner_epoch (0 for every envelope written so
// far) wherever an envelope row can live: the hot and cold parents, every
// day partition already there, hot or cold, the day partitions made later
// (LIKE the parent) and the envelopes_all view; and a day partition that
// was hot before it still moves cold (ATTACH wants the same columns).
CAF_TEST(migration 6 gives every envelope an owner_epoch wherever it lives) {
  scratch_db old{"_v6"};
  auto conn = old.verify();
  migrate_to(conn, 5);
  query(conn, "SELECT hb_ensure_partitions(20250101, 20250103)");
  auto insert = [&](const std::string& id, int status, int remaining_count,
                    int remaining_fen) {
    query(conn,
          "INSERT INTO envelopes (id, segment, sender, group_id,"
          " idempotency_key, kind, status, total_fen, count, remaining_fen,"
          " remaining_count, created_at)"
          " VALUES ($1::bigint, 7, 'sam', 'g', 'k' || $1, 1, $2, 1000, 4, $4,"
          " $3, now())",
          {id, std::to_string(status), std::to_string(remaining_count),
           std::to_string(remaining_fen)});
  };
  auto cold_id = std::to_string(make_envelope_id(20250101, 1, 7));
  auto hot_done_id = std::to_string(make_envelope_id(20250102, 1, 7));
  auto hot_paid_id = std::to_string(make_envelope_id(20250103, 1, 7));
  insert(cold_id, 3, 0, 0);
  insert(hot_done_id, 3, 0, 0);
  insert(hot_paid_id, 2, 4, 1000);
  CAF_REQUIRE_EQUAL(query(conn, "SELECT hb_detach_day(20250101)"), "t");
  auto store = connect_or_fail(old.url());
  CAF_REQUIRE_EQUAL(value_of(store->migrate()), migrations_after(5));
  CAF_CHECK_EQUAL(query(conn, "SELECT string_agg(id || ':' || owner_epoch"
                              " || ':' || archived, ',' ORDER BY id)"
                              " FROM envelopes_all"),
                  cold_id + ":0:true," + hot_done_id + ":0:false,"
                    + hot_paid_id + ":0:false");
  for (auto table : {"public.envelopes", "cold.envelopes",
                     "cold.envelopes_p20250101", "public.envelopes_p20250102",
                     "public.envelopes_p20250103"})
    CAF_CHECK_EQUAL(query(conn, "SELECT count(*) FROM pg_attribute"
                                " WHERE attrelid = to_regclass($1)"
                                " AND attname = 'owner_epoch'"
                                " AND NOT attisdropped AND attnotnull",
                          {table}),
                    "1");
  // A later day partition copies the column; an old hot day still moves.
  query(conn, "SELECT hb_ensure_partitions(20250104, 20250104)");
  CAF_CHECK_EQUAL(query(conn, "SELECT count(*) FROM pg_attribute"
                              " WHERE attrelid = 'public.envelopes_p20250104'"
                              "::regclass AND attname = 'owner_epoch'"),
                  "1");
  CAF_CHECK_EQUAL(value_of(store->detach_cold(20250103)), 1);
  CAF_CHECK_EQUAL(query(conn, "SELECT archived FROM envelopes_all"
                              " WHERE id = $1", {hot_done_id}),
                  "t");
  CAF_CHECK_EQUAL(query(conn, "SELECT owner_epoch FROM cold.envelopes"
                              " WHERE id = $1", {hot_done_id}),
                  "0");
  // The cluster tables are there, empty: a database without a SET.
  CAF_CHECK_EQUAL(value_of(store->cluster_set()), "");
  CAF_CHECK_EQUAL(query(conn, "SELECT count(*) FROM node_leases"), "0");
  CAF_CHECK_EQUAL(query(conn, "SELECT count(*) FROM segment_owners"), "0");
}

CAF_TEST(concurrent migrations serialise on the advisory lock) {
  scratch_db empty{"_c"};
  constexpr int nodes = 4;
  std::vector<int> applied(nodes, -1);
  std::vector<std::thread> threads;
  for (int i = 0; i < nodes; ++i)
    threads.emplace_back([&, i] {
      auto store = pg_store::connect(empty.url());
      if (!store)
        return;
      auto n = (*store)->migrate();
      applied[i] = n ? *n : -1;
    });
  for (auto& t : threads)
    t.join();
  // Exactly one node applies each migration; the others find them applied.
  int total = 0;
  for (auto n : applied) {
    CAF_CHECK_GREATER_OR_EQUAL(n, 0);
    total += n;
  }
  CAF_CHECK_EQUAL(total, static_cast<int>(all_migrations().size()));
  CAF_CHECK_EQUAL(query_int(empty.verify(),
                            "SELECT count(*) FROM schema_migrations"),
                  static_cast<int64_t>(all_migrations().size()));
}

CAF_TEST_FIXTURE_SCOPE(pg_connection_tests, store_fixture)

CAF_TEST(prepared statements survive being deallocated and a new session) {
  auto snap = paid_envelope(1000, 4);
  auto other = paid_envelope(500, 2);
  auto b1 = batch_of(snap.env, 900, {{"p1", 100, 1, 0}});
  CAF_REQUIRE_EQUAL(code_of(store->commit_opens(b1)), "ok");
  // Someone drops every prepared statement of the session: the store
  // prepares again instead of failing.
  CAF_REQUIRE_EQUAL(code_of(store->exec("DEALLOCATE ALL")), "ok");
  auto loaded = store->load(snap.env.id);
  CAF_REQUIRE_EQUAL(code_of(loaded), "ok");
  CAF_CHECK_EQUAL(loaded->opens.size(), 1u);
  auto after = loaded->env;
  auto b2 = batch_of(after, 800, {{"p2", 100, 2, 0}});
  CAF_CHECK_EQUAL(code_of(store->commit_opens(b2)), "ok");
  // A statement prepared inside a transaction that rolls back (a user who
  // opened already breaks the multi-envelope statement) stays usable.
  CAF_REQUIRE_EQUAL(code_of(store->exec("DEALLOCATE ALL")), "ok");
  auto current = store->load(snap.env.id)->env;
  auto again = batch_of(current, 700, {{"p1", 100, 3, 0}});
  auto fine = batch_of(other.env, 400, {{"q1", 100, 1, 0}});
  auto out = store->commit_many({again, fine});
  CAF_REQUIRE_EQUAL(code_of(out), "ok");
  CAF_CHECK_EQUAL(to_string((*out)[0].code), "internal");
  CAF_CHECK_EQUAL(to_string((*out)[1].code), "none");
  // Lost inside a transaction: that call fails retryably, the next works.
  CAF_REQUIRE_EQUAL(code_of(store->exec("DEALLOCATE ALL")), "ok");
  CAF_CHECK_EQUAL(code_of(store->activate(other.env.id)), "unavailable");
  auto reactivated = store->activate(other.env.id);
  CAF_REQUIRE_EQUAL(code_of(reactivated), "ok");
  other.env = reactivated->env;
  auto next = batch_of(other.env, 0, {{"q2", 400, 2, 0}});
  auto b3 = batch_of(current, 700, {{"p3", 100, 3, 0}});
  auto out2 = store->commit_many({b3, next});
  CAF_REQUIRE_EQUAL(code_of(out2), "ok");
  CAF_CHECK_EQUAL(to_string((*out2)[0].code), "none");
  CAF_CHECK_EQUAL(to_string((*out2)[1].code), "none");
  CAF_CHECK_EQUAL(count_rows("opens", snap.env.id), 3);
}

CAF_TEST(an unreachable database is unavailable and the store reconnects) {
  auto port = unused_port();
  auto refused = pg_store::connect("host=127.0.0.1 port=" + std::to_string(port)
                                   + " user=hongbao dbname=hongbao");
  CAF_CHECK_EQUAL(code_of(refused), "unavailable");
  CAF_MESSAGE("refused with: " << message_of(refused));
  CAF_CHECK_EQUAL(code_of(pg_store::connect("host=127.0.0.1 bogus_option=1")),
                  "invalid_argument");
  // The server ends the store's session: the next call fails as unavailable,
  // the one after reconnects.
  auto victim = connect_or_fail(db.url() + " application_name=hb_victim");
  CAF_REQUIRE(victim->load(1).error().code == errc::not_found);
  auto pid = query(db.verify(), "SELECT pid FROM pg_stat_activity"
                                " WHERE application_name = 'hb_victim'");
  CAF_REQUIRE_EQUAL(query(db.verify(), "SELECT pg_terminate_backend($1)",
                          {pid}),
                    "t");
  // Wait for the session to end so that the next call surely meets it gone.
  for (int i = 0; i < 100; ++i) {
    if (query_int(db.verify(), "SELECT count(*) FROM pg_stat_activity"
                               " WHERE pid = $1", {pid}) == 0)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  auto lost = victim->load(1);
  CAF_CHECK_EQUAL(code_of(lost), "unavailable");
  CAF_MESSAGE("lost with: " << message_of(lost));
  CAF_CHECK(!victim->connected());
  CAF_CHECK_EQUAL(code_of(victim->load(1)), "not_found");
  CAF_CHECK(victim->connected());
}

CAF_TEST(server settings go in options before those of the url) {
  connection_options o;
  o.statement_timeout_ms = 1500;
  o.lock_timeout_ms = 700;
  CAF_CHECK_EQUAL(server_options(o, ""),
                  "-c statement_timeout=1500 -c lock_timeout=700");
  CAF_CHECK_EQUAL(server_options(o, "-c lock_timeout=9"),
                  "-c statement_timeout=1500 -c lock_timeout=700"
                  " -c lock_timeout=9");
  CAF_CHECK_EQUAL(server_options(connection_options{}, "-c x=1"), "-c x=1");
  // On a real session: ours, except where the url's options say otherwise.
  o.idle_in_transaction_session_timeout_ms = 4000;
  o.client_connection_check_interval_ms = 250;
  o.keepalives_idle_s = 7;
  o.tcp_user_timeout_ms = 9000;
  auto conn = pg_store::connect(
    db.url() + " options='-c lock_timeout=777 -c work_mem=8MB'", o);
  CAF_REQUIRE_EQUAL(code_of(conn), "ok");
  auto expect = [&](const char* name, const char* value) {
    auto r = (*conn)->exec(std::string{"DO $$ BEGIN IF current_setting('"}
                           + name + "') <> '" + value
                           + "' THEN RAISE EXCEPTION '" + name + " is %', "
                           + "current_setting('" + name + "'); END IF; END $$");
    CAF_CHECK_EQUAL(code_of(r), "ok");
    if (!r)
      CAF_MESSAGE(r.error().message);
  };
  expect("statement_timeout", "1500ms");
  expect("lock_timeout", "777ms");  // the url's own wins
  expect("work_mem", "8MB");
  expect("idle_in_transaction_session_timeout", "4s");
  expect("client_connection_check_interval", "250ms");
  // A lock wait ends at lock_timeout on the server, retryably.
  auto env = paid_envelope(200, 2);
  auto holder = begin_old_owner_write(env.env);
  auto t0 = std::chrono::steady_clock::now();
  auto waited = (*conn)->activate(env.env.id);
  CAF_CHECK_EQUAL(code_of(waited), "unavailable");
  CAF_CHECK_GREATER_OR_EQUAL(ms_since(t0), 700);
  CAF_CHECK_LESS(ms_since(t0), 5000);
  query(holder, "ROLLBACK");
}

CAF_TEST(a stopped backend: the call deadline drops the connection) {
  connection_options o;
  o.call_timeout_ms = 600;
  auto a = pg_store::connect(db.url() + " application_name=hb_deadline", o);
  CAF_REQUIRE_EQUAL(code_of(a), "ok");
  auto& store_a = *a;
  CAF_REQUIRE_EQUAL(code_of(store_a->load(1)), "not_found");
  // The same fault without a deadline: the call hangs until the backend
  // runs again (this proves the fault is real).
  auto b = pg_store::connect(db.url() + " application_name=hb_no_deadline");
  CAF_REQUIRE_EQUAL(code_of(b), "ok");
  auto& store_b = *b;
  CAF_REQUIRE_EQUAL(code_of(store_b->load(1)), "not_found");
  stopped_backend stop_b{backend_of(db.verify(), "hb_no_deadline")};
  std::atomic<bool> b_done{false};
  std::thread hung{[&] {
    store_b->load(1);
    b_done = true;
  }};
  {
    stopped_backend stop_a{backend_of(db.verify(), "hb_deadline")};
    auto t0 = std::chrono::steady_clock::now();
    auto timed_out = store_a->load(1);
    auto took = ms_since(t0);
    CAF_MESSAGE("deadline fired after " << took
                                        << " ms: " << message_of(timed_out));
    CAF_CHECK_EQUAL(code_of(timed_out), "unavailable");
    CAF_CHECK_GREATER_OR_EQUAL(took, 600);
    CAF_CHECK_LESS(took, 3000);
    CAF_CHECK(message_of(timed_out).find("call_timeout_ms")
              != std::string::npos);
    CAF_CHECK(!store_a->connected());
    // A statement far larger than the socket buffers, to a backend that
    // reads nothing: sending must not block past the deadline either.
    auto big = store_a->load(1);  // reconnects: a new, running backend
    CAF_CHECK_EQUAL(code_of(big), "not_found");
    stopped_backend stop_a2{backend_of(db.verify(), "hb_deadline")};
    auto sql = "SELECT '" + std::string(32 << 20, 'x') + "' IS NULL";
    t0 = std::chrono::steady_clock::now();
    auto sent = store_a->exec(sql);
    took = ms_since(t0);
    CAF_MESSAGE("32 MiB statement gave up after " << took << " ms");
    CAF_CHECK_EQUAL(code_of(sent), "unavailable");
    // Beyond the deadline: libpq copying 32 MiB about (slow on a loaded
    // machine); without the non-blocking send it would hang for good.
    CAF_CHECK_LESS(took, 10000);
    // The worker is usable again at once: the next call reconnects.
    CAF_CHECK_EQUAL(code_of(store_a->load(1)), "not_found");
    CAF_CHECK(store_a->connected());
  }
  CAF_CHECK(!b_done);  // still hung after ~1.5 s, with no deadline
  stop_b.resume();
  hung.join();
  CAF_CHECK(b_done);
}

CAF_TEST_FIXTURE_SCOPE_END()

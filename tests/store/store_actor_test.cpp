// The PostgreSQL store actor against a real PostgreSQL (HONGBAO_TEST_DB_URL,
// see tests/persistence/pg_connection_test.cpp): how it dispatches over its
// pool of connections, what it reports to segment health, and how database
// outcomes reach callers as hb errors. Its workers are detached threads, so
// these tests run a real actor system rather than the test coordinator.
#define CAF_SUITE store.store_actor
#include "caf/test/unit_test.hpp"

#include <arpa/inet.h>
#include <signal.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "caf/all.hpp"

#include "domain/envelope_id.hpp"
#include "runtime/errors.hpp"
#include "runtime/messages.hpp"
#include "store/store_actor.hpp"
#include "tests/persistence/pg_test_support.hpp"

using namespace hb;
using namespace hb::persistence;
using namespace hb::persistence::test_support;

namespace {

constexpr auto reply_timeout = std::chrono::seconds(10);

using report = std::pair<int32_t, bool>;  // (segment, fault)

// What segment health would have received, shared with the sink's thread.
struct report_log {
  std::mutex mtx;
  std::vector<report> reports;

  std::vector<report> snapshot() {
    std::lock_guard<std::mutex> guard{mtx};
    return reports;
  }

  /// Waits up to a few seconds for `r`: reports travel on their own, after
  /// the worker sent them and before or after its reply.
  bool wait_for(report r) {
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard<std::mutex> guard{mtx};
        for (auto& x : reports)
          if (x == r)
            return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
};

struct config : caf::actor_system_config {
  config() {
    add_hongbao_types(*this);
  }
};

struct fixture {
  fixture()
    : db(shared_db()), direct(connect_or_fail(db.url())), sys(cfg),
      self(sys), log(std::make_shared<report_log>()) {
    auto shared = log;
    health = sys.spawn([shared]() -> segment_report_sink::behavior_type {
      return {
        [shared](seg_report_atom, int32_t segment, bool fault) {
          std::lock_guard<std::mutex> guard{shared->mtx};
          shared->reports.emplace_back(segment, fault);
        },
      };
    });
  }

  ~fixture() {
    self->send_exit(store, caf::exit_reason::user_shutdown);
    self->send_exit(health, caf::exit_reason::user_shutdown);
  }

  void start(uint32_t pool_size, std::string url = "",
             uint32_t call_timeout_ms = 0) {
    store_settings s;
    s.database_url = url.empty() ? db.url() : std::move(url);
    s.pool_size = pool_size;
    s.call_timeout_ms = call_timeout_ms;
    s.health = health;
    store = spawn_pg_store(sys, s);
  }

  /// A created envelope on a segment of its own, written past the actor.
  envelope created_envelope(int32_t segment) {
    static int64_t next = 1;
    auto n = next++;
    envelope env;
    env.id = make_envelope_id(test_day, 500000 + n, segment);
    env.sender = "store-actor-sender-" + std::to_string(n);
    env.group = "group-1";
    env.idempotency_key = "store-actor-key-" + std::to_string(n);
    env.kind = envelope_kind::equal;
    env.total_fen = 1000;
    env.count = 10;
    auto res = direct->create_envelope(env);
    CAF_REQUIRE(res.ok());
    return res->env;
  }

  /// The answer to a request, or its error as a failure.
  template <class T, class... Ts>
  outcome<T> ask(Ts&&... xs) {
    outcome<T> out{failure{errc::internal, "no reply"}};
    self->request(store, reply_timeout, std::forward<Ts>(xs)...)
      .receive([&](T& x) { out = std::move(x); },
               [&](caf::error& e) { out = to_failure(e); });
    return out;
  }

  scratch_db& db;
  std::unique_ptr<pg_store> direct;
  config cfg;
  caf::actor_system sys;
  caf::scoped_actor self;
  std::shared_ptr<report_log> log;
  segment_report_sink health;
  store_actor store;
};

/// A port nothing listens on: bound once by the kernel's choice, then freed.
uint16_t closed_port() {
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

/// The backends of the sessions named `app`, once `n` of them are there.
std::vector<long> backends_of(PGconn* verify, const std::string& app,
                              size_t n) {
  std::vector<long> out;
  for (int i = 0; i < 200 && out.size() < n; ++i) {
    out.clear();
    auto rows = query(verify, "SELECT string_agg(pid::text, ',') FROM"
                              " pg_stat_activity WHERE application_name = $1",
                      {app});
    size_t at = 0;
    while (at < rows.size()) {
      auto comma = rows.find(',', at);
      out.push_back(std::stol(rows.substr(at, comma - at)));
      at = comma == std::string::npos ? rows.size() : comma + 1;
    }
    if (out.size() < n)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return out;
}

/// Backend processes stopped with SIGSTOP (they answer nothing and close
/// nothing), continued at the end of the scope, also on a failed check.
struct stopped_backends {
  std::vector<long> pids;
  explicit stopped_backends(std::vector<long> xs) : pids(std::move(xs)) {
    for (auto pid : pids)
      CAF_REQUIRE_EQUAL(::kill(static_cast<pid_t>(pid), SIGSTOP), 0);
  }
  ~stopped_backends() { resume(); }
  void resume() {
    for (auto pid : pids)
      ::kill(static_cast<pid_t>(pid), SIGCONT);
    pids.clear();
  }
};

int64_t ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::steady_clock::now() - t0)
    .count();
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(store_actor_tests, fixture)

CAF_TEST(a worker stuck on a stopped backend gets no new calls) {
  // No call deadline: only the dispatch keeps calls away from the stuck
  // worker (round robin sent every second call to it).
  start(2, db.url() + " application_name=hb_route");
  auto env = created_envelope(51);
  auto pids = backends_of(db.verify(), "hb_route", 2);
  CAF_REQUIRE_EQUAL(pids.size(), 2u);
  stopped_backends stop{{pids[0]}};
  // Calls one after another, each given 1 s: one reaches the stopped
  // backend and hangs; every later one must go to the other worker.
  int hung = 0, answered = 0;
  std::vector<caf::error> late;
  for (int i = 0; i < 12; ++i) {
    self->request(store, std::chrono::seconds(1), db_load_atom::value, env.id)
      .receive([&](envelope_snapshot&) { ++answered; },
               [&](caf::error& e) {
                 if (e == caf::sec::request_timeout)
                   ++hung;
               });
  }
  CAF_MESSAGE(answered << " answered, " << hung << " hung");
  CAF_CHECK_GREATER_OR_EQUAL(hung, 1);  // the fault is real
  CAF_CHECK_LESS_OR_EQUAL(hung, 1);
  CAF_CHECK_EQUAL(answered + hung, 12);
  stop.resume();
}

CAF_TEST(a call on a stopped backend fails at its deadline and the worker serves again) {
  start(1, db.url() + " application_name=hb_store_deadline", 500);
  auto env = created_envelope(52);
  CAF_REQUIRE(ask<envelope_snapshot>(db_load_atom::value, env.id).ok());
  auto pids = backends_of(db.verify(), "hb_store_deadline", 1);
  CAF_REQUIRE_EQUAL(pids.size(), 1u);
  stopped_backends stop{pids};
  auto t0 = std::chrono::steady_clock::now();
  auto timed_out = ask<envelope_snapshot>(db_load_atom::value, env.id);
  auto took = ms_since(t0);
  CAF_REQUIRE(!timed_out.ok());
  CAF_MESSAGE("failed after " << took << " ms: " << timed_out.error().message);
  CAF_CHECK(timed_out.error().code == errc::unavailable);
  CAF_CHECK_GREATER_OR_EQUAL(took, 500);
  CAF_CHECK_LESS(took, 3000);
  // The only worker reconnects (a new backend) and answers, while the old
  // backend is still stopped.
  outcome<envelope_snapshot> again{failure{errc::internal, "not tried"}};
  for (int i = 0; i < 50 && !again.ok(); ++i) {
    again = ask<envelope_snapshot>(db_load_atom::value, env.id);
    if (!again.ok())
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CAF_CHECK(again.ok());
  CAF_MESSAGE("serving again after " << ms_since(t0) << " ms");
  // Nothing charged to the segment: a hung database is not its fault.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  for (auto& r : log->snapshot())
    CAF_CHECK(!r.second);
}

CAF_TEST(a deadline on one worker makes the others probe before their next call) {
  start(2, db.url() + " application_name=hb_probe", 2000);
  auto env = created_envelope(53);
  auto pids = backends_of(db.verify(), "hb_probe", 2);
  CAF_REQUIRE_EQUAL(pids.size(), 2u);
  stopped_backends stop{pids};
  // The first call waits out its full deadline on a stopped backend.
  auto t0 = std::chrono::steady_clock::now();
  auto first = ask<envelope_snapshot>(db_load_atom::value, env.id);
  auto took_first = ms_since(t0);
  CAF_REQUIRE(!first.ok());
  CAF_CHECK(first.error().code == errc::unavailable);
  CAF_CHECK_GREATER_OR_EQUAL(took_first, 2000);
  // The next goes to the other worker, whose backend is stopped as well:
  // a short probe finds out, it reconnects and answers, well before a
  // second full deadline.
  t0 = std::chrono::steady_clock::now();
  auto second = ask<envelope_snapshot>(db_load_atom::value, env.id);
  auto took_second = ms_since(t0);
  CAF_MESSAGE("first call failed after " << took_first
              << " ms, the next answered after " << took_second << " ms");
  CAF_CHECK(second.ok());
  CAF_CHECK_LESS(took_second, 1800);
}

CAF_TEST(a request waiting on a row lock holds one worker and not the pool) {
  start(2);
  auto locked = created_envelope(11);
  auto other = created_envelope(12);
  // Another session holds the envelope's row, as the write of a previous
  // owner would: the activation waits for it on its worker.
  auto holder = admin_connect(db.url());
  script(holder, "BEGIN; SELECT 1 FROM envelopes WHERE id = "
                   + std::to_string(locked.id) + " FOR UPDATE");
  auto waiting = self->request(store, reply_timeout, db_activate_atom::value,
                               locked.id);
  // The next request goes to the other worker and is answered meanwhile.
  auto start_at = std::chrono::steady_clock::now();
  auto loaded = ask<envelope_snapshot>(db_load_atom::value, other.id);
  CAF_REQUIRE(loaded.ok());
  CAF_CHECK_EQUAL(loaded->env.id, other.id);
  CAF_CHECK(std::chrono::steady_clock::now() - start_at
            < std::chrono::seconds(5));
  script(holder, "COMMIT");
  outcome<envelope_snapshot> activated{failure{errc::internal, "no reply"}};
  waiting.receive([&](envelope_snapshot& s) { activated = std::move(s); },
                  [&](caf::error& e) { activated = to_failure(e); });
  PQfinish(holder);
  CAF_REQUIRE(activated.ok());
  CAF_CHECK_EQUAL(activated->env.id, locked.id);
  CAF_CHECK_EQUAL(activated->env.epoch, locked.epoch + 1);
}

CAF_TEST(calls on the data of a segment report that segment to segment health) {
  start(2);
  auto env = created_envelope(21);
  auto snap = ask<envelope_snapshot>(db_activate_atom::value, env.id);
  CAF_REQUIRE(snap.ok());
  CAF_CHECK(log->wait_for({21, false}));
  auto first = ask<int64_t>(db_lease_atom::value,
                            lease_request{22, test_day, 10});
  CAF_REQUIRE(first.ok());
  CAF_CHECK_GREATER_OR_EQUAL(*first, 1);
  CAF_CHECK(log->wait_for({22, false}));
  // A batch over two segments that worked: each of them worked.
  auto a = created_envelope(23);
  auto b = created_envelope(24);
  auto many = ask<std::vector<envelope_snapshot>>(
    db_activate_many_atom::value, std::vector<int64_t>{a.id, b.id});
  CAF_REQUIRE(many.ok());
  CAF_CHECK_EQUAL(many->size(), 2u);
  CAF_CHECK(log->wait_for({23, false}));
  CAF_CHECK(log->wait_for({24, false}));
  // A refusal is an answer, not a fault of the segment.
  auto missing = ask<envelope_snapshot>(
    db_activate_atom::value, make_envelope_id(test_day, 999999, 25));
  CAF_REQUIRE(!missing.ok());
  CAF_CHECK(missing.error().code == errc::not_found);
  CAF_CHECK(log->wait_for({25, false}));
  for (auto& r : log->snapshot())
    CAF_CHECK(!r.second);
}

CAF_TEST(database outcomes reach the caller as hb errors) {
  start(1);
  auto missing = ask<envelope_snapshot>(
    db_load_atom::value, make_envelope_id(test_day, 999998, 31));
  CAF_REQUIRE(!missing.ok());
  CAF_CHECK(missing.error().code == errc::not_found);
  auto bad_limit = ask<relay_batch_result>(db_relay_atom::value, int32_t{0});
  CAF_REQUIRE(!bad_limit.ok());
  CAF_CHECK(bad_limit.error().code == errc::invalid_argument);
  auto bad_deposit = ask<caf::ok_atom>(db_deposit_atom::value,
                                       deposit_request{"user-1", 0, "key-1"});
  CAF_REQUIRE(!bad_deposit.ok());
  CAF_CHECK(bad_deposit.error().code == errc::invalid_argument);
  auto bad_days = ask<int>(db_partitions_atom::value, int32_t{20261131},
                           int32_t{20261201});
  CAF_REQUIRE(!bad_days.ok());
  CAF_CHECK(bad_days.error().code == errc::invalid_argument);
  // A stale epoch: the envelope moved on to a newer owner.
  auto env = created_envelope(32);
  auto refunded = ask<int64_t>(db_refund_atom::value, env.id,
                               int64_t{env.epoch + 7});
  CAF_REQUIRE(!refunded.ok());
  CAF_CHECK(refunded.error().code == errc::stale_epoch);
}

CAF_TEST(a database that cannot be reached is unavailable and no segment fault) {
  start(2, base_url() + " port=" + std::to_string(closed_port())
             + " dbname=nowhere connect_timeout=2");
  for (int i = 0; i < 3; ++i) {
    auto first = ask<int64_t>(db_lease_atom::value,
                              lease_request{41, test_day, 10});
    CAF_REQUIRE(!first.ok());
    CAF_CHECK(first.error().code == errc::unavailable);
  }
  auto expired = ask<std::vector<int64_t>>(db_expired_atom::value,
                                           expiry_query{1, 10, 0});
  CAF_REQUIRE(!expired.ok());
  CAF_CHECK(expired.error().code == errc::unavailable);
  // A lost connection says nothing about one segment: nothing reported.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CAF_CHECK(log->snapshot().empty());
}

CAF_TEST(named messages round-trip through CAF serialization) {
  // Each crosses a node link: registered, and read back as it was written.
  auto msg = caf::make_message(
    lease_request{7, 20261126, 1000},
    expiry_query{1800000000000, 100, 42},
    reconcile_run{1, 2, true},
    deposit_request{"user-1", 500, "key-1"},
    idle_report{123, 9, false, 1500},
    segment_request{5, true, "maintenance"});
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  CAF_REQUIRE(!sink(msg));
  caf::message copy;
  caf::binary_deserializer source{sys, buf};
  CAF_REQUIRE(!source(copy));
  CAF_REQUIRE(copy.match_elements<lease_request, expiry_query, reconcile_run,
                                  deposit_request, idle_report,
                                  segment_request>());
  auto& l = copy.get_as<lease_request>(0);
  CAF_CHECK_EQUAL(l.segment, 7);
  CAF_CHECK_EQUAL(l.day, 20261126);
  CAF_CHECK_EQUAL(l.block, 1000);
  auto& q = copy.get_as<expiry_query>(1);
  CAF_CHECK_EQUAL(q.now_ms, 1800000000000);
  CAF_CHECK_EQUAL(q.limit, 100);
  CAF_CHECK_EQUAL(q.after_id, 42);
  auto& r = copy.get_as<reconcile_run>(2);
  CAF_CHECK(r.since_ms == 1 && r.now_ms == 2 && r.repair);
  auto& d = copy.get_as<deposit_request>(3);
  CAF_CHECK(d.user == "user-1" && d.amount_fen == 500 && d.key == "key-1");
  auto& i = copy.get_as<idle_report>(4);
  CAF_CHECK(i.envelope_id == 123 && i.handled == 9 && !i.healthy
            && i.quiet_ms == 1500);
  auto& s = copy.get_as<segment_request>(5);
  CAF_CHECK(s.segment == 5 && s.block && s.reason == "maintenance");
}

CAF_TEST_FIXTURE_SCOPE_END()

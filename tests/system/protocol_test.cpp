// system.protocol: a real hongbao-node over real TCP, driven with raw
// sockets: oversized, empty, garbage and unauthenticated frames, half frames,
// unknown ids and pipelining. After every abuse case a fresh, well-behaved
// client must still get served (create + pay + grab + open).
//
// Run through the wrapper, which makes a database and starts a node with
// gateway.frame_size_max = 4096:
//   bash tests/system/run_with_node.sh system.protocol
#define CAF_SUITE system.protocol
#include "caf/test/unit_test.hpp"

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <variant>
#include <thread>
#include <vector>

#include "tests/system/support.hpp"

using namespace hb;
using namespace hb::systest;

namespace {

constexpr int io_timeout_ms = 20000;

// Fen the probes were told, and how many probes ran: audited at the end.
int64_t probes_told_fen = 0;
int probes_run = 0;

struct fixture {
  environment env;
  uint32_t frame_size_max = 0;

  fixture() {
    std::string error;
    auto e = read_environment(error);
    if (!e)
      CAF_FAIL(error);
    env = *e;
    auto limit = std::getenv("HONGBAO_FRAME_SIZE_MAX");
    if (limit == nullptr)
      CAF_FAIL("HONGBAO_FRAME_SIZE_MAX (the node's gateway.frame_size_max) "
               "is not set; run through run_with_node.sh");
    frame_size_max = static_cast<uint32_t>(std::stoul(limit));
  }

  raw_socket connect_raw() {
    raw_socket s;
    std::string error;
    if (!s.connect(env.host, env.port, error))
      CAF_FAIL(error);
    return s;
  }

  raw_socket connect_authenticated() {
    auto s = connect_raw();
    CAF_REQUIRE_EQUAL(s.authenticate(env.token, 1, io_timeout_ms), "");
    return s;
  }

  // Reads one frame and requires an Error with `code` for request `rid`.
  void expect_error(raw_socket& s, uint64_t rid, errc code) {
    client_response resp;
    auto st = s.read_frame(resp, io_timeout_ms);
    CAF_REQUIRE_EQUAL(to_string(st), std::string{"ok"});
    CAF_MESSAGE("got " << describe(resp));
    CAF_CHECK_EQUAL(to_string(error_code(resp)), std::string{to_string(code)});
    CAF_CHECK_EQUAL(resp.request_id, rid);
  }

  // The node must close the connection after its last error.
  void expect_closed(raw_socket& s) {
    int skipped = 0;
    auto st = s.wait_closed(io_timeout_ms, &skipped);
    CAF_CHECK_EQUAL(to_string(st), std::string{"closed"});
    CAF_CHECK_EQUAL(skipped, 0);
  }

  // A good client still gets served.
  void check_served(const std::string& after) {
    int64_t told = 0;
    CAF_CHECK_EQUAL(probe_served(env, after, told), "");
    probes_told_fen += told;
    ++probes_run;
  }
};

/// A Request payload of exactly `size` bytes: a Grab padded with an unknown
/// length-delimited field (number 1000), which Protobuf skips.
std::string padded_grab_payload(uint64_t rid, int64_t envelope_id,
                                size_t size) {
  auto framed = request_frame(rid, grab_request{envelope_id, "padded"});
  auto payload = framed.substr(4);
  // Tag of field 1000, wire type 2: varint 8002 = c2 3e.
  const std::string tag = "\xc2\x3e";
  auto varint = [](size_t v) {
    std::string out;
    while (v >= 0x80) {
      out += static_cast<char>((v & 0x7f) | 0x80);
      v >>= 7;
    }
    out += static_cast<char>(v);
    return out;
  };
  // Find the padding length n with |payload| + |tag| + |varint(n)| + n == size.
  for (size_t n = 0; n < size; ++n) {
    if (payload.size() + tag.size() + varint(n).size() + n == size)
      return payload + tag + varint(n) + std::string(n, 'x');
  }
  return "";
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(protocol_tests, fixture)

CAF_TEST(a good client is served before any abuse) {
  check_served("nothing");
}

CAF_TEST(a frame over the size limit is refused and the connection closed) {
  // Only the header: the node must answer without reading the payload.
  auto s = connect_authenticated();
  CAF_REQUIRE(s.write_all(frame_header(frame_size_max + 1)));
  expect_error(s, 0, errc::frame_too_large);
  expect_closed(s);
  check_served("an oversized frame");
  // The same before authentication: the size check comes first.
  auto s2 = connect_raw();
  CAF_REQUIRE(s2.write_all(frame_header(0xffffffffu)));
  expect_error(s2, 0, errc::frame_too_large);
  expect_closed(s2);
  check_served("an oversized frame before auth");
}

CAF_TEST(a frame of exactly the size limit is accepted) {
  auto s = connect_authenticated();
  auto payload = padded_grab_payload(7, 42, frame_size_max);
  CAF_REQUIRE_EQUAL(payload.size(), frame_size_max);
  CAF_REQUIRE(s.write_all(frame(payload)));
  // Envelope 42 does not exist: a normal service answer, not a frame error.
  expect_error(s, 7, errc::not_found);
  CAF_REQUIRE(s.write_all(request_frame(8, get_request{42})));
  expect_error(s, 8, errc::not_found);
  check_served("a frame of exactly the limit");
}

CAF_TEST(garbage after auth is malformed and the connection closed) {
  auto s = connect_authenticated();
  CAF_REQUIRE(s.write_all(frame(std::string(12, '\xff'))));
  expect_error(s, 0, errc::malformed);
  expect_closed(s);
  check_served("a garbage frame");
}

CAF_TEST(an empty frame is malformed and the connection closed) {
  auto s = connect_authenticated();
  CAF_REQUIRE(s.write_all(std::string(4, '\0')));
  expect_error(s, 0, errc::malformed);
  expect_closed(s);
  check_served("an empty frame");
}

CAF_TEST(a request without a body is malformed and keeps its id) {
  auto s = connect_authenticated();
  // Request{request_id: 9} and nothing else.
  CAF_REQUIRE(s.write_all(frame(std::string("\x08\x09", 2))));
  expect_error(s, 9, errc::malformed);
  expect_closed(s);
  check_served("a request without a body");
}

CAF_TEST(a wrong token is unauthenticated and the connection closed) {
  auto s = connect_raw();
  CAF_REQUIRE(s.write_all(request_frame(1, auth_request{"not-the-token"})));
  expect_error(s, 1, errc::unauthenticated);
  expect_closed(s);
  check_served("a wrong token");
}

CAF_TEST(a grab before auth is unauthenticated and the connection closed) {
  auto s = connect_raw();
  CAF_REQUIRE(s.write_all(request_frame(3, grab_request{42, "early"})));
  expect_error(s, 3, errc::unauthenticated);
  expect_closed(s);
  check_served("a grab before auth");
}

CAF_TEST(garbage before auth is refused and the connection closed) {
  auto s = connect_raw();
  CAF_REQUIRE(s.write_all(frame(std::string(12, '\xff'))));
  client_response resp;
  CAF_REQUIRE_EQUAL(to_string(s.read_frame(resp, io_timeout_ms)),
                    std::string{"ok"});
  auto code = error_code(resp);
  CAF_MESSAGE("got " << describe(resp));
  CAF_CHECK(code == errc::malformed || code == errc::unauthenticated);
  expect_closed(s);
  check_served("garbage before auth");
}

CAF_TEST(half frames then disconnect leave the node unaffected) {
  {
    // Half a header.
    auto s = connect_authenticated();
    CAF_REQUIRE(s.write_all(std::string("\x00\x00", 2)));
  }
  {
    // A header promising 100 bytes, then 10 of them.
    auto s = connect_authenticated();
    CAF_REQUIRE(s.write_all(std::string("\x00\x00\x00\x64", 4)
                            + std::string(10, '\x08')));
  }
  {
    // Half a frame before auth.
    auto s = connect_raw();
    auto auth = request_frame(1, auth_request{env.token});
    CAF_REQUIRE(s.write_all(auth.substr(0, auth.size() - 3)));
  }
  check_served("half frames and disconnects");
  // A stalled half frame on an open connection blocks nobody else.
  auto stalled = connect_authenticated();
  CAF_REQUIRE(stalled.write_all(std::string("\x00\x00\x00\x64\x08", 5)));
  check_served("a stalled half frame (connection still open)");
  client_response resp;
  CAF_CHECK_EQUAL(to_string(stalled.read_frame(resp, 200)),
                  std::string{"timeout"});
}

CAF_TEST(unknown ids and bad fields are answered and the connection stays) {
  auto s = connect_authenticated();
  // A well-formed id (2026-01-01, sequence 99999999, segment 1) never issued.
  const int64_t unknown = 2026010199999999001;
  CAF_REQUIRE(s.write_all(request_frame(2, open_request{unknown, "zed"})));
  expect_error(s, 2, errc::not_found);
  // Not a valid envelope id at all.
  CAF_REQUIRE(s.write_all(request_frame(3, grab_request{42, "zed"})));
  expect_error(s, 3, errc::not_found);
  CAF_REQUIRE(s.write_all(request_frame(4, get_request{-5})));
  expect_error(s, 4, errc::not_found);
  // An unknown enum value is a bad field, not a broken stream.
  create_request bad;
  bad.sender = "s";
  bad.group = "g";
  bad.total_fen = 100;
  bad.count = 1;
  bad.kind = static_cast<envelope_kind>(0);
  bad.idempotency_key = unique("bad-kind");
  CAF_REQUIRE(s.write_all(request_frame(5, bad)));
  expect_error(s, 5, errc::invalid_argument);
  bad.kind = envelope_kind::equal;
  bad.count = 1000;
  bad.total_fen = 1000;
  CAF_REQUIRE(s.write_all(request_frame(6, bad)));
  expect_error(s, 6, errc::limit_exceeded);
  // The same connection still works.
  bad.count = 1;
  bad.total_fen = 100;
  CAF_REQUIRE(s.write_all(request_frame(7, bad)));
  client_response resp;
  CAF_REQUIRE_EQUAL(to_string(s.read_frame(resp, io_timeout_ms)),
                    std::string{"ok"});
  CAF_CHECK_EQUAL(resp.request_id, 7u);
  auto* env_created = std::get_if<envelope>(&resp.body);
  CAF_CHECK(env_created != nullptr);
  if (env_created == nullptr)
    CAF_MESSAGE("got " << describe(resp));
  check_served("unknown ids and bad fields");
}

namespace {

int64_t stat_of(client::connection& c, const std::string& name) {
  auto resp = c.call(stats_request{}, io_timeout_ms);
  CAF_REQUIRE(resp.ok());
  auto* st = std::get_if<node_stats>(&resp->body);
  CAF_REQUIRE(st != nullptr);
  for (auto& m : st->metrics)
    if (m.name == name)
      return m.value;
  CAF_FAIL("no metric " << name);
  return -1;
}

} // namespace

CAF_TEST(a connection keeps being served after its envelope actor passivated) {
  // One connection: after the first answer it sends grabs and opens
  // straight to the envelope actor. The node runs with a short idle_ms
  // (run_with_node.sh), so the actor passivates while the connection still
  // holds its handle; the next requests must go through the router again.
  client::connection c;
  CAF_REQUIRE_EQUAL(connect_client(env, c), "");
  int64_t id = 0;
  CAF_REQUIRE_EQUAL(create_paid(c, "sleepy", 900, 3, id), "");
  auto direct0 = stat_of(c, "gateway.direct");
  auto grab_a = c.call(grab_request{id, "alice"}, io_timeout_ms);
  CAF_REQUIRE(grab_a.ok());
  CAF_REQUIRE(std::holds_alternative<grab_result>(grab_a->body));
  auto open_a = c.call(open_request{id, "alice"}, io_timeout_ms);
  CAF_REQUIRE(open_a.ok());
  auto share_a = std::get<open_result>(open_a->body).amount_fen;
  CAF_CHECK_GREATER(stat_of(c, "gateway.direct"), direct0);  // the open went direct
  auto activations = stat_of(c, "envelopes.activations");
  auto fallbacks = stat_of(c, "gateway.direct_fallbacks");
  // Let the actor passivate (idle_ms is 300 ms here), then use the handle.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  auto open_b = c.call(open_request{id, "bob"}, io_timeout_ms);
  CAF_REQUIRE(open_b.ok());
  CAF_MESSAGE("bob: " << describe(*open_b));
  CAF_REQUIRE(std::holds_alternative<open_result>(open_b->body));
  CAF_CHECK_EQUAL(std::get<open_result>(open_b->body).seq, 2);
  // The fault happened: the handle was stale, the router re-activated.
  CAF_CHECK_EQUAL(stat_of(c, "gateway.direct_fallbacks"), fallbacks + 1);
  CAF_CHECK_EQUAL(stat_of(c, "envelopes.activations"), activations + 1);
  // Alice's share is the same through the new activation.
  auto again = c.call(open_request{id, "alice"}, io_timeout_ms);
  CAF_REQUIRE(again.ok());
  CAF_REQUIRE(std::holds_alternative<open_result>(again->body));
  CAF_CHECK_EQUAL(std::get<open_result>(again->body).amount_fen, share_a);
  CAF_CHECK_EQUAL(std::get<open_result>(again->body).first_time, false);
  // A bad user id is refused before any path is taken.
  auto bad = c.call(open_request{id, std::string(300, 'x')}, io_timeout_ms);
  CAF_REQUIRE(bad.ok());
  CAF_CHECK_EQUAL(to_string(error_code(*bad)), std::string{"invalid_argument"});
}

CAF_TEST(pipelined requests all get answers matched by id) {
  // An envelope with room for every open below.
  client::connection setup;
  CAF_REQUIRE_EQUAL(connect_client(env, setup), "");
  create_request create;
  create.sender = "pipeliner";
  create.group = "pipeline";
  create.total_fen = 100 * 100;
  create.count = 100;
  create.kind = envelope_kind::random;
  create.idempotency_key = unique("pipeline");
  auto created = setup.call(create, io_timeout_ms);
  CAF_REQUIRE(created.ok());
  auto* env_created = std::get_if<envelope>(&created->body);
  CAF_REQUIRE(env_created != nullptr);
  auto id = env_created->id;
  auto paid = setup.call(pay_request{id, unique("pipeline-txn")}, io_timeout_ms);
  CAF_REQUIRE(paid.ok());
  CAF_REQUIRE(std::holds_alternative<envelope>(paid->body));

  // 50 requests of five kinds in one write, ids 100..149, before reading.
  enum kind { k_create, k_get, k_grab, k_open, k_open_again };
  std::map<uint64_t, kind> sent;
  std::string bytes;
  for (uint64_t i = 0; i < 50; ++i) {
    auto rid = 100 + i;
    auto user = "pipe-user-" + std::to_string(i);
    kind k = static_cast<kind>(i % 5);
    switch (k) {
      case k_create: {
        auto c = create;
        c.idempotency_key = unique("pipeline-more");
        bytes += request_frame(rid, c);
        break;
      }
      case k_get:
        bytes += request_frame(rid, get_request{id});
        break;
      case k_grab:
        bytes += request_frame(rid, grab_request{id, user});
        break;
      case k_open:
      case k_open_again:
        // k_open opens for user i; k_open_again (the next request) opens
        // again for that same user, before either answer is read.
        bytes += request_frame(
          rid, open_request{id, "pipe-user-" + std::to_string(
                                                 k == k_open ? i : i - 1)});
        break;
    }
    sent.emplace(rid, k);
  }
  auto s = connect_authenticated();
  CAF_REQUIRE(s.write_all(bytes));

  std::vector<uint64_t> order;
  std::map<uint64_t, client_response> got;
  for (int n = 0; n < 50; ++n) {
    client_response resp;
    auto st = s.read_frame(resp, io_timeout_ms);
    CAF_REQUIRE_EQUAL(to_string(st), std::string{"ok"});
    order.push_back(resp.request_id);
    CAF_CHECK(got.emplace(resp.request_id, resp).second);
  }
  CAF_CHECK_EQUAL(got.size(), 50u);
  std::map<std::string, int64_t> amounts;  // user -> amount, both opens agree
  int first_times = 0;
  for (auto& [rid, k] : sent) {
    auto it = got.find(rid);
    if (it == got.end()) {
      CAF_ERROR("no response for request " << rid);
      continue;
    }
    auto& resp = it->second;
    bool ok = false;
    switch (k) {
      case k_create:
        ok = std::holds_alternative<envelope>(resp.body);
        break;
      case k_get:
        ok = std::holds_alternative<envelope_detail>(resp.body);
        break;
      case k_grab:
        ok = std::holds_alternative<grab_result>(resp.body);
        break;
      case k_open:
      case k_open_again: {
        auto* res = std::get_if<open_result>(&resp.body);
        ok = res != nullptr;
        if (res != nullptr) {
          auto user = "pipe-user-"
                      + std::to_string(rid - 100 - (k == k_open ? 0 : 1));
          auto [pos, fresh] = amounts.emplace(user, res->amount_fen);
          if (!fresh)
            CAF_CHECK_EQUAL(pos->second, res->amount_fen);
          if (res->first_time)
            ++first_times;
        }
        break;
      }
    }
    if (!ok)
      CAF_ERROR("request " << rid << " (kind " << k << ") answered "
                           << describe(resp));
  }
  // Ten users opened, each exactly once for the first time.
  CAF_CHECK_EQUAL(amounts.size(), 10u);
  CAF_CHECK_EQUAL(first_times, 10);
  // No more frames are pending, and the connection is still usable.
  CAF_REQUIRE(s.write_all(request_frame(500, get_request{id})));
  client_response last;
  CAF_REQUIRE_EQUAL(to_string(s.read_frame(last, io_timeout_ms)),
                    std::string{"ok"});
  CAF_CHECK_EQUAL(last.request_id, 500u);
  auto* detail = std::get_if<envelope_detail>(&last.body);
  CAF_REQUIRE(detail != nullptr);
  CAF_CHECK_EQUAL(detail->opens.size(), 10u);
  for (auto& rec : detail->opens)
    CAF_CHECK_EQUAL(amounts[rec.user], rec.amount_fen);
  bool in_order = std::is_sorted(order.begin(), order.end());
  std::cout << "pipelining: 50 responses, "
            << (in_order ? "in request order" : "out of request order")
            << std::endl;
  check_served("pipelining");
}

CAF_TEST(a client that disconnects with requests in flight harms nobody) {
  client::connection conn;
  CAF_REQUIRE_EQUAL(connect_client(env, conn), "");
  int64_t id = 0;
  CAF_REQUIRE_EQUAL(create_paid(conn, "dropper", 3000, 30, id), "");
  // 20 opens and 20 grabs, then hang up without reading a single answer.
  std::string bytes;
  for (uint64_t i = 0; i < 20; ++i) {
    auto user = "drop-user-" + std::to_string(i);
    bytes += request_frame(10 + 2 * i, grab_request{id, user});
    bytes += request_frame(11 + 2 * i, open_request{id, user});
  }
  {
    auto s = connect_authenticated();
    CAF_REQUIRE(s.write_all(bytes));
  }
  check_served("a disconnect with requests in flight");
  // The documented recovery: send the same opens again on a new connection.
  // Each user gets exactly one share, whether or not the first open had
  // committed before the connection broke.
  std::map<std::string, int64_t> amounts;
  int first_times = 0;
  for (int i = 0; i < 20; ++i) {
    auto user = "drop-user-" + std::to_string(i);
    auto resp = conn.call(open_request{id, user}, io_timeout_ms);
    CAF_REQUIRE(resp.ok());
    auto* res = std::get_if<open_result>(&resp->body);
    if (res == nullptr) {
      CAF_ERROR("open of " << user << " answered " << describe(*resp));
      continue;
    }
    amounts[user] = res->amount_fen;
    first_times += res->first_time ? 1 : 0;
  }
  auto detail = conn.call(get_request{id}, io_timeout_ms);
  CAF_REQUIRE(detail.ok());
  auto* d = std::get_if<envelope_detail>(&detail->body);
  CAF_REQUIRE(d != nullptr);
  CAF_CHECK_EQUAL(d->opens.size(), 20u);
  for (auto& rec : d->opens)
    CAF_CHECK_EQUAL(amounts[rec.user], rec.amount_fen);
  std::cout << "after the disconnect: " << 20 - first_times
            << " of 20 opens had committed before the retry" << std::endl;
}

CAF_TEST(the database holds what the clients were told) {
  database db;
  std::string error;
  CAF_REQUIRE_EQUAL((db.connect(env.db_url, error), error), "");
  CAF_CHECK_EQUAL(db.scalar("SELECT COUNT(*) FROM opens WHERE user_id = "
                            "'probe-user'"),
                  std::to_string(probes_run));
  CAF_CHECK_EQUAL(db.scalar("SELECT COALESCE(SUM(amount_fen), 0) FROM opens "
                            "WHERE user_id = 'probe-user'"),
                  std::to_string(probes_told_fen));
  // Money is conserved on every envelope.
  CAF_CHECK_EQUAL(
    db.scalar("SELECT COUNT(*) FROM (SELECT e.id FROM envelopes e LEFT JOIN "
              "opens o ON o.envelope_id = e.id GROUP BY e.id HAVING "
              "e.total_fen <> e.remaining_fen + COALESCE(SUM(o.amount_fen), 0) "
              "OR e.count - e.remaining_count <> COUNT(o.user_id)) bad"),
    "0");
  // No outbox 'open' row: each open is queued for the relay with its
  // commit (credits_owed), or already credited exactly once.
  auto opens = db.scalar("SELECT COUNT(*) FROM opens");
  CAF_CHECK_NOT_EQUAL(opens, "0");
  CAF_CHECK_EQUAL(db.scalar("SELECT COUNT(*) FROM outbox WHERE kind = 'open'"),
                  "0");
  auto credits = open_credits_sql("true");
  CAF_CHECK_EQUAL(db.scalar("SELECT COUNT(*) FROM " + credits + " WHERE "
                            "(pending = 1 AND credits = 0) OR "
                            "(pending = 0 AND credits = 1 "
                            "AND matching = 1)"),
                  opens);
  // Once the relay has drained, every open is credited exactly once, and
  // the credits are exactly the shares.
  CAF_CHECK_EQUAL(db.wait_scalar("SELECT COUNT(*) FROM relay_backlog", "0",
                                 30000),
                  "0");
  CAF_CHECK_EQUAL(db.scalar("SELECT COUNT(*) FROM " + credits + " WHERE "
                            "pending = 0 AND credits = 1 "
                            "AND matching = 1"),
                  opens);
  CAF_CHECK_EQUAL(db.scalar("SELECT COUNT(*) || '|' || COALESCE(SUM(amount_fen), 0) "
                            "FROM ledger_entries WHERE kind = 'credit'"),
                  db.scalar("SELECT COUNT(*) || '|' || COALESCE(SUM(amount_fen), 0) "
                            "FROM opens"));
  std::cout << "probes served: " << probes_run << ", told "
            << probes_told_fen << " fen" << std::endl;
}

CAF_TEST_FIXTURE_SCOPE_END()

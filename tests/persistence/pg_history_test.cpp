// Integration tests of a user's history in pg_store against a real
// PostgreSQL (see pg_connection_test.cpp for the setup).
#define CAF_SUITE persistence.pg_history
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

CAF_TEST_FIXTURE_SCOPE(pg_history_tests, ledger_fixture)

CAF_TEST(history pages newest first without gaps or duplicates) {
  // 25 envelopes from one sender, each opened by one receiver. Times tie in
  // pairs (sent) and triples (received): the envelope id breaks ties.
  std::vector<history_item> sent;
  std::vector<history_item> received;
  for (int i = 0; i < 25; ++i) {
    auto paid_at = t0 + (i / 2) * 1000;
    auto snap = paid(100, 2, "hist-sender", live_expiry_ms, paid_at);
    auto opened_at = t0 + 100000 + (i / 3) * 1000;
    open(snap, {{"hist-user", 30}}, opened_at);
    sent.push_back({snap.env.id, 100, paid_at, "group-1", ""});
    received.push_back({snap.env.id, 30, opened_at, "group-1", "hist-sender"});
  }
  relay_all();
  auto newest_first = [](const history_item& x, const history_item& y) {
    return std::tie(x.at_ms, x.envelope_id) > std::tie(y.at_ms, y.envelope_id);
  };
  std::sort(sent.begin(), sent.end(), newest_first);
  std::sort(received.begin(), received.end(), newest_first);
  auto check_pages = [&](const std::string& user, history_kind kind,
                         const std::vector<history_item>& expected) {
    history_query q{user, kind, 10, ""};
    std::vector<size_t> sizes;
    std::vector<history_item> all;
    for (int page = 0; page < 10; ++page) {
      auto p = value_of(store->history(q));
      sizes.push_back(p.items.size());
      all.insert(all.end(), p.items.begin(), p.items.end());
      if (p.next_cursor.empty())
        break;
      q.cursor = p.next_cursor;
    }
    CAF_CHECK_EQUAL(sizes, (std::vector<size_t>{10, 10, 5}));
    CAF_REQUIRE_EQUAL(all.size(), expected.size());
    for (size_t i = 0; i < all.size(); ++i) {
      CAF_CHECK_EQUAL(all[i].envelope_id, expected[i].envelope_id);
      CAF_CHECK_EQUAL(all[i].at_ms, expected[i].at_ms);
      CAF_CHECK_EQUAL(all[i].amount_fen, expected[i].amount_fen);
      CAF_CHECK_EQUAL(all[i].group, expected[i].group);
      CAF_CHECK_EQUAL(all[i].counterpart, expected[i].counterpart);
    }
  };
  check_pages("hist-user", history_kind::received, received);
  check_pages("hist-sender", history_kind::sent, sent);
  // Exactly one page: no cursor.
  auto one = value_of(store->history({"hist-user", history_kind::received, 25, ""}));
  CAF_CHECK_EQUAL(one.items.size(), 25u);
  CAF_CHECK_EQUAL(one.next_cursor, "");
  // The sender received nothing, the receiver sent nothing.
  CAF_CHECK(value_of(store->history({"hist-sender", history_kind::received, 10, ""}))
              .items.empty());
  CAF_CHECK(value_of(store->history({"nobody", history_kind::sent, 10, ""}))
              .items.empty());
  for (auto bad : {"abc", "1:", ":5", "1:2:3", "1;2", "99999999999999999999:1",
                   " 1:2", "+1:2", "1:-", "-:1", "1: 2"})
    CAF_CHECK_EQUAL(code_of(store->history(
                      {"hist-user", history_kind::received, 10, bad})),
                    "invalid_argument");
  CAF_CHECK_EQUAL(code_of(store->history({"hist-user", history_kind::received, 0, ""})),
                  "invalid_argument");
}

CAF_TEST_FIXTURE_SCOPE_END()

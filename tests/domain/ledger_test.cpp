#define CAF_SUITE domain.ledger

#include "caf/test/unit_test.hpp"

#include <set>

#include "domain/ledger.hpp"

using namespace hb;

CAF_TEST(a wallet account is named after its user) {
  CAF_CHECK_EQUAL(wallet_account("alice"), "user:alice");
  CAF_CHECK_EQUAL(wallet_account(""), "user:");
  // A user named like an escrow account still gets a wallet, not the escrow.
  CAF_CHECK_EQUAL(wallet_account("escrow:001"), "user:escrow:001");
  CAF_CHECK_NOT_EQUAL(wallet_account("escrow:001"), escrow_account(1));
}

CAF_TEST(escrow accounts are one per segment with three digits) {
  CAF_CHECK_EQUAL(escrow_account(0), "escrow:000");
  CAF_CHECK_EQUAL(escrow_account(7), "escrow:007");
  CAF_CHECK_EQUAL(escrow_account(217), "escrow:217");
  CAF_CHECK_EQUAL(escrow_account(999), "escrow:999");
  std::set<std::string> names;
  for (int32_t seg = 0; seg < 1000; ++seg)
    names.insert(escrow_account(seg));
  CAF_CHECK_EQUAL(names.size(), 1000u);
}

CAF_TEST(no account name of a kind can be taken for one of another kind) {
  std::string external = external_account;
  CAF_CHECK_EQUAL(external, "external:payments");
  CAF_CHECK_NOT_EQUAL(external.rfind("user:", 0), 0u);
  CAF_CHECK_NOT_EQUAL(external.rfind("escrow:", 0), 0u);
  CAF_CHECK_EQUAL(wallet_account("x").rfind("user:", 0), 0u);
  CAF_CHECK_EQUAL(escrow_account(3).rfind("escrow:", 0), 0u);
}

CAF_TEST(history kinds have names) {
  CAF_CHECK_EQUAL(std::string{to_string(history_kind::sent)}, "sent");
  CAF_CHECK_EQUAL(std::string{to_string(history_kind::received)}, "received");
  CAF_CHECK_EQUAL(std::string{to_string(static_cast<history_kind>(9))},
                  "unknown");
}

CAF_TEST(the defaults of a history query ask for one page of received) {
  history_query q;
  CAF_CHECK_EQUAL(q.kind, history_kind::received);
  CAF_CHECK_EQUAL(q.limit, 20);
  CAF_CHECK(q.cursor.empty());
  history_page page;
  CAF_CHECK(page.next_cursor.empty());  // an empty cursor: the last page
}

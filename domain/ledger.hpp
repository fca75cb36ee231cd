#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hb {

// -- Accounts of the double-entry ledger ---------------------------------------
//
// Every movement of money is one ledger entry from a debit account to a credit
// account with a unique idempotency key. A balance is the sum of the entries
// into the account minus those out of it, so the sum over all accounts is
// always zero: money enters through the external payments account (which goes
// negative) and sits in escrow (one account per segment, so that unrelated
// envelopes do not contend on one row) until the relay credits a wallet or an
// expired envelope is refunded.

/// A user's wallet (零钱).
std::string wallet_account(const std::string& user);

/// The escrow account of a segment.
std::string escrow_account(int32_t segment);

/// Where paid-in money comes from.
constexpr const char* external_account = "external:payments";

// -- History --------------------------------------------------------------------

enum class history_kind : uint8_t {
  sent = 1,      ///< envelopes the user wrapped and paid
  received = 2,  ///< shares the user opened and was credited
};

const char* to_string(history_kind x);

/// One line of a user's history, newest first.
struct history_item {
  int64_t envelope_id = 0;
  int64_t amount_fen = 0;  ///< total sent, or the share received
  int64_t at_ms = 0;       ///< when paid (sent) or opened (received)
  std::string group;
  std::string counterpart;  ///< the sender of a received share
};

/// One page of history. `next_cursor` is empty on the last page; pass it
/// back to get the next page.
struct history_page {
  std::vector<history_item> items;
  std::string next_cursor;
};

struct history_query {
  std::string user;
  history_kind kind = history_kind::received;
  int32_t limit = 20;
  std::string cursor;
};

/// A wallet's balance.
struct balance_info {
  std::string user;
  int64_t balance_fen = 0;
};

// -- Reconciliation (对账) -----------------------------------------------------

/// One thing the reconciler found wrong.
struct discrepancy {
  std::string kind;      ///< e.g. "missing_credit", "double_credit"
  int64_t envelope_id = 0;
  std::string user;      ///< when it concerns one user's share or wallet
  std::string detail;
  bool repaired = false;
};

struct reconcile_report {
  int64_t since_ms = 0;
  int64_t envelopes_checked = 0;
  int64_t opens_checked = 0;
  int64_t accounts_checked = 0;
  int64_t wallets_fen = 0;   ///< sum of user wallets
  int64_t escrow_fen = 0;    ///< sum of escrow accounts
  int64_t external_fen = 0;  ///< the external account (negative: paid in)
  int64_t relay_pending = 0; ///< opens not yet credited (not an error)
  std::vector<discrepancy> discrepancies;
};

/// What one relay batch did.
struct relay_batch_result {
  int32_t rows = 0;        ///< outbox rows taken
  int32_t credited = 0;    ///< new wallet credits
  int32_t duplicates = 0;  ///< rows whose credit existed already
  int64_t credited_fen = 0;
};

/// What the relay has done and how far behind it is.
struct relay_stats {
  int64_t pending = 0;        ///< outbox rows not yet delivered
  int64_t oldest_age_ms = 0;  ///< age of the oldest of them
  int64_t batches = 0;        ///< relay transactions committed
  int64_t credited = 0;       ///< wallet credits posted
  int64_t credited_fen = 0;
  int64_t duplicates = 0;     ///< deliveries whose credit existed already
  int64_t failures = 0;       ///< batches that failed (retried with backoff)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, relay_stats& x) {
  return f(x.pending, x.oldest_age_ms, x.batches, x.credited, x.credited_fen,
           x.duplicates, x.failures);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, history_item& x) {
  return f(x.envelope_id, x.amount_fen, x.at_ms, x.group, x.counterpart);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, history_page& x) {
  return f(x.items, x.next_cursor);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, history_query& x) {
  return f(x.user, x.kind, x.limit, x.cursor);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, balance_info& x) {
  return f(x.user, x.balance_fen);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, discrepancy& x) {
  return f(x.kind, x.envelope_id, x.user, x.detail, x.repaired);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, reconcile_report& x) {
  return f(x.since_ms, x.envelopes_checked, x.opens_checked,
           x.accounts_checked, x.wallets_fen, x.escrow_fen, x.external_fen,
           x.relay_pending, x.discrepancies);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, relay_batch_result& x) {
  return f(x.rows, x.credited, x.duplicates, x.credited_fen);
}

} // namespace hb

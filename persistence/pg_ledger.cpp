// pg_store: the ledger after the open: the outbox relay crediting wallets,
// its lag, balances and deposits. Every movement is a double-entry posting
// through the SQL function hb_post (see migrations.cpp).
#include "persistence/pg_store.hpp"

#include <string>
#include <utility>
#include <vector>

#include "persistence/pg_detail.hpp"

namespace hb::persistence {

using namespace detail;

// -- Relay -----------------------------------------------------------------------

outcome<relay_batch_result> pg_store::relay_batch(int32_t limit) {
  if (limit < 1)
    return failure{errc::invalid_argument, "relay_batch: limit must be >= 1"};
  if (!ensure_connected())
    return unreachable(conn_);
  auto r = run_prepared(conn_, "relay_batch",
               "SELECT taken, credited, duplicates, credited_fen"
               " FROM hb_relay_batch($1)",
               params{}.add(limit));
  if (!r.ok())
    return r.error;
  relay_batch_result out;
  out.rows = static_cast<int32_t>(r.i64(0, 0));
  out.credited = static_cast<int32_t>(r.i64(0, 1));
  out.duplicates = static_cast<int32_t>(r.i64(0, 2));
  out.credited_fen = r.i64(0, 3);
  return out;
}

outcome<pg_store::outbox_lag_info> pg_store::outbox_lag() {
  if (!ensure_connected())
    return unreachable(conn_);
  auto r = run_script(conn_, "outbox_lag",
                      "SELECT count(*),"
                      " COALESCE(hb_ms(now()) - hb_ms(min(created_at)), 0)"
                      " FROM relay_backlog");
  if (!r.ok())
    return r.error;
  return outbox_lag_info{r.i64(0, 0), r.i64(0, 1)};
}

// -- Wallets ---------------------------------------------------------------------

outcome<balance_info> pg_store::balance(const std::string& user) {
  if (!ensure_connected())
    return unreachable(conn_);
  auto r = run(conn_, "balance",
               "SELECT COALESCE((SELECT balance_fen FROM accounts"
               " WHERE id = hb_wallet($1)), 0)",
               params{}.add(user));
  if (!r.ok())
    return r.error;
  return balance_info{user, r.i64(0, 0)};
}

outcome<done> pg_store::deposit(const std::string& user, int64_t amount_fen,
                                const std::string& key) {
  if (user.empty() || key.empty())
    return failure{errc::invalid_argument,
                   "deposit: user and key must not be empty"};
  if (amount_fen < 1)
    return failure{errc::invalid_argument, "deposit: amount must be >= 1 fen"};
  if (!ensure_connected())
    return unreachable(conn_);
  auto r = run(conn_, "deposit",
               "SELECT hb_post('deposit:' || $3, 'deposit', $4, hb_wallet($1),"
               " $2, NULL, $1)",
               params{}.add(user).add(amount_fen).add(key).add(external_account));
  if (!r.ok())
    return r.error;
  if (r.boolean(0, 0))
    return done{};
  // The key was used before: a retry, or a reuse for something else.
  r = run(conn_, "deposit",
          "SELECT count(*) FROM ledger_entries WHERE idempotency_key ="
          " 'deposit:' || $3 AND kind = 'deposit'"
          " AND credit_account = hb_wallet($1) AND amount_fen = $2",
          params{}.add(user).add(amount_fen).add(key));
  if (!r.ok())
    return r.error;
  if (r.i64(0, 0) == 1)
    return done{};
  return failure{errc::conflict,
                 "deposit key already used with another user or amount"};
}

} // namespace hb::persistence

// pg_store: money into and out of an envelope's escrow: the payment
// (CREATED -> PAID, alone or many in one transaction) and the refund of an
// expired envelope's remainder (PAID -> REFUNDED). Every movement is a
// double-entry posting through the SQL function hb_post (migrations.cpp).
#include "persistence/pg_store.hpp"

#include <string>
#include <utility>
#include <vector>

#include "domain/envelope_id.hpp"
#include "persistence/pg_detail.hpp"

namespace hb::persistence {

using namespace detail;

namespace {

// -- Payment -------------------------------------------------------------------

// The CTEs `rec` and `box` that every confirmed payment of the CTE `upd`
// (id, sender, group_id, total_fen, paid_at) writes beside its posting: the
// sender's 'sent' record and the outbox row of the group notification. One
// text for confirm_payment and confirm_payments, so that a payment reads the
// same whichever way it went.
#define HB_PAID_RECORDS_FROM_UPD                                               \
  " rec AS ("                                                                  \
  " INSERT INTO user_records (user_id, kind, envelope_id, amount_fen, at_ms,"  \
  "  group_id, counterpart)"                                                   \
  " SELECT sender, 1, id, total_fen, hb_ms(paid_at), group_id, '' FROM upd),"  \
  " box AS ("                                                                  \
  " INSERT INTO outbox (kind, envelope_id, idempotency_key)"                   \
  " SELECT 'paid', id, 'paid:' || id FROM upd) "

outcome<done> explain_unpaid(PGconn* conn, const payment& p, bool clustered) {
  // Nothing changed; find out why. A repeat of the same confirmation is
  // success (idempotency); then, in a cluster, a deposed owner
  // (errc::not_owner); anything else is refused as before.
  auto r = run(conn, "confirm_payment",
               "SELECT epoch, status, COALESCE(payment_txn, ''), archived "
               "FROM envelopes_all WHERE id = $1",
               params{}.add(p.envelope_id));
  if (!r.ok())
    return r.error;
  if (r.rows() == 0)
    return failure{errc::not_found, not_found_message(p.envelope_id)};
  auto epoch = r.i64(0, 0);
  bool paid_before = r.i64(0, 1) != static_cast<int>(envelope_status::created);
  if (epoch == p.epoch && paid_before && r.text(0, 2) == p.payment_txn)
    return done{};
  if (clustered) {
    auto why = deposed(conn, "confirm_payment", p.envelope_id);
    if (why.code != errc::none)
      return why;
  }
  if (epoch != p.epoch)
    return failure{errc::stale_epoch, "epoch " + std::to_string(p.epoch)
                                        + " is stale (current "
                                        + std::to_string(epoch) + ")"};
  if (r.i64(0, 1) == static_cast<int>(envelope_status::created)) {
    if (r.boolean(0, 3))
      return failure{errc::expired, "envelope " + std::to_string(p.envelope_id)
                                      + " is archived and can no longer be paid"};
    return failure{errc::internal, "confirm_payment: envelope changed "
                                   "concurrently under a current epoch"};
  }
  if (r.text(0, 2) != p.payment_txn)
    return failure{errc::payment_mismatch,
                   "envelope already paid with a different payment txn"};
  return done{};
}

failure insufficient_funds(PGconn* conn, const payment& p) {
  auto r = run(conn, "confirm_payment",
               "SELECT e.sender, e.total_fen, COALESCE(a.balance_fen, 0) "
               "FROM envelopes e LEFT JOIN accounts a ON a.id = hb_wallet(e.sender) "
               "WHERE e.id = $1",
               params{}.add(p.envelope_id));
  if (!r.ok() || r.rows() != 1)
    return failure{errc::insufficient_funds,
                   "the sender's wallet holds less than the envelope's total"};
  return failure{errc::insufficient_funds,
                 "wallet of " + r.text(0, 0) + " holds " + r.text(0, 2)
                   + " fen, needs " + r.text(0, 1)};
}

} // namespace

// -- Payment ---------------------------------------------------------------------

outcome<done> pg_store::confirm_payment(const payment& p) {
  if (p.payment_txn.empty())
    return failure{errc::invalid_argument, "payment txn must not be empty"};
  if (!ensure_connected())
    return unreachable(conn_);
  // One statement is one transaction: the status change, the payment row,
  // the money into escrow, the sender's record and the outbox row commit
  // together or not at all.
#define HB_CONFIRM_PAYMENT_SQL(guard)                                          \
    "WITH upd AS ("                                                            \
    " UPDATE envelopes SET status = 2, payment_txn = $3,"                      \
    "  paid_at = COALESCE(to_timestamp(NULLIF($4::bigint, 0) / 1000.0),"      \
    " now()),"                                                                 \
    "  expires_at = to_timestamp(NULLIF($5::bigint, 0) / 1000.0)"             \
    " WHERE id = $1 AND epoch = $2 AND status = 1" guard                       \
    " RETURNING id, sender, group_id, total_fen, paid_at),"                  \
    " pay AS ("                                                                \
    " INSERT INTO payments (payment_txn, envelope_id, source)"                 \
    " SELECT $3, id, CASE WHEN $6::boolean THEN 'wallet' ELSE 'external' END"  \
    " FROM upd),"                                                              \
    " led AS ("                                                                \
    " SELECT hb_post_once('pay:' || id, 'pay',"                                \
    "  CASE WHEN $6::boolean THEN hb_wallet(sender) ELSE $7 END,"              \
    "  hb_escrow_of(id), total_fen, id, sender) FROM upd),"                    \
    HB_PAID_RECORDS_FROM_UPD                                                   \
    "SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM led)"
  static constexpr const char* plain_sql = HB_CONFIRM_PAYMENT_SQL("");
  static constexpr const char* owned_sql =
    HB_CONFIRM_PAYMENT_SQL(HB_OWNER_EPOCH_CURRENT("envelopes"));
#undef HB_CONFIRM_PAYMENT_SQL
  params ps;
  ps.add(p.envelope_id).add(p.epoch).add(p.payment_txn).add(p.paid_at_ms);
  ps.add(p.expires_at_ms).add(p.from_wallet).add(external_account);
  bool clustered = identity_ != nullptr;
  auto r = run_prepared(conn_, "confirm_payment",
                        clustered ? owned_sql : plain_sql, ps);
  if (!r.ok() && r.constraint == "payments_pkey")
    return failure{errc::payment_mismatch,
                   "payment txn already used for another envelope"};
  if (!r.ok() && r.constraint == "accounts_wallet_not_negative")
    return insufficient_funds(conn_, p);
  if (!r.ok())
    return r.error;
  if (r.i64(0, 0) == 1)
    return done{};
  return explain_unpaid(conn_, p, clustered);
}

outcome<std::vector<int64_t>>
pg_store::confirm_payments(const std::vector<payment>& ps) {
  if (!ensure_connected())
    return unreachable(conn_);
  std::vector<int64_t> ids, epochs, paid, expires;
  std::vector<std::string> txns;
  for (auto& p : ps) {
    if (p.from_wallet || p.payment_txn.empty())
      continue;
    ids.push_back(p.envelope_id);
    epochs.push_back(p.epoch);
    txns.push_back(p.payment_txn);
    paid.push_back(p.paid_at_ms);
    expires.push_back(p.expires_at_ms);
  }
  std::vector<int64_t> out;
  if (ids.empty())
    return out;
  // One statement is one transaction, as confirm_payment's. The envelope
  // rows are locked in id order and the accounts are moved once each, in id
  // order (as hb_post and the relay lock them), so batches never deadlock
  // with each other or with other postings. All payments of a burst queued
  // on the same escrow and external rows, each holding them until its
  // commit was flushed; here the lot holds them for one flush. The pay
  // entries have no ON CONFLICT: one that exists already fails the lot, as
  // hb_post_once fails confirm_payment. Only escrow gains and only the
  // external account loses here, so the upsert's proposed rows never break
  // accounts_wallet_not_negative. In a cluster, an envelope whose segment
  // has changed hands since it was created is left out (alone, its payment
  // is refused with errc::not_owner).
#define HB_CONFIRM_PAYMENTS_SQL(guard)                                         \
    "WITH req AS ("                                                            \
    " SELECT DISTINCT ON (r.id) r.* FROM unnest($1::bigint[], $2::bigint[],"   \
    "  $3::text[], $4::bigint[], $5::bigint[])"                                \
    "  AS r(id, epoch, txn, paid_ms, expires_ms) ORDER BY r.id),"              \
    " l AS ("                                                                  \
    " SELECT e.id FROM envelopes e JOIN req r ON r.id = e.id"                  \
    " WHERE e.epoch = r.epoch AND e.status = 1 ORDER BY e.id FOR UPDATE OF e)," \
    " upd AS ("                                                                \
    " UPDATE envelopes e SET status = 2, payment_txn = r.txn,"                 \
    "  paid_at = COALESCE(to_timestamp(NULLIF(r.paid_ms, 0) / 1000.0), now())," \
    "  expires_at = to_timestamp(NULLIF(r.expires_ms, 0) / 1000.0)"            \
    " FROM l, req r WHERE e.id = l.id AND r.id = l.id AND e.epoch = r.epoch"   \
    "  AND e.status = 1" guard                                                 \
    " RETURNING e.id, e.sender, e.group_id, e.total_fen, e.paid_at, r.txn),"   \
    " pay AS ("                                                                \
    " INSERT INTO payments (payment_txn, envelope_id, source)"                 \
    " SELECT txn, id, 'external' FROM upd),"                                   \
    " led AS ("                                                                \
    " INSERT INTO ledger_entries (idempotency_key, kind, debit_account,"       \
    "  credit_account, amount_fen, envelope_id, user_id)"                      \
    " SELECT 'pay:' || id, 'pay', $6, hb_escrow_of(id), total_fen, id, sender" \
    " FROM upd ORDER BY id"                                                    \
    " RETURNING debit_account, credit_account, amount_fen),"                   \
    " moves AS ("                                                              \
    " SELECT debit_account AS id, -amount_fen AS delta FROM led"               \
    " UNION ALL SELECT credit_account, amount_fen FROM led),"                  \
    " bal AS ("                                                                \
    " INSERT INTO accounts AS a (id, kind, balance_fen)"                       \
    " SELECT id, hb_account_kind(id), sum(delta) FROM moves"                   \
    " GROUP BY id ORDER BY id"                                                 \
    " ON CONFLICT (id) DO UPDATE SET balance_fen = a.balance_fen"              \
    "  + excluded.balance_fen),"                                               \
    HB_PAID_RECORDS_FROM_UPD                                                   \
    "SELECT id FROM upd ORDER BY id"
  static constexpr const char* plain_sql = HB_CONFIRM_PAYMENTS_SQL("");
  static constexpr const char* owned_sql =
    HB_CONFIRM_PAYMENTS_SQL(HB_OWNER_EPOCH_CURRENT("e"));
#undef HB_CONFIRM_PAYMENTS_SQL
  params q;
  q.add(number_array(ids)).add(number_array(epochs)).add(text_array(txns));
  q.add(number_array(paid)).add(number_array(expires)).add(external_account);
  auto r = run_prepared(conn_, "confirm_payments",
                        identity_ ? owned_sql : plain_sql, q);
  if (!r.ok())
    return r.error;
  for (int row = 0; row < r.rows(); ++row)
    out.push_back(r.i64(row, 0));
  return out;
}

// -- Refund ----------------------------------------------------------------------

outcome<int64_t> pg_store::refund(int64_t envelope_id, int64_t epoch) {
  if (!ensure_connected())
    return unreachable(conn_);
  // One statement: PAID -> REFUNDED and the remainder from escrow to the
  // sender's wallet commit together.
  // "status + 0": by primary key (see pg_commits.cpp). In a cluster, only
  // while the segment has not changed hands since the activation. Only once
  // the envelope has expired by the database's clock, whatever the node's
  // says: a node clock stepped forward (NTP, a resumed VM) must not refund
  // envelopes still being opened; no expiry (NULL) never expires.
#define HB_REFUND_SQL(guard)                                                   \
    "WITH upd AS ("                                                            \
    " UPDATE envelopes SET status = 5, refunded_fen = remaining_fen,"          \
    "  remaining_fen = 0"                                                      \
    " WHERE id = $1 AND epoch = $2 AND status + 0 = 2"                         \
    "  AND COALESCE(expires_at <= now(), false)" guard                         \
    " RETURNING id, sender, refunded_fen),"                                    \
    " led AS ("                                                                \
    " SELECT hb_post_once('refund:' || id, 'refund', hb_escrow_of(id),"        \
    "  hb_wallet(sender), refunded_fen, id, sender) FROM upd) "                \
    "SELECT upd.refunded_fen, (SELECT count(*) FROM led) FROM upd"
  static constexpr const char* plain_sql = HB_REFUND_SQL("");
  static constexpr const char* owned_sql =
    HB_REFUND_SQL(HB_OWNER_EPOCH_CURRENT("envelopes"));
#undef HB_REFUND_SQL
  auto r = run(conn_, "refund", identity_ ? owned_sql : plain_sql,
               params{}.add(envelope_id).add(epoch));
  if (!r.ok())
    return r.error;
  if (r.rows() == 1)
    return r.i64(0, 0);
  // Nothing changed; a retry of a refund that committed is success.
  r = run(conn_, "refund",
          "SELECT epoch, status, refunded_fen,"
          " COALESCE(expires_at <= now(), false),"
          " COALESCE(hb_ms(expires_at), 0), hb_ms(now())"
          " FROM envelopes_all WHERE id = $1",
          params{}.add(envelope_id));
  if (!r.ok())
    return r.error;
  if (r.rows() == 0)
    return failure{errc::not_found, not_found_message(envelope_id)};
  auto status = static_cast<envelope_status>(r.i64(0, 1));
  if (r.i64(0, 0) == epoch && status == envelope_status::refunded)
    return r.i64(0, 2);
  if (identity_) {
    auto why = deposed(conn_, "refund", envelope_id);
    if (why.code != errc::none)
      return why;
  }
  if (r.i64(0, 0) != epoch)
    return failure{errc::stale_epoch, "epoch " + std::to_string(epoch)
                                        + " is stale (current "
                                        + r.text(0, 0) + ")"};
  if (status == envelope_status::paid && !r.boolean(0, 3)) {
    auto expires = r.i64(0, 4);
    auto now = r.i64(0, 5);
    return failure{errc::not_expired,
                   "envelope " + std::to_string(envelope_id)
                     + (expires == 0
                          ? std::string(" has no expiry")
                          : " expires at " + std::to_string(expires)
                              + " ms by the database's clock, "
                              + std::to_string(expires - now)
                              + " ms from now")
                     + "; nothing was refunded"};
  }
  return failure{errc::stale_epoch, std::string("envelope is not paid (status ")
                                      + to_string(status) + ")"};
}

} // namespace hb::persistence

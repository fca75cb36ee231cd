// pg_store: the money. Payment into escrow, the outbox relay crediting
// wallets, refunds, deposits, balances, history and the reconciliation that
// proves it all adds up. Every movement is a double-entry posting through
// the SQL function hb_post (see migrations.cpp).
#include "persistence/pg_store.hpp"

#include <cerrno>
#include <cstdlib>
#include <set>
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

outcome<done> explain_unpaid(PGconn* conn, const payment& p) {
  // Nothing changed; find out why. A repeat of the same confirmation is
  // success (idempotency), anything else is refused.
  auto r = run(conn, "confirm_payment",
               "SELECT epoch, status, COALESCE(payment_txn, ''), archived "
               "FROM envelopes_all WHERE id = $1",
               params{}.add(p.envelope_id));
  if (!r.ok())
    return r.error;
  if (r.rows() == 0)
    return failure{errc::not_found, not_found_message(p.envelope_id)};
  auto epoch = r.i64(0, 0);
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

// -- History cursors -------------------------------------------------------------

bool parse_i64(const std::string& text, int64_t& out) {
  // Digits with an optional minus only: strtoll alone would also take
  // leading blanks and a plus sign.
  size_t first = !text.empty() && text[0] == '-' ? 1 : 0;
  if (text.size() == first || text.size() > 20
      || text.find_first_not_of("0123456789", first) != std::string::npos)
    return false;
  errno = 0;
  auto value = std::strtoll(text.c_str(), nullptr, 10);
  if (errno != 0)
    return false;
  out = value;
  return true;
}

/// "<at_ms>:<envelope_id>" of the last item of the previous page.
bool parse_cursor(const std::string& cursor, int64_t& at_ms,
                  int64_t& envelope_id) {
  auto colon = cursor.find(':');
  return colon != std::string::npos
         && parse_i64(cursor.substr(0, colon), at_ms)
         && parse_i64(cursor.substr(colon + 1), envelope_id);
}

std::string make_cursor(const history_item& last) {
  return std::to_string(last.at_ms) + ":" + std::to_string(last.envelope_id);
}

// -- Reconciliation ----------------------------------------------------------------

// Every check query sees $1 = since_ms, $2 = now_ms and the envelopes in
// scope, and returns (kind, envelope_id, user, detail) rows.
#define HB_RECONCILE_SCOPE                                                     \
  "WITH p AS (SELECT $1::bigint AS since_ms, $2::bigint AS now_ms),"           \
  " scope AS (SELECT e.* FROM envelopes_all e, p"                              \
  "  WHERE e.created_at >= to_timestamp(p.since_ms / 1000.0))"

#define HB_HAS_CREDIT(o)                                                       \
  "EXISTS (SELECT 1 FROM ledger_entries l WHERE l.envelope_id = " o            \
  ".envelope_id AND l.kind = 'credit' AND l.user_id = " o ".user_id)"

constexpr const char* reconcile_checks[] = {
  // Money of each envelope: opened + refunded + remaining = total, and the
  // shares left plus the opens make up the count.
  HB_RECONCILE_SCOPE ","
  " o AS (SELECT o.envelope_id, count(*) AS n, sum(o.amount_fen) AS s"
  "  FROM scope e JOIN opens_all o ON o.envelope_id = e.id GROUP BY 1) "
  "SELECT 'sum_mismatch', e.id, '',"
  " format('%s: opened %s fen in %s shares + refunded %s + remaining %s fen"
  " in %s shares; total %s fen in %s shares', hb_status_name(e.status),"
  " COALESCE(o.s, 0), COALESCE(o.n, 0), e.refunded_fen, e.remaining_fen,"
  " e.remaining_count, e.total_fen, e.count) "
  "FROM scope e LEFT JOIN o ON o.envelope_id = e.id "
  "WHERE COALESCE(o.s, 0) + e.refunded_fen + e.remaining_fen <> e.total_fen"
  " OR COALESCE(o.n, 0) + e.remaining_count <> e.count",

  // An open the relay is done with but that no credit paid: a hot open no
  // longer in the relay's queue (credits_owed), or an archived one without
  // an undelivered outbox row to bring it to the relay.
  HB_RECONCILE_SCOPE ","
  " queued AS (SELECT x.envelope_id, x.user_id FROM credits_owed c,"
  "  unnest(c.envelope_ids, c.user_ids) AS x(envelope_id, user_id)) "
  "SELECT 'missing_credit', o.envelope_id, o.user_id,"
  " format('open of %s fen has no credit; %s', o.amount_fen,"
  "  CASE WHEN NOT e.archived THEN 'it is not in the relay''s queue'"
  "   WHEN x.id IS NULL THEN 'it is archived and has no outbox row'"
  "   ELSE 'it is archived and its outbox row was delivered' END) "
  "FROM scope e JOIN opens_all o ON o.envelope_id = e.id"
  " LEFT JOIN outbox x ON e.archived AND x.idempotency_key ="
  "  'open:' || o.envelope_id || ':' || o.user_id "
  "WHERE CASE WHEN e.archived"
  "  THEN x.id IS NULL OR x.delivered_at IS NOT NULL"
  "  ELSE NOT EXISTS (SELECT 1 FROM queued q WHERE q.envelope_id ="
  "   o.envelope_id AND q.user_id = o.user_id) END"
  " AND NOT " HB_HAS_CREDIT("o"),

  HB_RECONCILE_SCOPE " "
  "SELECT 'double_credit', l.envelope_id, l.user_id,"
  " format('%s credits totalling %s fen: %s', count(*), sum(l.amount_fen),"
  "  string_agg(l.idempotency_key, ', ' ORDER BY l.id)) "
  "FROM scope e JOIN ledger_entries l"
  " ON l.envelope_id = e.id AND l.kind = 'credit' "
  "GROUP BY l.envelope_id, l.user_id HAVING count(*) > 1",

  HB_RECONCILE_SCOPE " "
  "SELECT 'credit_amount_mismatch', l.envelope_id, l.user_id,"
  " format('credit %s of %s fen for an open of %s fen', l.idempotency_key,"
  "  l.amount_fen, o.amount_fen) "
  "FROM scope e JOIN ledger_entries l"
  " ON l.envelope_id = e.id AND l.kind = 'credit'"
  " JOIN opens_all o ON o.envelope_id = l.envelope_id AND o.user_id = l.user_id "
  "WHERE l.amount_fen <> o.amount_fen",

  // Credits of envelopes in scope, or of no envelope at all.
  HB_RECONCILE_SCOPE " "
  "SELECT 'credit_without_open', COALESCE(l.envelope_id, 0),"
  " COALESCE(l.user_id, ''), format('credit %s of %s fen matches no open',"
  " l.idempotency_key, l.amount_fen) "
  "FROM ledger_entries l "
  "WHERE l.kind = 'credit' AND NOT EXISTS (SELECT 1 FROM opens_all o"
  "  WHERE o.envelope_id = l.envelope_id AND o.user_id = l.user_id)"
  " AND (l.envelope_id IS NULL"
  "  OR EXISTS (SELECT 1 FROM scope e WHERE e.id = l.envelope_id)"
  "  OR NOT EXISTS (SELECT 1 FROM envelopes_all e WHERE e.id = l.envelope_id))",

  // A REFUNDED envelope has exactly one refund entry of refunded_fen; any
  // other has none.
  HB_RECONCILE_SCOPE ","
  " r AS (SELECT l.envelope_id, count(*) AS n, sum(l.amount_fen) AS s"
  "  FROM scope e JOIN ledger_entries l"
  "  ON l.envelope_id = e.id AND l.kind = 'refund' GROUP BY 1) "
  "SELECT CASE WHEN e.status = 5 AND r.n IS NULL THEN 'refund_missing'"
  "  WHEN r.n > 1 THEN 'refund_double' ELSE 'refund_amount_mismatch' END,"
  " e.id, '', format('%s with refunded_fen %s; %s refund entries totalling"
  " %s fen', hb_status_name(e.status), e.refunded_fen, COALESCE(r.n, 0),"
  " COALESCE(r.s, 0)) "
  "FROM scope e LEFT JOIN r ON r.envelope_id = e.id "
  "WHERE CASE WHEN e.status = 5"
  " THEN r.n IS NULL OR r.n <> 1 OR r.s <> e.refunded_fen"
  " ELSE r.n IS NOT NULL END",

  // A paid envelope has exactly one pay entry of its total and a payments
  // row; a CREATED one neither.
  HB_RECONCILE_SCOPE ","
  " pe AS (SELECT l.envelope_id, count(*) AS n, sum(l.amount_fen) AS s"
  "  FROM scope e JOIN ledger_entries l"
  "  ON l.envelope_id = e.id AND l.kind = 'pay' GROUP BY 1) "
  "SELECT CASE WHEN e.status >= 2 AND pe.n IS NULL THEN 'payment_missing'"
  "  ELSE 'payment_mismatch' END, e.id, '',"
  " format('%s envelope of %s fen; %s pay entries totalling %s fen; %s',"
  "  hb_status_name(e.status), e.total_fen, COALESCE(pe.n, 0),"
  "  COALESCE(pe.s, 0), CASE WHEN py.envelope_id IS NULL"
  "  THEN 'no payments row' ELSE 'payments row ' || py.source END) "
  "FROM scope e LEFT JOIN pe ON pe.envelope_id = e.id"
  " LEFT JOIN payments py ON py.envelope_id = e.id "
  "WHERE CASE WHEN e.status >= 2"
  " THEN pe.n IS NULL OR pe.n <> 1 OR pe.s <> e.total_fen"
  "  OR py.envelope_id IS NULL"
  " ELSE pe.n IS NOT NULL OR py.envelope_id IS NOT NULL END",

  // Not in scope: any hot PAID envelope the sweeper should have refunded
  // (PAID envelopes never go cold).
  HB_RECONCILE_SCOPE " "
  "SELECT 'refund_overdue', e.id, '',"
  " format('paid envelope expired %s s ago and still holds %s fen',"
  "  (p.now_ms - hb_ms(e.expires_at)) / 1000, e.remaining_fen) "
  "FROM envelopes e, p "
  "WHERE e.status = 2 AND e.expires_at < to_timestamp((p.now_ms - 60000) / 1000.0)",

  // Global: each balance is the sum of its entries.
  HB_RECONCILE_SCOPE ","
  " m AS (SELECT debit_account AS id, -amount_fen AS d FROM ledger_entries"
  "  UNION ALL SELECT credit_account, amount_fen FROM ledger_entries),"
  " s AS (SELECT id, sum(d) AS s FROM m GROUP BY id) "
  "SELECT 'balance_mismatch', 0::bigint, COALESCE(a.id, s.id),"
  " format('balance %s fen, entries sum to %s fen',"
  "  COALESCE(a.balance_fen::text, '(no account)'), COALESCE(s.s, 0)) "
  "FROM accounts a FULL JOIN s ON s.id = a.id "
  "WHERE a.id IS NULL OR a.balance_fen <> COALESCE(s.s, 0)",

  // Global, per segment: escrow holds what its paid envelopes took in minus
  // what was credited and refunded out of them.
  HB_RECONCILE_SCOPE ","
  " held AS (SELECT hb_escrow(segment) AS id, sum(total_fen - refunded_fen) AS fen"
  "  FROM envelopes_all WHERE status >= 2 GROUP BY segment"
  "  UNION ALL"
  "  SELECT hb_escrow_of(envelope_id), -sum(amount_fen) FROM ledger_entries"
  "  WHERE kind = 'credit' AND envelope_id IS NOT NULL"
  "  GROUP BY hb_escrow_of(envelope_id)),"
  " expected AS (SELECT id, sum(fen) AS fen FROM held GROUP BY id) "
  "SELECT 'escrow_mismatch', 0::bigint, COALESCE(a.id, x.id),"
  " format('escrow holds %s fen; its envelopes say %s fen (paid - credited"
  " - refunded)', COALESCE(a.balance_fen, 0), COALESCE(x.fen, 0)) "
  "FROM (SELECT id, balance_fen FROM accounts WHERE kind = 2) a"
  " FULL JOIN expected x ON x.id = a.id "
  "WHERE COALESCE(a.balance_fen, 0) <> COALESCE(x.fen, 0)",
};

constexpr const char* reconcile_totals =
  HB_RECONCILE_SCOPE ","
  " o AS (SELECT 1 FROM scope e JOIN opens_all o ON o.envelope_id = e.id) "
  "SELECT (SELECT count(*) FROM scope), (SELECT count(*) FROM o),"
  " (SELECT count(*) FROM relay_backlog WHERE kind = 'open'), count(*),"
  " COALESCE(sum(balance_fen) FILTER (WHERE kind = 1), 0),"
  " COALESCE(sum(balance_fen) FILTER (WHERE kind = 2), 0),"
  " COALESCE(sum(balance_fen) FILTER (WHERE kind = 3), 0),"
  " COALESCE(sum(balance_fen), 0) "
  "FROM accounts";

/// Reads every check in one snapshot.
outcome<reconcile_report> reconcile_read(PGconn* conn, int64_t since_ms,
                                         int64_t now_ms) {
  transaction tx{conn, "reconcile",
                 "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"};
  auto r = tx.begin();
  if (!r.ok())
    return r.error;
  auto args = params{}.add(since_ms).add(now_ms);
  reconcile_report report;
  report.since_ms = since_ms;
  r = run(conn, "reconcile", reconcile_totals, args);
  if (!r.ok())
    return r.error;
  report.envelopes_checked = r.i64(0, 0);
  report.opens_checked = r.i64(0, 1);
  report.relay_pending = r.i64(0, 2);
  report.accounts_checked = r.i64(0, 3);
  report.wallets_fen = r.i64(0, 4);
  report.escrow_fen = r.i64(0, 5);
  report.external_fen = r.i64(0, 6);
  if (auto sum = r.i64(0, 7); sum != 0)
    report.discrepancies.push_back(
      {"ledger_unbalanced", 0, "",
       "all accounts sum to " + std::to_string(sum) + " fen, not 0", false});
  for (auto sql : reconcile_checks) {
    r = run(conn, "reconcile", sql, args);
    if (!r.ok())
      return r.error;
    for (int row = 0; row < r.rows(); ++row)
      report.discrepancies.push_back(discrepancy{
        r.text(row, 0), r.i64(row, 1), r.text(row, 2), r.text(row, 3), false});
  }
  r = tx.commit();
  if (!r.ok())
    return r.error;
  return report;
}

/// Re-enqueues the relay for the given opens, in one short transaction,
/// unless a credit appeared meanwhile: a hot open goes into the relay's
/// queue again (a credits_owed row per 64); an open of an archived day gets
/// its outbox row undelivered again (or recreated). Returns the opens done.
outcome<std::set<std::pair<int64_t, std::string>>>
requeue_credits(PGconn* conn, const std::vector<int64_t>& envelopes,
                const std::vector<std::string>& users) {
  std::set<std::pair<int64_t, std::string>> out;
  transaction tx{conn, "reconcile"};
  auto r = tx.begin();
  if (!r.ok())
    return r.error;
  static constexpr const char* requeue_hot_sql =
    "WITH x AS (SELECT DISTINCT * FROM unnest($1::bigint[], $2::text[])"
    "  AS x(envelope_id, user_id)),"
    " ins AS (SELECT o.envelope_id, o.user_id FROM x JOIN opens o"
    "  ON o.envelope_id = x.envelope_id AND o.user_id = x.user_id"
    "  WHERE NOT " HB_HAS_CREDIT("o") " ORDER BY 1, 2),"
    HB_OWED_FROM_INS
    "SELECT envelope_id, user_id FROM ins";
  static constexpr const char* requeue_cold_sql =
    "WITH x AS (SELECT DISTINCT * FROM unnest($1::bigint[], $2::text[])"
    "  AS x(envelope_id, user_id)),"
    " c AS (SELECT o.envelope_id, o.user_id, o.amount_fen"
    "  FROM x JOIN cold.opens o"
    "  ON o.envelope_id = x.envelope_id AND o.user_id = x.user_id"
    "  WHERE NOT " HB_HAS_CREDIT("o") "),"
    " q AS ("
    " INSERT INTO outbox AS b (kind, envelope_id, user_id, amount_fen,"
    "  idempotency_key) "
    " SELECT 'open', envelope_id, user_id, amount_fen,"
    "  'open:' || envelope_id || ':' || user_id FROM c ORDER BY 5 "
    " ON CONFLICT (idempotency_key) DO UPDATE SET delivered_at = NULL "
    " RETURNING b.envelope_id, b.user_id) "
    "SELECT envelope_id, user_id FROM q";
  auto keys = params{}.add(number_array(envelopes)).add(text_array(users));
  for (auto sql : {requeue_hot_sql, requeue_cold_sql}) {
    r = run(conn, "reconcile", sql, keys);
    if (!r.ok())
      return r.error;
    for (int row = 0; row < r.rows(); ++row)
      out.emplace(r.i64(row, 0), r.text(row, 1));
  }
  r = tx.commit();
  if (!r.ok())
    return r.error;
  return out;
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
  static constexpr const char* sql =
    "WITH upd AS ("
    " UPDATE envelopes SET status = 2, payment_txn = $3,"
    "  paid_at = COALESCE(to_timestamp(NULLIF($4::bigint, 0) / 1000.0), now()),"
    "  expires_at = to_timestamp(NULLIF($5::bigint, 0) / 1000.0)"
    " WHERE id = $1 AND epoch = $2 AND status = 1"
    " RETURNING id, sender, group_id, total_fen, paid_at),"
    " pay AS ("
    " INSERT INTO payments (payment_txn, envelope_id, source)"
    " SELECT $3, id, CASE WHEN $6::boolean THEN 'wallet' ELSE 'external' END"
    " FROM upd),"
    " led AS ("
    " SELECT hb_post_once('pay:' || id, 'pay',"
    "  CASE WHEN $6::boolean THEN hb_wallet(sender) ELSE $7 END,"
    "  hb_escrow_of(id), total_fen, id, sender) FROM upd),"
    HB_PAID_RECORDS_FROM_UPD
    "SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM led)";
  params ps;
  ps.add(p.envelope_id).add(p.epoch).add(p.payment_txn).add(p.paid_at_ms);
  ps.add(p.expires_at_ms).add(p.from_wallet).add(external_account);
  auto r = run_prepared(conn_, "confirm_payment", sql, ps);
  if (!r.ok() && r.constraint == "payments_pkey")
    return failure{errc::payment_mismatch,
                   "payment txn already used for another envelope"};
  if (!r.ok() && r.constraint == "accounts_wallet_not_negative")
    return insufficient_funds(conn_, p);
  if (!r.ok())
    return r.error;
  if (r.i64(0, 0) == 1)
    return done{};
  return explain_unpaid(conn_, p);
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
  // commit was flushed; here the lot holds them for one flush.
  static constexpr const char* sql =
    "WITH req AS ("
    " SELECT DISTINCT ON (r.id) r.* FROM unnest($1::bigint[], $2::bigint[],"
    "  $3::text[], $4::bigint[], $5::bigint[])"
    "  AS r(id, epoch, txn, paid_ms, expires_ms) ORDER BY r.id),"
    " l AS ("
    " SELECT e.id FROM envelopes e JOIN req r ON r.id = e.id"
    " WHERE e.epoch = r.epoch AND e.status = 1 ORDER BY e.id FOR UPDATE OF e),"
    " upd AS ("
    " UPDATE envelopes e SET status = 2, payment_txn = r.txn,"
    "  paid_at = COALESCE(to_timestamp(NULLIF(r.paid_ms, 0) / 1000.0), now()),"
    "  expires_at = to_timestamp(NULLIF(r.expires_ms, 0) / 1000.0)"
    " FROM l, req r WHERE e.id = l.id AND r.id = l.id AND e.epoch = r.epoch"
    "  AND e.status = 1"
    " RETURNING e.id, e.sender, e.group_id, e.total_fen, e.paid_at, r.txn),"
    " pay AS ("
    " INSERT INTO payments (payment_txn, envelope_id, source)"
    " SELECT txn, id, 'external' FROM upd),"
    // No ON CONFLICT: a pay entry that exists already fails the lot, as
    // hb_post_once fails confirm_payment.
    " led AS ("
    " INSERT INTO ledger_entries (idempotency_key, kind, debit_account,"
    "  credit_account, amount_fen, envelope_id, user_id)"
    " SELECT 'pay:' || id, 'pay', $6, hb_escrow_of(id), total_fen, id, sender"
    " FROM upd ORDER BY id"
    " RETURNING debit_account, credit_account, amount_fen),"
    " moves AS ("
    " SELECT debit_account AS id, -amount_fen AS delta FROM led"
    " UNION ALL SELECT credit_account, amount_fen FROM led),"
    // Only escrow gains and only the external account loses here, so the
    // proposed rows never break accounts_wallet_not_negative.
    " bal AS ("
    " INSERT INTO accounts AS a (id, kind, balance_fen)"
    " SELECT id, hb_account_kind(id), sum(delta) FROM moves"
    " GROUP BY id ORDER BY id"
    " ON CONFLICT (id) DO UPDATE SET balance_fen = a.balance_fen"
    "  + excluded.balance_fen),"
    HB_PAID_RECORDS_FROM_UPD
    "SELECT id FROM upd ORDER BY id";
  params q;
  q.add(number_array(ids)).add(number_array(epochs)).add(text_array(txns));
  q.add(number_array(paid)).add(number_array(expires)).add(external_account);
  auto r = run_prepared(conn_, "confirm_payments", sql, q);
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
  static constexpr const char* sql =
    "WITH upd AS ("
    " UPDATE envelopes SET status = 5, refunded_fen = remaining_fen,"
    "  remaining_fen = 0"
    " WHERE id = $1 AND epoch = $2 AND status + 0 = 2"  // by primary key (pg_store.cpp)
    " RETURNING id, sender, refunded_fen),"
    " led AS ("
    " SELECT hb_post_once('refund:' || id, 'refund', hb_escrow_of(id),"
    "  hb_wallet(sender), refunded_fen, id, sender) FROM upd) "
    "SELECT upd.refunded_fen, (SELECT count(*) FROM led) FROM upd";
  auto r = run(conn_, "refund", sql, params{}.add(envelope_id).add(epoch));
  if (!r.ok())
    return r.error;
  if (r.rows() == 1)
    return r.i64(0, 0);
  // Nothing changed; a retry of a refund that committed is success.
  r = run(conn_, "refund",
          "SELECT epoch, status, refunded_fen FROM envelopes_all WHERE id = $1",
          params{}.add(envelope_id));
  if (!r.ok())
    return r.error;
  if (r.rows() == 0)
    return failure{errc::not_found, not_found_message(envelope_id)};
  if (r.i64(0, 0) != epoch)
    return failure{errc::stale_epoch, "epoch " + std::to_string(epoch)
                                        + " is stale (current "
                                        + r.text(0, 0) + ")"};
  auto status = static_cast<envelope_status>(r.i64(0, 1));
  if (status == envelope_status::refunded)
    return r.i64(0, 2);
  return failure{errc::stale_epoch, std::string("envelope is not paid (status ")
                                      + to_string(status) + ")"};
}

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

outcome<std::vector<int64_t>> pg_store::expired_envelopes(int64_t now_ms,
                                                          int32_t limit,
                                                          int64_t after_id) {
  if (limit < 1)
    return failure{errc::invalid_argument,
                   "expired_envelopes: limit must be >= 1"};
  if (!ensure_connected())
    return unreachable(conn_);
  // PAID envelopes are always hot; the partial index holds only them. The
  // page starts after the cursor envelope, in the order of the list.
  auto r = run(conn_, "expired_envelopes",
               "WITH c AS (SELECT expires_at, id FROM envelopes WHERE id = $3)"
               " SELECT e.id FROM envelopes e WHERE e.status = 2"
               " AND e.expires_at <= to_timestamp($1::bigint / 1000.0)"
               " AND (NOT EXISTS (SELECT 1 FROM c)"
               "  OR (e.expires_at, e.id) > (SELECT c.expires_at, c.id FROM c))"
               " ORDER BY e.expires_at, e.id LIMIT $2",
               params{}.add(now_ms).add(limit).add(after_id));
  if (!r.ok())
    return r.error;
  std::vector<int64_t> out;
  for (int row = 0; row < r.rows(); ++row)
    out.push_back(r.i64(row, 0));
  return out;
}

// -- Wallets and history -----------------------------------------------------------

outcome<history_page> pg_store::history(const history_query& q) {
  constexpr int32_t limit_max = 1000;
  if (q.limit < 1 || q.limit > limit_max)
    return failure{errc::invalid_argument,
                   "history: limit must be 1.." + std::to_string(limit_max)};
  if (q.kind != history_kind::sent && q.kind != history_kind::received)
    return failure{errc::invalid_argument, "history: unknown kind"};
  int64_t at_ms = 0;
  int64_t envelope_id = 0;
  if (!q.cursor.empty() && !parse_cursor(q.cursor, at_ms, envelope_id))
    return failure{errc::invalid_argument, "history: malformed cursor"};
  if (!ensure_connected())
    return unreachable(conn_);
  // One more than asked tells whether another page follows.
  static constexpr const char* first_page =
    "SELECT envelope_id, amount_fen, at_ms, group_id, counterpart"
    " FROM user_records_all WHERE user_id = $1 AND kind = $2"
    " ORDER BY at_ms DESC, envelope_id DESC LIMIT $3";
  static constexpr const char* next_page =
    "SELECT envelope_id, amount_fen, at_ms, group_id, counterpart"
    " FROM user_records_all WHERE user_id = $1 AND kind = $2"
    " AND (at_ms, envelope_id) < ($4::bigint, $5::bigint)"
    " ORDER BY at_ms DESC, envelope_id DESC LIMIT $3";
  params p;
  p.add(q.user).add(int64_t{static_cast<int>(q.kind)}).add(q.limit + 1);
  if (!q.cursor.empty())
    p.add(at_ms).add(envelope_id);
  auto r = run(conn_, "history", q.cursor.empty() ? first_page : next_page, p);
  if (!r.ok())
    return r.error;
  history_page page;
  for (int row = 0; row < r.rows() && row < q.limit; ++row)
    page.items.push_back(history_item{r.i64(row, 0), r.i64(row, 1),
                                      r.i64(row, 2), r.text(row, 3),
                                      r.text(row, 4)});
  if (r.rows() > q.limit)
    page.next_cursor = make_cursor(page.items.back());
  return page;
}

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

// -- Reconciliation ----------------------------------------------------------------

outcome<reconcile_report> pg_store::reconcile(int64_t since_ms, int64_t now_ms,
                                              bool repair) {
  if (!ensure_connected())
    return unreachable(conn_);
  auto report = reconcile_read(conn_, since_ms, now_ms);
  if (!report || !repair)
    return report;
  // Re-crediting is safe only while the accounts involved match their
  // entries: a lost entry whose money did move must not be paid twice.
  std::set<std::string> suspect;
  for (auto& d : report->discrepancies)
    if (d.kind == "balance_mismatch" || d.kind == "escrow_mismatch")
      suspect.insert(d.user);
  std::vector<int64_t> envelopes;
  std::vector<std::string> users;
  for (auto& d : report->discrepancies) {
    if (d.kind != "missing_credit")
      continue;
    auto wallet = wallet_account(d.user);
    auto escrow = escrow_account(segment_of(d.envelope_id));
    if (suspect.count(wallet) > 0 || suspect.count(escrow) > 0) {
      d.detail += "; not repaired: " + (suspect.count(wallet) > 0 ? wallet : escrow)
                  + " does not match its entries";
      continue;
    }
    envelopes.push_back(d.envelope_id);
    users.push_back(d.user);
  }
  if (envelopes.empty())
    return report;
  auto requeued = requeue_credits(conn_, envelopes, users);
  if (!requeued)
    return requeued.error();
  for (auto& d : report->discrepancies)
    if (d.kind == "missing_credit"
        && requeued->count({d.envelope_id, d.user}) > 0)
      d.repaired = true;
  return report;
}

} // namespace hb::persistence

// pg_store: the reconciliation (对账) that proves the money adds up: the
// checks over envelopes, opens, credits, refunds and accounts, read in one
// snapshot, and the one repair it may make (re-enqueue a lost credit).
#include "persistence/pg_store.hpp"

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "domain/envelope_id.hpp"
#include "persistence/pg_detail.hpp"

namespace hb::persistence {

using namespace detail;

namespace {

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

// pg_store: the group commit of opens, one envelope's batch or the batches
// of many envelopes in one transaction, and the warm-up of its statements on
// a new connection. Every write is guarded by the envelope's fencing epoch.
#include "persistence/pg_store.hpp"

#include <map>
#include <mutex>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "domain/envelope_id.hpp"
#include "persistence/pg_detail.hpp"

namespace hb::persistence {

using namespace detail;

namespace {

outcome<bool> stored_opens_match(PGconn* conn, const open_batch& batch) {
  static constexpr const char* sql =
    "SELECT count(*) FROM opens_all o"
    " JOIN unnest($2::text[], $3::bigint[], $4::int[]) AS x(u, a, s)"
    " ON o.user_id = x.u AND o.amount_fen = x.a AND o.seq = x.s"
    " WHERE o.envelope_id = $1";
  params p;
  p.add(batch.envelope_id).add(user_array(batch.opens));
  p.add(open_field_array(batch.opens, [](auto& o) { return o.amount_fen; }));
  p.add(open_field_array(batch.opens, [](auto& o) { return o.seq; }));
  auto r = run(conn, "commit_opens", sql, p);
  if (!r.ok())
    return r.error;
  return r.i64(0, 0) == static_cast<int64_t>(batch.opens.size());
}

/// Why a batch wrote nothing: a batch that committed already (a retry after
/// a lost reply) is success; then, in a cluster, a deposed owner
/// (errc::not_owner); then a stale epoch or an envelope no longer PAID;
/// then an envelope expired by the database's clock (errc::expired).
outcome<done> explain_refused(PGconn* conn, const open_batch& batch,
                              bool clustered) {
  auto r = run(conn, "commit_opens",
               "SELECT epoch, status, remaining_fen, remaining_count,"
               " COALESCE(expires_at <= now(), false),"
               " COALESCE(hb_ms(expires_at), 0), hb_ms(now()) "
               "FROM envelopes_all WHERE id = $1",
               params{}.add(batch.envelope_id));
  if (!r.ok())
    return r.error;
  if (r.rows() == 0)
    return failure{errc::not_found, not_found_message(batch.envelope_id)};
  auto epoch = r.i64(0, 0);
  auto status = r.i64(0, 1);
  bool state_matches = status == static_cast<int>(batch.status)
                       && r.i64(0, 2) == batch.remaining_fen
                       && r.i64(0, 3) == batch.remaining_count;
  if (epoch == batch.epoch && state_matches && !batch.opens.empty()) {
    auto stored = stored_opens_match(conn, batch);
    if (!stored)
      return stored.error();
    if (*stored)
      return done{};
  }
  if (clustered) {
    auto why = deposed(conn, "commit_opens", batch.envelope_id);
    if (why.code != errc::none)
      return why;
  }
  if (epoch != batch.epoch)
    return failure{errc::stale_epoch, "epoch " + std::to_string(batch.epoch)
                                        + " is stale (current "
                                        + std::to_string(epoch) + ")"};
  if (status != static_cast<int>(envelope_status::paid))
    return failure{errc::stale_epoch,
                   std::string("envelope is no longer paid (status ")
                     + to_string(static_cast<envelope_status>(status)) + ")"};
  if (r.boolean(0, 4))
    return failure{errc::expired,
                   "envelope " + std::to_string(batch.envelope_id)
                     + " expired at " + r.text(0, 5)
                     + " ms by the database's clock (now " + r.text(0, 6)
                     + "); the opens were refused"};
  return failure{errc::internal,
                 "commit_opens: batch does not continue the stored remaining "
                 "amount and count of envelope "
                   + std::to_string(batch.envelope_id)};
}

/// The commit statements name the day partitions of their envelopes
/// (envelopes_p<yyyymmdd>, opens_p<yyyymmdd>) when the envelopes are all of
/// one day, which is always so but around midnight: a statement on the
/// partitioned parents is planned over every day partition (five or more),
/// and PostgreSQL then planned it afresh on most executions (a fifth of its
/// CPU in open loop, perf) or, with a generic plan, opened and locked every
/// partition each time. An envelope being committed is PAID, so its day is
/// hot (hb_detach_day moves no day that holds a PAID envelope). `day` 0
/// names the parents. Returns the text for `tmpl` with "@envelopes" and
/// "@opens" replaced; the pointer stays valid (run_prepared remembers
/// statements by it). One text per template and day: a few a day.
const char* day_statement(const char* tmpl, int32_t day) {
  static std::mutex mutex;
  static std::map<std::pair<const char*, int32_t>, std::string> texts;
  std::lock_guard<std::mutex> guard{mutex};
  auto [it, added] = texts.try_emplace({tmpl, day});
  if (added) {
    auto suffix = day == 0 ? std::string{} : "_p" + std::to_string(day);
    std::string text = tmpl;
    for (auto table : {"envelopes", "opens"}) {
      auto marker = std::string{"@"} + table;
      auto name = table + suffix;
      for (auto at = text.find(marker); at != std::string::npos;
           at = text.find(marker, at + name.size()))
        text.replace(at, marker.size(), name);
    }
    it->second = std::move(text);
  }
  return it->second.c_str();
}

/// The one day of all these envelopes, or 0 when they span days.
int32_t common_day(const std::vector<const open_batch*>& batches) {
  int32_t day = 0;
  for (auto* b : batches) {
    envelope_id_parts parts;
    if (!parse_envelope_id(b->envelope_id, parts))
      return 0;
    if (day != 0 && parts.day != day)
      return 0;
    day = parts.day;
  }
  return day;
}

/// Runs the commit statement `tmpl` on the day partitions of `batches`, or
/// on the parents when they span days or the day's partition is not there
/// under its name (42P01: a caller's bug, or a day moved to cold under a
/// stale id); the statement on the parents then says what is wrong.
reply run_on_their_day(PGconn* conn, const char* what, const char* tmpl,
                       const std::vector<const open_batch*>& batches,
                       const params& p) {
  auto day = common_day(batches);
  auto r = run_prepared(conn, what, day_statement(tmpl, day), p);
  if (day != 0 && !r.ok() && r.sqlstate == "42P01")
    r = run_prepared(conn, what, day_statement(tmpl, 0), p);
  return r;
}

/// The database's clock decides expiry (issue 23): a commit applies only to
/// an envelope not expired by now(), whatever the node's clock says (a node
/// whose clock stepped back would otherwise hand out shares of an envelope
/// that is due for its refund). No expiry (NULL) never expires. Written as
/// COALESCE so that the planner cannot take the expiry index for it (see
/// "status + 0" below).
#define HB_NOT_EXPIRED(column) "COALESCE(" column " > now(), true)"

// The two commit statements (run_commit, run_commit_many, warm_up);
// "@envelopes" and "@opens" name the day's partitions (day_statement).
// Each also queues the opens it inserted for the relay (HB_OWED_FROM_INS),
// so that a refused batch queues nothing.
// Each comes in two versions: without a cluster, and in a cluster with the
// owner_epoch fence (HB_OWNER_EPOCH_CURRENT), which adds no parameter.
#define HB_COMMIT_OPENS_SQL(guard)                                             \
  "WITH upd AS ("                                                              \
  " UPDATE @envelopes SET remaining_fen = $3, remaining_count = $4, status = $5" \
  " WHERE id = $1 AND epoch = $2 AND status + 0 = 2"                           \
  "  AND remaining_fen = $6 AND remaining_count = $7"                          \
  "  AND " HB_NOT_EXPIRED("expires_at") guard                                  \
  " RETURNING id, count - $7 AS base),"                                        \
  " ins AS ("                                                                  \
  " INSERT INTO @opens (envelope_id, user_id, amount_fen, seq, opened_at)"     \
  " SELECT upd.id, x.u, x.a, upd.base + x.i, to_timestamp(x.t / 1000.0)"       \
  " FROM upd, unnest($8::text[], $9::bigint[], $10::bigint[])"                 \
  "  WITH ORDINALITY AS x(u, a, t, i)"                                         \
  " RETURNING envelope_id, user_id),"                                          \
  HB_OWED_FROM_INS                                                             \
  "SELECT count(*) FROM upd"

#define HB_COMMIT_MANY_SQL(guard)                                              \
  "WITH b AS ("                                                                \
  " SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::int[],"  \
  "  $5::smallint[], $6::bigint[], $7::int[], $8::int[])"                      \
  "  AS b(id, epoch, rf, rc, st, before_fen, before_count, first)),"           \
  " upd AS ("                                                                  \
  " UPDATE @envelopes v SET remaining_fen = b.rf, remaining_count = b.rc,"     \
  "  status = b.st"                                                            \
  " FROM b"                                                                    \
  " WHERE v.id = b.id AND v.epoch = b.epoch AND v.status + 0 = 2"              \
  "  AND v.remaining_fen = b.before_fen AND v.remaining_count = b.before_count" \
  "  AND " HB_NOT_EXPIRED("v.expires_at") guard                                \
  " RETURNING v.id, v.count - b.before_count - b.first AS base),"              \
  " ins AS ("                                                                  \
  " INSERT INTO @opens (envelope_id, user_id, amount_fen, seq, opened_at)"     \
  " SELECT x.e, x.u, x.a, upd.base + x.i, to_timestamp(x.t / 1000.0)"          \
  " FROM unnest($9::bigint[], $10::text[], $11::bigint[], $12::bigint[])"      \
  "  WITH ORDINALITY AS x(e, u, a, t, i)"                                      \
  " JOIN upd ON upd.id = x.e"                                                  \
  " RETURNING envelope_id, user_id),"                                          \
  HB_OWED_FROM_INS                                                             \
  "SELECT id FROM upd"

constexpr const char* commit_opens_sql = HB_COMMIT_OPENS_SQL("");
constexpr const char* owned_commit_opens_sql =
  HB_COMMIT_OPENS_SQL(HB_OWNER_EPOCH_CURRENT("@envelopes"));
constexpr const char* commit_many_sql = HB_COMMIT_MANY_SQL("");
constexpr const char* owned_commit_many_sql =
  HB_COMMIT_MANY_SQL(HB_OWNER_EPOCH_CURRENT("v"));

/// What a batch's envelope must hold before it, the guard of both commit
/// statements: the batch's result plus its shares, summed from the same
/// opens that are inserted. The amount is -1 when the shares overflow: no
/// stored amount is negative (a CHECK), so the guard then refuses the batch.
struct before_batch {
  int64_t fen = 0;
  int64_t count = 0;
};

before_batch before_of(const open_batch& b) {
  before_batch out{b.remaining_fen, int64_t{b.remaining_count}};
  for (auto& o : b.opens)
    if (__builtin_add_overflow(out.fen, o.amount_fen, &out.fen)) {
      out.fen = -1;
      break;
    }
  out.count += static_cast<int64_t>(b.opens.size());
  return out;
}

/// "status + 0 = 2" in the commits (and the refund) keeps the planner off
/// the partial index envelopes_paid_expiry (status = 2), which it would
/// otherwise take for the cheapest way in whenever the statistics were
/// gathered while few envelopes were PAID: the statement then read every
/// PAID envelope of the day and joined each with every batch (256 x 8 400
/// in a benchmark, one second a statement). The envelopes are found by
/// primary key, whatever the statistics say.
///
/// The commit of one batch as one statement: the update matches only under
/// the current epoch of a PAID envelope whose stored remaining amount and
/// count are exactly the batch's result plus the batch's shares (before_of);
/// the inserts read from the update, so a refused batch writes nothing.
/// Counts 1 when the batch was applied.
///
/// Each open's seq is computed here, not sent: the envelope's count minus
/// the guarded remaining count, plus the open's position in the batch
/// (batch_problem makes the node's seqs the same numbers). A batch applies
/// only on the remaining count it was built on, and that count only falls,
/// so the seqs of an envelope's batches follow each other without gaps or
/// repeats; a unique index on (envelope, seq) checked what this statement
/// now guarantees, at ~0.65 µs of every open's insert.
reply run_commit(PGconn* conn, const open_batch& batch, bool clustered) {
  auto before = before_of(batch);
  params p;
  p.add(batch.envelope_id).add(batch.epoch).add(batch.remaining_fen);
  p.add(int64_t{batch.remaining_count});
  p.add(int64_t{static_cast<int>(batch.status)});
  p.add(before.fen).add(before.count);
  p.add(user_array(batch.opens));
  p.add(open_field_array(batch.opens, [](auto& o) { return o.amount_fen; }));
  p.add(open_field_array(batch.opens, [](auto& o) { return o.opened_at_ms; }));
  return run_on_their_day(conn, "commit_opens",
                          clustered ? owned_commit_opens_sql : commit_opens_sql,
                          {&batch}, p);
}

/// The batches of many envelopes as one statement (one plan, one round
/// trip): each envelope's update is guarded exactly as in run_commit, and
/// only the opens of envelopes whose update matched are inserted. Returns
/// the ids of the envelopes updated. The envelope ids must be distinct.
/// `first` is where each batch's opens start in the flat arrays: an open's
/// position in its batch is its ordinality there minus its batch's first,
/// and its seq follows from it as in run_commit.
///
/// The guard comes per envelope from before_of. Summed in SQL, the shares
/// had to be joined back to the envelopes, and the generic plan (ten rows
/// guessed per unnest) joined them by nested loop: every envelope against
/// every envelope's sums, 32 640 rows thrown away for 256 envelopes, most
/// of the statement's time.
reply run_commit_many(PGconn* conn, const std::vector<const open_batch*>& batches,
                      bool clustered) {
  std::vector<int64_t> ids, epochs, rf, rc, st, before_fen, before_count;
  std::vector<int64_t> first, e, a, t;
  std::vector<std::string> users;
  for (auto* b : batches) {
    ids.push_back(b->envelope_id);
    epochs.push_back(b->epoch);
    rf.push_back(b->remaining_fen);
    rc.push_back(b->remaining_count);
    st.push_back(static_cast<int>(b->status));
    first.push_back(static_cast<int64_t>(e.size()));
    for (auto& o : b->opens) {
      e.push_back(b->envelope_id);
      users.push_back(o.user);
      a.push_back(o.amount_fen);
      t.push_back(o.opened_at_ms);
    }
    auto before = before_of(*b);
    before_fen.push_back(before.fen);
    before_count.push_back(before.count);
  }
  params p;
  p.add(number_array(ids)).add(number_array(epochs)).add(number_array(rf));
  p.add(number_array(rc)).add(number_array(st));
  p.add(number_array(before_fen)).add(number_array(before_count));
  p.add(number_array(first));
  p.add(number_array(e)).add(text_array(users)).add(number_array(a));
  p.add(number_array(t));
  return run_on_their_day(conn, "commit_many",
                          clustered ? owned_commit_many_sql : commit_many_sql,
                          batches, p);
}

} // namespace

outcome<done> pg_store::commit_opens(const open_batch& batch) {
  auto problem = batch_problem(batch);
  if (!problem.empty())
    return failure{errc::internal, "commit_opens: " + problem};
  if (!ensure_connected())
    return unreachable(conn_);
  // One statement, one round trip, one transaction.
  bool clustered = identity_ != nullptr;
  auto r = run_commit(conn_, batch, clustered);
  if (!r.ok())
    return r.error;
  if (r.i64(0, 0) == 1)
    return done{};
  return explain_refused(conn_, batch, clustered);
}

bool pg_store::warm_up(int32_t day) {
  if (!ensure_connected())
    return false;
  // Envelope id 0 exists on no day: each statement updates and inserts
  // nothing, but is prepared and planned under the name a commit uses.
  params one;
  one.add(int64_t{0}).add(int64_t{0}).add(int64_t{0}).add(int64_t{0});
  one.add(int64_t{static_cast<int>(envelope_status::paid)});
  one.add(int64_t{0}).add(int64_t{0});
  for (int i = 0; i < 3; ++i)
    one.add("{}");
  params many;
  for (int i = 0; i < 12; ++i)
    many.add("{}");
  bool clustered = identity_ != nullptr;
  auto one_sql = clustered ? owned_commit_opens_sql : commit_opens_sql;
  auto many_sql = clustered ? owned_commit_many_sql : commit_many_sql;
  return run_prepared(conn_, "commit_opens", day_statement(one_sql, day), one)
           .ok()
         && run_prepared(conn_, "commit_many", day_statement(many_sql, day),
                         many)
              .ok();
}

outcome<std::vector<failure>>
pg_store::commit_many(const std::vector<open_batch>& batches) {
  std::vector<failure> out(batches.size(), failure{errc::none, {}});
  if (batches.size() == 1) {
    // Alone, a batch is its own transaction: one round trip, no BEGIN.
    auto res = commit_opens(batches[0]);
    if (!res && res.error().code == errc::unavailable && !connected())
      return res.error();
    out[0] = res ? failure{errc::none, {}} : res.error();
    return out;
  }
  if (!ensure_connected())
    return unreachable(conn_);
  // The well-formed batches of distinct envelopes go out as one statement,
  // which is its own transaction: one round trip, no BEGIN and COMMIT (two
  // more wake-ups of this thread and the backend per transaction on a busy
  // machine). A malformed batch is refused on its own (a caller's bug).
  std::vector<const open_batch*> good;
  std::vector<size_t> where;
  std::unordered_set<int64_t> seen;
  for (size_t i = 0; i < batches.size(); ++i) {
    auto problem = batch_problem(batches[i]);
    if (!problem.empty()) {
      out[i] = failure{errc::internal, "commit_opens: " + problem};
      continue;
    }
    if (!seen.insert(batches[i].envelope_id).second) {
      out[i] = failure{errc::internal,
                       "commit_many: two batches of envelope "
                         + std::to_string(batches[i].envelope_id)
                         + " in one transaction"};
      continue;
    }
    good.push_back(&batches[i]);
    where.push_back(i);
  }
  if (good.empty())
    return out;
  auto r = run_commit_many(conn_, good, identity_ != nullptr);
  if (r.ok()) {
    // Committed. A batch whose update did not match wrote nothing; find
    // out why (it may have been committed by an earlier try).
    std::unordered_set<int64_t> updated;
    for (int row = 0; row < r.rows(); ++row)
      updated.insert(r.i64(row, 0));
    for (size_t k = 0; k < good.size(); ++k) {
      if (updated.count(good[k]->envelope_id) > 0)
        continue;
      auto why = explain_refused(conn_, *good[k], identity_ != nullptr);
      out[where[k]] = why ? failure{errc::none, {}} : why.error();
    }
    return out;
  }
  if (r.error.code == errc::unavailable && !connected())
    return r.error;  // the connection is gone: the outcome is unknown
  // One batch broke the statement (nothing of it was written): commit each
  // good batch on its own so that the others are not held hostage by it.
  for (size_t i : where) {
    auto res = commit_opens(batches[i]);
    out[i] = res ? failure{errc::none, {}} : res.error();
  }
  return out;
}

} // namespace hb::persistence

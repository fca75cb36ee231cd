// pg_store: an envelope's own row from its creation to its activation by an
// owner (create, create many, activate, activate many, load). The writes of
// its opens are in pg_commits.cpp, its payment and refund in pg_payments.cpp.
#include "persistence/pg_store.hpp"

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "domain/envelope_id.hpp"
#include "persistence/pg_detail.hpp"

namespace hb::persistence {

using namespace detail;

namespace {

// -- Checks before a write -----------------------------------------------------

/// Problems in a batch that are bugs in the caller; the database would catch
/// most of them too, but with less helpful messages.

bool same_content(const envelope& a, const envelope& b) {
  return a.total_fen == b.total_fen && a.count == b.count && a.kind == b.kind
         && a.group == b.group;
}

// -- Explaining a refused write ------------------------------------------------

outcome<create_result> existing_envelope(PGconn* conn, const envelope& env) {
  // The key was seen before: this is a retry, or a reuse with new content.
  static constexpr const char* sql =
    "SELECT " HB_ENVELOPE_COLUMNS " FROM envelope_keys k"
    " JOIN envelopes_all e ON e.id = k.envelope_id"
    " WHERE k.sender = $1 AND k.idempotency_key = $2";
  auto r = run(conn, "create_envelope", sql,
               params{}.add(env.sender).add(env.idempotency_key));
  if (!r.ok())
    return r.error;
  if (r.rows() != 1)
    return failure{errc::internal,
                   "create_envelope: idempotency key neither new nor stored"};
  auto stored = read_envelope(r, 0);
  if (!stored)
    return stored.error();
  if (!same_content(*stored, env))
    return failure{errc::conflict,
                   "idempotency key already used for envelope "
                     + std::to_string(stored->id)
                     + " with a different total, count, kind or group"};
  return create_result{std::move(*stored), false};
}

} // namespace

// -- Envelope lifecycle --------------------------------------------------------

outcome<create_result> pg_store::create_envelope(const envelope& env) {
  if (env.id <= 0)
    return failure{errc::internal, "create_envelope: envelope id must be > 0"};
  if (!ensure_connected())
    return unreachable(conn_);
  // One statement: the key and the envelope commit together. Status,
  // remaining amount/count, payment and epoch of a new envelope follow from
  // the rest; the caller's values for them are not used.
  static constexpr const char* plain_sql =
    "WITH k AS ("
    " INSERT INTO envelope_keys (sender, idempotency_key, envelope_id)"
    " VALUES ($3, $6, $1) ON CONFLICT (sender, idempotency_key) DO NOTHING"
    " RETURNING envelope_id) "
    "INSERT INTO envelopes AS e (id, segment, sender, group_id, greeting,"
    " idempotency_key, kind, status, total_fen, count, remaining_fen,"
    " remaining_count, created_at) "
    "SELECT $1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $8, $9,"
    " COALESCE(to_timestamp(NULLIF($10::bigint, 0) / 1000.0), now()) FROM k "
    "RETURNING " HB_ENVELOPE_COLUMNS;
  // In a cluster, only while this node owns the segment at its incarnation
  // (else nothing, not even the key, is written), and the envelope keeps
  // the owner_epoch it was created under: its payment and opens apply only
  // while the segment has not changed hands since.
  static constexpr const char* owned_sql =
    "WITH so AS ("
    " SELECT owner_epoch FROM segment_owners"
    " WHERE segment = $2 AND owner = $11 AND owner_incarnation = $12),"
    " k AS ("
    " INSERT INTO envelope_keys (sender, idempotency_key, envelope_id)"
    " SELECT $3, $6, $1 FROM so ON CONFLICT (sender, idempotency_key) DO NOTHING"
    " RETURNING envelope_id) "
    "INSERT INTO envelopes AS e (id, segment, sender, group_id, greeting,"
    " idempotency_key, kind, status, total_fen, count, remaining_fen,"
    " remaining_count, created_at, owner_epoch) "
    "SELECT $1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $8, $9,"
    " COALESCE(to_timestamp(NULLIF($10::bigint, 0) / 1000.0), now()),"
    " so.owner_epoch FROM k, so "
    "RETURNING " HB_ENVELOPE_COLUMNS;
  auto insert_sql = identity_ ? owned_sql : plain_sql;
  params p;
  p.add(env.id).add(int64_t{segment_of(env.id)}).add(env.sender).add(env.group);
  p.add(env.greeting).add(env.idempotency_key);
  p.add(int64_t{static_cast<int>(env.kind)}).add(env.total_fen);
  p.add(int64_t{env.count}).add(env.created_at_ms);
  if (identity_)
    p.add(identity_->node).add(identity_->incarnation.load());
  auto r = run_prepared(conn_, "create_envelope", insert_sql, p);
  if (!r.ok() && no_partition(r)) {
    // The first envelope of a day nobody prepared: create it, try once more.
    envelope_id_parts parts;
    if (!parse_envelope_id(env.id, parts))
      return failure{errc::internal, "create_envelope: id "
                                       + std::to_string(env.id)
                                       + " names no valid day"};
    auto made = ensure_partitions(parts.day, parts.day);
    if (!made)
      return made.error();
    r = run_prepared(conn_, "create_envelope", insert_sql, p);
    if (!r.ok() && no_partition(r))
      r.error.message = "create_envelope: day " + std::to_string(parts.day)
                        + " is archived (cold); no new envelopes there";
  }
  if (!r.ok())
    return r.error;
  if (r.rows() == 1) {
    auto stored = read_envelope(r, 0);
    if (!stored)
      return stored.error();
    return create_result{std::move(*stored), true};
  }
  if (identity_) {
    // Not this node's segment (the router creates it under an id elsewhere),
    // or the key was seen before.
    auto owner = owner_check(conn_, "create_envelope", segment_of(env.id),
                             *identity_);
    if (owner.code != errc::none)
      return owner;
  }
  return existing_envelope(conn_, env);
}

outcome<std::vector<envelope>>
pg_store::create_envelopes(const std::vector<envelope>& envs) {
  if (!ensure_connected())
    return unreachable(conn_);
  std::vector<int64_t> ids, segments, kinds, totals, counts, created;
  std::vector<std::string> senders, groups, greetings, keys;
  for (auto& env : envs) {
    if (env.id <= 0)
      continue;
    ids.push_back(env.id);
    segments.push_back(segment_of(env.id));
    senders.push_back(env.sender);
    groups.push_back(env.group);
    greetings.push_back(env.greeting);
    keys.push_back(env.idempotency_key);
    kinds.push_back(static_cast<int>(env.kind));
    totals.push_back(env.total_fen);
    counts.push_back(env.count);
    created.push_back(env.created_at_ms);
  }
  std::vector<envelope> out;
  if (ids.empty())
    return out;
  // One statement, as create_envelope's: each key and its envelope commit
  // together. A key seen before (or twice here) inserts nothing for its
  // envelope; the caller creates that one alone, which finds the stored one.
  static constexpr const char* plain_sql =
    "WITH r AS ("
    " SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[],"
    "  $5::text[], $6::text[], $7::smallint[], $8::bigint[], $9::int[],"
    "  $10::bigint[]) AS r(id, segment, sender, group_id, greeting, key, kind,"
    "  total_fen, count, created_ms)),"
    " k AS ("
    " INSERT INTO envelope_keys (sender, idempotency_key, envelope_id)"
    " SELECT sender, key, id FROM r ORDER BY sender, key"
    " ON CONFLICT (sender, idempotency_key) DO NOTHING"
    " RETURNING envelope_id) "
    "INSERT INTO envelopes AS e (id, segment, sender, group_id, greeting,"
    " idempotency_key, kind, status, total_fen, count, remaining_fen,"
    " remaining_count, created_at) "
    "SELECT r.id, r.segment, r.sender, r.group_id, r.greeting, r.key, r.kind,"
    " 1, r.total_fen, r.count, r.total_fen, r.count,"
    " COALESCE(to_timestamp(NULLIF(r.created_ms, 0) / 1000.0), now())"
    " FROM r JOIN k ON k.envelope_id = r.id "
    "RETURNING " HB_ENVELOPE_COLUMNS;
  // In a cluster, as create_envelope's: an envelope of a segment this node
  // does not own at its incarnation is left out (alone, it is refused).
  static constexpr const char* owned_sql =
    "WITH r AS ("
    " SELECT r.*, so.owner_epoch FROM unnest($1::bigint[], $2::int[],"
    "  $3::text[], $4::text[], $5::text[], $6::text[], $7::smallint[],"
    "  $8::bigint[], $9::int[], $10::bigint[]) AS r(id, segment, sender,"
    "  group_id, greeting, key, kind, total_fen, count, created_ms)"
    " JOIN segment_owners so ON so.segment = r.segment AND so.owner = $11"
    "  AND so.owner_incarnation = $12),"
    " k AS ("
    " INSERT INTO envelope_keys (sender, idempotency_key, envelope_id)"
    " SELECT sender, key, id FROM r ORDER BY sender, key"
    " ON CONFLICT (sender, idempotency_key) DO NOTHING"
    " RETURNING envelope_id) "
    "INSERT INTO envelopes AS e (id, segment, sender, group_id, greeting,"
    " idempotency_key, kind, status, total_fen, count, remaining_fen,"
    " remaining_count, created_at, owner_epoch) "
    "SELECT r.id, r.segment, r.sender, r.group_id, r.greeting, r.key, r.kind,"
    " 1, r.total_fen, r.count, r.total_fen, r.count,"
    " COALESCE(to_timestamp(NULLIF(r.created_ms, 0) / 1000.0), now()),"
    " r.owner_epoch"
    " FROM r JOIN k ON k.envelope_id = r.id "
    "RETURNING " HB_ENVELOPE_COLUMNS;
  params p;
  p.add(number_array(ids)).add(number_array(segments)).add(text_array(senders));
  p.add(text_array(groups)).add(text_array(greetings)).add(text_array(keys));
  p.add(number_array(kinds)).add(number_array(totals)).add(number_array(counts));
  p.add(number_array(created));
  if (identity_)
    p.add(identity_->node).add(identity_->incarnation.load());
  auto r = run_prepared(conn_, "create_envelopes",
                        identity_ ? owned_sql : plain_sql, p);
  if (!r.ok())
    return r.error;
  for (int row = 0; row < r.rows(); ++row) {
    auto env = read_envelope(r, row);
    if (!env)
      return env.error();
    out.push_back(std::move(*env));
  }
  return out;
}

outcome<envelope_snapshot> pg_store::activate(int64_t envelope_id) {
  if (!ensure_connected())
    return unreachable(conn_);
  // In a cluster the bump also checks, in the same statement, that this
  // node owns the envelope's segment at its incarnation, and records the
  // segment's owner_epoch in the envelope: its writes apply only while the
  // segment stays at that owner_epoch.
  auto bump = [&](int64_t id) {
    if (!identity_)
      return run_prepared(conn_, "activate",
                          "UPDATE envelopes SET epoch = epoch + 1 WHERE id = $1",
                          params{}.add(id));
    static constexpr const char* owned_sql =
      "UPDATE envelopes e SET epoch = e.epoch + 1, owner_epoch = so.owner_epoch"
      " FROM segment_owners so"
      " WHERE e.id = $1 AND so.segment = $2 AND so.owner = $3"
      "  AND so.owner_incarnation = $4";
    return run_prepared(conn_, "activate", owned_sql,
                        params{}.add(id).add(int64_t{segment_of(id)})
                          .add(identity_->node)
                          .add(identity_->incarnation.load()));
  };
  // Twice at most: an envelope created between the bump and the read below
  // is activated properly on the second round.
  for (int attempt = 0; attempt < 2; ++attempt) {
    // The bump waits for any in-flight write of the old owner; the read that
    // follows is a new statement with a new snapshot, so it sees that write.
    transaction tx{conn_, "activate"};
    auto r = tx.begin();
    if (!r.ok())
      return r.error;
    r = bump(envelope_id);
    if (!r.ok())
      return r.error;
    bool bumped = r.affected() == 1;
    if (!bumped && identity_) {
      // Not bumped: not this node's segment, or not hot, or not there.
      auto owner = owner_check(conn_, "activate", segment_of(envelope_id),
                               *identity_);
      if (owner.code != errc::none)
        return owner;
    }
    auto snap = read_snapshot(conn_, "activate", envelope_id);
    if (!snap)
      return snap.error();
    r = tx.commit();
    if (!r.ok())
      return r.error;
    // Not hot: an archived envelope is read-only and keeps its epoch.
    if (bumped || snap->archived)
      return snap;
  }
  return failure{errc::internal, "activate: envelope "
                                   + std::to_string(envelope_id)
                                   + " neither hot nor archived"};
}

outcome<std::vector<envelope_snapshot>>
pg_store::activate_many(const std::vector<int64_t>& ids) {
  if (!ensure_connected())
    return unreachable(conn_);
  std::vector<envelope_snapshot> out;
  if (ids.empty())
    return out;
  // Rows are locked in id order, so two of these never deadlock with each
  // other; each bump waits for an in-flight write of the old owner, and the
  // reads that follow are new statements with new snapshots that see it.
  // Nobody writes a bumped envelope or its opens before the commit: a
  // commit updates the envelope row, which is locked here.
  static constexpr const char* bump_sql =
    "WITH l AS (SELECT id FROM envelopes WHERE id = ANY($1::bigint[])"
    " ORDER BY id FOR UPDATE) "
    "UPDATE envelopes e SET epoch = e.epoch + 1 FROM l WHERE e.id = l.id "
    "RETURNING e.id";
  // In a cluster, as activate's: only the envelopes of segments this node
  // owns at its incarnation, each taking its segment's owner_epoch.
  static constexpr const char* owned_bump_sql =
    "WITH l AS (SELECT e.id, so.owner_epoch FROM envelopes e"
    " JOIN segment_owners so ON so.segment = e.segment AND so.owner = $2"
    "  AND so.owner_incarnation = $3"
    " WHERE e.id = ANY($1::bigint[]) ORDER BY e.id FOR UPDATE OF e) "
    "UPDATE envelopes e SET epoch = e.epoch + 1, owner_epoch = l.owner_epoch"
    " FROM l WHERE e.id = l.id "
    "RETURNING e.id";
  static constexpr const char* envelopes_sql =
    "SELECT " HB_ENVELOPE_COLUMNS " FROM envelopes e"
    " WHERE e.id = ANY($1::bigint[]) ORDER BY e.id";
  static constexpr const char* opens_sql =
    "SELECT envelope_id, user_id, amount_fen, seq, " HB_MS("opened_at")
    " FROM opens WHERE envelope_id = ANY($1::bigint[])"
    " ORDER BY envelope_id, seq";
  transaction tx{conn_, "activate_many"};
  auto r = tx.begin();
  if (!r.ok())
    return r.error;
  auto bump_params = params{}.add(number_array(ids));
  if (identity_)
    bump_params.add(identity_->node).add(identity_->incarnation.load());
  r = run_prepared(conn_, "activate_many",
                   identity_ ? owned_bump_sql : bump_sql, bump_params);
  if (!r.ok())
    return r.error;
  std::vector<int64_t> bumped;
  for (int row = 0; row < r.rows(); ++row)
    bumped.push_back(r.i64(row, 0));
  if (bumped.empty())
    return out;
  auto keys = params{}.add(number_array(bumped));
  r = run_prepared(conn_, "activate_many", envelopes_sql, keys);
  if (!r.ok())
    return r.error;
  std::map<int64_t, size_t> at;
  for (int row = 0; row < r.rows(); ++row) {
    auto env = read_envelope(r, row);
    if (!env)
      return env.error();
    at[env->id] = out.size();
    out.push_back(envelope_snapshot{std::move(*env), {}, false});
  }
  r = run_prepared(conn_, "activate_many", opens_sql, keys);
  if (!r.ok())
    return r.error;
  for (int row = 0; row < r.rows(); ++row) {
    auto it = at.find(r.i64(row, 0));
    if (it == at.end())
      continue;
    out[it->second].opens.push_back(
      open_record{r.text(row, 1), r.i64(row, 2),
                  static_cast<int32_t>(r.i64(row, 3)), r.i64(row, 4)});
  }
  r = tx.commit();
  if (!r.ok())
    return r.error;
  return out;
}

outcome<envelope_snapshot> pg_store::load(int64_t envelope_id) {
  if (!ensure_connected())
    return unreachable(conn_);
  return read_snapshot(conn_, "load", envelope_id);
}

} // namespace hb::persistence

// pg_store: the SET's membership: which SET the database belongs to, the
// node leases and the segment owners (migration 6). Every time is the
// database's: a lease expires at its now() plus the lease, and a view says
// what its now() was, so that no two nodes' clocks are ever compared.
#include "persistence/pg_store.hpp"

#include <string>
#include <utility>
#include <vector>

#include "persistence/pg_detail.hpp"

namespace hb::persistence {

using namespace detail;

namespace {

constexpr const char* undefined_table = "42P01";

failure no_cluster_tables(const char* what) {
  return failure{errc::internal,
                 std::string(what)
                   + ": the database has no cluster tables (its schema is "
                     "older than migration 6: run migrate first)"};
}

reply with_hint(reply r, const char* what) {
  if (!r.ok() && r.sqlstate == undefined_table)
    r.error = no_cluster_tables(what);
  return r;
}

/// The whole view in one statement, hence one snapshot: row kind 0 is the
/// SET's name and the database's now() (the transaction's start, the same
/// now() a lease written in this transaction counts from), 1 a node lease,
/// 2 a segment owner, 3 a blocked segment; ordered by kind, then by node
/// name or segment. A lease row packs draining into the high bits of its
/// peer port and carries joined_at (in service since) as i5.
constexpr const char* view_sql =
  "SELECT 0 AS kind, COALESCE((SELECT set_name FROM cluster_identity), '') AS t1,"
  " '' AS t2, '' AS t3, '' AS t4, '' AS t5, hb_ms(now()) AS i1, 0::bigint AS i2,"
  " 0::bigint AS i3, 0::bigint AS i4, 0 AS k, 0::bigint AS i5 "
  "UNION ALL "
  "SELECT 1, node, zone, set_name, peer_host, gateway_host, incarnation,"
  " peer_port::bigint | (draining::int::bigint << 32), gateway_port,"
  " hb_ms(lease_expires_at), 0, hb_ms(joined_at) FROM node_leases "
  "UNION ALL "
  "SELECT 2, COALESCE(owner, ''), '', '', '', '', owner_incarnation,"
  " owner_epoch, 0, 0, segment, 0 FROM segment_owners "
  "UNION ALL "
  "SELECT 3, reason, '', '', '', '', (mode = 'manual')::int, 0, 0, 0, segment, 0"
  " FROM segment_states WHERE blocked "
  "ORDER BY kind, k, t1";

outcome<set_view> read_view(PGconn* conn, const char* what) {
  auto r = with_hint(run(conn, what, view_sql, params{}), what);
  if (!r.ok())
    return r.error;
  set_view v;
  for (int row = 0; row < r.rows(); ++row) {
    switch (r.i64(row, 0)) {
      case 0:
        v.set = r.text(row, 1);
        v.db_now_ms = r.i64(row, 6);
        break;
      case 1: {
        node_lease n;
        n.node = r.text(row, 1);
        n.zone = r.text(row, 2);
        n.set = r.text(row, 3);
        n.peer_host = r.text(row, 4);
        n.gateway_host = r.text(row, 5);
        n.incarnation = r.i64(row, 6);
        n.peer_port = static_cast<int32_t>(r.i64(row, 7) & 0xffffffff);
        n.draining = (r.i64(row, 7) >> 32) != 0;
        n.gateway_port = static_cast<int32_t>(r.i64(row, 8));
        n.expires_at_ms = r.i64(row, 9);
        n.since_ms = r.i64(row, 11);
        v.nodes.push_back(std::move(n));
        break;
      }
      case 2:
        v.owners.push_back(segment_owner{static_cast<int32_t>(r.i64(row, 10)),
                                         r.text(row, 1), r.i64(row, 6),
                                         r.i64(row, 7)});
        break;
      default:
        v.blocked.push_back(segment_state{static_cast<int32_t>(r.i64(row, 10)),
                                          true, r.i64(row, 6) == 1,
                                          r.text(row, 1)});
    }
  }
  return v;
}

/// A caller's bug in a join request, or "" when it is well formed.
std::string join_problem(const join_request& req) {
  if (req.me.node.empty())
    return "join: the node has no name";
  if (req.me.set.empty())
    return "join: node " + req.me.node + " names no SET";
  if (req.me.incarnation <= 0)
    return "join: node " + req.me.node + " has incarnation "
           + std::to_string(req.me.incarnation) + " (must be > 0)";
  if (req.lease_ms <= 0)
    return "join: lease_ms must be > 0";
  for (auto s : req.segments)
    if (s < 0 || s > 999)
      return "join: segment " + std::to_string(s) + " is outside 0..999";
  return {};
}

/// Why a renewal updated nothing: the row was replaced by another
/// incarnation, has expired, or was never written.
failure renew_refused(PGconn* conn, const renew_request& req) {
  auto r = run(conn, "renew",
               "SELECT incarnation, hb_ms(lease_expires_at), hb_ms(now())"
               " FROM node_leases WHERE node = $1",
               params{}.add(req.node));
  if (!r.ok())
    return r.error;
  auto who = "lease of node " + req.node + " incarnation "
             + std::to_string(req.incarnation);
  if (r.rows() == 0)
    return failure{errc::not_owner, who + " not found: the node never joined; join"};
  if (r.i64(0, 0) != req.incarnation)
    return failure{errc::not_owner, who + " was replaced by incarnation "
                                      + r.text(0, 0) + "; fence and rejoin"};
  return failure{errc::not_owner,
                 who + " expired " + std::to_string(r.i64(0, 2) - r.i64(0, 1))
                   + " ms ago (database clock); fence and rejoin"};
}

/// The owner rows a take or a give returns (segment, owner, incarnation,
/// owner_epoch), in the statement's order.
std::vector<segment_owner> owner_rows(const reply& r) {
  std::vector<segment_owner> out;
  for (int row = 0; row < r.rows(); ++row)
    out.push_back(segment_owner{static_cast<int32_t>(r.i64(row, 0)),
                                r.text(row, 1), r.i64(row, 2), r.i64(row, 3)});
  return out;
}

} // namespace

outcome<std::string> pg_store::cluster_set() {
  if (!ensure_connected())
    return unreachable(conn_);
  auto r = with_hint(run(conn_, "cluster_set",
                         "SELECT set_name FROM cluster_identity", params{}),
                     "cluster_set");
  if (!r.ok())
    return r.error;
  return r.rows() == 0 ? std::string{} : r.text(0, 0);
}

outcome<set_view> pg_store::join(const join_request& req) {
  auto problem = join_problem(req);
  if (!problem.empty())
    return failure{errc::invalid_argument, problem};
  if (!ensure_connected())
    return unreachable(conn_);
  transaction tx{conn_, "join"};
  auto r = tx.begin();
  if (!r.ok())
    return r.error;
  // The first node to join names the database's SET. A concurrent first
  // join waits on the row and inserts nothing; the read that follows is a
  // new statement that sees whichever committed.
  r = with_hint(run(conn_, "join",
                    "INSERT INTO cluster_identity (set_name) VALUES ($1)"
                    " ON CONFLICT (only_row) DO NOTHING",
                    params{}.add(req.me.set)),
                "join");
  if (!r.ok())
    return r.error;
  r = run(conn_, "join", "SELECT set_name FROM cluster_identity", params{});
  if (!r.ok())
    return r.error;
  if (r.rows() != 1)
    return failure{errc::internal, "join: cluster_identity has no row"};
  if (r.text(0, 0) != req.me.set)
    return failure{errc::conflict,
                   "node " + req.me.node + " of SET '" + req.me.set
                     + "' refused: this database belongs to SET '"
                     + r.text(0, 0) + "'"};
  // A new incarnation replaces the row; the same one again (a retry after a
  // lost reply) renews it; an older one (a late join of a process that has
  // been replaced) is refused.
  params p;
  p.add(req.me.node).add(req.me.incarnation).add(req.me.zone).add(req.me.set);
  p.add(req.me.peer_host).add(int64_t{req.me.peer_port});
  p.add(req.me.gateway_host).add(int64_t{req.me.gateway_port});
  p.add(int64_t{req.lease_ms});
  r = run(conn_, "join",
          "INSERT INTO node_leases AS l (node, incarnation, zone, set_name,"
          " peer_host, peer_port, gateway_host, gateway_port, lease_expires_at)"
          " VALUES ($1, $2, $3, $4, $5, $6, $7, $8,"
          "  now() + $9::int * interval '1 millisecond')"
          " ON CONFLICT (node) DO UPDATE SET incarnation = excluded.incarnation,"
          "  zone = excluded.zone, set_name = excluded.set_name,"
          "  peer_host = excluded.peer_host, peer_port = excluded.peer_port,"
          "  gateway_host = excluded.gateway_host,"
          "  gateway_port = excluded.gateway_port,"
          "  lease_expires_at = excluded.lease_expires_at,"
          "  joined_at = CASE WHEN l.incarnation = excluded.incarnation"
          "   THEN l.joined_at ELSE now() END,"
          "  draining = l.draining AND l.incarnation = excluded.incarnation"
          " WHERE l.incarnation <= excluded.incarnation"
          " RETURNING incarnation",
          p);
  if (!r.ok())
    return r.error;
  if (r.rows() == 0) {
    auto cur = run(conn_, "join",
                   "SELECT incarnation FROM node_leases WHERE node = $1",
                   params{}.add(req.me.node));
    auto newer = cur.ok() && cur.rows() == 1 ? cur.text(0, 0) : "?";
    return failure{errc::conflict,
                   "node " + req.me.node + " incarnation "
                     + std::to_string(req.me.incarnation)
                     + " refused: incarnation " + newer
                     + " has joined since; join with a higher incarnation"};
  }
  std::vector<int64_t> segments(req.segments.begin(), req.segments.end());
  r = run(conn_, "join",
          "INSERT INTO segment_owners (segment)"
          " SELECT DISTINCT s FROM unnest($1::int[]) AS s ORDER BY s"
          " ON CONFLICT (segment) DO NOTHING",
          params{}.add(number_array(segments)));
  if (!r.ok())
    return r.error;
  auto view = read_view(conn_, "join");
  if (!view)
    return view.error();
  r = tx.commit();
  if (!r.ok())
    return r.error;
  return view;
}

outcome<set_view> pg_store::renew(const renew_request& req) {
  if (req.lease_ms <= 0)
    return failure{errc::invalid_argument, "renew: lease_ms must be > 0"};
  if (!ensure_connected())
    return unreachable(conn_);
  transaction tx{conn_, "renew"};
  auto r = tx.begin();
  if (!r.ok())
    return r.error;
  // Only the same incarnation, and only while its lease is current: once it
  // has expired, a taker may already have deposed it.
  r = with_hint(run(conn_, "renew",
                    "UPDATE node_leases"
                    " SET lease_expires_at = now() + $3::int * interval '1 millisecond'"
                    " WHERE node = $1 AND incarnation = $2 AND lease_expires_at > now()",
                    params{}.add(req.node).add(req.incarnation)
                      .add(int64_t{req.lease_ms})),
                "renew");
  if (!r.ok())
    return r.error;
  if (r.affected() != 1)
    return renew_refused(conn_, req);
  auto view = read_view(conn_, "renew");
  if (!view)
    return view.error();
  r = tx.commit();
  if (!r.ok())
    return r.error;
  return view;
}

outcome<std::vector<segment_owner>> pg_store::take(const take_request& req) {
  std::vector<segment_owner> out;
  if (req.expected.empty())
    return out;
  if (!ensure_connected())
    return unreachable(conn_);
  std::vector<int64_t> segments, epochs;
  for (auto& row : req.expected) {
    segments.push_back(row.segment);
    epochs.push_back(row.owner_epoch);
  }
  // One statement: a compare-and-set per segment on the owner_epoch the
  // taker read, taken only while the current owner's lease (at the owner's
  // incarnation) is not current and the taker's own lease is, both on the
  // database clock. The rows are locked in segment order, so that two
  // takers never deadlock; a taker that waited for another re-checks the
  // row it won and finds the owner_epoch moved on.
  static constexpr const char* sql =
    "WITH req AS ("
    " SELECT DISTINCT ON (r.segment) r.segment, r.epoch"
    " FROM unnest($3::int[], $4::bigint[]) AS r(segment, epoch)"
    " ORDER BY r.segment),"
    " l AS ("
    " SELECT o.segment FROM segment_owners o JOIN req ON req.segment = o.segment"
    " ORDER BY o.segment FOR UPDATE OF o),"
    " upd AS ("
    " UPDATE segment_owners o SET owner = $1, owner_incarnation = $2,"
    "  owner_epoch = o.owner_epoch + 1, taken_at = now()"
    " FROM l, req"
    " WHERE o.segment = l.segment AND req.segment = l.segment"
    "  AND o.owner_epoch = req.epoch"
    "  AND NOT EXISTS (SELECT 1 FROM node_leases c WHERE c.node = o.owner"
    "   AND c.incarnation = o.owner_incarnation AND c.lease_expires_at > now())"
    "  AND EXISTS (SELECT 1 FROM node_leases me WHERE me.node = $1"
    "   AND me.incarnation = $2 AND me.lease_expires_at > now())"
    " RETURNING o.segment, o.owner, o.owner_incarnation, o.owner_epoch) "
    "SELECT segment, owner, owner_incarnation, owner_epoch FROM upd"
    " ORDER BY segment";
  params p;
  p.add(req.node).add(req.incarnation).add(number_array(segments));
  p.add(number_array(epochs));
  auto r = with_hint(run(conn_, "take", sql, p), "take");
  if (!r.ok())
    return r.error;
  return owner_rows(r);
}

outcome<std::vector<segment_owner>> pg_store::give(const give_request& req) {
  std::vector<segment_owner> out;
  if (req.moves.empty())
    return out;
  for (auto& m : req.moves)
    if (m.segment < 0 || m.segment > 999 || m.to.empty() || m.to == req.node
        || m.to_incarnation <= 0)
      return failure{errc::invalid_argument,
                     "give: segment " + std::to_string(m.segment) + " to '"
                       + m.to + "' incarnation "
                       + std::to_string(m.to_incarnation)
                       + " is not a move to another node"};
  if (!ensure_connected())
    return unreachable(conn_);
  std::vector<int64_t> segments, epochs, incarnations;
  std::vector<std::string> targets;
  for (auto& m : req.moves) {
    segments.push_back(m.segment);
    epochs.push_back(m.owner_epoch);
    targets.push_back(m.to);
    incarnations.push_back(m.to_incarnation);
  }
  // The commit point of a planned move, one statement: each segment moves
  // by compare-and-set on the owner_epoch the giver read, only while the
  // giver owns it at its incarnation with a current lease and the receiver
  // holds a current lease at the incarnation named. Rows locked in segment
  // order, as take's.
  static constexpr const char* sql =
    "WITH req AS ("
    " SELECT DISTINCT ON (r.segment) r.segment, r.epoch, r.node, r.inc"
    " FROM unnest($3::int[], $4::bigint[], $5::text[], $6::bigint[])"
    "  AS r(segment, epoch, node, inc)"
    " ORDER BY r.segment),"
    " l AS ("
    " SELECT o.segment FROM segment_owners o JOIN req ON req.segment = o.segment"
    " ORDER BY o.segment FOR UPDATE OF o),"
    " upd AS ("
    " UPDATE segment_owners o SET owner = req.node, owner_incarnation = req.inc,"
    "  owner_epoch = o.owner_epoch + 1, taken_at = now()"
    " FROM l, req"
    " WHERE o.segment = l.segment AND req.segment = l.segment"
    "  AND o.owner_epoch = req.epoch AND o.owner = $1 AND o.owner_incarnation = $2"
    "  AND EXISTS (SELECT 1 FROM node_leases me WHERE me.node = $1"
    "   AND me.incarnation = $2 AND me.lease_expires_at > now())"
    "  AND EXISTS (SELECT 1 FROM node_leases t WHERE t.node = req.node"
    "   AND t.incarnation = req.inc AND t.lease_expires_at > now())"
    " RETURNING o.segment, o.owner, o.owner_incarnation, o.owner_epoch) "
    "SELECT segment, owner, owner_incarnation, owner_epoch FROM upd"
    " ORDER BY segment";
  params p;
  p.add(req.node).add(req.incarnation).add(number_array(segments));
  p.add(number_array(epochs)).add(text_array(targets));
  p.add(number_array(incarnations));
  auto r = with_hint(run(conn_, "give", sql, p), "give");
  if (!r.ok())
    return r.error;
  return owner_rows(r);
}

outcome<set_view> pg_store::drain(const drain_request& req) {
  if (req.node.empty())
    return failure{errc::invalid_argument, "drain: no node named"};
  if (!ensure_connected())
    return unreachable(conn_);
  transaction tx{conn_, "drain"};
  auto r = tx.begin();
  if (!r.ok())
    return r.error;
  // Serving again restarts the settling time before rebalancing gives the
  // node its segments back.
  r = with_hint(run(conn_, "drain",
                    "UPDATE node_leases SET draining = $2,"
                    " joined_at = CASE WHEN draining AND NOT $2 THEN now()"
                    "  ELSE joined_at END"
                    " WHERE node = $1",
                    params{}.add(req.node).add(req.draining)),
                "drain");
  if (!r.ok())
    return r.error;
  if (r.affected() != 1)
    return failure{errc::not_found,
                   "drain: no node named '" + req.node
                     + "' has ever joined this SET"};
  auto view = read_view(conn_, "drain");
  if (!view)
    return view.error();
  r = tx.commit();
  if (!r.ok())
    return r.error;
  return view;
}

outcome<bool> pg_store::leave(const leave_request& req) {
  if (!ensure_connected())
    return unreachable(conn_);
  auto r = with_hint(run(conn_, "leave",
                         "UPDATE node_leases SET lease_expires_at = now()"
                         " WHERE node = $1 AND incarnation = $2"
                         "  AND lease_expires_at > now()",
                         params{}.add(req.node).add(req.incarnation)),
                     "leave");
  if (!r.ok())
    return r.error;
  return r.affected() == 1;
}

} // namespace hb::persistence

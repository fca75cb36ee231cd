#pragma once

// The cluster as data: SETs (id segments + their own database), node leases
// and segment owners as read from a SET's database, and the placement rule
// that says which node should own a segment. Pure: no CAF, no database.

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "domain/envelope_id.hpp"
#include "domain/segment.hpp"

namespace hb {

/// The segments [first, last] (both included).
struct segment_range {
  int32_t first = 0;
  int32_t last = 0;
};

/// A SET: a group of id segments, its own PostgreSQL database and the nodes
/// that serve it. Segment -> SET is static.
struct set_config {
  std::string name;
  std::vector<segment_range> segments;
  std::string database_url;
};

/// The segments of a SET, ascending.
std::vector<int32_t> segments_of(const set_config& set);

/// The index in `sets` of the SET that holds `segment`; -1 if none does.
int set_index_of(const std::vector<set_config>& sets, int32_t segment);

/// One row of a SET's node leases. `expires_at_ms` is on the database clock.
struct node_lease {
  std::string node;
  int64_t incarnation = 0;
  std::string zone;
  std::string set;
  std::string peer_host;
  int32_t peer_port = 0;
  std::string gateway_host;
  int32_t gateway_port = 0;
  int64_t expires_at_ms = 0;
  /// An operator (or a stopping node) asked it to hand over its segments:
  /// it is nobody's preferred owner and takes nothing.
  bool draining = false;
  /// In service since (database clock): the join of this incarnation, or
  /// the end of its last drain. A node gets segments back by rebalance only
  /// once it has served this long (no flapping).
  int64_t since_ms = 0;
};

/// One row of a SET's segment owners: who serves the segment, since which
/// compare-and-set (`owner_epoch`, +1 on every change). `owner` is empty
/// while nobody has taken the segment yet.
struct segment_owner {
  int32_t segment = 0;
  std::string owner;
  int64_t owner_incarnation = 0;
  int64_t owner_epoch = 0;
};

/// A SET as its database saw it in one transaction.
struct set_view {
  std::string set;
  int64_t db_now_ms = 0;               ///< the database clock at the read
  std::vector<node_lease> nodes;       ///< every node that ever joined
  std::vector<segment_owner> owners;   ///< every segment of the SET
  std::vector<segment_state> blocked;  ///< segments blocked in segment_states
};

/// Whether the lease is current at the view's database time.
bool lease_alive(const set_view& view, const node_lease& lease);

/// The lease of `node` in the view; null if it never joined.
const node_lease* find_lease(const set_view& view, const std::string& node);

/// Whether the segment's owner (by name and incarnation) holds a current
/// lease. An unowned segment has no live owner.
bool owner_alive(const set_view& view, const segment_owner& owner);

/// The preferred zone order of a segment: its primary zone is
/// zones[segment % 3], so that each zone is primary for a third of every
/// SET; then the other two, forwards (a, b, c) for half of a zone's
/// segments and backwards (a, c, b) for the other half, so that a lost
/// zone's segments split evenly over the two survivors.
std::vector<std::string> zone_order(int32_t segment,
                                    const std::vector<std::string>& zones);

/// Which live node of the view should own `segment`: the first zone in the
/// segment's order that has live nodes that are not draining, and within
/// that zone the node that ranks highest for the segment (rendezvous
/// hashing: a zone's segments spread evenly over its nodes, and a node that
/// comes or goes moves only its own share). Empty if no node of the SET is
/// live and serving.
std::optional<std::string>
preferred_owner(const set_view& view, int32_t segment,
                const std::vector<std::string>& zones);

/// What `me` should take now: every segment of the view whose owner is not
/// alive and whose preferred live owner is `me`. The rows are as read: a
/// take is a compare-and-set on their owner_epoch.
std::vector<segment_owner> segments_to_take(const set_view& view,
                                            const std::string& me,
                                            const std::vector<std::string>& zones);

/// A planned move of one segment from its live owner to another live node:
/// a compare-and-set on the owner_epoch read (segment_owners), done by the
/// giving owner once it has stopped serving the segment.
struct segment_handoff {
  int32_t segment = 0;
  int64_t owner_epoch = 0;  ///< as read: the compare-and-set's expectation
  std::string to;
  int64_t to_incarnation = 0;
};

/// What `me` (at `incarnation`, live) should hand over now, at most `max`
/// segments: each segment it owns whose preferred owner is another node,
/// when `me` is draining, or when that node has been in service for
/// `settle_ms` (database clock) -- so that a node that (re)joins gets its
/// preferred segments back, but not while it may still flap. Ordered by
/// segment.
std::vector<segment_handoff> segments_to_give(const set_view& view,
                                              const std::string& me,
                                              int64_t incarnation,
                                              const std::vector<std::string>& zones,
                                              int64_t settle_ms, size_t max);

/// Every move the placement wants in the view now (whatever the settling
/// time), for operators: what a rebalance would do.
std::vector<segment_handoff> planned_moves(const set_view& view,
                                           const std::vector<std::string>& zones);

/// For each zone: how many segments each surviving node of the view would
/// serve if every node of that zone were lost; a line for each node that
/// would then pass `capacity` segments (0: no limit, no lines), e.g.
/// "losing zone-a would leave set1-b with 334 segments (capacity 300)".
std::vector<std::string> zone_loss_warnings(const set_view& view,
                                            const std::vector<std::string>& zones,
                                            int32_t capacity);

/// The segments `me` (at `incarnation`) owns in the view.
std::vector<int32_t> owned_segments(const set_view& view, const std::string& me,
                                    int64_t incarnation);

/// A node joins its SET: its lease row is written with a new incarnation
/// (replacing an older one of the same name) and expires `lease_ms` after the
/// database's now(); the SET's owner rows are created if missing. Refused
/// if the database belongs to another SET.
struct join_request {
  node_lease me;  ///< expires_at_ms is ignored
  int32_t lease_ms = 0;
  std::vector<int32_t> segments;  ///< every segment of the SET
};

/// A node renews its lease (by name and incarnation) for `lease_ms` after
/// the database's now(). Refused (errc::not_owner) if the row has another
/// incarnation or has expired: the node must fence itself and rejoin.
struct renew_request {
  std::string node;
  int64_t incarnation = 0;
  int32_t lease_ms = 0;
};

/// A node takes segments by compare-and-set: each row as the node read it
/// (owner_epoch); a segment is taken only if its owner_epoch is unchanged,
/// its owner's lease is not current and the taker's own lease is.
struct take_request {
  std::string node;
  int64_t incarnation = 0;
  std::vector<segment_owner> expected;
};

/// The owner (`node` at `incarnation`) hands segments over, each by
/// compare-and-set on its owner_epoch, only while both its lease and the
/// receiver's (at the named incarnation) are current.
struct give_request {
  std::string node;
  int64_t incarnation = 0;
  std::vector<segment_handoff> moves;
};

/// Mark a node of the SET as draining (or serving again).
struct drain_request {
  std::string node;
  bool draining = true;
};

/// A stopping node ends its own lease now (by name and incarnation), so
/// that what it still owns is taken without waiting for the lease to run out.
struct leave_request {
  std::string node;
  int64_t incarnation = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, segment_handoff& x) {
  return f(x.segment, x.owner_epoch, x.to, x.to_incarnation);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, give_request& x) {
  return f(x.node, x.incarnation, x.moves);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, drain_request& x) {
  return f(x.node, x.draining);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, leave_request& x) {
  return f(x.node, x.incarnation);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, join_request& x) {
  return f(x.me, x.lease_ms, x.segments);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, renew_request& x) {
  return f(x.node, x.incarnation, x.lease_ms);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, take_request& x) {
  return f(x.node, x.incarnation, x.expected);
}

/// Who writes (shared by a node's store workers): a cluster node's name and current incarnation (0 until it
/// has joined, and again while it is fenced). Activations and creates check
/// in the same statement that this node owns the segment at this
/// incarnation; opens, payments and refunds check that the segment's
/// owner_epoch is still the one the envelope was activated under.
struct node_identity {
  std::string node;
  std::atomic<int64_t> incarnation{0};
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, segment_range& x) {
  return f(x.first, x.last);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_lease& x) {
  return f(x.node, x.incarnation, x.zone, x.set, x.peer_host, x.peer_port,
           x.gateway_host, x.gateway_port, x.expires_at_ms, x.draining,
           x.since_ms);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, segment_owner& x) {
  return f(x.segment, x.owner, x.owner_incarnation, x.owner_epoch);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, set_view& x) {
  return f(x.set, x.db_now_ms, x.nodes, x.owners, x.blocked);
}

} // namespace hb

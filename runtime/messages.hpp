#pragma once

// Every message type and atom of hongbao, registered with CAF in one block.
// Actor interfaces live in the x_actor.hpp headers; this file only names the
// vocabulary they share.

#include <cstdint>
#include <string>
#include <vector>

#include "caf/all.hpp"

#include "domain/cluster.hpp"
#include "domain/envelope.hpp"
#include "domain/ledger.hpp"
#include "domain/limits.hpp"
#include "domain/requests.hpp"
#include "domain/segment.hpp"

namespace hb {

// -- Named messages: a request of more than two plain fields is a struct ------

/// Lease `block` sequence numbers of one id segment for one day (yyyymmdd).
struct lease_request {
  int32_t segment = 0;
  int32_t day = 0;
  int64_t block = 0;
};

/// A page of the PAID envelopes expired at `now_ms`: at most `limit` ids
/// after the one with `after_id` in (expiry, id) order (0: from the oldest).
struct expiry_query {
  int64_t now_ms = 0;
  int32_t limit = 0;
  int64_t after_id = 0;
};

/// Reconcile the envelopes created since `since_ms` (0: all) as of `now_ms`,
/// repairing lost credits if `repair`.
struct reconcile_run {
  int64_t since_ms = 0;
  int64_t now_ms = 0;
  bool repair = false;
};

/// Credit a wallet from the external account, idempotent on `key`.
struct deposit_request {
  std::string user;
  int64_t amount_fen = 0;
  std::string key;
};

/// An envelope actor tells the registry it has been quiet: `handled` counts
/// the requests it served (the registry stops it only when that equals what
/// it forwarded); an unhealthy actor (one whose load failed) stops anyway.
struct idle_report {
  int64_t envelope_id = 0;
  uint64_t handled = 0;
  bool healthy = true;
  int64_t quiet_ms = 0;
};

/// Where one segment's envelopes are served, as the node's membership last
/// learnt it (the router's table).
struct segment_route {
  std::string owner;        ///< node name; empty while unknown
  int64_t owner_epoch = 0;  ///< only ever replaced by a higher one
  bool local = false;       ///< this node serves it now
  caf::actor router;        ///< the owner's router, when remote and linked
  std::string gateway;      ///< the owner's client gateway "host:port"
  /// This node is handing the segment over: requests wait (bounded) until
  /// the move ends, then go where the route then says.
  bool moving = false;
};

/// The router's view of the cluster: a route per segment, whether this
/// node is fenced, and where to send creates when it owns no segment.
struct route_table {
  bool fenced = false;
  std::vector<segment_route> segments;  ///< by segment, segment_count long
  std::vector<caf::actor> creators;     ///< routers of nodes that own segments
};

/// What two nodes tell each other when a link comes up.
struct peer_hello {
  std::string node;
  std::string set;
  std::string zone;
  int64_t incarnation = 0;
  caf::actor router;
  std::string gateway;  ///< "host:port" of its client gateway
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, segment_route& x) {
  return f(x.owner, x.owner_epoch, x.local, x.router, x.gateway, x.moving);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, route_table& x) {
  return f(x.fenced, x.segments, x.creators);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, peer_hello& x) {
  return f(x.node, x.set, x.zone, x.incarnation, x.router, x.gateway);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, lease_request& x) {
  return f(x.segment, x.day, x.block);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, expiry_query& x) {
  return f(x.now_ms, x.limit, x.after_id);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, reconcile_run& x) {
  return f(x.since_ms, x.now_ms, x.repair);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, deposit_request& x) {
  return f(x.user, x.amount_fen, x.key);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, idle_report& x) {
  return f(x.envelope_id, x.handled, x.healthy, x.quiet_ms);
}

// The operator's block / unblock of a segment (domain/requests.hpp) travels
// from the gateway through the router to segment health as it is.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, segment_request& x) {
  return f(x.segment, x.block, x.reason);
}

} // namespace hb

CAF_BEGIN_TYPE_ID_BLOCK(hongbao, caf::first_custom_type_id)

  CAF_ADD_TYPE_ID(hongbao, (hb::envelope))
  CAF_ADD_TYPE_ID(hongbao, (hb::open_record))
  CAF_ADD_TYPE_ID(hongbao, (hb::envelope_snapshot))
  CAF_ADD_TYPE_ID(hongbao, (hb::open_batch))
  CAF_ADD_TYPE_ID(hongbao, (hb::payment))
  CAF_ADD_TYPE_ID(hongbao, (std::vector<hb::open_batch>))
  CAF_ADD_TYPE_ID(hongbao, (std::vector<hb::payment>))
  CAF_ADD_TYPE_ID(hongbao, (std::vector<hb::envelope>))
  CAF_ADD_TYPE_ID(hongbao, (hb::create_request))
  CAF_ADD_TYPE_ID(hongbao, (hb::grab_result))
  CAF_ADD_TYPE_ID(hongbao, (hb::open_result))
  CAF_ADD_TYPE_ID(hongbao, (hb::envelope_detail))
  CAF_ADD_TYPE_ID(hongbao, (hb::history_query))
  CAF_ADD_TYPE_ID(hongbao, (hb::history_item))
  CAF_ADD_TYPE_ID(hongbao, (hb::history_page))
  CAF_ADD_TYPE_ID(hongbao, (hb::balance_info))
  CAF_ADD_TYPE_ID(hongbao, (hb::discrepancy))
  CAF_ADD_TYPE_ID(hongbao, (hb::reconcile_report))
  CAF_ADD_TYPE_ID(hongbao, (hb::relay_batch_result))
  CAF_ADD_TYPE_ID(hongbao, (hb::relay_stats))
  CAF_ADD_TYPE_ID(hongbao, (std::vector<int64_t>))
  CAF_ADD_TYPE_ID(hongbao, (std::vector<int32_t>))
  CAF_ADD_TYPE_ID(hongbao, (hb::segment_state))
  CAF_ADD_TYPE_ID(hongbao, (std::vector<hb::segment_state>))
  CAF_ADD_TYPE_ID(hongbao, (hb::metric))
  CAF_ADD_TYPE_ID(hongbao, (hb::node_stats))
  CAF_ADD_TYPE_ID(hongbao, (hb::lease_request))
  CAF_ADD_TYPE_ID(hongbao, (hb::expiry_query))
  CAF_ADD_TYPE_ID(hongbao, (hb::reconcile_run))
  CAF_ADD_TYPE_ID(hongbao, (hb::deposit_request))
  CAF_ADD_TYPE_ID(hongbao, (hb::idle_report))
  CAF_ADD_TYPE_ID(hongbao, (hb::segment_request))
  CAF_ADD_TYPE_ID(hongbao, (hb::node_lease))
  CAF_ADD_TYPE_ID(hongbao, (hb::segment_owner))
  CAF_ADD_TYPE_ID(hongbao, (std::vector<hb::segment_owner>))
  CAF_ADD_TYPE_ID(hongbao, (hb::set_view))
  CAF_ADD_TYPE_ID(hongbao, (hb::join_request))
  CAF_ADD_TYPE_ID(hongbao, (hb::renew_request))
  CAF_ADD_TYPE_ID(hongbao, (hb::take_request))
  CAF_ADD_TYPE_ID(hongbao, (hb::segment_handoff))
  CAF_ADD_TYPE_ID(hongbao, (std::vector<hb::segment_handoff>))
  CAF_ADD_TYPE_ID(hongbao, (hb::give_request))
  CAF_ADD_TYPE_ID(hongbao, (hb::drain_request))
  CAF_ADD_TYPE_ID(hongbao, (hb::leave_request))
  CAF_ADD_TYPE_ID(hongbao, (hb::route_table))
  CAF_ADD_TYPE_ID(hongbao, (hb::peer_hello))
  CAF_ADD_TYPE_ID(hongbao, (hb::cluster_info))
  CAF_ADD_TYPE_ID(hongbao, (hb::control_request))
  CAF_ADD_TYPE_ID(hongbao, (hb::control_result))
  CAF_ADD_TYPE_ID(hongbao, (hb::control_move))
  CAF_ADD_TYPE_ID(hongbao, (std::vector<hb::control_move>))

CAF_END_TYPE_ID_BLOCK(hongbao)

namespace hb {

// Client-facing requests, routed by envelope id.
using create_atom = caf::atom_constant<caf::atom("create")>;
using pay_atom = caf::atom_constant<caf::atom("pay")>;
using grab_atom = caf::atom_constant<caf::atom("grab")>;
using open_atom = caf::atom_constant<caf::atom("open")>;
using get_atom = caf::atom_constant<caf::atom("get")>;
using refund_atom = caf::atom_constant<caf::atom("refund")>;
using history_atom = caf::atom_constant<caf::atom("history")>;
using balance_atom = caf::atom_constant<caf::atom("balance")>;
using reconcile_atom = caf::atom_constant<caf::atom("reconcile")>;

// Store requests (store/store_actor.hpp: one interface per concern).
using db_create_atom = caf::atom_constant<caf::atom("db_create")>;
using db_create_many_atom = caf::atom_constant<caf::atom("db_creates")>;
using db_activate_atom = caf::atom_constant<caf::atom("db_activ")>;
using db_activate_many_atom = caf::atom_constant<caf::atom("db_activs")>;
using db_load_atom = caf::atom_constant<caf::atom("db_load")>;
using db_pay_atom = caf::atom_constant<caf::atom("db_pay")>;
using db_pay_many_atom = caf::atom_constant<caf::atom("db_pays")>;
using db_commit_atom = caf::atom_constant<caf::atom("db_commit")>;
using db_commit_many_atom = caf::atom_constant<caf::atom("db_commits")>;
using db_lease_atom = caf::atom_constant<caf::atom("db_lease")>;
using db_refund_atom = caf::atom_constant<caf::atom("db_refund")>;
using db_relay_atom = caf::atom_constant<caf::atom("db_relay")>;
using db_lag_atom = caf::atom_constant<caf::atom("db_lag")>;
using db_expired_atom = caf::atom_constant<caf::atom("db_expire")>;
using db_clock_atom = caf::atom_constant<caf::atom("db_clock")>;
using db_history_atom = caf::atom_constant<caf::atom("db_hist")>;
using db_balance_atom = caf::atom_constant<caf::atom("db_bal")>;
using db_reconcile_atom = caf::atom_constant<caf::atom("db_recon")>;
using db_partitions_atom = caf::atom_constant<caf::atom("db_parts")>;
using db_detach_atom = caf::atom_constant<caf::atom("db_detach")>;
using db_deposit_atom = caf::atom_constant<caf::atom("db_depos")>;
using db_segments_atom = caf::atom_constant<caf::atom("db_segs")>;
using db_segment_set_atom = caf::atom_constant<caf::atom("db_segset")>;
using db_probe_atom = caf::atom_constant<caf::atom("db_probe")>;
using db_join_atom = caf::atom_constant<caf::atom("db_join")>;
using db_renew_atom = caf::atom_constant<caf::atom("db_renew")>;
using db_take_atom = caf::atom_constant<caf::atom("db_take")>;
using db_give_atom = caf::atom_constant<caf::atom("db_give")>;
using db_drain_atom = caf::atom_constant<caf::atom("db_drain")>;
using db_leave_atom = caf::atom_constant<caf::atom("db_leave")>;

// Segment health.
using seg_report_atom = caf::atom_constant<caf::atom("seg_report")>;
using blocked_atom = caf::atom_constant<caf::atom("blocked")>;
using subscribe_atom = caf::atom_constant<caf::atom("subscribe")>;
using segment_atom = caf::atom_constant<caf::atom("segment")>;

// Internal housekeeping.
using next_id_atom = caf::atom_constant<caf::atom("next_id")>;
using idle_atom = caf::atom_constant<caf::atom("idle")>;
/// The registry's answer to an idle report when it keeps the actor live.
using keep_atom = caf::atom_constant<caf::atom("keep")>;
using idle_check_atom = caf::atom_constant<caf::atom("idle_chk")>;
/// Marks a grab or open sent straight to a live envelope actor by a gateway
/// connection that learned its handle (not counted for passivation).
using direct_atom = caf::atom_constant<caf::atom("direct")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
/// A gateway connection looks for requests past their due time.
using sweep_atom = caf::atom_constant<caf::atom("sweep")>;
using expire_atom = caf::atom_constant<caf::atom("expire")>;
using stop_atom = caf::atom_constant<caf::atom("stop")>;
// -- Cluster ------------------------------------------------------------------
/// Segment health: the blocks recorded in the SET's database by any node.
using segment_sync_atom = caf::atom_constant<caf::atom("seg_sync")>;
/// The segments this node owns now (id allocator, segment health).
using owned_atom = caf::atom_constant<caf::atom("owned")>;
/// The registry stops every envelope actor: the node lost its lease.
using fence_atom = caf::atom_constant<caf::atom("fence")>;
// A planned move of segments (registry: stop their actors; membership:
// rows moved to this node by their owner).
using handoff_atom = caf::atom_constant<caf::atom("handoff")>;
// Operators: drain a node, serve again, rebalance now.
using drain_atom = caf::atom_constant<caf::atom("drain")>;
using rebalance_atom = caf::atom_constant<caf::atom("rebalance")>;
/// The router's new route table.
using route_atom = caf::atom_constant<caf::atom("route")>;
/// Two nodes introduce themselves over a new link.
using hello_atom = caf::atom_constant<caf::atom("hello")>;
/// A node's latest view of its SET (asked by nodes of other SETs).
using view_atom = caf::atom_constant<caf::atom("view")>;
/// The membership's timer for links and the other SETs' views.
using sync_atom = caf::atom_constant<caf::atom("sync")>;
/// The router saw a stale route (NOT_OWNER, a dead owner): look again.
using refresh_atom = caf::atom_constant<caf::atom("refresh")>;
using stats_atom = caf::atom_constant<caf::atom("stats")>;

/// Registers all hongbao message types with an actor system config.
void add_hongbao_types(caf::actor_system_config& cfg);

} // namespace hb

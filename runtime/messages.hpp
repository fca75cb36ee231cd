#pragma once

// Every message type and atom of hongbao, registered with CAF in one block.
// Actor interfaces live in the x_actor.hpp headers; this file only names the
// vocabulary they share.

#include <cstdint>
#include <string>
#include <vector>

#include "caf/all.hpp"

#include "domain/envelope.hpp"
#include "domain/ledger.hpp"
#include "domain/limits.hpp"
#include "domain/requests.hpp"
#include "domain/segment.hpp"

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

// Store requests (store/store_actor.hpp).
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
using db_history_atom = caf::atom_constant<caf::atom("db_hist")>;
using db_balance_atom = caf::atom_constant<caf::atom("db_bal")>;
using db_reconcile_atom = caf::atom_constant<caf::atom("db_recon")>;
using db_partitions_atom = caf::atom_constant<caf::atom("db_parts")>;
using db_detach_atom = caf::atom_constant<caf::atom("db_detach")>;
using db_deposit_atom = caf::atom_constant<caf::atom("db_depos")>;
using db_segments_atom = caf::atom_constant<caf::atom("db_segs")>;
using db_segment_set_atom = caf::atom_constant<caf::atom("db_segset")>;
using db_probe_atom = caf::atom_constant<caf::atom("db_probe")>;

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
using stats_atom = caf::atom_constant<caf::atom("stats")>;

/// Registers all hongbao message types with an actor system config.
void add_hongbao_types(caf::actor_system_config& cfg);

} // namespace hb

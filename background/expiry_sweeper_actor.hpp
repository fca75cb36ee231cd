#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "caf/typed_actor.hpp"

#include "envelope/envelope_actor.hpp"
#include "runtime/metrics.hpp"
#include "store/store_actor.hpp"

namespace hb {

/// The durable expiry sweeper: finds PAID envelopes whose expiry has passed
/// (in the database, so it also finds those whose actor is not live or whose
/// node was down) and asks each envelope's owner to refund it. The refund is
/// always done by the envelope actor, which serialises it with opens: an
/// open racing the refund either wins entirely or loses entirely. Every
/// `clock_check_interval_ms` it also reads the database's clock (the one
/// that decides expiry): the skew goes to the metrics and the log, and
/// while it exceeds `clock_skew_max_ms` the sweeper expires nothing.
using expiry_sweeper_actor = caf::typed_actor<
  caf::reacts_to<tick_atom>,
  // Refunds started and completed so far.
  caf::replies_to<stats_atom>::with<int64_t, int64_t>>;

struct expiry_sweeper_settings : expiry_config {
  std::function<int64_t()> now_ms;
  std::shared_ptr<node_metrics> metrics;  // the skew is published here if set
};

/// This node's clock against the database's, from one reading of the
/// database's clock (`db_ms`) between `sent_ms` and `received_ms` (this
/// node's clock): `skew_ms` is the node's minus the database's (positive:
/// the node runs ahead) at the middle of the round trip, and the truth lies
/// within `uncertainty_ms` of it.
struct clock_skew {
  int64_t skew_ms = 0;
  int64_t uncertainty_ms = 0;
};

clock_skew measure_skew(int64_t sent_ms, int64_t received_ms, int64_t db_ms);

/// Whether the skew is, beyond its uncertainty, larger than `bound_ms`
/// either way: then the sweeper expires nothing. A node clock ahead would
/// refund envelopes early (the database refuses those refunds, one by
/// one); behind, it would refund late; either way the clocks need fixing.
bool skew_holds_expiry(const clock_skew& s, int64_t bound_ms);

/// `owner` receives (refund_atom, id) requests: the router in a node.
expiry_sweeper_actor spawn_expiry_sweeper(caf::actor_system& sys,
                                          maintenance_store store,
                                          envelope_requests owner,
                                          const expiry_sweeper_settings& cfg);

} // namespace hb

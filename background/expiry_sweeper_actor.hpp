#pragma once

#include <cstdint>
#include <functional>

#include "caf/typed_actor.hpp"

#include "envelope/envelope_actor.hpp"
#include "store/store_actor.hpp"

namespace hb {

/// The durable expiry sweeper: finds PAID envelopes whose expiry has passed
/// (in the database, so it also finds those whose actor is not live or whose
/// node was down) and asks each envelope's owner to refund it. The refund is
/// always done by the envelope actor, which serialises it with opens: an
/// open racing the refund either wins entirely or loses entirely.
using expiry_sweeper_actor = caf::typed_actor<
  caf::reacts_to<tick_atom>,
  // Refunds started and completed so far.
  caf::replies_to<stats_atom>::with<int64_t, int64_t>>;

struct expiry_sweeper_settings : expiry_config {
  std::function<int64_t()> now_ms;
};

/// `owner` receives (refund_atom, id) requests: the router in a node.
expiry_sweeper_actor spawn_expiry_sweeper(caf::actor_system& sys,
                                          maintenance_store store,
                                          envelope_requests owner,
                                          const expiry_sweeper_settings& cfg);

} // namespace hb

#pragma once

#include <cstdint>

#include "caf/typed_actor.hpp"

#include "envelope/envelope_actor.hpp"
#include "store/store_actor.hpp"

namespace hb {

/// The envelope registry: activates an envelope actor on first use
/// (virtual-actor style), forwards requests to it with `delegate` (the reply
/// goes straight back to the requester), passivates idle ones, and caps the
/// number of live envelope actors.
using registry_actor = envelope_requests::extend<
  // From an envelope actor: idle since its last request (for the last
  // argument's milliseconds); may stop if the registry forwarded exactly
  // this many requests to it. A healthy one (loaded, not failed) is kept
  // while the node has room (keep_live), see registry_settings.
  caf::reacts_to<idle_atom, idle_report>,
  // How many envelope actors are live.
  caf::replies_to<stats_atom>::with<uint64_t>,
  // Shutdown: stops every live envelope actor, then the registry.
  caf::reacts_to<stop_atom>,
  // The node lost its lease (cluster): stops every live envelope actor and
  // keeps running; later requests activate afresh under the new ownership.
  caf::reacts_to<fence_atom>,
  // A planned move (cluster): these segments are leaving this node. Their
  // live actors stop (each commits and answers what it had queued, then
  // stops; new opens meanwhile are answered retryable), requests for them are answered
  // retryable UNAVAILABLE meanwhile; the reply, how many actors stopped,
  // comes once all of them have. An empty list: no segment is moving.
  caf::replies_to<handoff_atom, std::vector<int32_t>>::with<int32_t>>;

struct registry_settings : registry_config {
  envelope_settings envelope;
};

registry_actor spawn_registry(caf::actor_system& sys, envelope_store store,
                              const registry_settings& cfg);

} // namespace hb

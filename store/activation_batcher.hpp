#pragma once

#include <cstdint>

#include "caf/typed_actor.hpp"

#include "runtime/messages.hpp"
#include "store/store_actor.hpp"

namespace hb {

/// Where envelope actors ask for their activation (epoch bump and load).
using activation_sink = caf::typed_actor<
  caf::replies_to<db_activate_atom, int64_t>::with<envelope_snapshot>>;

/// Activation batching, for a burst of grabs on cold envelopes (after a
/// restart or a failover every envelope is cold): while `inflight_max`
/// activations are running, arriving ones wait here and go out together as
/// one transaction (pg_store::activate_many) when a slot frees up. Alone, an
/// activation goes out at once, as a plain activate. An id the batch did
/// not bump (unknown, archived) and every id of a batch that failed is
/// activated alone, so that each gets its own answer; an id already waiting
/// or in the batch being built waits for the next one (one bump, one owner).
struct activation_batcher_settings : batcher_config {};

activation_sink spawn_activation_batcher(caf::actor_system& sys,
                                         envelope_store store,
                                         const activation_batcher_settings& cfg);

} // namespace hb

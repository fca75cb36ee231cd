#pragma once

#include <cstdint>

#include "caf/typed_actor.hpp"

#include "runtime/messages.hpp"
#include "store/store_actor.hpp"

namespace hb {

/// Where the router stores a new envelope: the stored envelope, and whether
/// this call created it (false: its key was used before).
using create_sink = caf::typed_actor<
  caf::replies_to<db_create_atom, envelope>::with<envelope, bool>>;

/// Create batching, for a burst of them (the first minute of a festival):
/// each create was a transaction and a WAL flush of its own. While
/// `inflight_max` create transactions are running, arriving creates wait
/// here and go out together (pg_store::create_envelopes) when a slot frees
/// up; alone, a create goes out at once, as a plain create_envelope. A
/// create the statement left out (its key was seen before) and every create
/// of a statement that failed (a day without partitions, a segment's
/// fault) is stored alone, so that each gets its own answer and each
/// segment its own health report; a second create with the key of one in
/// the batch being built waits for the next one.
struct create_batcher_settings : batcher_config {};

create_sink spawn_create_batcher(caf::actor_system& sys, envelope_store store,
                                 const create_batcher_settings& cfg);

} // namespace hb

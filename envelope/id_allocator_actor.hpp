#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "caf/typed_actor.hpp"

#include "runtime/messages.hpp"
#include "store/store_actor.hpp"

namespace hb {

/// Hands out envelope ids. Ids are unique cluster-wide because sequence
/// numbers come in blocks leased from the database per (segment, day); the
/// allocator spreads new envelopes round-robin over its segments.
using id_allocator_actor = caf::typed_actor<
  // The next envelope id.
  caf::replies_to<next_id_atom>::with<int64_t>,
  // From segment health: the segments now blocked (ids skip them).
  caf::reacts_to<blocked_atom, std::vector<int32_t>>,
  // In a cluster, from the membership: the segments this node owns now,
  // which replace the configured ones (none: next_id answers NOT_OWNER).
  caf::reacts_to<owned_atom, std::vector<int32_t>>>;

struct id_allocator_settings : ids_config {
  std::function<int64_t()> now_ms;
};

id_allocator_actor spawn_id_allocator(caf::actor_system& sys, segment_store store,
                                      const id_allocator_settings& cfg);

} // namespace hb

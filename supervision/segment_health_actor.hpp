#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "caf/typed_actor.hpp"

#include "runtime/messages.hpp"
#include "store/store_actor.hpp"

namespace hb {

/// Segment health (DB fault masking). Store workers report every call on a
/// segment's data; past a fault threshold within a sliding window the
/// segment is BLOCKED -- recorded durably, and announced to subscribers (the
/// id allocator stops handing out ids in it; the router answers requests for
/// its envelopes with a fast, retryable SEGMENT_UNAVAILABLE). Probes exercise
/// a blocked segment's storage periodically and unblock it once it works.
/// Operators block and unblock by hand; a manual block is never lifted by a
/// probe. In a cluster, blocks recorded in the SET's database by any node
/// are adopted (and lifted) when the membership passes them on, and only
/// the node that owns a segment probes it.
using segment_health_actor = caf::typed_actor<
  caf::reacts_to<seg_report_atom, int32_t, bool>,
  // Subscribers get (blocked_atom, blocked segments) now and on every change.
  caf::reacts_to<subscribe_atom, blocked_sink>,
  // All segments that are blocked, with mode and reason.
  caf::replies_to<segment_atom>::with<std::vector<segment_state>>,
  // Manual block (true) or unblock (false) with a reason.
  caf::replies_to<segment_atom, segment_request>::with<segment_state>,
  caf::reacts_to<tick_atom>>::extend_with<segment_sync_sink>;

struct segment_health_settings : segments_config {
  std::function<int64_t()> now_ms;
};

segment_health_actor spawn_segment_health(caf::actor_system& sys,
                                          segment_store store,
                                          const segment_health_settings& cfg);

} // namespace hb

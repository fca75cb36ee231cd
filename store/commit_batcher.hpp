#pragma once

#include <cstdint>
#include <memory>

#include "caf/typed_actor.hpp"

#include "runtime/messages.hpp"
#include "runtime/metrics.hpp"
#include "store/store_actor.hpp"

namespace hb {

/// Where envelope actors send their open batches.
using commit_sink = caf::typed_actor<
  caf::replies_to<db_commit_atom, open_batch>::with<caf::ok_atom>>;

/// Group commit across envelopes, the second level after the envelope
/// actor's own: while `inflight_max` transactions are running, arriving
/// batches of other envelopes wait here and go out together as one
/// transaction (one WAL flush) when a slot frees up. Each batch keeps its
/// own epoch guard and its own answer.
struct commit_batcher_settings : commit_batcher_config {
  std::shared_ptr<node_metrics> metrics;
};

commit_sink spawn_commit_batcher(caf::actor_system& sys, envelope_store store,
                                 const commit_batcher_settings& cfg);

} // namespace hb

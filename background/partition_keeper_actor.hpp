#pragma once

#include <cstdint>
#include <functional>

#include "caf/typed_actor.hpp"

#include "runtime/messages.hpp"
#include "store/store_actor.hpp"

namespace hb {

/// Keeps the day partitions in shape: creates those of the coming days ahead
/// of time and moves days older than the hot window into cold storage (the
/// cold schema), where detail and history queries still find them.
using partition_keeper_actor = caf::typed_actor<caf::reacts_to<tick_atom>>;

struct partition_keeper_settings : partitions_config {
  std::function<int64_t()> now_ms;
};

partition_keeper_actor
spawn_partition_keeper(caf::actor_system& sys, maintenance_store store,
                       const partition_keeper_settings& cfg);

/// The yyyymmdd day `delta` days from the day of `unix_ms` (UTC).
int32_t day_offset(int64_t unix_ms, int32_t delta);

} // namespace hb

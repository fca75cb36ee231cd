#pragma once

#include <cstdint>
#include <functional>

#include "caf/typed_actor.hpp"

#include "runtime/messages.hpp"
#include "store/store_actor.hpp"

namespace hb {

/// Reconciliation (对账): proves that every committed open was credited
/// exactly once, every expired envelope refunded once, every wallet equals
/// its ledger entries and all money adds up; repairs only what is safe (a
/// lost credit is re-enqueued for the relay). Runs periodically and on
/// demand; one run at a time, concurrent requests share the running one.
using reconciler_actor = caf::typed_actor<
  caf::reacts_to<tick_atom>,
  // On demand: reconcile envelopes created since the given Unix ms (0: all).
  caf::replies_to<reconcile_atom, int64_t>::with<reconcile_report>>;

struct reconciler_settings : reconcile_config {
  std::function<int64_t()> now_ms;
};

reconciler_actor spawn_reconciler(caf::actor_system& sys, ledger_store store,
                                  const reconciler_settings& cfg);

} // namespace hb

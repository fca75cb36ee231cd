#pragma once

// The simulated store: an actor with exactly the typed interface of the
// production store (store/store_actor.hpp) on top of the simulated database
// (sim_db.hpp). It is an ordinary scheduled actor, so the test coordinator
// runs it like every other actor.
//
// Each call is planned when it arrives, with the run's one random generator:
// it applies after a latency (a pool of connections: calls apply in any
// order, each one atomically at one instant), and may fail (per segment),
// fail during an outage, apply and answer with an error (connection lost
// after commit), apply and never answer, never apply and never answer, or
// apply or answer seconds late (latency spike). Calls without an answer
// time out at the caller: their outcome is unknown to it.

#include "caf/typed_actor.hpp"

#include "store/store_actor.hpp"
#include "sim/sim_world.hpp"

namespace hb::sim {

using sim_apply_atom = caf::atom_constant<caf::atom("sim_apply")>;

/// The store interface plus the store's own timer message.
using sim_store_actor
  = store_actor::extend<caf::reacts_to<sim_apply_atom, uint64_t>>;

/// Probability that a committed open batch is followed by a kill of the
/// envelope actor that sent it, before the reply reaches it (the failpoint
/// crash_after_commit of the real-process tests, drawn from the seed).
constexpr double crash_after_commit_prob = 0.05;

/// Probability that an envelope actor is killed right after it sent a
/// write (commit, pay, refund), and that write applies late.
constexpr double crash_in_flight_prob = 0.03;

/// Spawns a store on the world's database. With `reports_health`, calls on
/// a segment's data are reported to segment health (world::segment_report),
/// as the node's hot-path store does.
sim_store_actor spawn_sim_store(caf::actor_system& sys, world& w,
                                bool reports_health);

} // namespace hb::sim

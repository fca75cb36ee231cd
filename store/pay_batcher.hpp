#pragma once

#include <cstdint>

#include "caf/typed_actor.hpp"

#include "runtime/messages.hpp"
#include "store/store_actor.hpp"

namespace hb {

/// Where envelope actors send their payment (CREATED -> PAID).
using payment_sink
  = caf::typed_actor<caf::replies_to<db_pay_atom, payment>::with<caf::ok_atom>>;

/// Payment batching, for a burst of them (the first minute of a festival):
/// every payment moves money from the external account into its segment's
/// escrow, and each held both rows until its commit was flushed, so
/// payments went one flush at a time. While `inflight_max` payment
/// transactions are running, arriving payments wait here and go out
/// together (pg_store::confirm_payments) when a slot frees up. Alone, a
/// payment goes out at once, as a plain confirm_payment, and so does one
/// from a wallet (it may be refused for the wallet's balance). A payment the
/// batch did not confirm (not CREATED under its epoch: a repeat, a stale
/// owner) and every payment of a batch that failed is confirmed alone, so
/// that each gets its own answer; a second payment for an envelope already
/// in the batch being built waits for the next one.
struct pay_batcher_settings : batcher_config {};

payment_sink spawn_pay_batcher(caf::actor_system& sys, envelope_store store,
                               const pay_batcher_settings& cfg);

} // namespace hb

#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "caf/typed_actor.hpp"

#include "config/services.hpp"
#include "domain/limits.hpp"
#include "store/activation_batcher.hpp"
#include "store/commit_batcher.hpp"
#include "runtime/messages.hpp"
#include "runtime/metrics.hpp"
#include "store/pay_batcher.hpp"
#include "store/store_actor.hpp"

namespace hb {

/// Requests about one existing envelope. The router, the registry and the
/// envelope actor itself all speak this interface; the first two forward by
/// envelope id, the last answers.
using envelope_requests = caf::typed_actor<
  // 抢: a cheap check from memory; reserves nothing.
  caf::replies_to<grab_atom, int64_t, std::string>::with<grab_result>,
  // 拆: decides and durably commits a share, then replies. Idempotent per
  // user. The last argument is the client's deadline (Unix ms, 0: none): an
  // open still queued when it passes is dropped with DEADLINE_EXCEEDED.
  caf::replies_to<open_atom, int64_t, std::string, int64_t>::with<open_result>,
  // 发: the payment system confirms the sender paid (payment txn id); true:
  // from the sender's wallet instead.
  caf::replies_to<pay_atom, int64_t, std::string, bool>::with<envelope>,
  // The envelope and its committed shares.
  caf::replies_to<get_atom, int64_t>::with<envelope_detail>,
  // Refund the envelope if it has expired (the sweeper asks); replies the
  // amount refunded now or before, 0 when nothing is due.
  caf::replies_to<refund_atom, int64_t>::with<int64_t>>;

/// One live envelope. It loads itself from the store on start (bumping the
/// fencing epoch), serialises every request through its mailbox, and writes
/// opens in group commits: while one write is in flight, further opens queue
/// and go out together in the next write.
using envelope_actor = envelope_requests::extend<
  // Grab and open sent straight from a gateway connection that learned
  // this actor's handle from an earlier answer (skipping router and
  // registry). Not counted for passivation: if the actor has stopped, the
  // connection hears so and goes through the router again.
  caf::replies_to<grab_atom, int64_t, std::string, direct_atom>::with<grab_result>,
  caf::replies_to<open_atom, int64_t, std::string, int64_t, direct_atom>::with<open_result>,
  // From the registry: the envelope has been idle and may stop now, or it
  // stays live (the node has room) and checks again after an idle period.
  caf::reacts_to<stop_atom>,
  caf::reacts_to<keep_atom>,
  // From the registry: the envelope's segment moves to another node. It
  // commits what it has queued (one more batch), answers it, refuses new
  // opens (retryable) and stops.
  caf::reacts_to<handoff_atom>,
  // From the registry at its cap: report idle now if quiet for at least
  // this many milliseconds (and nothing is in flight).
  caf::reacts_to<idle_check_atom, int64_t>,
  // Internal timers: idle check and expiry.
  caf::reacts_to<tick_atom>,
  caf::reacts_to<expire_atom>>;

/// Where an idle envelope actor reports that it may passivate: the registry
/// compares the count of requests it forwarded with the count the actor
/// handled, so that no request can be in transit when the actor stops.
using passivation_sink = caf::typed_actor<
  caf::reacts_to<idle_atom, idle_report>>;

struct envelope_settings : envelope_config {
  /// From the node's envelope limits ([limits]).
  int64_t share_max_fen = envelope_limits{}.share_max_fen;
  int64_t expiry_ms = envelope_limits{}.expiry_ms;
  /// Wall clock in Unix milliseconds; a seam for tests and the simulation.
  std::function<int64_t()> now_ms;
  /// Seed of the share generator; 0 draws one from std::random_device.
  uint64_t rng_seed = 0;
  /// Node-wide counters; may be null (unit tests).
  std::shared_ptr<node_metrics> metrics;
  /// Where open batches go (cross-envelope group commit); null: the store.
  commit_sink committer;
  /// Where the activation goes (batched with other envelopes'); null: the
  /// store.
  activation_sink activator;
  /// Where the payment goes (batched with other envelopes'); null: the
  /// store.
  payment_sink payer;
};

/// Current wall time in Unix milliseconds, shifted by the environment
/// variable HONGBAO_CLOCK_OFFSET_MS when set (real-process tests only).
int64_t system_now_ms();

envelope_actor spawn_envelope(caf::actor_system& sys, int64_t envelope_id,
                              envelope_store store, passivation_sink registry,
                              const envelope_settings& cfg);

} // namespace hb

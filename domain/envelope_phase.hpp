#pragma once

#include <cstdint>

#include "domain/envelope.hpp"

namespace hb {

/// Where one live copy of an envelope is in its life: the envelope actor
/// holds exactly one phase and moves between them only through
/// `phase_transition_allowed`. A phase combines the stored status with the
/// one write that may be in flight (payment, open batch or refund; they
/// exclude each other):
///
///   loading --> failed ----------------------------------------+
///      |                                                       |
///      +--> archived (read-only, any status) ------------------+
///      +--> unpaid <--> paying --> paid <--> writing --> exhausted
///      |                            |                          |
///      |                            +<-> refunding --> refunded
///      +--> paid / exhausted / expired / refunded (as stored)  |
///   every phase but loading --> stopped <----------------------+
///
/// The expiry is a fact of the clock, not an event: a PAID envelope past
/// its expiry stays `paid` (opens are refused by the clock) until its
/// refund write starts.
enum class envelope_phase : uint8_t {
  loading = 1,    ///< The activation is in flight; requests wait.
  failed = 2,     ///< The activation failed; requests get its error.
  archived = 3,   ///< Loaded from cold storage: read-only, never written.
  unpaid = 4,     ///< CREATED; nothing in flight.
  paying = 5,     ///< CREATED; the payment write is in flight.
  paid = 6,       ///< PAID; no write in flight.
  writing = 7,    ///< PAID; an open batch is in flight.
  refunding = 8,  ///< PAID and past its expiry; the refund is in flight.
  exhausted = 9,  ///< EXHAUSTED: every share is taken.
  expired = 10,   ///< EXPIRED as stored (the store refunds PAID at once).
  refunded = 11,  ///< REFUNDED: the remainder went back to the sender.
  stopped = 12,   ///< The actor quit (passivated, shut down or failed).
};

const char* to_string(envelope_phase x);

/// Returns whether a live envelope may move from `from` to `to`.
bool phase_transition_allowed(envelope_phase from, envelope_phase to);

/// The phase without a write in flight for a stored status.
envelope_phase resting_phase(envelope_status status);

/// The phase right after loading a snapshot.
envelope_phase loaded_phase(const envelope_snapshot& snap);

/// Whether a write (payment, open batch or refund) is in flight.
bool write_in_flight(envelope_phase x);

} // namespace hb

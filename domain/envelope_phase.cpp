#include "domain/envelope_phase.hpp"

#include "domain/assert.hpp"

namespace hb {

const char* to_string(envelope_phase x) {
  switch (x) {
    case envelope_phase::loading: return "loading";
    case envelope_phase::failed: return "failed";
    case envelope_phase::archived: return "archived";
    case envelope_phase::unpaid: return "unpaid";
    case envelope_phase::paying: return "paying";
    case envelope_phase::paid: return "paid";
    case envelope_phase::writing: return "writing";
    case envelope_phase::refunding: return "refunding";
    case envelope_phase::exhausted: return "exhausted";
    case envelope_phase::expired: return "expired";
    case envelope_phase::refunded: return "refunded";
    case envelope_phase::stopped: return "stopped";
  }
  return "unknown";
}

bool phase_transition_allowed(envelope_phase from, envelope_phase to) {
  using p = envelope_phase;
  switch (from) {
    case p::loading:
      return to == p::failed || to == p::archived || to == p::unpaid
             || to == p::paid || to == p::exhausted || to == p::expired
             || to == p::refunded;
    case p::unpaid: return to == p::paying || to == p::stopped;
    // A payment the database refused leaves the envelope unpaid.
    case p::paying:
      return to == p::paid || to == p::unpaid || to == p::stopped;
    case p::paid:
      return to == p::writing || to == p::refunding || to == p::stopped;
    case p::writing:
      return to == p::paid || to == p::exhausted || to == p::stopped;
    // A refund the database refused (not expired by its clock) changed
    // nothing: the envelope is paid as before.
    case p::refunding:
      return to == p::refunded || to == p::paid || to == p::stopped;
    case p::failed:
    case p::archived:
    case p::exhausted:
    case p::expired:
    case p::refunded: return to == p::stopped;
    case p::stopped: return false;
  }
  return false;
}

envelope_phase resting_phase(envelope_status status) {
  switch (status) {
    case envelope_status::created: return envelope_phase::unpaid;
    case envelope_status::paid: return envelope_phase::paid;
    case envelope_status::exhausted: return envelope_phase::exhausted;
    case envelope_status::expired: return envelope_phase::expired;
    case envelope_status::refunded: return envelope_phase::refunded;
  }
  HB_ASSERT(false, "no phase for envelope status {}", static_cast<int>(status));
  return envelope_phase::failed;
}

envelope_phase loaded_phase(const envelope_snapshot& snap) {
  return snap.archived ? envelope_phase::archived
                       : resting_phase(snap.env.status);
}

bool write_in_flight(envelope_phase x) {
  return x == envelope_phase::paying || x == envelope_phase::writing
         || x == envelope_phase::refunding;
}

} // namespace hb

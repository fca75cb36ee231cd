#include "domain/errc.hpp"

namespace hb {

const char* to_string(errc x) {
  switch (x) {
    case errc::none: return "none";
    case errc::invalid_argument: return "invalid_argument";
    case errc::limit_exceeded: return "limit_exceeded";
    case errc::not_found: return "not_found";
    case errc::not_paid: return "not_paid";
    case errc::payment_mismatch: return "payment_mismatch";
    case errc::exhausted: return "exhausted";
    case errc::expired: return "expired";
    case errc::busy: return "busy";
    case errc::unavailable: return "unavailable";
    case errc::stale_epoch: return "stale_epoch";
    case errc::unauthenticated: return "unauthenticated";
    case errc::frame_too_large: return "frame_too_large";
    case errc::malformed: return "malformed";
    case errc::internal: return "internal";
    case errc::conflict: return "conflict";
    case errc::insufficient_funds: return "insufficient_funds";
    case errc::segment_unavailable: return "segment_unavailable";
    case errc::deadline_exceeded: return "deadline_exceeded";
    case errc::not_owner: return "not_owner";
    case errc::shares_pending: return "shares_pending";
    case errc::not_expired: return "not_expired";
  }
  return "unknown";
}

bool retryable(errc x) {
  // A stale epoch is retryable for the client: the next attempt reaches the
  // current owner of the envelope. Pending shares are decided within one
  // write: the retry hears the share, 手慢了, or pending again.
  return x == errc::busy || x == errc::unavailable || x == errc::stale_epoch
         || x == errc::segment_unavailable || x == errc::deadline_exceeded
         || x == errc::not_owner || x == errc::shares_pending;
}

} // namespace hb

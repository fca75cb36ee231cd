#pragma once

#include <cstdint>
#include <string>
#include <utility>

namespace hb {

/// Every operating error the service can report, modelled on `caf::sec`.
/// The numbers are part of the client protocol (proto/hongbao.proto mirrors
/// them in `ErrorCode`): never renumber, only append.
enum class errc : uint8_t {
  none = 0,
  invalid_argument = 1,  ///< A request field is missing or out of range.
  limit_exceeded = 2,    ///< Amount or count outside the configured limits.
  not_found = 3,         ///< No envelope with this id.
  not_paid = 4,          ///< The envelope was created but not paid yet.
  payment_mismatch = 5,  ///< Already paid with a different payment txn.
  exhausted = 6,         ///< All shares are taken (手慢了).
  expired = 7,           ///< The envelope expired before this open.
  busy = 8,              ///< Overloaded right now; retry later.
  unavailable = 9,       ///< The database or a segment is unreachable; retry.
  stale_epoch = 10,      ///< A write carried an outdated fencing epoch.
  unauthenticated = 11,  ///< The connection has not authenticated.
  frame_too_large = 12,  ///< A client frame exceeded the size limit.
  malformed = 13,        ///< A client frame was not a valid message.
  internal = 14,         ///< A bug or an unexpected database answer.
  conflict = 15,         ///< Idempotency key reused with different content.
  insufficient_funds = 16,  ///< The wallet holds less than the amount.
  segment_unavailable = 17, ///< The envelope's segment is blocked; retry later.
  deadline_exceeded = 18,   ///< The client's deadline passed before execution.
  not_owner = 19,           ///< This node does not (or no longer) own the segment; retry.
  shares_pending = 20,      ///< The last shares are reserved by a write in flight; retry.
  not_expired = 21,         ///< Refund refused: not expired by the database's clock.
};

/// Returns the stable snake_case name of `x`, e.g. "exhausted".
const char* to_string(errc x);

/// Returns whether a client may retry the same request unchanged.
bool retryable(errc x);

/// An operating error with a message for people. `hint` says where to go
/// instead, for errc::not_owner: "host:port" of the owner's client gateway
/// when the node knows it, else empty.
struct failure {
  errc code = errc::internal;
  std::string message;
  std::string hint = {};  // initialised so that {code, message} stays quiet
};

/// A minimal `expected`: either a value or a `failure`. The domain and
/// persistence layers use it so that they need no CAF.
template <class T>
class outcome {
public:
  outcome(T value) : ok_(true), value_(std::move(value)) {}
  outcome(failure f) : ok_(false), failure_(std::move(f)) {}
  outcome(errc code, std::string message)
    : ok_(false), failure_{code, std::move(message)} {}

  explicit operator bool() const { return ok_; }
  bool ok() const { return ok_; }
  T& value() { return value_; }
  const T& value() const { return value_; }
  T& operator*() { return value_; }
  const T& operator*() const { return value_; }
  T* operator->() { return &value_; }
  const T* operator->() const { return &value_; }
  const failure& error() const { return failure_; }

private:
  bool ok_;
  T value_{};
  failure failure_;
};

/// The value of an outcome that carries no data.
struct done {};

} // namespace hb

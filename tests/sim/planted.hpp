#pragma once

// Bugs planted on purpose in the simulated store, to prove that the
// simulation catches them (tests/sim/CMakeLists.txt builds one variant of
// the simulator per bug and expects its sweep to fail). Bugs planted in the
// production actors live in actors/planted_bugs.hpp.

namespace hb::sim::planted {

#ifdef HB_PLANTED_BUG_STORE_STALE_EPOCH
/// The database forgets the fencing check: writes with any epoch apply.
constexpr bool store_ignores_epoch = true;
#else
constexpr bool store_ignores_epoch = false;
#endif

#ifdef HB_PLANTED_BUG_RELAY_CREDIT_BEFORE_MARK
/// The relay credits wallets without idempotency keys and marks the outbox
/// rows in a second transaction that a fault can lose.
constexpr bool relay_marks_after_credit = true;
#else
constexpr bool relay_marks_after_credit = false;
#endif

/// The name of the bug planted into this build, or nullptr.
inline const char* planted_bug() {
#if defined(HB_PLANTED_BUG_STORE_STALE_EPOCH)
  return "store_stale_epoch";
#elif defined(HB_PLANTED_BUG_RELAY_CREDIT_BEFORE_MARK)
  return "relay_credit_before_mark";
#elif defined(HB_PLANTED_BUG_SKIP_EPOCH_BUMP)
  return "skip_epoch_bump";
#elif defined(HB_PLANTED_BUG_REPLY_ON_FAILED_WRITE)
  return "reply_on_failed_write";
#else
  return nullptr;
#endif
}

} // namespace hb::sim::planted

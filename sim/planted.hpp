#pragma once

// Bugs planted on purpose in the simulated store, to prove that the
// simulation catches them (tests/sim/CMakeLists.txt builds one variant of
// the simulator per bug and expects its sweep to fail). Bugs planted in the
// production actors live in runtime/planted_bugs.hpp.

namespace hb::sim::planted {

#ifdef HB_PLANTED_BUG_STORE_STALE_EPOCH
/// The database forgets the fencing check: writes with any epoch apply.
constexpr bool store_ignores_epoch = true;
#else
constexpr bool store_ignores_epoch = false;
#endif

#ifdef HB_PLANTED_BUG_RELAY_CREDIT_BEFORE_MARK
/// The relay credits wallets without idempotency keys and marks what it took
/// (opens transferred, outbox rows delivered) in a second transaction that a
/// fault can lose: the opens stay committed and the next batch credits them
/// again.
constexpr bool relay_marks_after_credit = true;
#else
constexpr bool relay_marks_after_credit = false;
#endif

} // namespace hb::sim::planted

#pragma once

// Bugs planted on purpose. Only the simulator's planted-bug variants
// (tests/sim/CMakeLists.txt) define these switches, to prove that the
// deterministic simulation catches each bug within its first 500 seeds.
// Production builds define none of them: every hook below is then the
// correct behaviour or expands to nothing.

#include "runtime/errors.hpp"
#include "runtime/messages.hpp"

namespace hb::planted {

// HB_PLANTED_BUG_SKIP_EPOCH_BUMP: the envelope actor activates by loading
// the envelope without bumping its fencing epoch, so a late write of an
// older owner still carries the current epoch and is accepted.
#ifdef HB_PLANTED_BUG_SKIP_EPOCH_BUMP
using activate_atom = db_load_atom;
constexpr bool activation_bumps = false;
#else
using activate_atom = db_activate_atom;
constexpr bool activation_bumps = true;
#endif

} // namespace hb::planted

// HB_PLANTED_BUG_REPLY_ON_FAILED_WRITE: an open batch whose write failed
// with an unknown outcome is taken as committed, and its shares are
// answered although they may never have reached the database.
#ifdef HB_PLANTED_BUG_REPLY_ON_FAILED_WRITE
#define HB_PLANTED_COMMIT_FAILED(self, err, on_committed)                      \
  if (::hb::to_failure(err).code == ::hb::errc::unavailable) {                 \
    on_committed(self);                                                        \
    return;                                                                    \
  }
#else
#define HB_PLANTED_COMMIT_FAILED(self, err, on_committed)
#endif

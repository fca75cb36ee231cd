#pragma once

// Bugs planted on purpose, as runtime switches (FoundationDB's
// SimBugInjector): hongbao-sim --plant NAME turns one on before the node
// starts, to prove that the deterministic simulation catches it within its
// first 500 seeds (the sim.planted.* tests). Nothing else turns them on; in
// a production process every switch stays off and a hook costs the read of
// one global bool. The hooks name the bug at the use site:
// `if (bugs::on(bug::skip_epoch_bump)) ...`.

#include <cstddef>
#include <string>

namespace hb {

enum class bug {
  /// The simulated database forgets the fencing check: writes with any
  /// epoch apply.
  store_stale_epoch,
  /// The relay credits wallets without idempotency keys and marks what it
  /// took (opens transferred, outbox rows delivered) in a second
  /// transaction that a fault can lose: the opens stay committed and the
  /// next batch credits them again (simulated store).
  relay_credit_before_mark,
  /// The envelope actor activates by loading the envelope without bumping
  /// its fencing epoch, so a late write of an older owner still carries the
  /// current epoch and is accepted.
  skip_epoch_bump,
  /// An open batch whose write failed with an unknown outcome is taken as
  /// committed, and its shares are answered although they may never have
  /// reached the database.
  reply_on_failed_write,
  /// The envelope actor answers 手慢了 (EXHAUSTED) as soon as committed,
  /// in-flight and queued shares cover the count, although the shares of a
  /// write in flight go back if that write fails (the rule before
  /// SHARES_PENDING).
  exhausted_while_pending,
};

constexpr size_t bug_count = 5;

namespace bugs {

/// The switches, all off unless the simulator turned one on at start.
extern bool switched_on[bug_count];

/// Whether the bug is planted in this process.
inline bool on(bug b) {
  return switched_on[static_cast<size_t>(b)];
}

/// Plants the bug; call before any actor starts (the switches are plain
/// globals, read by every thread afterwards).
void plant(bug b);

/// The bug's name on the command line, e.g. "skip-epoch-bump".
const char* to_string(bug b);

/// Reads a bug's name; false if there is no such bug.
bool parse(const std::string& name, bug& out);

} // namespace bugs

} // namespace hb

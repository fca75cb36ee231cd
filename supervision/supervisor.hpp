#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "caf/actor.hpp"
#include "caf/expected.hpp"
#include "caf/typed_actor.hpp"

#include "config/services.hpp"
#include "runtime/messages.hpp"

namespace hb {

/// One supervised child: how to start it, how to stop it, and which other
/// children it holds a handle of (they are restarted before it, and it is
/// restarted whenever one of them is, so that it never keeps a dead handle).
struct child_spec {
  std::string name;
  /// Spawns the child; an error at the first start aborts the node's start.
  std::function<caf::expected<caf::actor>()> start;
  /// Stops the child at shutdown (default: an exit with user_shutdown).
  std::function<void(const caf::actor&)> stop;
  std::vector<std::string> depends_on;
};

/// Restart intensity: more than `restarts_max` restarts within `window_ms`
/// escalate -- the supervisor stops everything and exits with an error, and
/// whoever supervises the node (systemd, the operator) takes over.
struct supervisor_settings : supervisor_config {};

/// Reported by the supervisor.
struct supervisor_stats {
  uint64_t restarts = 0;
  std::vector<std::string> children;
};

/// The node supervisor: starts the children in the given order, monitors
/// them, restarts a child that fails (with its dependents) within the
/// restart intensity, escalates beyond it, and on `stop_atom` stops the
/// children in reverse order.
using supervisor_actor = caf::typed_actor<
  caf::reacts_to<stop_atom>,
  // Restarts so far.
  caf::replies_to<stats_atom>::with<uint64_t>,
  // The current handle of a child by name (tests, diagnostics).
  caf::replies_to<get_atom, std::string>::with<caf::actor>>;

/// Starts every child synchronously, in order, before returning: a child
/// that fails to start is an error and nothing stays running.
caf::expected<supervisor_actor>
spawn_supervisor(caf::actor_system& sys, std::vector<child_spec> children,
                 const supervisor_settings& cfg);

} // namespace hb

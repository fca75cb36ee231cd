#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "caf/typed_actor.hpp"

#include "admin/admin_messages.hpp"
#include "background/reconciler_actor.hpp"
#include "cluster/membership_actor.hpp"
#include "cluster/router_actor.hpp"
#include "config/services.hpp"
#include "store/store_actor.hpp"

namespace hb {

/// The operator's entry to a node (docs/operations.md, "The console"),
/// published on its own port for hongbao-console. Every request carries the
/// operator secret (compared in constant time; a wrong one is refused,
/// logged without it and audited, and changes nothing). The command's words
/// are parsed again here against the command table (admin/commands.hpp)
/// and answered with plain data (admin_reply). Actions (block, unblock,
/// reconcile, drain, undrain, rebalance) go to the audit log with their
/// result. Commands about another
/// node (`stats NODE`), another SET's envelope or segment are forwarded to
/// an admin actor of that node or SET, found by name in that node's CAF
/// registry over the existing node link, once; a forwarded request is never
/// forwarded again. Runs on a thread of its own (detached): the audit log
/// writes to a file.
using admin_actor = caf::typed_actor<
  caf::replies_to<admin_atom, admin_request>::with<admin_reply>>;

struct admin_settings : admin_config {
  std::string node_name;
  std::string zone;
  /// The cluster's config (SET map, this node's SET, zones); disabled for
  /// a node on its own.
  cluster_config cluster;
  /// A node on its own: the segments it serves ([ids].segments).
  std::vector<int32_t> segments;
  router_actor router;          ///< stats of this node
  segment_admin health;         ///< block, unblock, the blocked segments
  reconciler_actor reconciler;  ///< reconcile on demand
  envelope_store store;         ///< an envelope's state (a read, no epoch bump)
  membership_actor membership;  ///< the cluster view; null outside a cluster
  std::function<int64_t()> now_ms;
};

/// Spawns the admin actor; fails if the audit log cannot be opened.
caf::expected<admin_actor> spawn_admin(caf::actor_system& sys,
                                       const admin_settings& cfg);

/// Whether two secrets are equal, in time that depends only on their
/// lengths (never on where they differ).
bool secrets_equal(const std::string& a, const std::string& b);

} // namespace hb

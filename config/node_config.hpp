#pragma once

#include <string>

#include "config/services.hpp"
#include "domain/errc.hpp"
#include "domain/limits.hpp"

namespace hb {

/// Everything a node reads from its TOML file (see config/node.example.toml,
/// which documents every key): one struct per service, each section of the
/// file read into its struct.
struct node_config {
  node_basics_config node;       // [node]
  cluster_config cluster;        // [cluster], [[cluster.sets]]
  gateway_config gateway;        // [gateway]
  database_config database;      // [database]
  envelope_limits limits;        // [limits]
  envelope_config envelope;      // [envelope]
  registry_config registry;      // [envelope]
  router_config router;          // (no keys)
  relay_config relay;            // [relay]
  expiry_config expiry;          // [expiry]
  reconcile_config reconcile;    // [reconcile]
  partitions_config partitions;  // [partitions]
  segments_config segments;      // [segments]
  supervisor_config supervisor;  // [supervisor]
  ids_config ids;                // [ids]
  log_config log;                // [log]
  admin_config admin;            // [admin]
};

/// Parses a TOML file into a node config; every problem is reported with the
/// key and what is wrong.
outcome<node_config> load_node_config(const std::string& path);

/// Same, from TOML text (used by tests). Problems of the [cluster] part
/// are all reported, one per line of the message; any other section stops
/// at its first wrong key.
outcome<node_config> parse_node_config(const std::string& toml_text);

/// A database URL fit to print: the password of a libpq connection string
/// ("password=...") or URI ("postgresql://user:secret@host") is replaced
/// by "***".
std::string redacted_database_url(const std::string& url);

} // namespace hb

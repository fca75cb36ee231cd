#pragma once

// The commands of `hongbao`, the command-line client of a node. Every
// command connects, authenticates, sends one request and prints the answer:
// short lines for people, or exactly one JSON object with --json. Each
// returns the program's exit status: 0 ok, 1 the service answered with an
// error (or `reconcile` found discrepancies), 2 usage error, 3 connection or
// protocol error.
//
// The response timeout (--timeout-ms) is also sent as the request's
// timeout_ms, so that the node drops a request this client gave up on.

#include <string>

#include "domain/requests.hpp"

namespace hb::client::cli {

constexpr int exit_ok = 0;
constexpr int exit_service_error = 1;
constexpr int exit_usage = 2;
constexpr int exit_transport = 3;

struct global_options {
  std::string server = "127.0.0.1:7700";
  std::string token;
  bool json = false;
  int timeout_ms = 10000;
  bool timeout_given = false;  ///< reconcile waits longer unless given
};

/// `kind_text` is "random" or "equal"; an empty idempotency key gets a new
/// random one, printed so that the user can retry safely.
int cmd_create(const global_options& opts, create_request req,
               const std::string& kind_text);
int cmd_pay(const global_options& opts, pay_request req);
int cmd_grab(const global_options& opts, grab_request req);
int cmd_open(const global_options& opts, open_request req);
int cmd_show(const global_options& opts, get_request req);
int cmd_history(const global_options& opts, history_query req);
int cmd_balance(const global_options& opts, balance_request req);
/// `since_text`: Unix ms, an ISO date or time, or an age like 24h; empty: all.
int cmd_reconcile(const global_options& opts, const std::string& since_text);
int cmd_stats(const global_options& opts);
/// What `hongbao stats` prints: the metrics, the blocked segments and, on a
/// cluster node, its cluster (nodes with zone, SET, state and lease left;
/// per SET the owners with their segment counts and ranges, and the
/// blocked segments).
std::string stats_text(const node_stats& st);
/// The fields `hongbao stats --json` prints after "ok": node, metrics,
/// segments and cluster ({"enabled": false} for a node on its own).
std::string stats_json(const node_stats& st);
int cmd_segment(const global_options& opts, segment_request req);
/// drain / undrain / rebalance. `wait_ms` > 0 (drain): then follows the
/// node's segments in the cluster view until it owns none, printing
/// progress, for at most that long.
int cmd_cluster(const global_options& opts, control_request req, int wait_ms);

/// Prints a usage error as the JSON failure object (for --json; the text
/// form is the argument parser's); returns exit_usage.
int usage_error(const std::string& message);

} // namespace hb::client::cli

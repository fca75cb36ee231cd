#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "domain/envelope.hpp"
#include "domain/errc.hpp"
#include "domain/ledger.hpp"
#include "domain/limits.hpp"
#include "domain/cluster.hpp"
#include "domain/segment.hpp"

namespace hb {

// -- What a client asks (the plain form of proto/hongbao.proto's Request) ---

struct auth_request {
  std::string token;
};

struct pay_request {
  int64_t envelope_id = 0;
  std::string payment_txn;
  /// Pay from the sender's wallet instead of the external payment system.
  bool from_wallet = false;
};

struct grab_request {
  int64_t envelope_id = 0;
  std::string user;
};

struct open_request {
  int64_t envelope_id = 0;
  std::string user;
};

struct get_request {
  int64_t envelope_id = 0;
};

struct balance_request {
  std::string user;
};

/// Runs the reconciliation (对账) over envelopes created since `since_ms`
/// (0: all) and repairs what can be repaired safely.
struct reconcile_request {
  int64_t since_ms = 0;
};

/// Operators: a snapshot of the node's metrics and segment states.
struct stats_request {};

/// Operators: block (true) or unblock (false) an id segment by hand.
struct segment_request {
  int32_t segment = 0;
  bool block = true;
  std::string reason;
};

/// Operators: steer a cluster's placement (docs/cluster.md).
enum class control_action : uint8_t {
  drain = 1,      ///< the node hands every segment over and takes none
  undrain = 2,    ///< it serves again; rebalancing gives its segments back
  rebalance = 3,  ///< the moves placement wants now; start them unless dry_run
};

inline const char* to_string(control_action x) {
  switch (x) {
    case control_action::drain:
      return "drain";
    case control_action::undrain:
      return "undrain";
    case control_action::rebalance:
      return "rebalance";
  }
  return "unknown";
}

struct control_request {
  control_action action = control_action::rebalance;
  std::string node;  ///< drain and undrain: which node
  bool dry_run = false;
};

/// One planned or started move of a segment.
struct control_move {
  int32_t segment = 0;
  std::string from;
  std::string to;
};

struct control_result {
  std::string node;          ///< drain, undrain: the node
  bool draining = false;     ///< drain, undrain: its state now
  int32_t owned = 0;         ///< drain, undrain: segments it owns now
  std::vector<control_move> moves;  ///< rebalance: what moves (or would)
  std::string message;       ///< for people
};

using request_body
  = std::variant<auth_request, create_request, pay_request, grab_request,
                 open_request, get_request, history_query, balance_request,
                 reconcile_request, stats_request, segment_request,
                 control_request>;

struct client_request {
  uint64_t request_id = 0;
  request_body body;
  /// The client gives up after this many ms (0: no deadline). A request
  /// still waiting in the node when it passes is dropped, not executed.
  uint32_t timeout_ms = 0;
};

// -- What the service answers ------------------------------------------------

/// The answer to a grab (抢), taken from the envelope actor's memory.
enum class grab_outcome : uint8_t {
  can_open = 1,        ///< Go on and open.
  already_opened = 2,  ///< This user opened before; amount_fen says how much.
  exhausted = 3,       ///< 手慢了: no shares left.
  expired = 4,
  not_paid = 5,
};

const char* to_string(grab_outcome x);

struct grab_result {
  grab_outcome outcome = grab_outcome::can_open;
  int64_t amount_fen = 0;
  int32_t remaining_count = 0;
};

/// The answer to an open (拆): the amount is durably committed.
struct open_result {
  int64_t amount_fen = 0;
  int32_t seq = 0;
  /// False when this user had opened before and this is the same share again.
  bool first_time = true;
  /// How many shares the envelope has in all.
  int32_t count = 0;
};

/// Everything a client sees of an envelope: the envelope and its shares.
struct envelope_detail {
  envelope env;
  std::vector<open_record> opens;
};

struct auth_ok {
  std::string node_name;
};

struct error_reply {
  errc code = errc::internal;
  std::string message;
  /// NOT_OWNER: "host:port" of the owner's client gateway if known, else
  /// empty (the proto's Error.owner_hint). Initialised so that
  /// error_reply{code, message} stays quiet.
  std::string owner_hint = {};
};

/// Create and ConfirmPayment answer with the envelope.
/// One named metric of a node (counters, gauges, percentiles).
struct metric {
  std::string name;
  int64_t value = 0;
};

/// A node's view of its cluster (empty when it runs on its own).
struct cluster_info {
  bool enabled = false;
  std::string set;
  std::string zone;
  int64_t incarnation = 0;
  bool fenced = false;  ///< the node could not renew its lease in time
  bool draining = false;  ///< it is handing its segments over
  std::vector<std::string> zones;
  /// What a zone's loss would do past the configured capacity
  /// ([cluster] node_capacity_segments), one line each.
  std::vector<std::string> warnings;
  /// Every SET as last seen: its own from its database, the others from
  /// their nodes.
  std::vector<set_view> sets;
};

/// A snapshot of a node: metrics sorted by name, every blocked segment and
/// the cluster as the node sees it.
struct node_stats {
  std::string node_name;
  std::vector<metric> metrics;
  std::vector<segment_state> segments;
  cluster_info cluster;
};

using response_body
  = std::variant<error_reply, auth_ok, envelope, grab_result, open_result,
                 envelope_detail, history_page, balance_info,
                 reconcile_report, node_stats, segment_state, control_result>;

struct client_response {
  uint64_t request_id = 0;
  response_body body;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, metric& x) {
  return f(x.name, x.value);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, control_request& x) {
  return f(x.action, x.node, x.dry_run);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, control_move& x) {
  return f(x.segment, x.from, x.to);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, control_result& x) {
  return f(x.node, x.draining, x.owned, x.moves, x.message);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cluster_info& x) {
  return f(x.enabled, x.set, x.zone, x.incarnation, x.fenced, x.draining,
           x.zones, x.warnings, x.sets);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_stats& x) {
  return f(x.node_name, x.metrics, x.segments, x.cluster);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, grab_result& x) {
  return f(x.outcome, x.amount_fen, x.remaining_count);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, open_result& x) {
  return f(x.amount_fen, x.seq, x.first_time, x.count);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, envelope_detail& x) {
  return f(x.env, x.opens);
}

} // namespace hb

#pragma once

// The node's metrics in Prometheus' text exposition format (version
// 0.0.4), for GET /metrics on the operator side: the node's counters and
// gauges (from the same snapshot `stats` shows), the answers by request
// kind and result, the latency and batch-size histograms, and in a cluster
// each known node's lease and owned segments. Pure: no CAF, no I/O.

#include <string>

#include "runtime/messages.hpp"
#include "runtime/metrics.hpp"

namespace hb::admin {

/// "opens.committed" -> "hongbao_opens_committed": characters outside
/// [a-zA-Z0-9_] become '_'.
std::string prometheus_name(const std::string& dotted);

/// The exposition text of one node (`st` as its router reports it).
std::string prometheus_text(const node_metrics& m, const node_stats& st,
                            const std::string& zone);

} // namespace hb::admin

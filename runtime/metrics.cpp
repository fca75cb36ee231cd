#include "runtime/metrics.hpp"

#include <algorithm>

namespace hb {

uint64_t log2_histogram::count() const {
  uint64_t n = 0;
  for (auto& c : counts_)
    n += c.load(std::memory_order_relaxed);
  return n;
}

uint64_t log2_histogram::percentile(double p) const {
  auto total = count();
  if (total == 0)
    return 0;
  auto rank = static_cast<uint64_t>(p / 100.0 * static_cast<double>(total));
  uint64_t seen = 0;
  for (size_t k = 0; k < buckets; ++k) {
    seen += counts_[k].load(std::memory_order_relaxed);
    if (seen > rank)
      return k == 0 ? 0 : (uint64_t{1} << k) - 1;
  }
  return (uint64_t{1} << (buckets - 1)) - 1;
}

const char* to_string(request_kind x) {
  switch (x) {
    case request_kind::auth: return "auth";
    case request_kind::create: return "create";
    case request_kind::pay: return "pay";
    case request_kind::grab: return "grab";
    case request_kind::open: return "open";
    case request_kind::get: return "get";
    case request_kind::history: return "history";
    case request_kind::balance: return "balance";
    case request_kind::reconcile: return "reconcile";
    case request_kind::stats: return "stats";
    case request_kind::segment: return "segment";
    case request_kind::cluster: return "cluster";
    case request_kind::count_: break;
  }
  return "unknown";
}

std::vector<std::pair<std::string, int64_t>> node_metrics::snapshot() const {
  std::vector<std::pair<std::string, int64_t>> out;
  auto add = [&](std::string name, uint64_t v) {
    out.emplace_back(std::move(name), static_cast<int64_t>(v));
  };
  add("cluster.joins", cluster_joins.load());
  add("cluster.fences", cluster_fences.load());
  add("cluster.segments_taken", cluster_takes.load());
  add("cluster.segments_given", cluster_gives.load());
  add("cluster.segments_received", cluster_received.load());
  add("cluster.forwarded", cluster_forwarded.load());
  add("cluster.forward_failures", cluster_forward_failures.load());
  add("cluster.forward_us_p50", forward_latency_us.percentile(50));
  add("cluster.forward_us_p99", forward_latency_us.percentile(99));
  add("cluster.not_owner", cluster_not_owner.load());
  add("cluster.owner_refusals", owner_refusals.load());
  add("envelopes.activations", activations.load());
  out.emplace_back("expiry.clock_skew_ms", clock_skew_ms.load());
  out.emplace_back("expiry.clock_skew_uncertainty_ms",
                   clock_skew_uncertainty_ms.load());
  add("expiry.clock_checks", clock_skew_checks.load());
  out.emplace_back("expiry.held", expiry_held.load());
  add("expiry.held_sweeps", expiry_held_sweeps.load());
  add("envelopes.queued_opens", std::max<int64_t>(0, queued_opens.load()));
  add("gateway.direct", direct_requests.load());
  add("gateway.direct_fallbacks", direct_fallbacks.load());
  add("gateway.auth_timeouts", gateway_auth_timeouts.load());
  add("gateway.connections",
      std::max<int64_t>(0, gateway_connections.load()));
  add("gateway.idle_closed", gateway_idle_closed.load());
  add("gateway.read_pauses", gateway_read_pauses.load());
  add("gateway.refused", gateway_refused.load());
  add("gateway.timeouts", gateway_timeouts.load());
  add("opens.committed", opens_committed.load());
  add("opens.writes", open_batches.load());
  add("opens.writes_failed", write_failures.load());
  add("opens.batch_max", open_batch_max.load());
  add("opens.batch_p50", batch_sizes.percentile(50));
  add("opens.batch_p99", batch_sizes.percentile(99));
  add("relay.batches", relay_batches.load());
  add("relay.credited", relay_credited.load());
  add("relay.redeliveries", relay_duplicates.load());
  add("relay.yields", relay_yields.load());
  add("refunds", refunds.load());
  add("requests.deadline_dropped", deadline_drops.load());
  add("store.calls", store_latency_us.count());
  add("store.latency_us_p50", store_latency_us.percentile(50));
  add("store.latency_us_p99", store_latency_us.percentile(99));
  add("store.latency_us_p999", store_latency_us.percentile(99.9));
  for (size_t k = 0; k < answers.size(); ++k)
    for (size_t code = 0; code < answers[k].size(); ++code) {
      auto n = answers[k][code].load();
      if (n == 0)
        continue;
      add(std::string{"requests."} + to_string(static_cast<request_kind>(k))
            + "." + (code == 0 ? "ok" : to_string(static_cast<errc>(code))),
          n);
    }
  std::sort(out.begin(), out.end());
  return out;
}

} // namespace hb

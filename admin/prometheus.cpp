#include "admin/prometheus.hpp"

#include <algorithm>

#include "domain/errc.hpp"

namespace hb::admin {

namespace {

// Gauges among the snapshot's names: levels and percentiles; everything
// else only grows and is a counter.
bool is_gauge(const std::string& name) {
  static const char* const parts[] = {"_p50", "_p99", "_max", "live", "pending",
                                      "queued", "inflight", "blocked",
                                      "oldest_age_ms"};
  return std::any_of(std::begin(parts), std::end(parts), [&](const char* p) {
    return name.find(p) != std::string::npos;
  });
}

std::string escaped(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"')
      out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

void histogram(std::string& out, const std::string& name, const std::string& help,
               const log2_histogram& h) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  size_t last = 0;
  for (size_t k = 0; k < log2_histogram::buckets; ++k)
    if (h.bucket(k) > 0)
      last = k;
  uint64_t seen = 0;
  for (size_t k = 0; k <= last; ++k) {
    seen += h.bucket(k);
    // Bucket k holds the integers below 2^k (and at least 2^(k-1)).
    auto le = k == 0 ? uint64_t{0} : (uint64_t{1} << k) - 1;
    out += name + "_bucket{le=\"" + std::to_string(le) + "\"} "
           + std::to_string(seen) + "\n";
  }
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(h.count()) + "\n";
  out += name + "_count " + std::to_string(h.count()) + "\n";
}

} // namespace

std::string prometheus_name(const std::string& dotted) {
  std::string out = "hongbao_";
  for (char c : dotted)
    out += (std::isalnum(static_cast<unsigned char>(c)) || c == '_') ? c : '_';
  return out;
}

std::string prometheus_text(const node_metrics& m, const node_stats& st,
                            const std::string& zone) {
  std::string out;
  out += "# HELP hongbao_node_info The node answering, with its zone and SET.\n"
         "# TYPE hongbao_node_info gauge\n";
  out += "hongbao_node_info{node=\"" + escaped(st.node_name) + "\",zone=\""
         + escaped(zone) + "\",set=\"" + escaped(st.cluster.set) + "\"} 1\n";
  for (auto& metric : st.metrics) {
    auto gauge = is_gauge(metric.name);
    auto name = prometheus_name(metric.name) + (gauge ? "" : "_total");
    out += "# TYPE " + name + (gauge ? " gauge\n" : " counter\n");
    out += name + " " + std::to_string(metric.value) + "\n";
  }
  out += "# HELP hongbao_requests_total Client requests answered, by kind "
         "and result.\n# TYPE hongbao_requests_total counter\n";
  for (size_t k = 0; k < static_cast<size_t>(request_kind::count_); ++k)
    for (size_t code = 0; code < 32; ++code) {
      auto n = m.answers[k][code].load(std::memory_order_relaxed);
      if (n == 0)
        continue;
      auto result = code == 0 ? std::string{"ok"}
                              : std::string{to_string(static_cast<errc>(code))};
      out += std::string{"hongbao_requests_total{kind=\""}
             + to_string(static_cast<request_kind>(k)) + "\",result=\"" + result
             + "\"} " + std::to_string(n) + "\n";
    }
  histogram(out, "hongbao_store_latency_us",
            "Store calls, microseconds (log2 buckets).", m.store_latency_us);
  histogram(out, "hongbao_open_batch_size",
            "Opens per committed write (log2 buckets).", m.batch_sizes);
  histogram(out, "hongbao_forward_latency_us",
            "Forwarded requests' round trip, microseconds (log2 buckets).",
            m.forward_latency_us);
  if (!st.cluster.enabled)
    return out;
  out += "# TYPE hongbao_cluster_fenced gauge\nhongbao_cluster_fenced "
         + std::string{st.cluster.fenced ? "1" : "0"} + "\n";
  out += "# HELP hongbao_cluster_lease_left_ms A known node's lease left "
         "(negative: expired), on its SET's database clock.\n"
         "# TYPE hongbao_cluster_lease_left_ms gauge\n";
  std::string owned = "# HELP hongbao_cluster_segments_owned Segments a "
                      "node owns at its current incarnation.\n"
                      "# TYPE hongbao_cluster_segments_owned gauge\n";
  for (auto& view : st.cluster.sets)
    for (auto& n : view.nodes) {
      auto labels = "{set=\"" + escaped(view.set) + "\",node=\"" + escaped(n.node)
                    + "\",zone=\"" + escaped(n.zone) + "\"}";
      out += "hongbao_cluster_lease_left_ms" + labels + " "
             + std::to_string(n.expires_at_ms - view.db_now_ms) + "\n";
      int64_t count = 0;
      for (auto& o : view.owners)
        count += o.owner == n.node && o.owner_incarnation == n.incarnation;
      owned += "hongbao_cluster_segments_owned" + labels + " "
               + std::to_string(count) + "\n";
    }
  return out + owned;
}

} // namespace hb::admin

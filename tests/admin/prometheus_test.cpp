#define CAF_SUITE admin.prometheus

#include "caf/test/unit_test.hpp"

#include <map>
#include <sstream>

#include "admin/prometheus.hpp"

using namespace hb;
using namespace hb::admin;

namespace {

// The samples of an exposition text: "name{labels}" -> value; every line
// that is not a comment must be a sample.
std::map<std::string, double> samples_of(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#')
      continue;
    auto sp = line.rfind(' ');
    CAF_REQUIRE(sp != std::string::npos);
    out[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
  }
  return out;
}

} // namespace

CAF_TEST(names are prefixed and sanitised) {
  CAF_CHECK_EQUAL(prometheus_name("opens.committed"), "hongbao_opens_committed");
  CAF_CHECK_EQUAL(prometheus_name("unavailable.x-y"), "hongbao_unavailable_x_y");
}

CAF_TEST(counters gauges answers and histograms are exposed) {
  node_metrics m;
  m.record_answer(request_kind::open, errc::none);
  m.record_answer(request_kind::open, errc::none);
  m.record_answer(request_kind::open, errc::exhausted);
  m.store_latency_us.record(0);
  m.store_latency_us.record(3);    // bucket 2: le 3
  m.store_latency_us.record(100);  // bucket 7: le 127
  node_stats st;
  st.node_name = "n1";
  st.metrics = {{"opens.committed", 42}, {"relay.pending", 5},
                {"opens.batch_p99", 7}};
  auto text = prometheus_text(m, st, "zone-a");
  auto s = samples_of(text);
  CAF_CHECK_EQUAL(s["hongbao_node_info{node=\"n1\",zone=\"zone-a\",set=\"\"}"], 1);
  CAF_CHECK_EQUAL(s["hongbao_opens_committed_total"], 42);
  CAF_CHECK(text.find("# TYPE hongbao_opens_committed_total counter")
            != std::string::npos);
  CAF_CHECK_EQUAL(s["hongbao_relay_pending"], 5);
  CAF_CHECK(text.find("# TYPE hongbao_relay_pending gauge") != std::string::npos);
  CAF_CHECK_EQUAL(s["hongbao_opens_batch_p99"], 7);
  CAF_CHECK_EQUAL(s["hongbao_requests_total{kind=\"open\",result=\"ok\"}"], 2);
  CAF_CHECK_EQUAL(s["hongbao_requests_total{kind=\"open\",result=\"exhausted\"}"], 1);
  // Cumulative buckets up to the highest used one, then +Inf and count.
  CAF_CHECK_EQUAL(s["hongbao_store_latency_us_bucket{le=\"0\"}"], 1);
  CAF_CHECK_EQUAL(s["hongbao_store_latency_us_bucket{le=\"1\"}"], 1);
  CAF_CHECK_EQUAL(s["hongbao_store_latency_us_bucket{le=\"3\"}"], 2);
  CAF_CHECK_EQUAL(s["hongbao_store_latency_us_bucket{le=\"63\"}"], 2);
  CAF_CHECK_EQUAL(s["hongbao_store_latency_us_bucket{le=\"127\"}"], 3);
  CAF_CHECK_EQUAL(s.count("hongbao_store_latency_us_bucket{le=\"255\"}"), 0u);
  CAF_CHECK_EQUAL(s["hongbao_store_latency_us_bucket{le=\"+Inf\"}"], 3);
  CAF_CHECK_EQUAL(s["hongbao_store_latency_us_count"], 3);
  CAF_CHECK(text.find("# TYPE hongbao_store_latency_us histogram")
            != std::string::npos);
  CAF_CHECK_EQUAL(s.count("hongbao_cluster_fenced"), 0u);
}

CAF_TEST(a cluster node exposes leases and owned segments) {
  node_metrics m;
  node_stats st;
  st.node_name = "a1";
  st.cluster.enabled = true;
  st.cluster.set = "set-1";
  set_view v;
  v.set = "set-1";
  v.db_now_ms = 1000;
  v.nodes.push_back({"a1", 4, "zone-a", "set-1", "127.0.0.1", 7811, "", 0, 3500});
  v.nodes.push_back({"b1", 2, "zone-b", "set-1", "127.0.0.1", 7821, "", 0, 900});
  v.owners = {{0, "a1", 4, 1}, {1, "a1", 4, 1}, {2, "b1", 1, 1}};
  st.cluster.sets.push_back(v);
  auto s = samples_of(prometheus_text(m, st, "zone-a"));
  CAF_CHECK_EQUAL(s["hongbao_cluster_fenced"], 0);
  CAF_CHECK_EQUAL(
    s["hongbao_cluster_lease_left_ms{set=\"set-1\",node=\"a1\",zone=\"zone-a\"}"],
    2500);
  CAF_CHECK_EQUAL(
    s["hongbao_cluster_lease_left_ms{set=\"set-1\",node=\"b1\",zone=\"zone-b\"}"],
    -100);
  CAF_CHECK_EQUAL(
    s["hongbao_cluster_segments_owned{set=\"set-1\",node=\"a1\",zone=\"zone-a\"}"],
    2);
  // b1 owns segment 2 at an old incarnation: not counted.
  CAF_CHECK_EQUAL(
    s["hongbao_cluster_segments_owned{set=\"set-1\",node=\"b1\",zone=\"zone-b\"}"],
    0);
}

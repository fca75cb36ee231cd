#include "load/stats.hpp"

#include <algorithm>
#include <cmath>

namespace hb::load {

double percentile_ms(const std::vector<int64_t>& sorted_us, double p) {
  if (sorted_us.empty())
    return 0;
  auto n = static_cast<double>(sorted_us.size());
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * n));
  rank = std::clamp<size_t>(rank, 1, sorted_us.size());
  return static_cast<double>(sorted_us[rank - 1]) / 1000.0;
}

latency_summary summarize(std::vector<int64_t>& samples_us) {
  latency_summary out;
  out.count = samples_us.size();
  if (samples_us.empty())
    return out;
  std::sort(samples_us.begin(), samples_us.end());
  out.p50_ms = percentile_ms(samples_us, 50);
  out.p90_ms = percentile_ms(samples_us, 90);
  out.p99_ms = percentile_ms(samples_us, 99);
  out.p999_ms = percentile_ms(samples_us, 99.9);
  out.max_ms = static_cast<double>(samples_us.back()) / 1000.0;
  double sum = 0;
  for (auto v : samples_us)
    sum += static_cast<double>(v);
  out.mean_ms = sum / static_cast<double>(samples_us.size()) / 1000.0;
  return out;
}

} // namespace hb::load

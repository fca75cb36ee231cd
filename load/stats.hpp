#pragma once

// Latency statistics of a load run: exact percentiles over every sample (a
// run answers at most a few million requests, so keeping them all is cheap
// and spares the rounding of a histogram).

#include <cstdint>
#include <vector>

namespace hb::load {

struct latency_summary {
  uint64_t count = 0;
  double p50_ms = 0;
  double p90_ms = 0;
  double p99_ms = 0;
  double p999_ms = 0;
  double max_ms = 0;
  double mean_ms = 0;
};

/// Summarises microsecond samples; sorts `samples_us` in place.
latency_summary summarize(std::vector<int64_t>& samples_us);

/// The p-th percentile (0 < p <= 100) of sorted microsecond samples, in ms:
/// the smallest sample with at least p % of all samples at or below it.
double percentile_ms(const std::vector<int64_t>& sorted_us, double p);

} // namespace hb::load

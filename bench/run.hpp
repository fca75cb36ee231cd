#pragma once

// hongbao-bench, the load generator of issue 5: drives one scenario (hot,
// spread, storm; load/scenario.hpp) against one target — hongbao over its
// client protocol, or a baseline built the usual way (pg-lock, pg-update,
// redis-lua; bench/targets.hpp) — in a closed loop (N users at once) or an
// open loop (a fixed rate of users) through the load engine, prints progress
// each second and a report (throughput and latency percentiles per request
// type, errors by code), then audits the target's own store: shares sum to
// totals, nobody twice, money conserved, every "you got X" recorded.
//
// Exit status: 0 ok; 1 the audit failed or the run could not complete;
// 2 usage error; 3 cannot reach the target.

#include <cstdint>
#include <string>
#include <vector>

#include "load/scenario.hpp"
#include "load/target.hpp"

namespace hb::bench {

constexpr int exit_ok = 0;
constexpr int exit_failed = 1;
constexpr int exit_usage = 2;
constexpr int exit_transport = 3;

struct bench_options {
  target_options target;
  scenario_options scenario;
  uint32_t connections = 0;  ///< 0: the target's default
  uint32_t users = 10000;
  uint32_t setup_users = 1000;
  double rate = 0;
  double duration_s = 0;
  double drain_s = 120;
  uint32_t retries = 20;
  bool json = false;
  bool quiet = false;
  std::string label;
  std::vector<std::string> cpu_of;  ///< LABEL=PID, see load/cpu_use.hpp
};

/// Runs the benchmark and prints its report (text, or one JSON object with
/// `json`); returns the exit status.
int run_bench(bench_options opts);

} // namespace hb::bench

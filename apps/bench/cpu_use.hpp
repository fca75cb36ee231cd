#pragma once

// CPU time spent during a run, per process: the load generator itself and
// any process named with --cpu-of (the node, PostgreSQL with its backends,
// redis-server). Divided by the opens of the run, it says where the time
// per open goes, in the same run as the throughput it explains.

#include <cstdint>
#include <string>
#include <vector>

#include "domain/errc.hpp"

namespace hb::bench {

/// A process to watch: its label in the report and its pid. The process
/// and all its descendants count (PostgreSQL's backends are children of
/// the postmaster).
struct watched_process {
  std::string label;
  int pid = 0;
};

/// Parses LABEL=PID; errc::invalid_argument with a message otherwise, or
/// when no such process is running.
outcome<watched_process> parse_watched(const std::string& text);

/// CPU seconds (user + system) used so far by `pid` and its descendants
/// that are still running, read from /proc. 0 when the process is gone.
double tree_cpu_seconds(int pid);

/// CPU seconds used so far by this process, all threads.
double self_cpu_seconds();

/// One sample of every watched process and of this one.
struct cpu_sample {
  std::vector<double> watched_s;  ///< in the order of the watch list
  double self_s = 0;
  double wall_s = 0;  ///< a steady clock, for the share of the cores
};

cpu_sample take_cpu_sample(const std::vector<watched_process>& watched);

/// What each process used between two samples.
struct cpu_use {
  struct entry {
    std::string label;
    double seconds = 0;
  };
  std::vector<entry> processes;  ///< the watched ones, then "generator"
  double wall_s = 0;
  unsigned cores = 1;
  /// All the entries' seconds over wall_s x cores.
  double busy() const;
};

cpu_use cpu_between(const std::vector<watched_process>& watched,
                    const cpu_sample& before, const cpu_sample& after);

} // namespace hb::bench

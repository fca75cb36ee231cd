#pragma once

// CPU time spent during a run, per process: the load generator itself and
// any process named with --cpu-of (the node, PostgreSQL with its backends,
// redis-server). Divided by the opens of the run, it says where the time
// per open goes, in the same run as the throughput it explains.

#include <cstdint>
#include <map>
#include <string>
#include <utility>
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

/// The processes of one watched tree at one moment: CPU seconds (user +
/// system) so far of `pid` and of each descendant still running, by process
/// (pid and start time, so that a reused pid is another process).
using process_times = std::map<std::pair<int, uint64_t>, double>;

process_times tree_cpu(int pid);

/// CPU seconds used so far by this process, all threads.
double self_cpu_seconds();

/// One sample of every watched process and of this one.
struct cpu_sample {
  std::vector<process_times> watched;  ///< in the order of the watch list
  double self_s = 0;
  double wall_s = 0;  ///< a steady clock, for the share of the cores
};

cpu_sample take_cpu_sample(const std::vector<watched_process>& watched);

/// The CPU a tree spent between two samples: what each process running at
/// the end used since the start (all of it if it started since). A process
/// that ended in between takes its time with it: that part is missed, and
/// never subtracted.
double spent_between(const process_times& before, const process_times& after);

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

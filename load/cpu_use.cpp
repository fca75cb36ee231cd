#include "load/cpu_use.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

namespace hb::bench {

namespace {

struct proc_stat {
  int ppid = 0;
  double cpu_s = 0;        // utime + stime
  uint64_t started = 0;    // clock ticks after boot
};

// Reads /proc/<pid>/stat. The command name (field 2) is in parentheses and
// may hold spaces, so the fields are counted from its closing parenthesis:
// state is field 3, ppid 4, utime 14, stime 15, starttime 22.
bool read_stat(int pid, proc_stat& out) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line))
    return false;
  auto close = line.rfind(')');
  if (close == std::string::npos)
    return false;
  std::istringstream rest(line.substr(close + 1));
  std::string field;
  long long utime = 0, stime = 0;
  for (int n = 3; n <= 22 && rest >> field; ++n) {
    if (n == 4)
      out.ppid = std::atoi(field.c_str());
    else if (n == 14)
      utime = std::atoll(field.c_str());
    else if (n == 15)
      stime = std::atoll(field.c_str());
    else if (n == 22)
      out.started = std::strtoull(field.c_str(), nullptr, 10);
  }
  if (!rest)
    return false;
  static const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  out.cpu_s = static_cast<double>(utime + stime) / ticks;
  return true;
}

double seconds_of(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

} // namespace

outcome<watched_process> parse_watched(const std::string& text) {
  auto eq = text.rfind('=');
  auto usage = "--cpu-of wants LABEL=PID (e.g. postgres=1234), not '" + text + "'";
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size())
    return failure{errc::invalid_argument, usage};
  watched_process w;
  w.label = text.substr(0, eq);
  auto digits = text.substr(eq + 1);
  if (digits.find_first_not_of("0123456789") != std::string::npos
      || digits.size() > 9)
    return failure{errc::invalid_argument, usage};
  w.pid = std::atoi(digits.c_str());
  proc_stat st;
  if (w.pid <= 0 || !read_stat(w.pid, st))
    return failure{errc::invalid_argument,
                   "--cpu-of " + text + ": no process " + digits
                     + " is running (or /proc cannot be read)"};
  return w;
}

namespace {

// Every process in /proc with its parent, read in one pass.
struct proc_table {
  std::unordered_map<int, std::vector<int>> children;
  std::unordered_map<int, proc_stat> stats;
};

proc_table scan_proc() {
  proc_table t;
  std::error_code ec;
  for (auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    auto name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos)
      continue;
    int p = std::atoi(name.c_str());
    proc_stat st;
    if (!read_stat(p, st))
      continue;  // gone meanwhile
    t.stats[p] = st;
    t.children[st.ppid].push_back(p);
  }
  return t;
}

process_times subtree(const proc_table& t, int pid) {
  process_times out;
  std::vector<int> todo{pid};
  while (!todo.empty()) {
    int p = todo.back();
    todo.pop_back();
    if (auto it = t.stats.find(p); it != t.stats.end())
      out[{p, it->second.started}] = it->second.cpu_s;
    if (auto it = t.children.find(p); it != t.children.end())
      todo.insert(todo.end(), it->second.begin(), it->second.end());
  }
  return out;
}

} // namespace

process_times tree_cpu(int pid) {
  return subtree(scan_proc(), pid);
}

double spent_between(const process_times& before, const process_times& after) {
  double total = 0;
  for (auto& [proc, cpu_s] : after) {
    auto it = before.find(proc);
    total += cpu_s - (it != before.end() ? it->second : 0.0);
  }
  return total;
}

double self_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return seconds_of(ru.ru_utime) + seconds_of(ru.ru_stime);
}

cpu_sample take_cpu_sample(const std::vector<watched_process>& watched) {
  // One pass over /proc for every watched tree: one moment for all of them.
  cpu_sample s;
  auto table = scan_proc();
  for (auto& w : watched)
    s.watched.push_back(subtree(table, w.pid));
  s.self_s = self_cpu_seconds();
  s.wall_s = std::chrono::duration<double>(
               std::chrono::steady_clock::now().time_since_epoch())
               .count();
  return s;
}

double cpu_use::busy() const {
  double sum = 0;
  for (auto& e : processes)
    sum += e.seconds;
  return wall_s > 0 ? sum / (wall_s * cores) : 0;
}

cpu_use cpu_between(const std::vector<watched_process>& watched,
                    const cpu_sample& before, const cpu_sample& after) {
  cpu_use u;
  for (size_t i = 0; i < watched.size(); ++i)
    u.processes.push_back(
      {watched[i].label, spent_between(before.watched[i], after.watched[i])});
  u.processes.push_back({"generator", after.self_s - before.self_s});
  u.wall_s = after.wall_s - before.wall_s;
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  u.cores = n > 0 ? static_cast<unsigned>(n) : 1;
  return u;
}

} // namespace hb::bench
